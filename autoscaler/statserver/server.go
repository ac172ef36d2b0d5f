package statserver

import (
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/utils/clock"

	"github.com/knactor/knactor/autoscaler"
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
