package statserver_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/knactor/knactor/activator"
	"github.com/knactor/knactor/activator/statreporter"
	"github.com/knactor/knactor/autoscaler"
	"github.com/knactor/knactor/autoscaler/statserver"
	"github.com/knactor/knactor/router/stats"
	"github.com/knactor/knactor/test/proctest"
)

var (
	_ autoscaler.StatsSource = (*statserver.Server)(nil)
	_ activator.Poker        = (*statreporter.Reporter)(nil)
	_ statreporter.Source    = (*stats.Recorder)(nil)
)

var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// waitFor is how long a test waits for something to happen over the loopback network.
const waitFor = 10 * time.Second

// env is a Server on a real loopback HTTP server, with a fake clock and captured logs.
type env struct {
	srv   *statserver.Server
	ts    *httptest.Server
	clk   *clocktesting.FakeClock
	logs  *proctest.Buffer
	url   string
	reg   *prometheus.Registry
	pokes chan string

	mu     sync.Mutex
	hijack []net.Conn // connections upgraded to WebSockets, in order
}

func newEnv(t *testing.T, cfg statserver.Config) *env {
	t.Helper()
	e := &env{clk: clocktesting.NewFakeClock(t0), logs: &proctest.Buffer{}, pokes: make(chan string, 100)}
	cfg.Clock = e.clk
	cfg.Logger = slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if cfg.Poke == nil {
		cfg.Poke = func(f string) { e.pokes <- f }
	}
	e.srv = statserver.New(cfg)
	e.reg = prometheus.NewPedanticRegistry()
	e.reg.MustRegister(e.srv.Collector())
	mux := http.NewServeMux()
	mux.Handle("/stats", e.srv)
	e.ts = httptest.NewUnstartedServer(mux)
	e.ts.Config.ConnState = func(c net.Conn, s http.ConnState) {
		if s == http.StateHijacked {
			e.mu.Lock()
			e.hijack = append(e.hijack, c)
			e.mu.Unlock()
		}
	}
	e.ts.Start()
	e.url = "ws" + strings.TrimPrefix(e.ts.URL, "http") + "/stats"
	t.Cleanup(func() {
		_ = e.srv.Close()
		e.ts.Close()
	})
	return e
}

// lastConn returns the server side of the latest WebSocket connection.
func (e *env) lastConn(t *testing.T) net.Conn {
	t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.hijack) == 0 {
		t.Fatal("no WebSocket connection yet")
	}
	return e.hijack[len(e.hijack)-1]
}

// router returns the status of the named router, if connected.
func (e *env) router(name string) (statserver.RouterStatus, bool) {
	for _, r := range e.srv.Routers() {
		if r.Name == name {
			return r, true
		}
	}
	return statserver.RouterStatus{}, false
}

// waitMessages waits until the named router has sent n messages.
func (e *env) waitMessages(t *testing.T, name string, n uint64) {
	t.Helper()
	proctest.Eventually(t, fmt.Sprintf("%d messages from %s", n, name), func() bool {
		r, ok := e.router(name)
		return ok && r.Messages >= n
	})
}

func (e *env) waitGone(t *testing.T, name string) {
	t.Helper()
	proctest.Eventually(t, name+" to be gone", func() bool { _, ok := e.router(name); return !ok })
}

// metric returns the value of the series name{labels} ("" for none) from the Collector.
func (e *env) metric(t *testing.T, name, labels string) float64 {
	t.Helper()
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(e.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.PanicOnError}).
		ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	series := name
	if labels != "" {
		series += "{" + labels + "}"
	}
	sc := bufio.NewScanner(rec.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			var f float64
			if _, err := fmt.Sscan(v, &f); err != nil {
				t.Fatalf("metric %s: %v", series, err)
			}
			return f
		}
	}
	t.Fatalf("metric %s not found in:\n%s", series, rec.Body.String())
	return 0
}

// dial opens a raw WebSocket to the server.
func (e *env) dial(t *testing.T) *websocket.Conn {
	t.Helper()
	c, _, err := websocket.DefaultDialer.Dial(e.url, nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func send(t *testing.T, c *websocket.Conn, msg string) {
	t.Helper()
	if err := c.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
		t.Fatalf("send: %v", err)
	}
}

// expectClose reads from c until the server closes it, and checks the close code.
func expectClose(t *testing.T, c *websocket.Conn, code int) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(waitFor))
	for {
		_, _, err := c.ReadMessage()
		if err == nil {
			continue
		}
		var ce *websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != code {
			t.Fatalf("connection ended with %v, want close code %d", err, code)
		}
		_ = c.Close()
		return
	}
}

// routerSim is one router process: a Recorder on its own fake clock and a Reporter.
type routerSim struct {
	name string
	clk  *clocktesting.FakeClock
	rec  *stats.Recorder
	rep  *statreporter.Reporter
	stop context.CancelFunc
	done chan error
}

func startRouter(t *testing.T, e *env, name string, setup func(rec *stats.Recorder)) *routerSim {
	t.Helper()
	r := &routerSim{name: name, clk: clocktesting.NewFakeClock(t0), done: make(chan error, 1)}
	r.rec = stats.NewRecorder(r.clk)
	if setup != nil {
		setup(r.rec)
	}
	rep, err := statreporter.New(statreporter.Config{URL: e.url, Router: name, Clock: r.clk}, r.rec)
	if err != nil {
		t.Fatal(err)
	}
	r.rep = rep
	ctx, cancel := context.WithCancel(context.Background())
	r.stop = cancel
	go func() { r.done <- rep.Run(ctx) }()
	t.Cleanup(func() { r.shutdown(t) })
	return r
}

// shutdown stops the Reporter and waits for Run to return.
func (r *routerSim) shutdown(t *testing.T) {
	t.Helper()
	r.stop()
	select {
	case err, ok := <-r.done:
		if ok && err != nil {
			t.Errorf("%s: Run: %v", r.name, err)
		}
		if ok {
			close(r.done)
		}
	case <-time.After(waitFor):
		t.Fatalf("%s: Run did not return", r.name)
	}
}

// hold begins n requests for f, on actors prefix0..prefixN-1, and leaves them in flight.
func hold(rec *stats.Recorder, f, prefix string, n int) {
	for i := range n {
		rec.Begin(f, fmt.Sprintf("%s%d", prefix, i))
	}
}

// complete runs n stateless requests for f that end at once.
func complete(rec *stats.Recorder, f string, n int) {
	for range n {
		rec.Begin(f, "")()
	}
}

func TestPoke(t *testing.T) {
	e := newEnv(t, statserver.Config{})
	r := startRouter(t, e, "r", nil)
	e.waitMessages(t, "r", 1)
	r.rep.Poke("f")
	select {
	case f := <-e.pokes:
		if f != "f" {
			t.Errorf("poked %q, want f", f)
		}
	case <-time.After(waitFor):
		t.Fatal("the poke did not arrive")
	}
	if got := e.metric(t, "knactor_autoscaler_stat_messages_total", `kind="poke"`); got != 1 {
		t.Errorf("poke messages = %v, want 1", got)
	}
}

func TestStaleRouterIsDropped(t *testing.T) {
	const staleAfter = 3 * time.Second
	tests := []struct {
		name      string
		silence   time.Duration
		wantStale bool
	}{
		{"silent for StaleAfter", staleAfter, false},
		{"silent for longer", staleAfter + time.Nanosecond, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, statserver.Config{StaleAfter: staleAfter})
			c := e.dial(t)
			send(t, c, `{"router":"r","stats":[{"function":"f","windowSeconds":1,"inFlight":5,"averageConcurrency":5,"requests":9,"activeActors":2}]}`)
			e.waitMessages(t, "r", 1)
			if got := e.srv.Snapshot("f"); got.InFlight != 5 || got.Requests != 9 {
				t.Fatalf("first Snapshot = %+v", got)
			}

			e.clk.Step(tc.silence)
			got := e.srv.Snapshot("f")
			_, connected := e.router("r")
			if tc.wantStale {
				if connected || got.InFlight != 0 || got.AverageConcurrency != 0 {
					t.Errorf("stale router still counts: connected %v, Snapshot %+v", connected, got)
				}
				expectClose(t, c, websocket.ClosePolicyViolation)
				if !strings.Contains(e.logs.String(), "router stale") {
					t.Errorf("stale router not logged:\n%s", e.logs.String())
				}
				if got := e.metric(t, "knactor_autoscaler_router_disconnects_total", `reason="stale"`); got != 1 {
					t.Errorf("disconnects{reason=stale} = %v, want 1", got)
				}
			} else {
				if !connected || got.InFlight != 5 || got.AverageConcurrency != 5 || got.Requests != 0 {
					t.Errorf("live router: connected %v, Snapshot %+v, want 5 in flight carried forward", connected, got)
				}
			}
		})
	}
}

func TestSilentConnectionIsClosed(t *testing.T) {
	e := newEnv(t, statserver.Config{StaleAfter: time.Second})
	c := e.dial(t)
	// The server may register the connection after Dial returns, so keep the clock moving
	// (and staleness judged) until the close arrives.
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			select {
			case <-done:
				return
			case <-time.After(5 * time.Millisecond):
				e.clk.Step(2 * time.Second)
				e.srv.Routers()
			}
		}
	}()
	expectClose(t, c, websocket.ClosePolicyViolation)
}

func TestReconnectReplacesConnection(t *testing.T) {
	e := newEnv(t, statserver.Config{})
	old := e.dial(t)
	send(t, old, `{"router":"r","stats":[{"function":"f","windowSeconds":1,"inFlight":7,"averageConcurrency":7,"requests":3}]}`)
	e.waitMessages(t, "r", 1)
	fresh := e.dial(t)
	send(t, fresh, `{"router":"r","stats":[{"function":"f","windowSeconds":1,"inFlight":1,"averageConcurrency":1,"requests":2}]}`)
	expectClose(t, old, websocket.ClosePolicyViolation)

	routers := e.srv.Routers()
	if len(routers) != 1 || routers[0].Name != "r" || routers[0].Messages != 1 {
		t.Fatalf("Routers = %+v, want r on its new connection", routers)
	}
	// The old connection's report still counts once; only the new one is in flight.
	got := e.srv.Snapshot("f")
	want := stats.Snapshot{Function: "f", Time: t0, Window: time.Second, InFlight: 1, AverageConcurrency: 8, Requests: 5}
	if got != want {
		t.Errorf("Snapshot = %+v\nwant %+v", got, want)
	}
	if got := e.metric(t, "knactor_autoscaler_router_disconnects_total", `reason="replaced"`); got != 1 {
		t.Errorf("disconnects{reason=replaced} = %v, want 1", got)
	}
}

func TestOversizeMessageClosesThatConnection(t *testing.T) {
	e := newEnv(t, statserver.Config{MaxMessageBytes: 1024})
	good := startRouter(t, e, "good", func(rec *stats.Recorder) { hold(rec, "f", "a", 1) })
	e.waitMessages(t, "good", 1)

	big := e.dial(t)
	send(t, big, `{"router":"big"}`)
	e.waitMessages(t, "big", 1)
	send(t, big, `{"router":"big","poke":"`+strings.Repeat("x", 2048)+`"}`)
	expectClose(t, big, websocket.CloseMessageTooBig)
	e.waitGone(t, "big")

	if _, ok := e.router("good"); !ok || !good.rep.Connected() {
		t.Error("the other router was disconnected")
	}
	if got := e.srv.Snapshot("f"); got.InFlight != 1 {
		t.Errorf("Snapshot = %+v, want the other router's request in flight", got)
	}
	if got := e.metric(t, "knactor_autoscaler_router_disconnects_total", `reason="too_large"`); got != 1 {
		t.Errorf("disconnects{reason=too_large} = %v, want 1", got)
	}
}

func TestInvalidMessagesAreRejected(t *testing.T) {
	e := newEnv(t, statserver.Config{})
	good := startRouter(t, e, "good", func(rec *stats.Recorder) { hold(rec, "f", "a", 3) })
	e.waitMessages(t, "good", 1)

	tests := []struct {
		name   string
		first  string // a valid message first, if set
		binary bool
		msg    string
		code   int
	}{
		{name: "not JSON", msg: `not json`, code: websocket.ClosePolicyViolation},
		{name: "JSON array", msg: `[1,2]`, code: websocket.ClosePolicyViolation},
		{name: "no router", msg: `{"stats":[]}`, code: websocket.ClosePolicyViolation},
		{name: "wrong type", msg: `{"router":"x","stats":[{"function":"f","inFlight":"many"}]}`, code: websocket.ClosePolicyViolation},
		{name: "negative in-flight", msg: `{"router":"x","stats":[{"function":"f","inFlight":-1}]}`, code: websocket.ClosePolicyViolation},
		{name: "negative concurrency", msg: `{"router":"x","stats":[{"function":"f","averageConcurrency":-0.5}]}`, code: websocket.ClosePolicyViolation},
		{name: "function twice", msg: `{"router":"x","stats":[{"function":"f"},{"function":"f"}]}`, code: websocket.ClosePolicyViolation},
		{name: "no function name", msg: `{"router":"x","stats":[{"inFlight":1}]}`, code: websocket.ClosePolicyViolation},
		{name: "another router's name", first: `{"router":"x"}`, msg: `{"router":"y"}`, code: websocket.ClosePolicyViolation},
		{name: "binary frame", binary: true, msg: `{"router":"x"}`, code: websocket.CloseUnsupportedData},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := e.dial(t)
			if tc.first != "" {
				send(t, c, tc.first)
				e.waitMessages(t, "x", 1)
			}
			typ := websocket.TextMessage
			if tc.binary {
				typ = websocket.BinaryMessage
			}
			if err := c.WriteMessage(typ, []byte(tc.msg)); err != nil {
				t.Fatal(err)
			}
			expectClose(t, c, tc.code)
			e.waitGone(t, "x")
			if got := e.metric(t, "knactor_autoscaler_stat_messages_total", `kind="invalid"`); got != float64(i+1) {
				t.Errorf("invalid messages = %v, want %d", got, i+1)
			}
			if _, ok := e.router("good"); !ok || !good.rep.Connected() {
				t.Fatal("the good router was disconnected")
			}
			if got := e.srv.Snapshot("f"); got.InFlight != 3 {
				t.Errorf("Snapshot = %+v, want the good router's 3 in flight", got)
			}
		})
	}
	if !strings.Contains(e.logs.String(), "invalid message") {
		t.Errorf("invalid messages not logged:\n%s", e.logs.String())
	}
}

func TestCloseSaysGoingAway(t *testing.T) {
	e := newEnv(t, statserver.Config{})
	c := e.dial(t)
	send(t, c, `{"router":"r"}`)
	e.waitMessages(t, "r", 1)
	closed := make(chan struct{})
	go func() { defer close(closed); _ = e.srv.Close() }()
	expectClose(t, c, websocket.CloseGoingAway)
	select {
	case <-closed:
	case <-time.After(waitFor):
		t.Fatal("Close did not return")
	}
	if got := e.metric(t, "knactor_autoscaler_router_disconnects_total", `reason="shutdown"`); got != 1 {
		t.Errorf("disconnects{reason=shutdown} = %v, want 1", got)
	}
	_, resp, err := websocket.DefaultDialer.Dial(e.url, nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("dial after Close: %v, %v; want 503", resp, err)
	}
}

// With a Token, only routers that present it connect: a pod without the secret cannot feed the
// autoscaler false load.
func TestStatsConnectionsNeedTheRoutersSecret(t *testing.T) {
	const secret = "routers-shared-secret-0123456789abcdef"
	e := newEnv(t, statserver.Config{Token: secret})
	tests := []struct {
		name   string
		header http.Header
		want   int
	}{
		{"no token", nil, http.StatusUnauthorized},
		{"wrong token", http.Header{"Authorization": {"Bearer not-the-secret-0123456789abcdef"}}, http.StatusUnauthorized},
		{"not a bearer", http.Header{"Authorization": {secret}}, http.StatusUnauthorized},
		{"the secret", http.Header{"Authorization": {"Bearer " + secret}}, http.StatusSwitchingProtocols},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ws, resp, err := websocket.DefaultDialer.Dial(e.url, tc.header)
			if resp == nil {
				t.Fatalf("dial: %v", err)
			}
			if resp.StatusCode != tc.want {
				t.Fatalf("handshake answered %d, want %d", resp.StatusCode, tc.want)
			}
			if ws != nil {
				ws.Close()
			}
		})
	}
	if n := len(e.srv.Routers()); n > 1 {
		t.Fatalf("%d routers connected, want at most the one with the secret", n)
	}
}
