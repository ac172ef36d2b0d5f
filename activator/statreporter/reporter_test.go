package statreporter

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/knactor/knactor/autoscaler/statserver"
	"github.com/knactor/knactor/router/stats"
	"github.com/knactor/knactor/test/proctest"
)

var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// waitFor is how long a test waits for something to happen over the loopback network.
const waitFor = 10 * time.Second

// signalingSource is a Recorder that signals each EndWindows.
type signalingSource struct {
	*stats.Recorder
	snapshots chan struct{}
}

func (s *signalingSource) EndWindows() []stats.Snapshot {
	out := s.Recorder.EndWindows()
	select {
	case s.snapshots <- struct{}{}:
	default:
	}
	return out
}

// swappable is an HTTP handler whose target can be changed or removed (503), standing for an
// autoscaler that restarts on the same address.
type swappable struct {
	mu      sync.Mutex
	h       http.Handler
	headers []http.Header
}

func (s *swappable) set(h http.Handler) {
	s.mu.Lock()
	s.h = h
	s.mu.Unlock()
}

func (s *swappable) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	h := s.h
	s.headers = append(s.headers, r.Header.Clone())
	s.mu.Unlock()
	if h == nil {
		http.Error(w, "autoscaler down", http.StatusServiceUnavailable)
		return
	}
	h.ServeHTTP(w, r)
}

func messages(s *statserver.Server, router string) uint64 {
	for _, r := range s.Routers() {
		if r.Name == router {
			return r.Messages
		}
	}
	return 0
}

func complete(rec *stats.Recorder, f string, n int) {
	for range n {
		rec.Begin(f, "")()
	}
}

// run starts r.Run and returns a function that stops it and checks it returned nil.
func run(t *testing.T, r *Reporter) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(waitFor):
				t.Fatal("Run did not return after its context ended")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func TestReconnectsAndDeliversWhatItCouldNotSend(t *testing.T) {
	sw := &swappable{}
	ts := httptest.NewServer(sw)
	defer ts.Close()
	url := "ws" + strings.TrimPrefix(ts.URL, "http")

	first := statserver.New(statserver.Config{Clock: clocktesting.NewFakePassiveClock(t0)})
	sw.set(first)

	clk := clocktesting.NewFakeClock(t0)
	src := &signalingSource{Recorder: stats.NewRecorder(clk), snapshots: make(chan struct{}, 100)}
	rep, err := New(Config{URL: url, Router: "r", Clock: clk,
		Header: http.Header{"Authorization": {"Bearer s3cret"}}}, src)
	if err != nil {
		t.Fatal(err)
	}
	complete(src.Recorder, "f", 3)
	run(t, rep)
	proctest.Eventually(t, "the first message", func() bool { return messages(first, "r") >= 1 })
	if got := first.Snapshot("f").Requests; got != 3 {
		t.Fatalf("first autoscaler counted %d requests, want 3", got)
	}

	// The autoscaler goes away; the router notices.
	sw.set(nil)
	_ = first.Close()
	proctest.Eventually(t, "the reporter to notice", func() bool { return !rep.Connected() })

	// A snapshot taken while disconnected: it cannot be sent, so it waits to be merged.
	complete(src.Recorder, "f", 5)
	for len(src.snapshots) > 0 {
		<-src.snapshots
	}
	clk.Step(DefaultInterval)
	select {
	case <-src.snapshots:
	case <-time.After(waitFor):
		t.Fatal("no snapshot was taken while disconnected")
	}
	if rep.Connected() {
		t.Fatal("connected to an autoscaler that is down")
	}

	// The autoscaler comes back on the same address; the router reconnects within its
	// backoff and sends everything since the last message it sent.
	complete(src.Recorder, "f", 2)
	second := statserver.New(statserver.Config{Clock: clocktesting.NewFakePassiveClock(t0)})
	defer second.Close()
	sw.set(second)
	proctest.Eventually(t, "the reporter to reconnect", func() bool {
		if rep.Connected() {
			return true
		}
		clk.Step(backoffMax)
		time.Sleep(10 * time.Millisecond) // let the dial run before the next step
		return rep.Connected()
	})
	proctest.Eventually(t, "a message to the second autoscaler", func() bool { return messages(second, "r") >= 1 })
	if got := second.Snapshot("f").Requests; got != 7 {
		t.Errorf("second autoscaler counted %d requests, want 7 (5 while disconnected + 2): requests were lost", got)
	}

	sw.mu.Lock()
	defer sw.mu.Unlock()
	for i, h := range sw.headers {
		if got := h.Get("Authorization"); got != "Bearer s3cret" {
			t.Errorf("handshake %d: Authorization %q", i, got)
		}
	}
}

func TestRunEndsWhileRetrying(t *testing.T) {
	ts := httptest.NewServer(&swappable{}) // always 503
	defer ts.Close()
	clk := clocktesting.NewFakeClock(t0)
	rep, err := New(Config{URL: "ws" + strings.TrimPrefix(ts.URL, "http"), Router: "r", Clock: clk},
		stats.NewRecorder(clk))
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, rep)
	proctest.Eventually(t, "a backoff timer", clk.HasWaiters)
	if err := rep.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "already running") {
		t.Errorf("second Run: %v, want already running", err)
	}
	stop()
	if rep.Connected() {
		t.Error("connected to an autoscaler that answers 503")
	}
}

func TestPokesCoalesce(t *testing.T) {
	rep, err := New(Config{URL: "ws://autoscaler/stats", Router: "r"}, stats.NewRecorder(clocktesting.NewFakeClock(t0)))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 1000 {
			rep.Poke("f")
			rep.Poke("g")
		}
	}()
	select {
	case <-done:
	case <-time.After(waitFor):
		t.Fatal("Poke blocked without a connection")
	}
	if len(rep.pokes) != 2 || len(rep.pokeCh) != 1 {
		t.Errorf("pending pokes %v, tokens %d; want f and g once, one token", rep.pokes, len(rep.pokeCh))
	}
}

func TestConfigValidation(t *testing.T) {
	src := stats.NewRecorder(clocktesting.NewFakeClock(t0))
	tests := []struct {
		name     string
		cfg      Config
		noSource bool
		want     string // "" for valid
	}{
		{name: "valid", cfg: Config{URL: "ws://autoscaler:8080/stats", Router: "router-1"}},
		{name: "wss", cfg: Config{URL: "wss://autoscaler/stats", Router: "router-1", Interval: 2 * time.Second}},
		{name: "no URL", cfg: Config{Router: "r"}, want: "URL is required"},
		{name: "unparsable URL", cfg: Config{URL: "ws://[::1/stats", Router: "r"}, want: "URL:"},
		{name: "http URL", cfg: Config{URL: "http://autoscaler/stats", Router: "r"}, want: "scheme must be ws or wss"},
		{name: "no scheme", cfg: Config{URL: "autoscaler:8080/stats", Router: "r"}, want: "scheme must be ws or wss"},
		{name: "no host", cfg: Config{URL: "ws:///stats", Router: "r"}, want: "no host"},
		{name: "no router", cfg: Config{URL: "ws://autoscaler/stats"}, want: "Router must be"},
		{name: "router name too long", cfg: Config{URL: "ws://autoscaler/stats", Router: strings.Repeat("r", 254)}, want: "Router must be"},
		{name: "negative interval", cfg: Config{URL: "ws://autoscaler/stats", Router: "r", Interval: -time.Second}, want: "negative"},
		{name: "no source", cfg: Config{URL: "ws://autoscaler/stats", Router: "r"}, noSource: true, want: "no Source"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := Source(src)
			if tc.noSource {
				s = nil
			}
			rep, err := New(tc.cfg, s)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				if tc.cfg.Interval == 0 && rep.cfg.Interval != DefaultInterval {
					t.Errorf("Interval = %v, want the default %v", rep.cfg.Interval, DefaultInterval)
				}
				return
			}
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New: %v, want ErrConfig with %q", err, tc.want)
			}
		})
	}
}

func TestPendingMerges(t *testing.T) {
	at := func(sec int) time.Time { return t0.Add(time.Duration(sec) * time.Second) }
	tests := []struct {
		name      string
		snapshots []stats.Snapshot
		want      []statserver.Stat
	}{
		{
			name: "one snapshot passes through",
			snapshots: []stats.Snapshot{
				{Function: "f", Time: at(1), Window: time.Second, InFlight: 2, AverageConcurrency: 1.5, Requests: 4, ActiveActors: 3},
			},
			want: []statserver.Stat{
				{Function: "f", Time: at(1), WindowSeconds: 1, InFlight: 2, AverageConcurrency: 1.5, Requests: 4, ActiveActors: 3},
			},
		},
		{
			name: "time-weighted over the combined window",
			snapshots: []stats.Snapshot{
				{Function: "f", Time: at(1), Window: time.Second, InFlight: 4, AverageConcurrency: 4, Requests: 10, ActiveActors: 3},
				{Function: "f", Time: at(4), Window: 3 * time.Second, InFlight: 1, AverageConcurrency: 2, Requests: 5, ActiveActors: 2},
			},
			// (4×1 + 2×3) / 4 = 2.5; requests add; in-flight the latest; actors the largest.
			want: []statserver.Stat{
				{Function: "f", Time: at(4), WindowSeconds: 4, InFlight: 1, AverageConcurrency: 2.5, Requests: 15, ActiveActors: 3},
			},
		},
		{
			name: "a window of no length adds requests but no time",
			snapshots: []stats.Snapshot{
				{Function: "f", Time: at(0), InFlight: 9, AverageConcurrency: 9, Requests: 9},
				{Function: "f", Time: at(2), Window: 2 * time.Second, InFlight: 3, AverageConcurrency: 3, Requests: 1},
			},
			want: []statserver.Stat{
				{Function: "f", Time: at(2), WindowSeconds: 2, InFlight: 3, AverageConcurrency: 3, Requests: 10},
			},
		},
		{
			name: "only windows of no length: the latest average",
			snapshots: []stats.Snapshot{
				{Function: "f", Time: at(0), InFlight: 1, AverageConcurrency: 1, Requests: 1},
				{Function: "f", Time: at(0), InFlight: 2, AverageConcurrency: 2, Requests: 1},
			},
			want: []statserver.Stat{
				{Function: "f", Time: at(0), InFlight: 2, AverageConcurrency: 2, Requests: 2},
			},
		},
		{
			name: "functions merge separately, sorted",
			snapshots: []stats.Snapshot{
				{Function: "g", Time: at(1), Window: time.Second, AverageConcurrency: 1, Requests: 1},
				{Function: "f", Time: at(1), Window: time.Second, AverageConcurrency: 2, Requests: 2},
				{Function: "g", Time: at(2), Window: time.Second, AverageConcurrency: 3, Requests: 3},
			},
			want: []statserver.Stat{
				{Function: "f", Time: at(1), WindowSeconds: 1, AverageConcurrency: 2, Requests: 2},
				{Function: "g", Time: at(2), WindowSeconds: 2, AverageConcurrency: 2, Requests: 4},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := make(pending)
			for _, s := range tc.snapshots {
				p.add([]stats.Snapshot{s})
			}
			got := p.stats()
			if len(got) != len(tc.want) {
				t.Fatalf("stats = %+v\nwant %+v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("stats[%d] = %+v\nwant %+v", i, got[i], tc.want[i])
				}
			}
		})
	}
}

func TestBackoffIsCappedAndJittered(t *testing.T) {
	for n := range 40 {
		ceiling := backoffMax
		if n < 16 {
			ceiling = min(backoffMax, backoffInitial<<n)
		}
		for range 20 {
			if d := backoff(n); d < ceiling/2 || d > ceiling {
				t.Fatalf("backoff(%d) = %v, want within [%v, %v]", n, d, ceiling/2, ceiling)
			}
		}
	}
}
