package router

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/knactor/knactor/router/placement"
	"github.com/knactor/knactor/router/routing"
	"github.com/knactor/knactor/sdk"
	"github.com/knactor/knactor/statecache"
)

// harness runs a real Router on a loopback port with the local store (Pebble), and function
// pods as real HTTP servers.
type harness struct {
	t        *testing.T
	r        *Router
	url      string
	backends *routing.Static
	store    statecache.Store
	cache    *statecache.Cache
	served   chan error
}

func newHarness(t *testing.T, cfg Config) *harness {
	t.Helper()
	return newHarnessOn(t, cfg, localStore(t))
}

// localStore opens the local store in a temp dir, closed when the test ends.
func localStore(t *testing.T) *statecache.PebbleStore {
	t.Helper()
	store, err := statecache.OpenPebbleStore(t.TempDir(), statecache.PebbleOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return store
}

func newHarnessOn(t *testing.T, cfg Config, store statecache.Store, options ...func(*Options)) *harness {
	t.Helper()
	return newHarnessCache(t, cfg, store, statecache.Config{}, options...)
}

// newHarnessCache is newHarnessOn with the router's state cache configured by cc, e.g. as
// Kubernetes mode configures it (write-through, Revalidate) or write-behind.
func newHarnessCache(t *testing.T, cfg Config, store statecache.Store, cc statecache.Config, options ...func(*Options)) *harness {
	t.Helper()
	cache, err := statecache.NewCache(store, cc)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, backends: routing.NewStatic(), store: store, cache: cache, served: make(chan error, 1)}
	opts := Options{Backends: h.backends, State: cache}
	for _, o := range options {
		o(&opts)
	}
	h.r, err = New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.url = "http://" + ln.Addr().String()
	go func() { h.served <- h.r.Serve(ln) }()
	t.Cleanup(func() { h.shutdown() })
	return h
}

var shutdownOnce sync.Map

func (h *harness) shutdown() error {
	if _, done := shutdownOnce.LoadOrStore(h, true); done {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := errors.Join(h.r.Shutdown(ctx), <-h.served, h.cache.Close(ctx))
	if err != nil {
		h.t.Errorf("shutdown: %v", err)
	}
	return err
}

// pod serves handler as a function pod and returns it.
func (h *harness) pod(handler http.Handler) placement.Pod {
	srv := httptest.NewServer(handler)
	h.t.Cleanup(srv.Close)
	addr := strings.TrimPrefix(srv.URL, "http://")
	return placement.Pod{Name: addr, Addr: addr}
}

// deploy registers fn with one pod per handler.
func (h *harness) deploy(fn routing.Function, handlers ...http.Handler) []placement.Pod {
	var pods []placement.Pod
	for _, hd := range handlers {
		pods = append(pods, h.pod(hd))
	}
	h.backends.Set(fn, pods...)
	return pods
}

type reply struct {
	status int
	body   string
	header http.Header
}

func (h *harness) do(method, path, body string, header ...string) reply {
	h.t.Helper()
	req, err := http.NewRequest(method, h.url+path, strings.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		if header[i] == "Host" {
			req.Host = header[i+1] // net/http sends req.Host, not a Host header
			continue
		}
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{status: resp.StatusCode, body: string(b), header: resp.Header}
}

func (rp reply) want(t *testing.T, status int, body string) {
	t.Helper()
	if rp.status != status || (body != "" && strings.TrimSpace(rp.body) != body) {
		t.Fatalf("got %d %s, want %d %s", rp.status, rp.body, status, body)
	}
}

// counterState is the state of the test actor.
type counterState struct {
	Value int64 `json:"value"`
}

type counterReply struct {
	Value int64 `json:"value"`
}

// testActor is a counter with extra actions that exercise the router: slow turns that record
// overlap, function errors, oversized state, deletes and effects.
type testActor struct {
	*sdk.Actor[counterState]
	running, maxRunning atomic.Int64 // turns running at once, per process (tests use one actor)
	calls               atomic.Int64
}

func newTestActor() *testActor {
	a := &testActor{Actor: sdk.NewActor[counterState]()}
	add := func(_ context.Context, t *sdk.Turn[counterState], p struct {
		By int64 `json:"by"`
	}) (counterReply, error) {
		a.calls.Add(1)
		t.State.Value += p.By
		return counterReply{t.State.Value}, nil
	}
	sdk.Handle(a.Actor, "add", add)
	sdk.Handle(a.Actor, "get", func(_ context.Context, t *sdk.Turn[counterState], _ struct{}) (counterReply, error) {
		return counterReply{t.State.Value}, nil
	})
	sdk.Handle(a.Actor, "slow-add", func(ctx context.Context, t *sdk.Turn[counterState], p struct {
		By int64 `json:"by"`
		MS int   `json:"ms"`
	}) (counterReply, error) {
		n := a.running.Add(1)
		defer a.running.Add(-1)
		for {
			m := a.maxRunning.Load()
			if n <= m || a.maxRunning.CompareAndSwap(m, n) {
				break
			}
		}
		select {
		case <-time.After(time.Duration(p.MS) * time.Millisecond):
		case <-ctx.Done():
		}
		t.State.Value += p.By
		return counterReply{t.State.Value}, nil
	})
	sdk.Handle(a.Actor, "fail", func(_ context.Context, t *sdk.Turn[counterState], _ struct{}) (counterReply, error) {
		t.State.Value = -1 // must not be stored
		return counterReply{}, sdk.Errorf(422, "nope", "this action always fails")
	})
	sdk.Handle(a.Actor, "del", func(_ context.Context, t *sdk.Turn[counterState], _ struct{}) (counterReply, error) {
		t.Delete()
		return counterReply{}, nil
	})
	sdk.Handle(a.Actor, "send", func(_ context.Context, t *sdk.Turn[counterState], p struct {
		To      string `json:"to"`
		By      int64  `json:"by"`
		DelayMS int64  `json:"delay_ms"`
	}) (counterReply, error) {
		t.State.Value++
		t.Effect(sdk.Effect{Actor: p.To, Action: "add", Payload: map[string]int64{"by": p.By}, Delay: time.Duration(p.DelayMS) * time.Millisecond})
		return counterReply{t.State.Value}, nil
	})
	return a
}

// rawPod answers every invocation with status and body, whatever the envelope.
func rawPod(status int, body string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	})
}

var counterFn = routing.Function{Name: "counter"}

// logCapture is a slog handler that keeps each line as "message key=value ...".
type logCapture struct {
	mu   sync.Mutex
	msgs []string
}

func (l *logCapture) Enabled(context.Context, slog.Level) bool { return true }
func (l *logCapture) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Message)
	r.Attrs(func(a slog.Attr) bool { fmt.Fprintf(&b, " %s=%v", a.Key, a.Value); return true })
	l.mu.Lock()
	l.msgs = append(l.msgs, b.String())
	l.mu.Unlock()
	return nil
}
func (l *logCapture) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logCapture) WithGroup(string) slog.Handler      { return l }

func (l *logCapture) find(s string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, m := range l.msgs {
		if strings.Contains(m, s) {
			return m
		}
	}
	return ""
}

func (l *logCapture) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.msgs...)
}
