package router

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/knactor/knactor/router/routing"
	"github.com/knactor/knactor/sdk"
	"github.com/knactor/knactor/statecache"
	"github.com/knactor/knactor/test/otlptest"
)

// otlpProvider returns a real SDK tracer provider that batches every span to rc over
// OTLP/HTTP, as knactor's commands set one up, named service.
func otlpProvider(t *testing.T, rc *otlptest.Receiver, service string) *sdktrace.TracerProvider {
	t.Helper()
	exp, err := otlptracehttp.New(context.Background(), otlptracehttp.WithEndpointURL(rc.URL+"/v1/traces"))
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithSampler(sdktrace.AlwaysSample()),
		sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", service))))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return tp
}

// flush exports every span ended so far.
func flush(t *testing.T, tp *sdktrace.TracerProvider) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tp.ForceFlush(ctx); err != nil {
		t.Fatal(err)
	}
}

// tracedPod is a counter function on the Go SDK that notes the trace context of every turn:
// the envelope's metadata, the invocation's HTTP header, and the span context the SDK gives the
// handler's ctx.
type tracedPod struct {
	http.Handler
	mu    sync.Mutex
	turns []podTurn
}

type podTurn struct {
	actor, action string
	metadata      map[string]string
	header        string // the traceparent header of POST /v1/invoke
	ctx           trace.SpanContext
}

func newTracedPod() *tracedPod {
	p := &tracedPod{}
	a := sdk.NewActor[counterState]()
	var header sync.Map // request → its traceparent header, for the handler
	note := func(ctx context.Context, t *sdk.Turn[counterState]) {
		h, _ := header.Load(t.Metadata["request_id"] + "/" + t.Metadata["attempt"])
		s, _ := h.(string)
		p.mu.Lock()
		defer p.mu.Unlock()
		p.turns = append(p.turns, podTurn{actor: t.Actor, action: t.Action, metadata: t.Metadata, header: s,
			ctx: trace.SpanContextFromContext(ctx)})
	}
	sdk.Handle(a, "add", func(ctx context.Context, t *sdk.Turn[counterState], p struct {
		By int64 `json:"by"`
	}) (counterReply, error) {
		note(ctx, t)
		t.State.Value += p.By
		return counterReply{t.State.Value}, nil
	})
	sdk.Handle(a, "send", func(ctx context.Context, t *sdk.Turn[counterState], p struct {
		To string `json:"to"`
	}) (counterReply, error) {
		note(ctx, t)
		t.State.Value++
		t.Effect(sdk.Effect{Actor: p.To, Action: "add", Payload: map[string]int64{"by": 1}})
		return counterReply{t.State.Value}, nil
	})
	p.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The envelope names the request; read it here to pair the header with the turn.
		var env struct {
			Metadata map[string]string `json:"metadata"`
		}
		body, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(body, &env)
		header.Store(env.Metadata["request_id"]+"/"+env.Metadata["attempt"], r.Header.Get("traceparent"))
		r.Body = io.NopCloser(bytes.NewReader(body))
		a.ServeHTTP(w, r)
	})
	return p
}

func (p *tracedPod) seen() []podTurn {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.turns)
}

// parseTraceparent splits a W3C traceparent into its trace id and parent (span) id.
func parseTraceparent(t *testing.T, v string) (traceID, spanID string) {
	t.Helper()
	parts := strings.Split(v, "-")
	if len(parts) != 4 || parts[0] != "00" || len(parts[1]) != 32 || len(parts[2]) != 16 {
		t.Fatalf("traceparent %q is not a W3C traceparent", v)
	}
	return parts[1], parts[2]
}

// spanNamed returns the one span named name, failing unless there is exactly one.
func spanNamed(t *testing.T, spans []otlptest.Span, name string) otlptest.Span {
	t.Helper()
	var found []otlptest.Span
	for _, s := range spans {
		if s.Name == name {
			found = append(found, s)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d spans named %q, want 1; spans: %v", len(found), name, spanNames(spans))
	}
	return found[0]
}

func spanNames(spans []otlptest.Span) []string {
	var names []string
	for _, s := range spans {
		names = append(names, s.Name+"@"+s.Service)
	}
	return names
}

// wantAttrs fails unless span has the given attributes.
func wantAttrs(t *testing.T, s otlptest.Span, kv ...string) {
	t.Helper()
	for i := 0; i+1 < len(kv); i += 2 {
		if got, ok := s.Attrs[kv[i]]; !ok || got != kv[i+1] {
			t.Errorf("span %s: attribute %s = %q (set: %v), want %q", s.Name, kv[i], got, ok, kv[i+1])
		}
	}
}

const (
	callerTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	callerSpan  = "00f067aa0ba902b7"
)

// One stateful call, traced into a real OTLP receiver: the caller's trace is continued (or one
// is started), the turn's steps are spans under the turn, and the function gets the function
// call's span as its parent, in the envelope's metadata, as an HTTP header, and (through the
// SDK) in its handler's ctx. A caller's own metadata cannot pose as the router's trace context.
func TestTracingOneStatefulCall(t *testing.T) {
	cases := []struct {
		name      string
		header    []string
		wantTrace string // "" : a new trace
		wantState string
	}{
		{"continues the caller's trace", []string{
			"traceparent", "00-" + callerTrace + "-" + callerSpan + "-01", "tracestate", "vendor=abc",
			"X-Knactor-Meta-Traceparent", "00-" + strings.Repeat("f", 32) + "-" + strings.Repeat("f", 16) + "-01",
		}, callerTrace, "vendor=abc"},
		{"starts a trace", nil, "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rc := otlptest.Start(t)
			tp := otlpProvider(t, rc, "knactor-router")
			h := newHarnessOn(t, Config{}, localStore(t), func(o *Options) { o.TracerProvider = tp })
			pod := newTracedPod()
			h.deploy(counterFn, pod)

			h.do("POST", "/v1/actors/counter/c1/add", `{"by":2}`, tc.header...).want(t, 200, `{"value":2}`)
			flush(t, tp)
			spans := rc.Spans()

			server := spanNamed(t, spans, spanActorCall)
			turn := spanNamed(t, spans, spanTurn)
			if tc.wantTrace != "" {
				if server.TraceID != tc.wantTrace || server.Parent != callerSpan {
					t.Errorf("server span in trace %s under %q, want trace %s under the caller's span %s",
						server.TraceID, server.Parent, tc.wantTrace, callerSpan)
				}
			} else if server.Parent != "" {
				t.Errorf("server span has parent %s, want a new trace's root", server.Parent)
			}
			if server.Kind != tracepb.Span_SPAN_KIND_SERVER {
				t.Errorf("server span kind %v", server.Kind)
			}
			wantAttrs(t, server, "http.request.method", "POST", "http.route", routeActorCall,
				"url.path", "/v1/actors/counter/c1/add", "http.response.status_code", "200",
				"knactor.function", "counter", "knactor.actor.id", "c1", "knactor.action", "add",
				"knactor.idempotency.replayed", "false")
			if turn.Parent != server.SpanID {
				t.Errorf("turn span's parent %s, want the server span %s", turn.Parent, server.SpanID)
			}
			wantAttrs(t, turn, "knactor.function", "counter", "knactor.actor.id", "c1", "knactor.action", "add")
			for _, name := range []string{spanMailbox, spanLoad, spanInvoke, spanCommit} {
				if s := spanNamed(t, spans, name); s.Parent != turn.SpanID {
					t.Errorf("%s span's parent %s, want the turn span %s", name, s.Parent, turn.SpanID)
				}
			}
			for _, s := range spans {
				if s.TraceID != server.TraceID {
					t.Errorf("span %s in trace %s, want %s", s.Name, s.TraceID, server.TraceID)
				}
				if s.Service != "knactor-router" || s.Scope != tracerName {
					t.Errorf("span %s from %s/%s", s.Name, s.Service, s.Scope)
				}
			}
			invoke := spanNamed(t, spans, spanInvoke)
			if invoke.Kind != tracepb.Span_SPAN_KIND_CLIENT {
				t.Errorf("invoke span kind %v, want client", invoke.Kind)
			}
			wantAttrs(t, invoke, "server.address", "127.0.0.1", "http.response.status_code", "200", "knactor.attempt", "1")
			wantAttrs(t, spanNamed(t, spans, spanCommit), "knactor.state.changed", "true")

			turns := pod.seen()
			if len(turns) != 1 {
				t.Fatalf("the pod ran %d turns, want 1", len(turns))
			}
			got := turns[0]
			tid, sid := parseTraceparent(t, got.metadata["traceparent"])
			if tid != server.TraceID || sid != invoke.SpanID {
				t.Errorf("the function got traceparent %s, want trace %s under the invoke span %s",
					got.metadata["traceparent"], server.TraceID, invoke.SpanID)
			}
			if got.metadata["tracestate"] != tc.wantState {
				t.Errorf("the function got tracestate %q, want %q", got.metadata["tracestate"], tc.wantState)
			}
			if got.header != got.metadata["traceparent"] {
				t.Errorf("traceparent header %q, metadata %q: want the same", got.header, got.metadata["traceparent"])
			}
			if !got.ctx.IsRemote() || got.ctx.TraceID().String() != tid || got.ctx.SpanID().String() != sid || !got.ctx.IsSampled() {
				t.Errorf("the handler's ctx has span context %+v, want the remote, sampled %s/%s", got.ctx, tid, sid)
			}
		})
	}
}

// A turn's effects are delivered in the turn's trace: a dispatch span under the turn, and the
// effect's own turn under it.
func TestTracingEffects(t *testing.T) {
	rc := otlptest.Start(t)
	tp := otlpProvider(t, rc, "knactor-router")
	h := newHarnessOn(t, Config{}, localStore(t), func(o *Options) { o.TracerProvider = tp })
	h.deploy(counterFn, newTracedPod())
	h.do("POST", "/v1/actors/counter/a/send", `{"to":"b"}`, "traceparent", "00-"+callerTrace+"-"+callerSpan+"-01").want(t, 200, `{"value":1}`)
	h.r.effects.Wait() // the delivery has ended
	flush(t, tp)
	spans := rc.Spans()
	var turns []otlptest.Span
	for _, s := range spans {
		if s.Name == spanTurn {
			turns = append(turns, s)
		}
		if s.TraceID != callerTrace {
			t.Errorf("span %s in trace %s, want the caller's %s", s.Name, s.TraceID, callerTrace)
		}
	}
	dispatch := spanNamed(t, spans, spanEffects)
	var first, effect otlptest.Span
	for _, s := range turns {
		switch s.Attrs["knactor.actor.id"] {
		case "a":
			first = s
		case "b":
			effect = s
		}
	}
	if dispatch.Parent != first.SpanID || first.SpanID == "" {
		t.Errorf("dispatch span's parent %s, want the first turn %s", dispatch.Parent, first.SpanID)
	}
	if effect.Parent != dispatch.SpanID || effect.SpanID == "" {
		t.Errorf("the effect's turn's parent %s, want the dispatch span %s; spans %v", effect.Parent, dispatch.SpanID, spanNames(spans))
	}
}

// A call forwarded to its actor's owner router is one trace across both: the first router's
// server span, its forward (client) span, and the owner's server span and turn under it.
func TestTracingAcrossRouters(t *testing.T) {
	rc := otlptest.Start(t)
	ownerTP, frontTP := otlpProvider(t, rc, "owner"), otlpProvider(t, rc, "front")
	store := localStore(t)
	owner := newHarnessOn(t, peerConfig, store, func(o *Options) { o.TracerProvider = ownerTP })
	addr := strings.TrimPrefix(owner.url, "http://")
	front := newHarnessOn(t, peerConfig, store, func(o *Options) {
		o.TracerProvider = frontTP
		o.Peers = peersFunc(func(string) (string, bool) { return addr, true })
	})
	pod := newTracedPod()
	owner.deploy(counterFn, pod)
	front.deploy(counterFn, pod)
	front.do("POST", "/v1/actors/counter/x/add", `{"by":1}`, "traceparent", "00-"+callerTrace+"-"+callerSpan+"-01").want(t, 200, `{"value":1}`)
	flush(t, frontTP)
	flush(t, ownerTP)
	var frontSpans, ownerSpans []otlptest.Span
	for _, s := range rc.Spans() {
		if s.TraceID != callerTrace {
			t.Errorf("span %s@%s in trace %s, want the caller's", s.Name, s.Service, s.TraceID)
		}
		if s.Service == "front" {
			frontSpans = append(frontSpans, s)
		} else {
			ownerSpans = append(ownerSpans, s)
		}
	}
	fs := spanNamed(t, frontSpans, spanActorCall)
	fwd := spanNamed(t, frontSpans, spanForward)
	os := spanNamed(t, ownerSpans, spanActorCall)
	ot := spanNamed(t, ownerSpans, spanTurn)
	switch {
	case fs.Parent != callerSpan:
		t.Errorf("front server span's parent %s, want the caller's %s", fs.Parent, callerSpan)
	case fwd.Parent != fs.SpanID || fwd.Kind != tracepb.Span_SPAN_KIND_CLIENT:
		t.Errorf("forward span (%v) under %s, want a client span under the front server span %s", fwd.Kind, fwd.Parent, fs.SpanID)
	case os.Parent != fwd.SpanID:
		t.Errorf("owner server span under %s, want the forward span %s", os.Parent, fwd.SpanID)
	case ot.Parent != os.SpanID:
		t.Errorf("owner turn under %s, want the owner's server span %s", ot.Parent, os.SpanID)
	}
	if n := len(pod.seen()); n != 1 {
		t.Fatalf("the pod ran %d turns, want 1", n)
	}
	if tid, _ := parseTraceparent(t, pod.seen()[0].metadata["traceparent"]); tid != callerTrace {
		t.Errorf("the function's trace %s, want the caller's", tid)
	}
}

// Without a tracer provider (the default) nothing is traced or sent, calls work as ever, and a
// caller's trace headers reach the function as they came, so a function that traces itself
// still continues its caller's trace.
func TestTracingOff(t *testing.T) {
	rc := otlptest.Start(t)
	_ = otlpProvider(t, rc, "unused") // a provider exists, but the router is not given it
	h := newHarness(t, Config{})
	pod := newTracedPod()
	h.deploy(counterFn, pod)
	cases := []struct {
		name   string
		header []string
		want   map[string]string // metadata the function gets; "" : absent
	}{
		{"no trace headers", nil, map[string]string{"traceparent": "", "tracestate": "", "baggage": ""}},
		{"the caller's, as they came", []string{"traceparent", "00-" + callerTrace + "-" + callerSpan + "-01",
			"tracestate", "vendor=abc", "baggage", "tenant=acme", "X-Knactor-Meta-Tracestate", "forged=1"},
			map[string]string{"traceparent": "00-" + callerTrace + "-" + callerSpan + "-01", "tracestate": "vendor=abc", "baggage": "tenant=acme"}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h.do("POST", "/v1/actors/counter/off/add", `{"by":1}`, tc.header...).want(t, 200, `{"value":`+strconv.Itoa(i+1)+`}`)
			turns := pod.seen()
			got := turns[len(turns)-1]
			for k, v := range tc.want {
				if got.metadata[k] != v {
					t.Errorf("metadata %s = %q, want %q", k, got.metadata[k], v)
				}
			}
			if got.header != tc.want["traceparent"] {
				t.Errorf("traceparent header %q, want %q", got.header, tc.want["traceparent"])
			}
			if p := tc.want["traceparent"]; p != "" && (got.ctx.TraceID().String() != callerTrace || got.ctx.SpanID().String() != callerSpan) {
				t.Errorf("the handler's ctx has %+v, want the caller's span", got.ctx)
			}
		})
	}
	if n := rc.Requests(); n != 0 {
		t.Errorf("the receiver got %d export requests with tracing off", n)
	}
}

// Failures are marked on the spans: a function that fails (502 to the caller) is an error of
// the call, the turn and the function call; a version conflict is an error of the first
// commit, and the turn runs again under the same turn span.
func TestTracingFailures(t *testing.T) {
	t.Run("function fails", func(t *testing.T) {
		rc := otlptest.Start(t)
		tp := otlpProvider(t, rc, "knactor-router")
		h := newHarnessOn(t, Config{}, localStore(t), func(o *Options) { o.TracerProvider = tp })
		h.deploy(counterFn, rawPod(500, `oops`))
		h.do("POST", "/v1/actors/counter/f/add", `{}`).want(t, 502, "")
		flush(t, tp)
		spans := rc.Spans()
		for _, name := range []string{spanActorCall, spanTurn, spanInvoke} {
			s := spanNamed(t, spans, name)
			if s.Status != tracepb.Status_STATUS_CODE_ERROR {
				t.Errorf("%s span status %v, want error", name, s.Status)
			}
			wantAttrs(t, s, "error.type", CodeFunctionFailed)
		}
		wantAttrs(t, spanNamed(t, spans, spanActorCall), "http.response.status_code", "502")
		wantAttrs(t, spanNamed(t, spans, spanInvoke), "http.response.status_code", "500")
	})
	t.Run("version conflict", func(t *testing.T) {
		rc := otlptest.Start(t)
		tp := otlpProvider(t, rc, "knactor-router")
		store := localStore(t)
		// Two routers with their own caches over one store: after b's write, a's cache is stale.
		a := newHarnessOn(t, Config{}, store, func(o *Options) { o.TracerProvider = tp })
		b := newHarnessOn(t, Config{}, store)
		pod := newTracedPod()
		a.deploy(counterFn, pod)
		b.deploy(counterFn, pod)
		a.do("POST", "/v1/actors/counter/k/add", `{"by":1}`).want(t, 200, `{"value":1}`)
		b.do("POST", "/v1/actors/counter/k/add", `{"by":1}`).want(t, 200, `{"value":2}`)
		flush(t, tp)
		before := len(rc.Spans())
		a.do("POST", "/v1/actors/counter/k/add", `{"by":1}`).want(t, 200, `{"value":3}`)
		flush(t, tp)
		spans := rc.Spans()[before:]
		turn := spanNamed(t, spans, spanTurn)
		if !slices.Contains(turn.Events, "version conflict: re-running the turn") {
			t.Errorf("turn span events %v, want the conflict noted", turn.Events)
		}
		var commits []otlptest.Span
		for _, s := range spans {
			if s.Name == spanCommit {
				commits = append(commits, s)
			}
			if s.Parent == turn.SpanID && s.Name == spanInvoke && s.Attrs["knactor.attempt"] == "2" {
				wantAttrs(t, s, "http.response.status_code", "200")
			}
		}
		if len(commits) != 2 {
			t.Fatalf("%d commit spans, want 2 (a conflict, then the commit); spans %v", len(commits), spanNames(spans))
		}
		wantAttrs(t, commits[0], "knactor.attempt", "1", "error.type", CodeVersionConflict)
		wantAttrs(t, commits[1], "knactor.attempt", "2")
		if commits[0].Status != tracepb.Status_STATUS_CODE_ERROR || commits[1].Status == tracepb.Status_STATUS_CODE_ERROR {
			t.Errorf("commit statuses %v, %v: want the conflict an error, the retry not", commits[0].Status, commits[1].Status)
		}
		if turn.Status == tracepb.Status_STATUS_CODE_ERROR {
			t.Errorf("the turn that settled its conflict is marked an error")
		}
	})
}

// discardExporter drops spans: the benchmark measures the router's tracing, not an export.
type discardExporter struct{}

func (discardExporter) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discardExporter) Shutdown(context.Context) error                             { return nil }

// BenchmarkRouterActorCallTraced is BenchmarkRouterActorCall's statecache case with tracing on
// (an SDK tracer provider, batching to an exporter that drops the spans): every call sampled,
// or none (the trace context is still made and sent to the function). docs/observability.md
// compares it with tracing off.
func BenchmarkRouterActorCallTraced(b *testing.B) {
	samplers := []struct {
		name    string
		sampler sdktrace.Sampler
	}{{"sampled=all", sdktrace.AlwaysSample()}, {"sampled=none", sdktrace.NeverSample()}}
	for _, sm := range samplers {
		for _, par := range []int{1, 64} {
			b.Run(sm.name+"/callers="+strconv.Itoa(par), func(b *testing.B) {
				c, err := statecache.NewCache(&statecache.MemStore{},
					statecache.Config{Mode: statecache.WriteBehind, FlushInterval: time.Hour, MaxBytes: 64 << 20})
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { _ = c.Close(context.Background()) })
				tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(discardExporter{}), sdktrace.WithSampler(sm.sampler))
				b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
				rig := newBenchRig(b, c, func(o *Options) { o.TracerProvider = tp })
				paths := make([]string, benchActors)
				for i := range paths {
					paths[i] = "http://router/v1/actors/counter/bench-" + strconv.Itoa(i) + "/add"
				}
				for _, p := range paths {
					rig.add(b, p, "")
				}
				b.ReportAllocs()
				b.ResetTimer()
				runCallers(b, par, func() { rig.add(b, paths[rand.IntN(len(paths))], "") })
			})
		}
	}
}

// WebSocket messages are traced one by one: a message's own traceparent is continued, else the
// upgrade request's; and a pass-through call's pod gets the router's server span as parent.
func TestTracingWebSocketAndPassThrough(t *testing.T) {
	rc := otlptest.Start(t)
	tp := otlpProvider(t, rc, "knactor-router")
	h := newHarnessOn(t, Config{}, localStore(t), func(o *Options) { o.TracerProvider = tp })
	pod := newTracedPod()
	h.deploy(counterFn, pod)

	const upgradeSpan, messageSpan = "1111111111111111", "2222222222222222"
	messageTrace := strings.Repeat("ab", 16)
	c := dialWS(t, h, "/v1/actors/counter/w/ws", http.Header{"Traceparent": {"00-" + callerTrace + "-" + upgradeSpan + "-01"}})
	for _, msg := range []string{
		`{"id":1,"action":"add","payload":{"by":1}}`,
		`{"id":2,"action":"add","payload":{"by":1},"traceparent":"00-` + messageTrace + `-` + messageSpan + `-01"}`,
	} {
		if err := c.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		if m := readJSON(t, c); m["error"] != nil {
			t.Fatalf("answer %v", m)
		}
	}
	flush(t, tp)
	var msgs []otlptest.Span
	for _, s := range rc.Spans() {
		if s.Name == spanWSMessage {
			msgs = append(msgs, s)
		}
	}
	if len(msgs) != 2 {
		t.Fatalf("%d message spans, want 2", len(msgs))
	}
	if msgs[0].TraceID != callerTrace || msgs[0].Parent != upgradeSpan {
		t.Errorf("first message in %s under %s, want the upgrade's %s/%s", msgs[0].TraceID, msgs[0].Parent, callerTrace, upgradeSpan)
	}
	if msgs[1].TraceID != messageTrace || msgs[1].Parent != messageSpan || !slices.Contains(msgs[1].Links, upgradeSpan) {
		t.Errorf("second message in %s under %s (links %v), want the message's %s/%s linked to the upgrade",
			msgs[1].TraceID, msgs[1].Parent, msgs[1].Links, messageTrace, messageSpan)
	}
	for i, turn := range pod.seen() {
		if tid, _ := parseTraceparent(t, turn.metadata["traceparent"]); tid != msgs[i].TraceID {
			t.Errorf("message %d: the function's trace %s, want %s", i+1, tid, msgs[i].TraceID)
		}
	}

	// Pass-through: the pod continues the router's server span.
	got := make(chan string, 1)
	h.deploy(routing.Function{Name: "hello"}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Get("traceparent")
	}))
	h.do("GET", "/v1/functions/hello/hi", "", "traceparent", "00-"+callerTrace+"-"+callerSpan+"-01").want(t, 200, "")
	flush(t, tp)
	server := spanNamed(t, rc.Spans(), "GET "+routePassThrough)
	tid, sid := parseTraceparent(t, <-got)
	if server.Parent != callerSpan || tid != callerTrace || sid != server.SpanID {
		t.Errorf("pass-through span under %s, pod's traceparent %s/%s: want the caller's span, then the server span %s",
			server.Parent, tid, sid, server.SpanID)
	}
}
