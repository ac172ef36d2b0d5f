package router

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"

	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/knactor/knactor/router/placement"
	"github.com/knactor/knactor/router/routing"
	"github.com/knactor/knactor/statecache"
)

// Tracing (docs/observability.md). With Options.TracerProvider set, every call is traced with
// OpenTelemetry: the caller's W3C trace context (traceparent, tracestate, baggage headers) is
// continued, or a trace started, and a turn has spans for its steps, whose function call hands
// its own context to the function in the envelope's metadata. Without one (the default),
// nothing is traced and nothing is allocated for it: the caller's trace headers, if any, are
// passed on to the function as they came, as a proxy would pass them.

// tracerName is the instrumentation scope of the router's spans.
const tracerName = "github.com/knactor/knactor/router"

// Span names (docs/observability.md lists them with their attributes).
const (
	// spanActorCall is the server span of POST /v1/actors/{function}/{id}/{action}: the HTTP
	// semantic conventions' "{method} {http.route}".
	spanActorCall = "POST /v1/actors/{function}/{id}/{action}"
	spanWSMessage = "knactor.websocket.message"
	spanForward   = "knactor.forward"
	spanTurn      = "knactor.turn"
	spanMailbox   = "knactor.mailbox.wait"
	spanLoad      = "knactor.state.load"
	spanInvoke    = "knactor.invoke"
	spanCommit    = "knactor.state.commit"
	spanEffects   = "knactor.effects.dispatch"
	spanTimer     = "knactor.timer.fire"
)

// The W3C Trace Context and Baggage fields: HTTP headers, and the envelope's metadata keys.
const (
	keyTraceparent = "traceparent"
	keyTracestate  = "tracestate"
	keyBaggage     = "baggage"
)

// Bounds on trace headers passed on as they came (tracing off): a traceparent is 55
// characters, a tracestate at most 32 entries of ~256 (W3C), baggage at most 8192 bytes.
const (
	maxTraceparent = 128
	maxTracestate  = 1024
	maxBaggage     = 8192
)

// Attribute keys: OpenTelemetry's semantic conventions, and knactor's own under "knactor.".
const (
	attrMethod        = attribute.Key("http.request.method")
	attrRoute         = attribute.Key("http.route")
	attrStatus        = attribute.Key("http.response.status_code")
	attrURLPath       = attribute.Key("url.path")
	attrURLScheme     = attribute.Key("url.scheme")
	attrServerAddr    = attribute.Key("server.address")
	attrServerPort    = attribute.Key("server.port")
	attrClientAddr    = attribute.Key("client.address")
	attrUserAgent     = attribute.Key("user_agent.original")
	attrProtoVersion  = attribute.Key("network.protocol.version")
	attrErrorType     = attribute.Key("error.type")
	attrFunction      = attribute.Key("knactor.function")
	attrRevision      = attribute.Key("knactor.revision")
	attrActor         = attribute.Key("knactor.actor.id")
	attrAction        = attribute.Key("knactor.action")
	attrAttempt       = attribute.Key("knactor.attempt")
	attrReplayed      = attribute.Key("knactor.idempotency.replayed")
	attrIdemKey       = attribute.Key("knactor.idempotency.key")
	attrRequestID     = attribute.Key("knactor.request_id")
	attrPod           = attribute.Key("knactor.pod")
	attrStateExists   = attribute.Key("knactor.state.exists")
	attrStateVersion  = attribute.Key("knactor.state.version")
	attrStateChanged  = attribute.Key("knactor.state.changed")
	attrEffects       = attribute.Key("knactor.effects")
	attrTimerOps      = attribute.Key("knactor.timers")
	attrTimer         = attribute.Key("knactor.timer")
	attrForwarded     = attribute.Key("knactor.forwarded")
	attrCausedBy      = attribute.Key("knactor.caused_by")
	attrChannel       = attribute.Key("knactor.channel")
	attrTransport     = attribute.Key("knactor.transport")
	attrOwnerFallback = attribute.Key("knactor.forward.ran_here")
)

// traceHeaders are a caller's trace headers, passed on to the function as they came when the
// router does not trace.
type traceHeaders struct{ parent, state, baggage string }

// peekTraceHeaders reads h's trace headers when tracing is off (a traceparent too long to be
// one is dropped, and the others with it). Nothing is allocated for a request without them.
func peekTraceHeaders(h *fasthttp.RequestHeader) traceHeaders {
	p := h.Peek(keyTraceparent)
	if len(p) == 0 || len(p) > maxTraceparent {
		return traceHeaders{}
	}
	th := traceHeaders{parent: string(p)}
	if s := h.Peek(keyTracestate); len(s) > 0 && len(s) <= maxTracestate {
		th.state = string(s)
	}
	if b := h.Peek(keyBaggage); len(b) > 0 && len(b) <= maxBaggage {
		th.baggage = string(b)
	}
	return th
}

// appendTo appends the headers as metadata pairs.
func (th *traceHeaders) appendTo(md []metaPair) []metaPair {
	if th.parent == "" {
		return md
	}
	md = append(md, metaPair{keyTraceparent, th.parent})
	if th.state != "" {
		md = append(md, metaPair{keyTracestate, th.state})
	}
	if th.baggage != "" {
		md = append(md, metaPair{keyBaggage, th.baggage})
	}
	return md
}

// headerCarrier adapts fasthttp request headers to OpenTelemetry's propagators.
type headerCarrier struct{ h *fasthttp.RequestHeader }

func (c headerCarrier) Get(key string) string { return string(c.h.Peek(key)) }
func (c headerCarrier) Set(key, value string) { c.h.Set(key, value) }
func (c headerCarrier) Keys() []string {
	var keys []string
	for k := range c.h.All() {
		keys = append(keys, string(k))
	}
	return keys
}

// metaCarrier lets a propagator write into an envelope's metadata (keys lowercased).
type metaCarrier struct{ md []metaPair }

func (c *metaCarrier) Get(key string) string {
	for _, m := range c.md {
		if m.key == key {
			return m.value
		}
	}
	return ""
}

func (c *metaCarrier) Set(key, value string) {
	c.md = append(c.md, metaPair{strings.ToLower(key), value})
}

func (c *metaCarrier) Keys() []string {
	keys := make([]string, len(c.md))
	for i, m := range c.md {
		keys[i] = m.key
	}
	return keys
}

// reservedMeta reports the metadata keys the router sets itself: a caller's
// X-Knactor-Meta-* header of one of these names is dropped, so the router's own keys win.
func reservedMeta(key string) bool {
	switch key {
	case "request_id", "attempt", "deadline", "idempotency_key", "timer", "timer_due", "timer_fired",
		keyTraceparent, keyTracestate, keyBaggage:
		return true
	}
	return false
}

// setTracing configures tracing from opts (New).
func (r *Router) setTracing(opts *Options) {
	if opts.TracerProvider == nil {
		return
	}
	r.tracer = opts.TracerProvider.Tracer(tracerName)
	r.prop = opts.Propagator
	if r.prop == nil {
		r.prop = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
	}
}

// startServer starts the server span of an HTTP request named name, continuing the caller's
// trace context from its headers. Tracing must be on.
func (r *Router) startServer(ctx *fasthttp.RequestCtx, name, route string) (context.Context, trace.Span) {
	parent := r.prop.Extract(context.Background(), headerCarrier{&ctx.Request.Header})
	c, span := r.tracer.Start(parent, name, trace.WithSpanKind(trace.SpanKindServer))
	if span.IsRecording() {
		span.SetAttributes(
			attrMethod.String(string(ctx.Method())),
			attrRoute.String(route),
			attrURLPath.String(string(ctx.Path())),
			attrURLScheme.String(schemeOf(ctx)),
			attrProtoVersion.String(protoVersion(ctx)),
			attrClientAddr.String(ctx.RemoteIP().String()),
		)
		if host, port, err := net.SplitHostPort(string(ctx.Host())); err == nil {
			span.SetAttributes(attrServerAddr.String(host))
			if p, err := strconv.Atoi(port); err == nil {
				span.SetAttributes(attrServerPort.Int(p))
			}
		} else if len(ctx.Host()) > 0 {
			span.SetAttributes(attrServerAddr.String(string(ctx.Host())))
		}
		if ua := ctx.UserAgent(); len(ua) > 0 {
			span.SetAttributes(attrUserAgent.String(string(ua)))
		}
	}
	return c, span
}

func schemeOf(ctx *fasthttp.RequestCtx) string {
	if ctx.IsTLS() {
		return "https"
	}
	return "http"
}

func protoVersion(ctx *fasthttp.RequestCtx) string {
	if ctx.Request.Header.IsHTTP11() {
		return "1.1"
	}
	return "1.0"
}

// endServer ends an HTTP server span with the response's status: a 5xx is an error (a 4xx is
// the caller's, and leaves the span's status unset, as the HTTP conventions say).
func endServer(ctx *fasthttp.RequestCtx, span trace.Span, err error) {
	if span.IsRecording() {
		status := ctx.Response.StatusCode()
		span.SetAttributes(attrStatus.Int(status))
		switch {
		case err != nil:
			ae := asAPIError(err)
			span.SetAttributes(attrErrorType.String(ae.code))
			if status >= fasthttp.StatusInternalServerError {
				span.RecordError(err)
				span.SetStatus(codes.Error, ae.message)
			}
		case status >= fasthttp.StatusInternalServerError:
			span.SetAttributes(attrErrorType.String(strconv.Itoa(status)))
			span.SetStatus(codes.Error, "HTTP "+strconv.Itoa(status))
		}
	}
	span.End()
}

// routePassThrough is the http.route of stateless pass-through calls.
const routePassThrough = "/v1/functions/{function}/{path}"

// startPassThrough starts the server span of a pass-through call, whose context the pod gets
// in the request's trace headers. Tracing must be on.
func (r *Router) startPassThrough(ctx *fasthttp.RequestCtx, fn routing.Function) (context.Context, trace.Span) {
	c, span := r.startServer(ctx, string(ctx.Method())+" "+routePassThrough, routePassThrough)
	if span.IsRecording() {
		span.SetAttributes(attrFunction.String(fn.Name))
		if fn.Revision != "" && fn.Revision != fn.Name {
			span.SetAttributes(attrRevision.String(fn.Revision))
		}
	}
	return c, span
}

// callAttrs are the attributes that name a call's actor and action.
func callAttrs(call *actorCall) []attribute.KeyValue {
	attrs := []attribute.KeyValue{
		attrFunction.String(call.key.Function),
		attrActor.String(call.key.ID),
		attrAction.String(call.action),
	}
	if call.fn.Revision != "" && call.fn.Revision != call.fn.Name {
		attrs = append(attrs, attrRevision.String(call.fn.Revision))
	}
	return attrs
}

// startTurn starts the span of one turn (invoke), under ctx's span. Tracing must be on.
func (r *Router) startTurn(ctx context.Context, call *actorCall) (context.Context, trace.Span) {
	c, span := r.tracer.Start(ctx, spanTurn)
	if span.IsRecording() {
		span.SetAttributes(callAttrs(call)...)
		span.SetAttributes(attrRequestID.String(call.requestID), attrForwarded.Bool(call.forwarded))
		if call.idemKey != "" {
			span.SetAttributes(attrIdemKey.String(call.idemKey))
		}
		if call.timer != nil {
			span.SetAttributes(attrTimer.String(call.timer.name))
		}
		if call.channel != "" {
			span.SetAttributes(attrChannel.String(call.channel))
		}
	}
	return c, span
}

// endTurn ends a turn's span. Errors the caller caused (4xx) are noted but leave the status
// unset; anything else is an error.
func endTurn(span trace.Span, res *turnResult, err error) {
	if span.IsRecording() {
		if res != nil {
			span.SetAttributes(attrReplayed.Bool(res.replayed), attrStateVersion.String(string(res.version)))
			if res.pod != "" {
				span.SetAttributes(attrPod.String(res.pod))
			}
		}
		endErr(span, err)
	}
	span.End()
}

// endErr records err on span (a recording one): its code as error.type, and an error status
// unless it is an answer of the 4xx kind (the function's or the caller's).
func endErr(span trace.Span, err error) {
	if err == nil {
		return
	}
	var ae *apiError
	if !errors.As(err, &ae) {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
		return
	}
	span.SetAttributes(attrErrorType.String(ae.code))
	if ae.status >= fasthttp.StatusInternalServerError {
		span.RecordError(err)
		span.SetStatus(codes.Error, ae.message)
	}
}

// child starts an internal span named name under ctx's span; nil with tracing off.
func (r *Router) child(ctx context.Context, name string) trace.Span {
	if r.tracer == nil {
		return nil
	}
	_, span := r.tracer.Start(ctx, name)
	return span
}

// end ends span (nil: tracing is off), recording err.
func end(span trace.Span, err error) {
	if span == nil {
		return
	}
	if err != nil && span.IsRecording() {
		endErr(span, err)
	}
	span.End()
}

// startLoad starts the span of a state read; nil with tracing off.
func (r *Router) startLoad(ctx context.Context, attempt int) trace.Span {
	if r.tracer == nil {
		return nil
	}
	_, span := r.tracer.Start(ctx, spanLoad)
	if span.IsRecording() {
		span.SetAttributes(attrAttempt.Int(attempt))
	}
	return span
}

// endLoad ends a state read's span.
func endLoad(span trace.Span, cur statecache.Entry, err error) {
	if span == nil {
		return
	}
	if span.IsRecording() {
		span.SetAttributes(attrStateExists.Bool(cur.Exists))
		if cur.Exists {
			span.SetAttributes(attrStateVersion.String(string(cur.Version)))
		}
		endErr(span, err)
	}
	span.End()
}

// startInvoke starts the client span of sending the envelope to pod; its context is the one the
// function gets (turnMetadata). ctx and nil with tracing off.
func (r *Router) startInvoke(ctx context.Context, call *actorCall, pod placement.Pod, attempt int) (context.Context, trace.Span) {
	if r.tracer == nil {
		return ctx, nil
	}
	c, span := r.tracer.Start(ctx, spanInvoke, trace.WithSpanKind(trace.SpanKindClient))
	if span.IsRecording() {
		span.SetAttributes(callAttrs(call)...)
		span.SetAttributes(
			attrAttempt.Int(attempt),
			attrPod.String(pod.Name),
			attrMethod.String(fasthttp.MethodPost),
			attribute.String("url.full", "http://"+pod.Addr+string(invokePath)),
		)
		if host, port, err := net.SplitHostPort(pod.Addr); err == nil {
			span.SetAttributes(attrServerAddr.String(host))
			if p, err := strconv.Atoi(port); err == nil {
				span.SetAttributes(attrServerPort.Int(p))
			}
		}
	}
	return c, span
}

// setStatusCode records the pod's HTTP status on the invoke span (nil: tracing off).
func setStatusCode(span trace.Span, status int) {
	if span != nil && span.IsRecording() {
		span.SetAttributes(attrStatus.Int(status))
	}
}

// startCommit starts the span of a turn's write; nil with tracing off.
func (r *Router) startCommit(ctx context.Context, attempt int, out *outcome) trace.Span {
	if r.tracer == nil {
		return nil
	}
	_, span := r.tracer.Start(ctx, spanCommit)
	if span.IsRecording() {
		span.SetAttributes(attrAttempt.Int(attempt),
			attrEffects.Int(len(out.effects)+len(out.broadcasts)), attrTimerOps.Int(len(out.timers)))
	}
	return span
}

// endCommit ends a turn write's span. A version conflict is an error of this span: the turn
// runs again.
func endCommit(span trace.Span, version statecache.Version, changed bool, err error) {
	if span == nil {
		return
	}
	if span.IsRecording() {
		span.SetAttributes(attrStateChanged.Bool(changed))
		if err == nil {
			span.SetAttributes(attrStateVersion.String(string(version)))
		} else if errors.Is(err, statecache.ErrConflict) {
			span.RecordError(err)
			span.SetStatus(codes.Error, "version conflict: the turn runs again on the fresh state")
			span.SetAttributes(attrErrorType.String(CodeVersionConflict))
		} else {
			endErr(span, err)
		}
	}
	span.End()
}

// conflictEvent notes on the turn's span that it runs again after a version conflict.
func conflictEvent(ctx context.Context, attempt int) {
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		span.AddEvent("version conflict: re-running the turn", trace.WithAttributes(attrAttempt.Int(attempt+1)))
	}
}

// injectMeta appends the trace context the function continues to md: the invoke span's
// (ctx) with tracing on, else the caller's headers as they came.
func (r *Router) injectMeta(ctx context.Context, call *actorCall, md []metaPair) []metaPair {
	if r.tracer == nil {
		return call.trace.appendTo(md)
	}
	return r.injectTraced(ctx, md)
}

// injectTraced is injectMeta with tracing on, apart: the carrier holds md's address, which
// would move md to the heap on the untraced path too.
func (r *Router) injectTraced(ctx context.Context, md []metaPair) []metaPair {
	c := &metaCarrier{md: md}
	r.prop.Inject(ctx, c)
	return c.md
}

// injectHeaders sets the trace headers of a request another router or a pod gets: ctx's trace
// context with tracing on, else th as it came.
func (r *Router) injectHeaders(ctx context.Context, th *traceHeaders, h *fasthttp.RequestHeader) {
	if r.tracer == nil {
		if th.parent != "" {
			h.Set(keyTraceparent, th.parent)
			if th.state != "" {
				h.Set(keyTracestate, th.state)
			}
			if th.baggage != "" {
				h.Set(keyBaggage, th.baggage)
			}
		}
		return
	}
	r.prop.Inject(ctx, headerCarrier{h})
}

// startForward starts the client span of forwarding a call to its owner router at addr.
// ctx and nil with tracing off.
func (r *Router) startForward(ctx context.Context, call *actorCall, addr string) (context.Context, trace.Span) {
	if r.tracer == nil {
		return ctx, nil
	}
	c, span := r.tracer.Start(ctx, spanForward, trace.WithSpanKind(trace.SpanKindClient))
	if span.IsRecording() {
		span.SetAttributes(callAttrs(call)...)
		span.SetAttributes(attrMethod.String(fasthttp.MethodPost))
		if host, port, err := net.SplitHostPort(addr); err == nil {
			span.SetAttributes(attrServerAddr.String(host))
			if p, err := strconv.Atoi(port); err == nil {
				span.SetAttributes(attrServerPort.Int(p))
			}
		}
	}
	return c, span
}

// detached returns a context without ctx's deadline or cancellation that carries its span, for
// work that outlives the turn (effects dispatched after it). context.Background() with
// tracing off.
func (r *Router) detached(ctx context.Context) context.Context {
	if r.tracer == nil {
		return context.Background()
	}
	return trace.ContextWithSpanContext(context.Background(), trace.SpanContextFromContext(ctx))
}

// startRoot starts a span of work no request asked for (a timer firing, an outbox delivery
// the scheduler found), or under ctx's span if it has one. context.Background() and nil with
// tracing off.
func (r *Router) startRoot(ctx context.Context, name string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	if r.tracer == nil {
		return ctx, nil
	}
	c, span := r.tracer.Start(ctx, name)
	if span.IsRecording() {
		span.SetAttributes(attrs...)
	}
	return c, span
}

// routeActorCall is the http.route of actor calls.
const routeActorCall = "/v1/actors/{function}/{id}/{action}"

// serverTrace is the server span of one request (nil: tracing off) and the error it ends
// with (serveInvoke). It holds no pointer to the call, which would then escape to the heap
// with tracing off too: the call's attributes are set as soon as it is known.
type serverTrace struct {
	span trace.Span
	err  error
}

// setCall notes the call's actor and action.
func (t *serverTrace) setCall(call *actorCall) {
	if t.span != nil && t.span.IsRecording() {
		t.span.SetAttributes(callAttrs(call)...)
		t.span.SetAttributes(attrRequestID.String(call.requestID))
	}
}

// setResult notes the call's outcome.
func (t *serverTrace) setResult(res *turnResult, err error) {
	t.err = err
	if res != nil && t.span != nil && t.span.IsRecording() {
		t.span.SetAttributes(attrReplayed.Bool(res.replayed))
		if res.pod != "" {
			t.span.SetAttributes(attrPod.String(res.pod))
		}
	}
}

func (t *serverTrace) end(ctx *fasthttp.RequestCtx) { endServer(ctx, t.span, t.err) }

// endForward ends the span of a forward; not handled means the owner could not be reached and
// the turn runs here.
func endForward(span trace.Span, handled bool, err error) {
	if span.IsRecording() {
		if !handled {
			span.SetAttributes(attrOwnerFallback.Bool(true))
			span.AddEvent("owner router unreachable: the turn runs here")
		}
		endErr(span, err)
	}
	span.End()
}

// endTimer ends the span of a timer's firing: a timer no longer due ran nothing, which is no
// error.
func endTimer(span trace.Span, err error) {
	if span == nil {
		return
	}
	if span.IsRecording() {
		if errors.Is(err, errNotDue) {
			span.AddEvent("timer no longer due: nothing ran")
		} else {
			endErr(span, err)
		}
	}
	span.End()
}

// traceSession keeps a WebSocket upgrade request's trace context for the session's turns.
func (r *Router) traceSession(ctx *fasthttp.RequestCtx, t *wsTarget) {
	if r.tracer == nil {
		t.trace = peekTraceHeaders(&ctx.Request.Header)
		return
	}
	t.traceSpan = trace.SpanContextFromContext(r.prop.Extract(context.Background(), headerCarrier{&ctx.Request.Header}))
}

// startWSMessage starts the server span of one WebSocket message's turn: it continues the
// message's own traceparent, else it starts a trace linked to the upgrade request's. With
// tracing off, the function gets the message's trace context as it came, else the upgrade's.
func (r *Router) startWSMessage(t *wsTarget, m *wsRequest, call *actorCall) (context.Context, trace.Span) {
	if r.tracer == nil {
		switch {
		case m.Traceparent != "" && len(m.Traceparent) <= maxTraceparent:
			call.trace = traceHeaders{parent: m.Traceparent}
			if len(m.Tracestate) <= maxTracestate {
				call.trace.state = m.Tracestate
			}
		default:
			call.trace = t.trace
		}
		return context.Background(), nil
	}
	parent := context.Background()
	var opts []trace.SpanStartOption
	if m.Traceparent != "" {
		parent = r.prop.Extract(parent, propagation.MapCarrier{keyTraceparent: m.Traceparent, keyTracestate: m.Tracestate})
	} else if t.traceSpan.IsValid() {
		parent = trace.ContextWithRemoteSpanContext(parent, t.traceSpan)
	}
	if t.traceSpan.IsValid() && m.Traceparent != "" {
		opts = append(opts, trace.WithLinks(trace.Link{SpanContext: t.traceSpan}))
	}
	opts = append(opts, trace.WithSpanKind(trace.SpanKindServer))
	c, span := r.tracer.Start(parent, spanWSMessage, opts...)
	if span.IsRecording() {
		span.SetAttributes(callAttrs(call)...)
		span.SetAttributes(attrRequestID.String(call.requestID), attrTransport.String("websocket"))
	}
	return c, span
}

// endWSMessage ends a WebSocket message's span (nil: tracing off).
func endWSMessage(span trace.Span, res *turnResult, err error) {
	if span == nil {
		return
	}
	if span.IsRecording() && res != nil {
		span.SetAttributes(attrReplayed.Bool(res.replayed))
	}
	endErr(span, err)
	span.End()
}
