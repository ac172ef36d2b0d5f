package statserver

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/utils/clock"

	"github.com/knactor/knactor/autoscaler"
	"github.com/knactor/knactor/router/stats"
)

// Defaults of Config.
const (
	// DefaultStaleAfter drops a router that sent nothing for three of its 1 s intervals. One
	// late message (a GC pause, a busy node, a slow network) is not a dead router, so the
	// threshold tolerates two missed intervals; and it is half the 6 s panic window, so the
	// in-flight requests of a router that died without closing its connection (the node went
	// away, the network split) stop holding up the autoscaler's decisions well within one
	// panic window.
	DefaultStaleAfter = 3 * autoscaler.DefaultScrapeInterval
	// DefaultMaxMessageBytes bounds one message. A stats entry is about 200 bytes of JSON, so
	// 1 MiB carries some 5000 functions per router, far more than one router serves; and
	// gorilla/websocket reads a whole message into memory, so the bound is also what one
	// connection can make the autoscaler hold at once.
	DefaultMaxMessageBytes = 1 << 20
)

// Timeouts on the network. They use real time: they bound waiting on a socket, they are not
// a schedule.
const (
	// handshakeTimeout bounds the WebSocket upgrade.
	handshakeTimeout = 10 * time.Second
	// writeWait bounds writing a close frame: the server writes nothing else.
	writeWait = time.Second
	// closeWait is how long the server waits for the router's answer to its close frame (or
	// for the router to hang up) before it drops the connection.
	closeWait = time.Second
)

// Disconnect reasons: the "reason" label of knactor_autoscaler_router_disconnects_total.
const (
	reasonClosed   = "closed"    // the router closed the connection with a close frame
	reasonError    = "error"     // the connection failed without a close frame
	reasonStale    = "stale"     // the router sent nothing for StaleAfter
	reasonReplaced = "replaced"  // the router connected again under the same name
	reasonInvalid  = "invalid"   // the router broke the wire format
	reasonTooLarge = "too_large" // a message exceeded MaxMessageBytes
	reasonShutdown = "shutdown"  // the server closed
)

// Message kinds: the "kind" label of knactor_autoscaler_stat_messages_total.
const (
	kindStats   = "stats"   // a valid message without a poke (stats or a heartbeat)
	kindPoke    = "poke"    // a valid message with a poke
	kindInvalid = "invalid" // a message that broke the wire format (the connection is closed)
)

// Config configures a Server.
type Config struct {
	// Clock judges staleness and times snapshots. Default the real clock.
	Clock clock.PassiveClock
	// StaleAfter drops a router that sent nothing for longer than this. Default
	// DefaultStaleAfter.
	StaleAfter time.Duration
	// MaxMessageBytes bounds one message; a larger one closes its connection (1009). Default
	// DefaultMaxMessageBytes.
	MaxMessageBytes int64
	// Poke is called with the function of every poke message (the Autoscaler's Poke). It runs
	// on the sending router's reader goroutine, so it must not block. Nil ignores pokes.
	Poke func(function string)
	// Logger receives connects, disconnects and stale routers. Default discards.
	Logger *slog.Logger
	// Token, when set, is the secret the routers share (Kubernetes mode: the knactor-internal
	// Secret): a connection must present it as "Authorization: Bearer <token>" or is refused
	// with 401 before the upgrade, so a pod in the cluster cannot feed the autoscaler false load.
	Token string
}

// RouterStatus describes one connected router.
type RouterStatus struct {
	// Name is the router's identity (its pod name).
	Name string
	// RemoteAddr is the address its connection comes from.
	RemoteAddr string
	// ConnectedSince is when its connection was accepted; LastMessage when its latest message
	// arrived (both on the server's clock).
	ConnectedSince, LastMessage time.Time
	// Messages is how many messages arrived on its connection.
	Messages uint64
}

// Server receives routers' statistics over WebSockets and adds them up (see the package
// documentation). Mount it on the autoscaler's HTTP server; Snapshot implements
// autoscaler.StatsSource.
//
// Goroutines and locks:
//   - Each connection has one reader goroutine: the ServeHTTP call that upgraded it. It owns
//     the connection's reads and applies each message under mu; it ends when the connection
//     does. wg counts them; Close waits for them.
//   - The server writes only close frames, with WriteControl, which gorilla/websocket allows
//     from any goroutine; the goroutine that ends a connection (its reader, or Snapshot,
//     Routers and Close for stale, replaced and shut-down connections) writes one and sets a
//     read deadline, so the reader ends within closeWait even if the router never answers.
//   - mu guards conns, routers, departed, lastSnapshot, closed, and every conn's fields
//     marked so. Nothing blocks, logs or calls out while holding it.
//   - The server starts no goroutine of its own: staleness is judged whenever Snapshot or
//     Routers runs.
type Server struct {
	cfg      Config
	log      *slog.Logger
	upgrader websocket.Upgrader

	messages    *prometheus.CounterVec
	disconnects *prometheus.CounterVec
	routersDesc *prometheus.Desc

	wg sync.WaitGroup

	mu sync.Mutex
	// conns holds every connection whose reader runs, named or not yet.
	conns map[*conn]struct{}
	// routers maps a router's name to its current connection.
	routers map[string]*conn
	// departed holds, by function, what routers that left had reported but no Snapshot had
	// taken yet; the next Snapshot of the function takes it.
	departed map[string]*departure
	// lastSnapshot is when each function was last snapshotted, while some router reports it.
	lastSnapshot map[string]time.Time
	// closed is set by Close; no connection is accepted after it.
	closed bool
}

// conn is one router connection.
type conn struct {
	ws     *websocket.Conn
	remote string
	since  time.Time
	// closeOnce makes end write one close frame.
	closeOnce sync.Once

	// Guarded by Server.mu:
	// router is the router's name, "" until its first message.
	router string
	// last is when the latest message arrived (since, before the first).
	last time.Time
	// messages counts the messages that arrived.
	messages uint64
	// functions holds what the router reported, per function.
	functions map[string]*routerFunc
	// gone is set when the connection is removed from the server; its reader ignores any
	// further message.
	gone bool
}

// routerFunc is what one router reported about one function.
type routerFunc struct {
	// What it reported since the previous Snapshot of the function:
	// fresh is set by a message, cleared by Snapshot.
	fresh bool
	// area is Σ averageConcurrency × windowSeconds; windowSec is Σ windowSeconds.
	area, windowSec float64
	// lastAvg is the latest averageConcurrency: the average when windowSec is 0.
	lastAvg float64
	// requests is Σ requests.
	requests uint64
	// peakActors is the largest activeActors.
	peakActors int

	// The latest message's inFlight and activeActors.
	inFlight, activeActors int
}

func (f *routerFunc) add(st *Stat) {
	f.fresh = true
	f.area += st.AverageConcurrency * st.WindowSeconds
	f.windowSec += st.WindowSeconds
	f.lastAvg = st.AverageConcurrency
	f.requests += st.Requests
	f.peakActors = max(f.peakActors, st.ActiveActors)
	f.inFlight, f.activeActors = st.InFlight, st.ActiveActors
}

// contribution is one router's part of a Snapshot.
type contribution struct {
	avg      float64
	window   time.Duration
	requests uint64
	actors   int
}

// take returns what the router reported since the previous Snapshot and starts over. A
// router that reported nothing since then contributes its latest in-flight requests as its
// average, and as many of its latest active actors as can still be in flight (each has at
// least one request in flight).
func (f *routerFunc) take() contribution {
	if !f.fresh {
		return contribution{avg: float64(f.inFlight), actors: min(f.activeActors, f.inFlight)}
	}
	c := contribution{avg: f.lastAvg, window: seconds(f.windowSec), requests: f.requests, actors: f.peakActors}
	if f.windowSec > 0 {
		c.avg = f.area / f.windowSec
	}
	f.fresh, f.area, f.windowSec, f.requests, f.peakActors = false, 0, 0, 0, 0
	return c
}

// departure is what routers that left had reported about one function and no Snapshot took:
// the sum of their contributions.
type departure struct {
	contribution
	at time.Time // when the latest of them left
}

// New returns a Server; mount it as an http.Handler.
func New(cfg Config) *Server {
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	if cfg.StaleAfter <= 0 {
		cfg.StaleAfter = DefaultStaleAfter
	}
	if cfg.MaxMessageBytes <= 0 {
		cfg.MaxMessageBytes = DefaultMaxMessageBytes
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		cfg: cfg,
		log: log,
		upgrader: websocket.Upgrader{
			HandshakeTimeout: handshakeTimeout,
			// Messages are small JSON; gorilla grows its buffer for larger ones.
			ReadBufferSize:  4 << 10,
			WriteBufferSize: 256, // close frames only
		},
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "knactor_autoscaler_stat_messages_total",
			Help: "Messages received from routers on the stats stream, by kind (stats, poke, invalid).",
		}, []string{"kind"}),
		disconnects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "knactor_autoscaler_router_disconnects_total",
			Help: "Routers whose stats stream ended, by reason (closed, error, stale, replaced, invalid, too_large, shutdown).",
		}, []string{"reason"}),
		routersDesc: prometheus.NewDesc("knactor_autoscaler_routers",
			"Routers streaming stats to the autoscaler that sent a message within the stale threshold.", nil, nil),
		conns:        make(map[*conn]struct{}),
		routers:      make(map[string]*conn),
		departed:     make(map[string]*departure),
		lastSnapshot: make(map[string]time.Time),
	}
	// Every series exists from the start, so a rate over it is defined before the first event.
	for _, k := range []string{kindStats, kindPoke, kindInvalid} {
		s.messages.WithLabelValues(k)
	}
	for _, r := range []string{reasonClosed, reasonError, reasonStale, reasonReplaced, reasonInvalid, reasonTooLarge, reasonShutdown} {
		s.disconnects.WithLabelValues(r)
	}
	return s
}

// ServeHTTP upgrades a router's request to a WebSocket and reads its messages until the
// connection ends.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		http.Error(w, "the autoscaler is shutting down", http.StatusServiceUnavailable)
		return
	}
	if !s.authorized(r) {
		s.log.Warn("refused a stats connection without the routers' secret", "remote", r.RemoteAddr)
		w.Header().Set("WWW-Authenticate", "Bearer")
		http.Error(w, "stats connections need the routers' shared secret as a bearer token", http.StatusUnauthorized)
		return
	}
	ws, err := s.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader answered with an HTTP error
	}
	now := s.cfg.Clock.Now()
	c := &conn{ws: ws, remote: r.RemoteAddr, since: now, last: now}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		c.end(websocket.CloseGoingAway, "autoscaler shutting down; reconnect")
		_ = ws.Close()
		return
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1) // under mu with closed false, so never after Close's Wait began
	s.mu.Unlock()
	defer s.wg.Done()
	s.read(c)
}

// read is a connection's reader loop. It returns when the connection ends, and removes it.
func (s *Server) read(c *conn) {
	defer c.ws.Close()
	c.ws.SetReadLimit(s.cfg.MaxMessageBytes)
	reason := "" // set when this loop ends the connection
	for {
		typ, data, err := c.ws.ReadMessage()
		if err != nil {
			switch {
			case reason != "":
				// Our close frame was answered, or the router hung up, or closeWait passed.
			case errors.Is(err, websocket.ErrReadLimit):
				// gorilla/websocket has sent the close frame (1009). Drain what the router
				// still sends, so that closing the socket does not reset the connection
				// before the router has read the close frame.
				reason = reasonTooLarge
				s.messages.WithLabelValues(kindInvalid).Inc()
				_ = c.ws.UnderlyingConn().SetReadDeadline(time.Now().Add(closeWait))
				_, _ = io.Copy(io.Discard, c.ws.UnderlyingConn())
			case websocket.IsCloseError(err, websocket.CloseNormalClosure, websocket.CloseGoingAway):
				reason = reasonClosed
			default:
				reason = reasonError
			}
			s.remove(c, reason, err)
			return
		}
		if reason != "" {
			continue // draining after our close frame
		}
		if typ != websocket.TextMessage {
			reason = reasonInvalid
			s.reject(c, websocket.CloseUnsupportedData, errors.New("messages must be JSON text frames"))
			continue
		}
		msg, err := decode(data)
		if err == nil {
			err = s.receive(c, &msg)
		}
		if err != nil {
			reason = reasonInvalid
			s.reject(c, websocket.ClosePolicyViolation, err)
		}
	}
}

// reject ends c because it broke the wire format.
func (s *Server) reject(c *conn, code int, err error) {
	s.messages.WithLabelValues(kindInvalid).Inc()
	s.mu.Lock()
	router := c.router
	s.mu.Unlock()
	s.log.Warn("statserver: invalid message; closing the connection",
		"router", router, "remote", c.remote, "error", err)
	c.end(code, err.Error())
}

// receive applies one valid message from c.
func (s *Server) receive(c *conn, m *Message) error {
	now := s.cfg.Clock.Now()
	var replaced *conn
	s.mu.Lock()
	if c.gone {
		s.mu.Unlock()
		return nil // dropped (stale, replaced, shut down): the close frame is on its way
	}
	first := c.router == ""
	if first {
		if old := s.routers[m.Router]; old != nil && s.drop(old, reasonReplaced, now) {
			replaced = old
		}
		c.router = m.Router
		s.routers[m.Router] = c
	} else if m.Router != c.router {
		s.mu.Unlock()
		return fmt.Errorf("%w: a message names router %q on the connection of router %q", errInvalid, m.Router, c.router)
	}
	c.last = now
	c.messages++
	if len(m.Stats) > 0 || len(c.functions) > 0 {
		s.apply(c, m)
	}
	s.mu.Unlock()

	if replaced != nil {
		s.noticeGone(replaced, reasonReplaced, nil, now)
		replaced.end(websocket.ClosePolicyViolation, "replaced by a newer connection of router "+m.Router)
	}
	if first {
		s.log.Info("statserver: router connected", "router", m.Router, "remote", c.remote)
	}
	if m.Poke != "" {
		s.messages.WithLabelValues(kindPoke).Inc()
		if s.cfg.Poke != nil {
			s.cfg.Poke(m.Poke)
		}
	} else {
		s.messages.WithLabelValues(kindStats).Inc()
	}
	return nil
}

// apply records m's stats for c's router. A poke alone (no stats) changes nothing; a stats
// message that leaves out a function the router reported before means the router forgot it
// (idle for long): its latest in-flight requests are zero, and it is removed once a Snapshot
// has taken what it still holds. Called with mu held.
func (s *Server) apply(c *conn, m *Message) {
	if m.Poke != "" && len(m.Stats) == 0 {
		return
	}
	if c.functions == nil {
		c.functions = make(map[string]*routerFunc, len(m.Stats))
	}
	for i := range m.Stats {
		st := &m.Stats[i]
		f := c.functions[st.Function]
		if f == nil {
			f = &routerFunc{}
			c.functions[st.Function] = f
		}
		f.add(st)
	}
	if len(c.functions) == len(m.Stats) {
		return // every function is in the message
	}
	in := make(map[string]struct{}, len(m.Stats))
	for i := range m.Stats {
		in[m.Stats[i].Function] = struct{}{}
	}
	for name, f := range c.functions {
		if _, ok := in[name]; ok {
			continue
		}
		f.inFlight, f.activeActors = 0, 0
		if !f.fresh {
			delete(c.functions, name)
		}
	}
}

// drop removes c from the server, once: its router stops contributing, and what it had
// reported but no Snapshot took is kept in departed for the next Snapshot. When c was a
// router's current connection, drop counts its disconnect for reason (under mu, so the
// count agrees with Routers) and returns true: the caller logs it after unlocking. Called
// with mu held.
func (s *Server) drop(c *conn, reason string, now time.Time) bool {
	if c.gone {
		return false
	}
	c.gone = true
	if c.router == "" || s.routers[c.router] != c {
		return false
	}
	delete(s.routers, c.router)
	s.disconnects.WithLabelValues(reason).Inc()
	for name, f := range c.functions {
		if !f.fresh {
			continue
		}
		d := s.departed[name]
		if d == nil {
			d = &departure{}
			s.departed[name] = d
		}
		part := f.take()
		d.avg += part.avg
		d.requests += part.requests
		d.actors += part.actors
		d.window = max(d.window, part.window)
		d.at = now
	}
	c.functions = nil
	return true
}

// remove is the end of c's reader: it drops c, unless something else did, and forgets it.
func (s *Server) remove(c *conn, reason string, err error) {
	now := s.cfg.Clock.Now()
	s.mu.Lock()
	counted := s.drop(c, reason, now)
	delete(s.conns, c)
	s.mu.Unlock()
	if counted {
		s.noticeGone(c, reason, err, now)
	}
}

// noticeGone logs that c's router left for reason.
func (s *Server) noticeGone(c *conn, reason string, err error, now time.Time) {
	s.mu.Lock()
	router, last := c.router, c.last
	s.mu.Unlock()
	attrs := []any{"router", router, "remote", c.remote, "reason", reason,
		"connected_for", now.Sub(c.since), "silent_for", now.Sub(last)}
	if err != nil && reason != reasonClosed {
		attrs = append(attrs, "error", err)
	}
	switch reason {
	case reasonClosed, reasonReplaced, reasonShutdown:
		s.log.Info("statserver: router disconnected", attrs...)
	case reasonStale:
		s.log.Warn("statserver: router stale; dropped", attrs...)
	default:
		s.log.Warn("statserver: router disconnected", attrs...)
	}
}

// end writes a close frame (once) and makes c's reader stop within closeWait. The server
// writes nothing else, so the socket's send buffer is empty and the frame does not wait even
// for a router that stopped reading; writeWait bounds the exception.
func (c *conn) end(code int, text string) {
	c.closeOnce.Do(func() {
		_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, closeText(text)),
			time.Now().Add(writeWait))
		_ = c.ws.UnderlyingConn().SetReadDeadline(time.Now().Add(closeWait))
	})
}

// maxCloseText is the longest reason a close frame carries: a control frame's payload is at
// most 125 bytes, two of them the code.
const maxCloseText = 123

// closeText cuts text to fit a close frame, at a character boundary.
func closeText(text string) string {
	if len(text) <= maxCloseText {
		return text
	}
	text = text[:maxCloseText]
	for len(text) > 0 && !utf8.ValidString(text) {
		text = text[:len(text)-1]
	}
	return text
}

// sweep drops the connections that sent nothing for longer than StaleAfter, and departures
// no Snapshot took within StaleAfter (functions the autoscaler does not scale). It returns
// the dropped connections and whether each was a router's current one. Called with mu held.
func (s *Server) sweep(now time.Time) (stale []*conn, counted []bool) {
	for c := range s.conns {
		if !c.gone && now.Sub(c.last) > s.cfg.StaleAfter {
			counted = append(counted, s.drop(c, reasonStale, now))
			stale = append(stale, c)
		}
	}
	for name, d := range s.departed {
		if now.Sub(d.at) > s.cfg.StaleAfter {
			delete(s.departed, name)
		}
	}
	return stale, counted
}

// endStale notices and closes what sweep dropped. Called without mu.
func (s *Server) endStale(stale []*conn, counted []bool, now time.Time) {
	for i, c := range stale {
		if counted[i] {
			s.noticeGone(c, reasonStale, nil, now)
		} else {
			s.log.Info("statserver: connection sent nothing; closed", "remote", c.remote)
		}
		c.end(websocket.ClosePolicyViolation, "no message for "+s.cfg.StaleAfter.String())
	}
}

// Snapshot returns the statistics of function since its previous Snapshot, added up over the
// routers (see the package documentation), and starts a new window. Time is now on the
// server's clock; Window is the time since the previous Snapshot of the function or, for the
// first one, the longest window a router's report covers. A function no router reports has a
// window of no length with nothing in it. Like stats.Recorder.EndWindow, each call ends the window,
// so the autoscaler must be its only caller.
func (s *Server) Snapshot(function string) stats.Snapshot {
	now := s.cfg.Clock.Now()
	out := stats.Snapshot{Function: function, Time: now}
	s.mu.Lock()
	stale, counted := s.sweep(now)
	found := false
	var span time.Duration
	for _, c := range s.routers {
		f := c.functions[function]
		if f == nil {
			continue
		}
		found = true
		part := f.take()
		out.AverageConcurrency += part.avg
		out.Requests += part.requests
		out.InFlight += f.inFlight
		out.ActiveActors += part.actors
		span = max(span, part.window)
	}
	if d := s.departed[function]; d != nil {
		found = true
		out.AverageConcurrency += d.avg
		out.Requests += d.requests
		out.ActiveActors += d.actors
		span = max(span, d.window)
		delete(s.departed, function)
	}
	prev, seen := s.lastSnapshot[function]
	switch {
	case !found:
		delete(s.lastSnapshot, function)
	case seen:
		out.Window = max(now.Sub(prev), 0)
		s.lastSnapshot[function] = now
	default:
		out.Window = span
		s.lastSnapshot[function] = now
	}
	s.mu.Unlock()
	s.endStale(stale, counted, now)
	return out
}

// Routers returns the connected routers, sorted by name, after dropping stale ones.
func (s *Server) Routers() []RouterStatus {
	now := s.cfg.Clock.Now()
	s.mu.Lock()
	stale, counted := s.sweep(now)
	out := make([]RouterStatus, 0, len(s.routers))
	for name, c := range s.routers {
		out = append(out, RouterStatus{Name: name, RemoteAddr: c.remote, ConnectedSince: c.since,
			LastMessage: c.last, Messages: c.messages})
	}
	s.mu.Unlock()
	s.endStale(stale, counted, now)
	slices.SortFunc(out, func(a, b RouterStatus) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Collector returns the server's metrics for a registry: knactor_autoscaler_routers (the
// routers that sent a message within StaleAfter; collecting it drops nothing),
// knactor_autoscaler_stat_messages_total{kind} and
// knactor_autoscaler_router_disconnects_total{reason}.
func (s *Server) Collector() prometheus.Collector { return collector{s} }

type collector struct{ s *Server }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.s.routersDesc
	c.s.messages.Describe(ch)
	c.s.disconnects.Describe(ch)
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	now := s.cfg.Clock.Now()
	s.mu.Lock()
	live := 0
	for _, r := range s.routers {
		if now.Sub(r.last) <= s.cfg.StaleAfter {
			live++
		}
	}
	s.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(s.routersDesc, prometheus.GaugeValue, float64(live))
	s.messages.Collect(ch)
	s.disconnects.Collect(ch)
}

// Close closes every connection with a close frame (1001, going away: routers reconnect),
// refuses new ones, and waits for the reader goroutines to end (at most about closeWait after
// the close frames). It does not stop the HTTP server the Server is mounted on. It returns
// nil; it is safe to call more than once.
func (s *Server) Close() error {
	now := s.cfg.Clock.Now()
	s.mu.Lock()
	s.closed = true
	conns := make([]*conn, 0, len(s.conns))
	counted := make([]bool, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
		counted = append(counted, s.drop(c, reasonShutdown, now))
	}
	s.mu.Unlock()
	var ends sync.WaitGroup
	for i, c := range conns {
		if counted[i] {
			s.noticeGone(c, reasonShutdown, nil, now)
		}
		// In parallel: a router that stopped reading makes its close frame wait writeWait.
		ends.Go(func() { c.end(websocket.CloseGoingAway, "autoscaler shutting down; reconnect") })
	}
	ends.Wait()
	s.wg.Wait()
	return nil
}

// authorized checks a connection's bearer token against Config.Token, in constant time.
func (s *Server) authorized(r *http.Request) bool {
	if s.cfg.Token == "" {
		return true
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(got), []byte(s.cfg.Token)) == 1
}
