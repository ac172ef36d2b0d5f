// Package statreporter streams a router's per-function request statistics and its pokes to
// the autoscaler over a WebSocket, as Knative's activator does (knative.dev/serving
// pkg/activator/stat_reporter.go and the autoscaler's statserver). In Kubernetes mode every
// router process runs one Reporter over its own stats.Recorder; the autoscaler's
// autoscaler/statserver.Server adds the routers up, and notices a router that disconnects or
// goes silent. The wire format is documented in package statserver.
//
// The Reporter is the only one to end the Recorder's windows: every Interval it calls
// EndWindows and sends what it returns. A snapshot that cannot be sent (not connected, or the write
// failed) is not lost: it is merged into the next message. Pokes (the activator's Poker) are
// sent as soon as the connection allows, coalesced per function.
package statreporter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"k8s.io/utils/clock"

	"github.com/knactor/knactor/autoscaler"
	"github.com/knactor/knactor/autoscaler/statserver"
	"github.com/knactor/knactor/router/stats"
)

// DefaultInterval is one message per autoscaler bucket: the autoscaler scrapes every
// DefaultScrapeInterval, so each of its snapshots finds about one message per router.
const DefaultInterval = autoscaler.DefaultScrapeInterval

// Reconnection backoff, on the injected clock: the delay before the n-th attempt is
// min(backoffMax, backoffInitial × 2ⁿ), less a random part of up to half, so routers that lost
// the same autoscaler do not all come back at once.
const (
	// backoffInitial retries a connection reset almost at once.
	backoffInitial = 100 * time.Millisecond
	// backoffMax bounds how long a restarted autoscaler goes without hearing from a router
	// to a few intervals (its StaleAfter is 3 s), while a router retrying an unreachable
	// autoscaler every 2.5-5 s costs nothing. A connection that lasted backoffMax resets the
	// backoff; one that ends sooner (the server accepts and at once closes it) does not, so
	// such a loop runs at the capped pace.
	backoffMax = 5 * time.Second
)

// Timeouts on the network, in real time: they bound waiting on a socket, not a schedule.
const (
	// handshakeTimeout bounds connecting and upgrading.
	handshakeTimeout = 5 * time.Second
	// writeWait bounds writing one message: a few intervals, after which the connection is
	// given up (and the message merged into the next one).
	writeWait = 5 * time.Second
	// closeWait is how long Run waits, when its context ends, for the autoscaler to answer
	// its close frame.
	closeWait = time.Second
)

// Source is where the statistics come from: a *stats.Recorder.
type Source interface {
	EndWindows() []stats.Snapshot
}

// Config configures a Reporter.
type Config struct {
	// URL is the autoscaler's stats endpoint, ws://host:port/stats or wss://. Required.
	URL string
	// Router is this router's identity (its pod name), sent with every message. Required,
	// 1 to statserver.MaxNameBytes bytes.
	Router string
	// Interval is how often statistics are sent. Default DefaultInterval.
	Interval time.Duration
	// Clock drives the interval and the reconnection backoff. Default the real clock.
	Clock clock.WithTicker
	// Header is sent with the WebSocket handshake (e.g. Authorization: Bearer ...).
	Header http.Header
	// Logger receives connects, disconnects and failed attempts. Default discards.
	Logger *slog.Logger
}

// ErrConfig marks an invalid Config.
var ErrConfig = errors.New("statreporter: invalid config")

// Reporter streams a Source's statistics and pokes to the autoscaler.
//
// Goroutines and locks:
//   - Run's goroutine owns the connection's writes, the dialing, the backoff timer and the
//     unsent statistics (pending): nothing else touches them. It returns when its context
//     ends.
//   - While connected, one reader goroutine per connection reads (the autoscaler sends only
//     control frames, which gorilla/websocket handles while reading) and reports the
//     connection's end on a channel. Run closes the connection and waits for it before
//     dialing again or returning.
//   - mu guards pokes and running. Poke takes it briefly, and wakes Run through pokeCh
//     without blocking; it never touches the network.
//   - connected is atomic: Run writes it, Connected reads it.
type Reporter struct {
	cfg    Config
	src    Source
	log    *slog.Logger
	dialer websocket.Dialer

	// pokeCh carries one token when pokes may be non-empty.
	pokeCh chan struct{}
	// connected is true while a connection is up.
	connected atomic.Bool

	mu      sync.Mutex
	pokes   map[string]struct{} // functions poked and not yet sent
	running bool
}

// New validates cfg and returns a Reporter over src; call Run to start it.
func New(cfg Config, src Source) (*Reporter, error) {
	if src == nil {
		return nil, fmt.Errorf("%w: no Source", ErrConfig)
	}
	if cfg.URL == "" {
		return nil, fmt.Errorf("%w: URL is required", ErrConfig)
	}
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("%w: URL: %w", ErrConfig, err)
	}
	if u.Scheme != "ws" && u.Scheme != "wss" {
		return nil, fmt.Errorf("%w: URL %q: the scheme must be ws or wss", ErrConfig, cfg.URL)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("%w: URL %q has no host", ErrConfig, cfg.URL)
	}
	if cfg.Router == "" || len(cfg.Router) > statserver.MaxNameBytes {
		return nil, fmt.Errorf("%w: Router must be 1 to %d bytes, got %d", ErrConfig, statserver.MaxNameBytes, len(cfg.Router))
	}
	if cfg.Interval < 0 {
		return nil, fmt.Errorf("%w: Interval %v is negative", ErrConfig, cfg.Interval)
	}
	if cfg.Interval == 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	cfg.Header = cfg.Header.Clone()
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Reporter{
		cfg: cfg,
		src: src,
		log: log.With("router", cfg.Router, "url", cfg.URL),
		dialer: websocket.Dialer{
			Proxy:            http.ProxyFromEnvironment,
			HandshakeTimeout: handshakeTimeout,
			ReadBufferSize:   256, // control frames only
			WriteBufferSize:  4 << 10,
		},
		pokeCh: make(chan struct{}, 1),
		pokes:  make(map[string]struct{}),
	}, nil
}

// Poke asks the autoscaler for an immediate decision about function (activator.Poker). It
// never blocks: the poke is sent by Run as soon as it is connected and not writing; pokes of
// one function before then are sent once.
func (r *Reporter) Poke(function string) {
	r.mu.Lock()
	r.pokes[function] = struct{}{}
	r.mu.Unlock()
	select {
	case r.pokeCh <- struct{}{}:
	default: // a token is already waiting; Run takes every pending poke with it
	}
}

// Connected reports whether the Reporter has a connection to the autoscaler.
func (r *Reporter) Connected() bool { return r.connected.Load() }

// Run connects to the autoscaler and sends, every Interval, one message with what the Source's
// EndWindows returns (merged with any that could not be sent), and every poke as it comes. When the
// connection fails it reconnects with capped exponential backoff, keeping the statistics it
// could not send. When ctx ends it sends a last message and a close frame, waits briefly for
// the answer, and returns nil. It may run only once at a time.
func (r *Reporter) Run(ctx context.Context) error {
	r.mu.Lock()
	if r.running {
		r.mu.Unlock()
		return errors.New("statreporter: already running")
	}
	r.running = true
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.running = false
		r.mu.Unlock()
	}()

	ticker := r.cfg.Clock.NewTicker(r.cfg.Interval)
	defer ticker.Stop()
	pending := make(pending)
	attempt := 0
	for {
		ws, err := r.dial(ctx)
		if err == nil {
			up := r.cfg.Clock.Now()
			r.connected.Store(true)
			r.log.Info("statreporter: connected to the autoscaler")
			err = r.stream(ctx, ws, ticker, pending)
			r.connected.Store(false)
			if err == nil {
				return nil // ctx ended; the connection is closed
			}
			if r.cfg.Clock.Since(up) >= backoffMax {
				attempt = 0
			}
		}
		if ctx.Err() != nil {
			return nil
		}
		delay := backoff(attempt)
		attempt++
		r.log.Warn("statreporter: no connection to the autoscaler; retrying", "error", err, "retry_in", delay)
		if !r.wait(ctx, delay, ticker, pending) {
			return nil
		}
	}
}

// backoff returns the delay before reconnection attempt n (from 0): see backoffMax.
func backoff(n int) time.Duration {
	d := backoffMax
	if n < 16 { // 100 ms × 2¹⁶ is far past the cap; avoid shifting into overflow
		d = min(backoffMax, backoffInitial<<n)
	}
	return d - rand.N(d/2+1)
}

// dial connects to the autoscaler.
func (r *Reporter) dial(ctx context.Context) (*websocket.Conn, error) {
	ws, resp, err := r.dialer.DialContext(ctx, r.cfg.URL, r.cfg.Header)
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("statreporter: connect: %w (HTTP %s)", err, resp.Status)
		}
		return nil, fmt.Errorf("statreporter: connect: %w", err)
	}
	return ws, nil
}

// wait waits delay on the clock while disconnected, taking a snapshot at every tick into
// pending. It returns false when ctx ended.
func (r *Reporter) wait(ctx context.Context, delay time.Duration, ticker clock.Ticker, p pending) bool {
	timer := r.cfg.Clock.NewTimer(delay)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-ticker.C():
			p.add(r.src.EndWindows())
		case <-timer.C():
			return true
		}
	}
}

// stream runs one connection: a message at once (so the autoscaler knows the router, and
// gets what could not be sent before), then one every tick and the pokes as they come. It
// returns nil after closing the connection cleanly when ctx ends, or the error that ended the
// connection.
func (r *Reporter) stream(ctx context.Context, ws *websocket.Conn, ticker clock.Ticker, p pending) error {
	readDone := make(chan error, 1)
	go func() {
		for {
			if _, _, err := ws.ReadMessage(); err != nil {
				readDone <- err
				return
			}
			// The autoscaler sends no data messages; ignore any from a newer one.
		}
	}()
	fail := func(err error) error {
		_ = ws.Close()
		<-readDone
		return err
	}

	if err := r.sendPokes(ws); err != nil {
		return fail(err)
	}
	p.add(r.src.EndWindows())
	if err := r.sendStats(ws, p); err != nil {
		return fail(err)
	}
	for {
		select {
		case <-ctx.Done():
			r.close(ws, p, readDone)
			return nil
		case <-ticker.C():
			p.add(r.src.EndWindows())
			if err := r.sendStats(ws, p); err != nil {
				return fail(err)
			}
		case <-r.pokeCh:
			if err := r.sendPokes(ws); err != nil {
				return fail(err)
			}
		case err := <-readDone:
			_ = ws.Close()
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				return fmt.Errorf("statreporter: the autoscaler closed the connection: %w", err)
			}
			return fmt.Errorf("statreporter: connection lost: %w", err)
		}
	}
}

// close ends the connection when Run's context ends: a last message with what the Source has
// since the previous one, a close frame, and the autoscaler's answer (at most closeWait).
func (r *Reporter) close(ws *websocket.Conn, p pending, readDone <-chan error) {
	p.add(r.src.EndWindows())
	if err := r.sendStats(ws, p); err != nil {
		r.log.Warn("statreporter: last statistics not sent", "error", err)
	}
	_ = ws.WriteControl(websocket.CloseMessage,
		websocket.FormatCloseMessage(websocket.CloseNormalClosure, "router shutting down"),
		time.Now().Add(writeWait))
	_ = ws.UnderlyingConn().SetReadDeadline(time.Now().Add(closeWait))
	<-readDone
	_ = ws.Close()
	r.log.Info("statreporter: disconnected from the autoscaler")
}

// sendStats sends one stats message with everything pending, and empties pending when it was
// written.
func (r *Reporter) sendStats(ws *websocket.Conn, p pending) error {
	if err := r.write(ws, &statserver.Message{Router: r.cfg.Router, Stats: p.stats()}); err != nil {
		return err
	}
	clear(p)
	return nil
}

// sendPokes sends one message per poked function; those not written stay poked.
func (r *Reporter) sendPokes(ws *websocket.Conn) error {
	r.mu.Lock()
	names := make([]string, 0, len(r.pokes))
	for name := range r.pokes {
		names = append(names, name)
	}
	clear(r.pokes)
	r.mu.Unlock()
	slices.Sort(names)
	for i, name := range names {
		if err := r.write(ws, &statserver.Message{Router: r.cfg.Router, Poke: name}); err != nil {
			r.mu.Lock()
			for _, n := range names[i:] {
				r.pokes[n] = struct{}{}
			}
			r.mu.Unlock()
			return err
		}
	}
	return nil
}

// write sends m as one text frame.
func (r *Reporter) write(ws *websocket.Conn, m *statserver.Message) error {
	data, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("statreporter: encode: %w", err)
	}
	_ = ws.SetWriteDeadline(time.Now().Add(writeWait))
	if err := ws.WriteMessage(websocket.TextMessage, data); err != nil {
		return fmt.Errorf("statreporter: send: %w", err)
	}
	return nil
}

// pending is, per function, the statistics not yet sent: snapshots merged as one window.
// Only Run's goroutine uses it.
type pending map[string]*merged

// merged is one function's snapshots merged over their combined window.
type merged struct {
	time      time.Time
	windowSec float64 // Σ window
	area      float64 // Σ average concurrency × window seconds
	lastAvg   float64 // the latest average: the average of a combined window of no length
	requests  uint64  // Σ requests
	inFlight  int     // the latest
	actors    int     // the largest
}

// add merges snapshots into p: requests add up, average concurrency is time-weighted over the
// combined window, in-flight requests are the latest, active actors the largest (the actors of
// consecutive windows overlap, so their sum would count the same actor twice).
func (p pending) add(snapshots []stats.Snapshot) {
	for _, s := range snapshots {
		m := p[s.Function]
		if m == nil {
			m = &merged{}
			p[s.Function] = m
		}
		w := s.Window.Seconds()
		m.time = s.Time
		m.windowSec += w
		m.area += s.AverageConcurrency * w
		m.lastAvg = s.AverageConcurrency
		m.requests += s.Requests
		m.inFlight = s.InFlight
		m.actors = max(m.actors, s.ActiveActors)
	}
}

// stats returns p on the wire, sorted by function.
func (p pending) stats() []statserver.Stat {
	out := make([]statserver.Stat, 0, len(p))
	for name, m := range p {
		avg := m.lastAvg
		if m.windowSec > 0 {
			avg = m.area / m.windowSec
		}
		out = append(out, statserver.Stat{
			Function:           name,
			Time:               m.time,
			WindowSeconds:      m.windowSec,
			InFlight:           m.inFlight,
			AverageConcurrency: avg,
			Requests:           m.requests,
			ActiveActors:       m.actors,
		})
	}
	slices.SortFunc(out, func(a, b statserver.Stat) int { return strings.Compare(a.Function, b.Function) })
	return out
}
