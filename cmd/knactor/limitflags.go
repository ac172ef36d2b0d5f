package main

import (
	"github.com/spf13/pflag"

	"github.com/knactor/knactor/router"
)

// registerClientLimitFlags registers the router's bounds on slow and abusive clients: how long a
// client may take to send a request, to take an answer or to sit idle, and how many connections
// and WebSocket sessions it may hold (docs/api.md, "Slow and abusive clients").
func registerClientLimitFlags(fs *pflag.FlagSet, cfg *router.Config) {
	fs.DurationVar(&cfg.ReadTimeout, "read-timeout", router.DefaultReadTimeout,
		"time a client has to send a whole request, headers and body (408 past it): from the connection's start for its first request, from the first byte for later ones")
	fs.DurationVar(&cfg.WriteTimeout, "write-timeout", router.DefaultWriteTimeout,
		"time a client has to take an answer")
	fs.DurationVar(&cfg.IdleTimeout, "idle-timeout", router.DefaultIdleTimeout,
		"how long a keep-alive connection may sit idle between requests before the router closes it")
	fs.IntVar(&cfg.MaxConns, "max-conns", router.DefaultMaxConns,
		"open client connections, WebSocket sessions included (503 too_many_connections past it)")
	fs.IntVar(&cfg.MaxConnsPerIP, "max-conns-per-ip", 0,
		"open connections from one IPv4 address or IPv6 /64 (429 too_many_connections past it; 0: no cap, as behind a proxy all calls share its address)")
	fs.IntVar(&cfg.MaxWebSocketSessions, "max-websocket-sessions", router.DefaultMaxWebSocketSessions,
		"open WebSocket sessions (503 too_many_connections past it)")
}

// registerRequestFlags registers the bounds of one call and who may make it from a browser:
// the same flags on `knactor router` and `knactor up`.
func registerRequestFlags(fs *pflag.FlagSet, cfg *router.Config) {
	fs.StringSliceVar(&cfg.AllowedOrigins, "allowed-origin", nil, "Origin of web pages accepted: WebSocket upgrades, and API calls of a router without tokens (repeatable; '*' for any)")
	fs.IntVar(&cfg.MaxQueuePerActor, "max-queue-per-actor", router.DefaultMaxQueuePerActor, "calls that may wait for one actor before 429")
	fs.IntVar(&cfg.MaxWaitingCalls, "max-waiting-calls", router.DefaultMaxWaitingCalls, "calls that may wait for their actors' turns, all actors together, before 503")
	fs.IntVar(&cfg.MaxPayloadBytes, "max-payload-bytes", router.DefaultMaxPayloadBytes, "largest request body")
	fs.IntVar(&cfg.MaxStateBytes, "max-state-bytes", router.DefaultMaxStateBytes, "largest actor state")
}
