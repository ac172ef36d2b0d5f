package router

import (
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"
)

// Request kinds, the "kind" label of the request metrics.
const (
	kindActor       = "actor"       // POST /v1/actors/{function}/{id}/{action}
	kindState       = "state"       // GET and DELETE /v1/actors/{function}/{id}
	kindWebSocket   = "websocket"   // one invocation over a WebSocket
	kindPassThrough = "passthrough" // /v1/functions/{function}/...
)

// metrics are the router's Prometheus metrics, served on /metrics from a registry of its own.
type metrics struct {
	registry  *prometheus.Registry
	requests  *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	conflicts *prometheus.CounterVec
	effects   *prometheus.CounterVec
	timers    *prometheus.CounterVec
	scanErrs  prometheus.Counter
	replays   *prometheus.CounterVec
	storeTry  *prometheus.CounterVec
	refused   *prometheus.CounterVec
	handler   fasthttp.RequestHandler

	// children caches the label children observe uses, so the per-request cost is a map read
	// rather than a label hash and a strconv. Keys are bounded by deployed functions × kinds ×
	// statuses. mu guards it.
	mu       sync.RWMutex
	children map[observeKey]observeChildren
}

type observeKey struct {
	function, kind string
	status         int
}

type observeChildren struct {
	requests prometheus.Counter
	duration prometheus.Observer
}

// latencyBuckets span a cache-hit turn on loopback (~100 µs) to a slow function (~15 s).
var latencyBuckets = prometheus.ExponentialBuckets(100e-6, 2.5, 14)

func newMetrics(r *Router, extra prometheus.Registerer) *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		children: make(map[observeKey]observeChildren),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "knactor_router_requests_total",
			Help: "Requests answered by the router, by function, kind and HTTP status code.",
		}, []string{"function", "kind", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "knactor_router_request_duration_seconds",
			Help:    "Time from a request's arrival to its answer, by function and kind.",
			Buckets: latencyBuckets,
		}, []string{"function", "kind"}),
		conflicts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "knactor_router_turn_conflicts_total",
			Help: "Turns re-run because the actor's state changed under them (several routers writing one actor).",
		}, []string{"function"}),
		effects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "knactor_router_effects_total",
			Help: "Effects dispatched from actors' outboxes, by target function and result (ok; failed: the target refused or failed for good; retry: dispatched again later; dropped: given up after repeated failures).",
		}, []string{"function", "result"}),
		timers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "knactor_router_timer_firings_total",
			Help: "Timer firings, by function and result (fired; refused: the function answered an error; retry: failed and tried again later; skipped: given up after repeated function failures; orphaned: the function is not deployed).",
		}, []string{"function", "result"}),
		scanErrs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "knactor_router_due_index_scan_errors_total",
			Help: "Listings of the store's due-time index that failed (timers and effects then fire late).",
		}),
		replays: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "knactor_router_idempotent_replays_total",
			Help: "Calls answered from an actor's record because their idempotency key had committed before.",
		}, []string{"function"}),
		storeTry: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "knactor_router_store_retries_total",
			Help: "State reads and writes tried again because the store was unavailable, by function and operation.",
		}, []string{"function", "op"}),
	}
	m.refused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "knactor_router_refused_total",
		Help: "Connections, WebSocket sessions and calls refused by a cap, by reason: connections (--max-conns), connections_per_ip (--max-conns-per-ip), websocket_sessions (--max-websocket-sessions), actor_queue (--max-queue-per-actor), waiting_calls (--max-waiting-calls), websocket_queue_budget (a session behind while 256 MiB are queued for all sessions).",
	}, []string{"reason"})
	for _, reason := range []string{refusedConns, refusedConnsPerIP, refusedSessions, refusedActorQueue, refusedWaiting, refusedWSBudget} {
		m.refused.WithLabelValues(reason) // every reason shows, at 0 until it happens
	}
	gauges := []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "knactor_router_open_connections",
			Help: "Open client connections, WebSocket sessions included (capped by --max-conns).",
		}, func() float64 { return float64(r.openConns()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "knactor_router_websocket_sessions",
			Help: "Open WebSocket sessions (capped by --max-websocket-sessions).",
		}, func() float64 { return float64(r.hub.slots.n.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "knactor_router_scheduled_actors",
			Help: "Actors this router holds in memory for a due time: a timer or an effect (delayed, or to retry) in their outbox, each at most MaxOutbox effects.",
		}, func() float64 {
			if r.sched == nil {
				return 0
			}
			return float64(r.sched.queued())
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "knactor_router_websocket_queued_bytes",
			Help: "Bytes of messages queued for WebSocket sessions, all together (at most 256 MiB before sessions behind are closed).",
		}, func() float64 { return float64(r.hub.queued.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "knactor_router_relay_links",
			Help: "Links to the other routers that are up: each relays the changes it commits of the actors with subscribers here (below the number of other routers: subscribers may miss changes).",
		}, func() float64 { return float64(r.hub.relay.connected()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "knactor_router_waiting_calls",
			Help: "Calls waiting for their actors' turns, all actors together (capped by --max-waiting-calls).",
		}, func() float64 { return float64(r.mailboxes.Waiting()) }),
	}
	inflight := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "knactor_router_active_actors",
		Help: "Actors with a call running or waiting for its turn.",
	}, func() float64 { return float64(r.mailboxes.Active()) })
	perFunction := &inflightCollector{r: r, desc: prometheus.NewDesc("knactor_router_inflight_requests",
		"Requests in flight, by function.", []string{"function"}, nil)}
	cs := []prometheus.Collector{m.requests, m.duration, m.conflicts, m.effects, m.timers, m.scanErrs, m.replays, m.storeTry, inflight, perFunction,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), m.refused}
	cs = append(cs, gauges...)
	for _, c := range cs {
		m.registry.MustRegister(c)
	}
	if extra != nil {
		for _, c := range cs[:8] {
			extra.MustRegister(c)
		}
	}
	m.handler = fasthttpadaptor.NewFastHTTPHandler(promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{}))
	return m
}

func (m *metrics) serve(ctx *fasthttp.RequestCtx) { m.handler(ctx) }

func (m *metrics) observe(function, kind string, status int, start time.Time) {
	k := observeKey{function, kind, status}
	m.mu.RLock()
	c, ok := m.children[k]
	m.mu.RUnlock()
	if !ok {
		c = observeChildren{
			requests: m.requests.WithLabelValues(function, kind, strconv.Itoa(status)),
			duration: m.duration.WithLabelValues(function, kind),
		}
		m.mu.Lock()
		m.children[k] = c
		m.mu.Unlock()
	}
	c.requests.Inc()
	c.duration.Observe(time.Since(start).Seconds())
}

// The reasons of knactor_router_refused_total.
const (
	refusedConns      = "connections"
	refusedConnsPerIP = "connections_per_ip"
	refusedSessions   = "websocket_sessions"
	refusedActorQueue = "actor_queue"
	refusedWaiting    = "waiting_calls"
	refusedWSBudget   = "websocket_queue_budget"
)

// refusal counts a refusal by a cap.
func (m *metrics) refusal(reason string) { m.refused.WithLabelValues(reason).Inc() }

func (m *metrics) conflict(function string) { m.conflicts.WithLabelValues(function).Inc() }

func (m *metrics) effect(function, result string) { m.effects.WithLabelValues(function, result).Inc() }

func (m *metrics) timer(function, result string) { m.timers.WithLabelValues(function, result).Inc() }

func (m *metrics) scanError() { m.scanErrs.Inc() }

func (m *metrics) replay(function string) { m.replays.WithLabelValues(function).Inc() }

func (m *metrics) storeRetry(function, op string) { m.storeTry.WithLabelValues(function, op).Inc() }

// inflightCollector reports the stats recorder's in-flight counts at scrape time.
type inflightCollector struct {
	r    *Router
	desc *prometheus.Desc
}

func (c *inflightCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *inflightCollector) Collect(ch chan<- prometheus.Metric) {
	for _, fn := range c.r.stats.Functions() {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(c.r.stats.InFlight(fn)), fn)
	}
}
