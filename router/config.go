package router

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/knactor/knactor/router/record"
)

// Defaults of Config. Each bounds what one caller can cost the router.
const (
	// MinAuthTokenLength is the shortest bearer token accepted: 16 random characters are
	// beyond guessing over the network, and anything shorter is likely a placeholder.
	MinAuthTokenLength = 16
	// DefaultListen keeps a router without auth tokens reachable from this machine only.
	DefaultListen = "127.0.0.1:8080"
	// DefaultMaxPayloadBytes bounds a caller's request body (the contract's payload limit).
	DefaultMaxPayloadBytes = 1 << 20
	// DefaultMaxStateBytes bounds an actor's state, in the store and in every envelope.
	DefaultMaxStateBytes = 1 << 20
	// DefaultMaxReplyBytes bounds a function's answer (the contract's reply limit).
	DefaultMaxReplyBytes = 4 << 20
	// DefaultMaxQueuePerActor bounds the calls waiting for one actor's turn; past it callers get
	// 429. 1000 waiting turns of a 1 ms function is a second of backlog: more is a hot spot that
	// should back off, not queue.
	DefaultMaxQueuePerActor = 1000
	// DefaultMaxWaitingCalls bounds the calls waiting for their actors' turns in one router, all
	// actors together; past it callers get 503 no_capacity. Each waiting call holds a goroutine
	// and its request (a few KiB up to the payload limit), so 10,000 keep a flood of calls on many
	// hot actors to tens of MiB, while a busy router rarely has more than a few hundred waiting.
	DefaultMaxWaitingCalls = 10000
	// DefaultCallTimeout is a call's deadline when the function sets none (Knative's
	// timeoutSeconds); it covers the wait for the turn, the state load, the function and the save.
	DefaultCallTimeout = 30 * time.Second
	// DefaultConflictRetries is how often a turn is re-run after a version conflict before the
	// caller gets 409. Conflicts only happen when several routers write one actor at once, and
	// each re-run reloads the winner's state, so a handful settles all but pathological races.
	DefaultConflictRetries = 5
	// DefaultReadTimeout and DefaultWriteTimeout bound slow clients: reading a request (headers
	// and body) and writing a response.
	DefaultReadTimeout  = 30 * time.Second
	DefaultWriteTimeout = 30 * time.Second
	// DefaultIdleTimeout closes keep-alive connections idle for this long.
	DefaultIdleTimeout = 90 * time.Second
	// DefaultMaxConns bounds the router's open client connections, WebSocket sessions included;
	// past it new connections get 503 too_many_connections. An idle connection costs the router
	// about 11 KiB (measured, see docs/api.md), so the cap is ~180 MiB of idle connections.
	DefaultMaxConns = 16384
	// DefaultMaxWebSocketSessions bounds the open WebSocket sessions; past it upgrades get 503
	// too_many_connections. An idle session costs ~31 KiB (~124 MiB for all); one that does not
	// read holds up to wsSendQueueBytes more until it is closed.
	DefaultMaxWebSocketSessions = 4096
	// DefaultMaxEffectsPerTurn bounds the follow-up invocations one turn may ask for.
	DefaultMaxEffectsPerTurn = 64
	// DefaultStoreTimeout bounds how long one state read or write of a call waits for a store
	// that does not answer (down, frozen, failing) before the caller gets 503 store_unavailable:
	// long enough to ride out a store restart (MinIO restarts in ~1-2 s), short enough that a
	// client's own retry, with its idempotency key, takes over.
	DefaultStoreTimeout = 10 * time.Second
	// DefaultIdempotencyKeys, DefaultIdempotencyTTL and DefaultIdempotencyBytes bound the
	// idempotency keys each actor remembers (see router/record).
	DefaultIdempotencyKeys  = record.DefaultKeys
	DefaultIdempotencyTTL   = record.DefaultTTL
	DefaultIdempotencyBytes = record.DefaultKeyBytes
)

// Config configures a Router. The zero value plus defaults is a loopback-only router without auth.
type Config struct {
	// Listen is the address to serve on. Default DefaultListen.
	Listen string
	// AuthTokens, when non-empty, are the bearer tokens the public API accepts, each optionally
	// limited to some functions or to reads (see AuthToken for the form). Without tokens the
	// router refuses to listen on a non-loopback address unless AllowUnauthenticated is set.
	AuthTokens []string
	// PeerToken is the secret the routers of one actor system share (Kubernetes mode: the
	// knactor-internal Secret). Calls between routers carry it (HeaderPeerToken); without it a
	// router accepts none, and it is required with Options.Peers. At least MinPeerTokenLength
	// characters.
	PeerToken string
	// AllowUnauthenticated lets a router without tokens listen beyond loopback (behind a trusted
	// gateway, say).
	AllowUnauthenticated bool
	// AllowedOrigins, when non-empty, are the Origin values accepted from web pages ("*" for
	// any): on WebSocket upgrades, and on every API call of a router without tokens. Empty
	// accepts requests without an Origin header or with one matching the Host.
	AllowedOrigins []string

	MaxPayloadBytes  int
	MaxStateBytes    int
	MaxReplyBytes    int
	MaxQueuePerActor int
	// MaxWaitingCalls bounds the calls waiting for a turn across all actors (503 past it).
	MaxWaitingCalls   int
	MaxEffectsPerTurn int
	CallTimeout       time.Duration
	ConflictRetries   int
	// StoreTimeout bounds each state read or write of a call while the store is unavailable.
	StoreTimeout time.Duration
	// IdempotencyKeys, IdempotencyTTL and IdempotencyBytes bound the idempotency keys each
	// actor remembers: the newest IdempotencyKeys, none older than IdempotencyTTL, and the
	// newest whose replies fit in IdempotencyBytes. A key past them runs its call again.
	IdempotencyKeys  int
	IdempotencyTTL   time.Duration
	IdempotencyBytes int
	// ScanInterval is how often the router lists the store's due-time index for timers and
	// outbox entries it did not queue itself. Default DefaultScanInterval.
	ScanInterval time.Duration
	// TimerConcurrency bounds the actors whose due timers and effects run at once. Default
	// DefaultTimerConcurrency.
	TimerConcurrency int
	ReadTimeout      time.Duration
	WriteTimeout     time.Duration
	IdleTimeout      time.Duration
	// MaxConns bounds the open client connections, WebSocket sessions included (503 past it);
	// MaxConnsPerIP, when positive, those from one IPv4 address or IPv6 /64 (429 past it; 0: no
	// such cap, for a router behind a proxy whose address all calls share);
	// MaxWebSocketSessions the WebSocket sessions (503 past it). See limits.go.
	MaxConns             int
	MaxConnsPerIP        int
	MaxWebSocketSessions int
}

// SetDefaults fills every zero field with its default.
func (c *Config) SetDefaults() {
	setDefault(&c.Listen, DefaultListen)
	setDefault(&c.MaxPayloadBytes, DefaultMaxPayloadBytes)
	setDefault(&c.MaxStateBytes, DefaultMaxStateBytes)
	setDefault(&c.MaxReplyBytes, DefaultMaxReplyBytes)
	setDefault(&c.MaxQueuePerActor, DefaultMaxQueuePerActor)
	setDefault(&c.MaxWaitingCalls, DefaultMaxWaitingCalls)
	setDefault(&c.MaxEffectsPerTurn, DefaultMaxEffectsPerTurn)
	setDefault(&c.CallTimeout, DefaultCallTimeout)
	setDefault(&c.ConflictRetries, DefaultConflictRetries)
	setDefault(&c.StoreTimeout, DefaultStoreTimeout)
	setDefault(&c.IdempotencyKeys, DefaultIdempotencyKeys)
	setDefault(&c.IdempotencyTTL, DefaultIdempotencyTTL)
	setDefault(&c.IdempotencyBytes, DefaultIdempotencyBytes)
	setDefault(&c.ScanInterval, DefaultScanInterval)
	setDefault(&c.TimerConcurrency, DefaultTimerConcurrency)
	setDefault(&c.ReadTimeout, DefaultReadTimeout)
	setDefault(&c.WriteTimeout, DefaultWriteTimeout)
	setDefault(&c.IdleTimeout, DefaultIdleTimeout)
	setDefault(&c.MaxConns, DefaultMaxConns)
	setDefault(&c.MaxWebSocketSessions, DefaultMaxWebSocketSessions)
}

func setDefault[T comparable](field *T, def T) {
	var zero T
	if *field == zero {
		*field = def
	}
}

// Validate reports every problem with the config at once.
func (c *Config) Validate() error {
	var errs []error
	host, _, err := net.SplitHostPort(c.Listen)
	if err != nil {
		errs = append(errs, fmt.Errorf("listen address %q: %w", c.Listen, err))
	} else if len(c.AuthTokens) == 0 && !c.AllowUnauthenticated && !isLoopback(host) {
		errs = append(errs, fmt.Errorf("refusing to serve %s without auth tokens: set a token or listen on 127.0.0.1", c.Listen))
	}
	for i, t := range c.AuthTokens {
		if _, err := ParseAuthToken(t); err != nil {
			errs = append(errs, fmt.Errorf("auth token #%d: %w", i+1, err))
		}
	}
	if c.PeerToken != "" && len(c.PeerToken) < MinPeerTokenLength {
		errs = append(errs, fmt.Errorf("the routers' shared secret is shorter than %d characters", MinPeerTokenLength))
	}
	for name, v := range map[string]int{
		"max payload bytes": c.MaxPayloadBytes, "max state bytes": c.MaxStateBytes,
		"max reply bytes": c.MaxReplyBytes, "max queue per actor": c.MaxQueuePerActor, "max waiting calls": c.MaxWaitingCalls,
		"max effects per turn": c.MaxEffectsPerTurn, "conflict retries": c.ConflictRetries,
		"idempotency keys": c.IdempotencyKeys, "idempotency bytes": c.IdempotencyBytes,
		"timer concurrency": c.TimerConcurrency, "max conns": c.MaxConns,
		"max conns per ip": c.MaxConnsPerIP, "max websocket sessions": c.MaxWebSocketSessions,
	} {
		if v < 0 {
			errs = append(errs, fmt.Errorf("%s must not be negative", name))
		}
	}
	for name, d := range map[string]time.Duration{
		"call timeout": c.CallTimeout, "read timeout": c.ReadTimeout,
		"write timeout": c.WriteTimeout, "idle timeout": c.IdleTimeout,
		"store timeout": c.StoreTimeout, "idempotency ttl": c.IdempotencyTTL,
		"scan interval": c.ScanInterval,
	} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("%s must not be negative", name))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("router config: %w", err)
	}
	return nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
