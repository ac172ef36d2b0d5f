package router

// Benchmarks of the router's hot paths, in-process: the router, its callers and the function pods
// talk over fasthttp's in-memory pipes instead of loopback TCP, and the pods answer a fixed body,
// so the CPU profile of a run is the router's own (plus a thin client and pod). The end-to-end
// numbers on real processes and sockets come from hack/bench-router.sh; these tell where the
// router's time goes:
//
//	go test -run XXX -bench . -benchmem ./router/
//	go test -run XXX -bench 'RouterActorCall/statecache' -cpuprofile cpu.out ./router/ && go tool pprof -top router.test cpu.out

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"
	"k8s.io/utils/clock"

	"github.com/knactor/knactor/router/placement"
	"github.com/knactor/knactor/router/routing"
	"github.com/knactor/knactor/router/stats"
	"github.com/knactor/knactor/statecache"
)

// benchActors is how many actors the stateful benchmarks spread their calls over.
const benchActors = 1000

// benchBody is the ~50-byte JSON body of the pass-through benchmark (hack/bench/post.lua's).
var benchBody = []byte(`{"user":"bench","op":"hello","n":12345,"ok":true}`)

// benchRig is a Router served on an in-memory listener whose pods are fasthttp servers on
// in-memory listeners too.
type benchRig struct {
	r      *Router
	ln     *fasthttputil.InmemoryListener
	client *fasthttp.HostClient
	pods   map[string]*fasthttputil.InmemoryListener // pod address → its listener
	stop   []func()
}

// newBenchRig starts a router with state st (and options). The function "hello" answers {"hello":"world"}
// and "counter" answers every invocation with a new state and a reply, as the counter example
// does for "add".
func newBenchRig(b testing.TB, st StateCache, options ...func(*Options)) *benchRig {
	b.Helper()
	backends := routing.NewStatic()
	rig := &benchRig{ln: fasthttputil.NewInmemoryListener(), pods: make(map[string]*fasthttputil.InmemoryListener)}
	hello := []byte(`{"hello":"world"}`)
	answer := []byte(`{"state":{"value":2},"reply":{"value":2}}`)
	backends.Set(routing.Function{Name: "hello"}, rig.pod("hello:1", func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("application/json")
		ctx.SetBody(hello)
	}))
	backends.Set(routing.Function{Name: "counter"}, rig.pod("counter:1", func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("application/json")
		ctx.SetBody(answer)
	}))
	opts := Options{Backends: backends, State: st}
	for _, o := range options {
		o(&opts)
	}
	r, err := New(Config{}, opts)
	if err != nil {
		b.Fatal(err)
	}
	dial := func(addr string) (net.Conn, error) {
		ln, ok := rig.pods[addr]
		if !ok {
			return nil, fmt.Errorf("no pod %s", addr)
		}
		return ln.Dial()
	}
	r.client.Dial, r.passClient.Dial = dial, dial
	rig.r = r
	served := make(chan error, 1)
	go func() { served <- r.Serve(rig.ln) }()
	rig.stop = append(rig.stop, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := r.Shutdown(ctx); err != nil {
			b.Errorf("shutdown: %v", err)
		}
		<-served
	})
	rig.client = &fasthttp.HostClient{
		Addr:            "router",
		Dial:            func(string) (net.Conn, error) { return rig.ln.Dial() },
		MaxConns:        1024,
		ReadBufferSize:  16 << 10,
		WriteBufferSize: 16 << 10,
	}
	b.Cleanup(func() {
		for i := len(rig.stop) - 1; i >= 0; i-- {
			rig.stop[i]()
		}
	})
	return rig
}

// writeBehindCache is a write-behind statecache.Cache over a memory store that never flushes
// during a run: the state work of a call, without the store's. Closed when tb ends.
func writeBehindCache(tb testing.TB) *statecache.Cache {
	tb.Helper()
	c, err := statecache.NewCache(&statecache.MemStore{},
		statecache.Config{Mode: statecache.WriteBehind, FlushInterval: time.Hour, MaxBytes: 64 << 20})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

// pod serves handler on an in-memory listener as the pod named addr.
func (rig *benchRig) pod(addr string, handler fasthttp.RequestHandler) placement.Pod {
	ln := fasthttputil.NewInmemoryListener()
	srv := &fasthttp.Server{Handler: handler}
	go srv.Serve(ln) //nolint:errcheck // ends with Shutdown
	rig.pods[addr] = ln
	rig.stop = append(rig.stop, func() { _ = srv.Shutdown() })
	return placement.Pod{Name: addr, Addr: addr}
}

// do sends one request and marks b failed unless the router answers 200. It does not stop the
// benchmark (RunParallel's goroutines must not call FailNow).
func (rig *benchRig) do(b testing.TB, req *fasthttp.Request, resp *fasthttp.Response) {
	if err := rig.client.Do(req, resp); err != nil {
		b.Error(err)
		return
	}
	if resp.StatusCode() != fasthttp.StatusOK {
		b.Errorf("status %d: %s", resp.StatusCode(), resp.Body())
	}
}

// BenchmarkRouterActorCall measures cache-hit stateful calls, POST
// /v1/actors/counter/bench-N/add {"by":1} over benchActors warm actors, on two kinds of state:
// a locked map (the router alone) and a write-behind statecache.Cache over a memory store.
func BenchmarkRouterActorCall(b *testing.B) {
	states := []struct {
		name string
		make func(b *testing.B) StateCache
	}{
		{"state=map", func(*testing.B) StateCache { return &statecache.MemStore{} }},
		{"state=statecache", func(b *testing.B) StateCache { return writeBehindCache(b) }},
	}
	for _, st := range states {
		for _, par := range []int{1, 64} {
			b.Run(st.name+"/callers="+strconv.Itoa(par), func(b *testing.B) {
				rig := newBenchRig(b, st.make(b))
				paths := make([]string, benchActors)
				for i := range paths {
					paths[i] = "http://router/v1/actors/counter/bench-" + strconv.Itoa(i) + "/add"
				}
				call := func(path string) { rig.add(b, path, "") }
				for _, p := range paths { // warm: every measured call is a cache hit
					call(p)
				}
				b.ReportAllocs()
				b.ResetTimer()
				runCallers(b, par, func() { call(paths[rand.IntN(len(paths))]) })
			})
		}
	}
}

// BenchmarkRouterActorCallWithKey is BenchmarkRouterActorCall's statecache case with an
// Idempotency-Key of its own on every call, on actors that already remember
// DefaultIdempotencyKeys keys: every call decodes, scans and rewrites the whole window.
func BenchmarkRouterActorCallWithKey(b *testing.B) {
	const actors = 64
	for _, par := range []int{1, 64} {
		b.Run("callers="+strconv.Itoa(par), func(b *testing.B) {
			rig := newBenchRig(b, writeBehindCache(b))
			var seq atomic.Uint64
			call := func(path string) { rig.add(b, path, "bench-key-"+strconv.FormatUint(seq.Add(1), 10)) }
			paths := make([]string, actors)
			for i := range paths {
				paths[i] = "http://router/v1/actors/counter/keyed-" + strconv.Itoa(i) + "/add"
				for range DefaultIdempotencyKeys { // a full window
					call(paths[i])
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			runCallers(b, par, func() { call(paths[rand.IntN(len(paths))]) })
		})
	}
}

// add calls "add" {"by":1} on the actor path through the rig, with key as its Idempotency-Key
// unless it is empty.
func (rig *benchRig) add(b testing.TB, path, key string) {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(path)
	req.Header.SetMethod(fasthttp.MethodPost)
	req.Header.SetContentType("application/json")
	if key != "" {
		req.Header.Set(HeaderIdempotencyKey, key)
	}
	req.SetBodyString(`{"by":1}`)
	rig.do(b, req, resp)
}

// runCallers runs call b.N times in all, from par goroutines at once (1: the benchmark's own).
func runCallers(b *testing.B, par int, call func()) {
	if par == 1 {
		for b.Loop() {
			call()
		}
		return
	}
	b.SetParallelism((par + 1) / 2) // RunParallel starts parallelism × GOMAXPROCS goroutines
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			call()
		}
	})
}

// The pieces of one stateful call, alone.

// BenchmarkEnvelope measures encoding the envelope of one cache-hit "add".
func BenchmarkEnvelope(b *testing.B) {
	env := envelope{
		function: "counter", actor: "bench-1", action: "add", payload: []byte(`{"by":1}`),
		state: statecache.Entry{Value: []byte(`{"value":41}`), Version: "wb-abc-1", Exists: true},
		metadata: []metaPair{{"request_id", "0a1b2c3d4e5f-1"}, {"attempt", "1"},
			{"deadline", time.Now().UTC().Format(time.RFC3339Nano)}},
	}
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		buf = env.appendJSON(buf[:0])
	}
}

// BenchmarkParseAnswer measures validating the counter's answer to "add".
func BenchmarkParseAnswer(b *testing.B) {
	body := []byte(`{"state":{"value":42},"reply":{"value":42}}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := parseAnswer(body, "counter", DefaultMaxStateBytes, DefaultMaxEffectsPerTurn, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkStats measures counting one call in and out for the autoscaler.
func BenchmarkStats(b *testing.B) {
	rec := stats.NewRecorder(clock.RealClock{})
	b.ReportAllocs()
	for b.Loop() {
		rec.Begin("counter", "bench-1")()
	}
}

// BenchmarkMetricsObserve measures recording one request in the Prometheus metrics.
func BenchmarkMetricsObserve(b *testing.B) {
	r, err := New(Config{}, Options{Backends: routing.NewStatic(), State: &statecache.MemStore{}})
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		r.metrics.observe("counter", kindActor, 200, start)
	}
}

// BenchmarkStateCacheHit measures a cache-hit Get and a write-behind Put of statecache.Cache,
// the state work of one turn.
func BenchmarkStateCacheHit(b *testing.B) {
	c := writeBehindCache(b)
	ctx := context.Background()
	key := statecache.Key{Function: "counter", ID: "bench-1"}
	if _, err := c.Put(ctx, key, []byte(`{"value":1}`), statecache.NoVersion, statecache.NoCommit); err != nil {
		b.Fatal(err)
	}
	value := []byte(`{"value":2}`)
	b.ReportAllocs()
	for b.Loop() {
		e, err := c.Get(ctx, key)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.Put(ctx, key, value, e.Version, statecache.NoCommit); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRouterPassThrough measures POST /v1/functions/hello/hello with a ~50-byte body, one
// caller at a time and 64 at once. It comes last in this file because with 64 callers it crashes
// the router as of this writing: servePassThrough gives the server's request body stream to the
// outgoing request, whose release puts the stream back in fasthttp's pool while the server still
// owns it ("BUG: reading released body stream"; see docs/benchmarks.md, Router).
func BenchmarkRouterPassThrough(b *testing.B) {
	for _, par := range []int{1, 64} {
		b.Run("callers="+strconv.Itoa(par), func(b *testing.B) {
			rig := newBenchRig(b, &statecache.MemStore{})
			b.ReportAllocs()
			b.ResetTimer()
			runCallers(b, par, func() {
				req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
				defer fasthttp.ReleaseRequest(req)
				defer fasthttp.ReleaseResponse(resp)
				req.SetRequestURI("http://router/v1/functions/hello/hello")
				req.Header.SetMethod(fasthttp.MethodPost)
				req.Header.SetContentType("application/json")
				req.SetBody(benchBody)
				rig.do(b, req, resp)
			})
		})
	}
}
