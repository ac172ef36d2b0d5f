package router

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel/trace"

	"github.com/knactor/knactor/router/placement"
	"github.com/knactor/knactor/router/record"
	"github.com/knactor/knactor/router/routing"
	"github.com/knactor/knactor/statecache"
)

// Response headers of actor calls.
const (
	// HeaderStateVersion carries the actor's state version after the call.
	HeaderStateVersion = "X-Knactor-State-Version"
	// HeaderPod names the pod that ran the turn.
	HeaderPod = "X-Knactor-Pod"
	// HeaderRememberedKeys, on GET state, is how many idempotency keys the actor remembers.
	HeaderRememberedKeys = "X-Knactor-Remembered-Keys"
	// HeaderTimers, on GET state, is how many timers the actor has (?view=record lists them).
	HeaderTimers = "X-Knactor-Timers"
	// metaHeaderPrefix marks caller headers passed to the function as metadata.
	metaHeaderPrefix = "X-Knactor-Meta-"
)

var (
	contentJSON   = []byte("application/json")
	contentBinary = []byte("application/octet-stream")
	invokePath    = []byte("/v1/invoke")
	wsAction      = "ws"
)

// actorCall is one call of an actor's action, from HTTP, WebSocket or an effect.
type actorCall struct {
	fn        routing.Function
	key       statecache.Key
	action    string
	payload   []byte
	metadata  []metaPair
	requestID string
	// forwarded marks a call another router sent here as the actor's owner: it runs here.
	forwarded bool
	// host is the Host whose route the call came by (Traffic.Host); empty for the function's
	// main route (Traffic.Function).
	host string
	// idemKey is the call's idempotency key ("" for none): a repeat is answered from the
	// actor's record.
	idemKey string
	// timer is the timer this call fires (the scheduler's calls); nil for all others.
	timer *firing
	// channel is set on a broadcast's turn of a subscriber: the turn runs only if the actor
	// still subscribes to it.
	channel string
	// chain lists the actors a chain of forwards and pipes passed through before this call.
	chain []string
	// trace holds the caller's trace headers when the router does not trace itself: the
	// function gets them as they came (tracing.go).
	trace traceHeaders
	// answer is the room the turn's answer (state and reply) is read into, lent by serveInvoke
	// until it has written the reply; nil: the answer is allocated. Only the call's last attempt
	// uses what is in it, and no later turn of a chain (a hop is a call of its own).
	answer []byte
}

// logArgs are the attributes of a log line about the call: its request id, function and actor
// first (docs/observability.md, Logs), then more.
func (c *actorCall) logArgs(more ...any) []any {
	return append([]any{"request_id", c.requestID, "function", c.key.Function, "actor", c.key.ID}, more...)
}

// turnResult is what a committed turn answers.
type turnResult struct {
	reply      []byte
	replyIsRaw bool
	version    statecache.Version
	pod        string
	replayed   bool // answered from the actor's record: the call had committed before
	hop        *hop // the answer hands the call on (forward, pipe): run runs it next
}

// serveActor routes /v1/actors/{function}/{id}[/{action}]. Path segments are percent-decoded;
// an id holding '/' must send it as %2F. host is the Host whose route the call came by, empty
// for the function's main route.
func (r *Router) serveActor(ctx *fasthttp.RequestCtx, a access, rest []byte, host string) {
	var space [3][]byte // rest's segments, without a heap slice for them
	parts, ok := splitSegments(rest, space[:0])
	if !ok || len(parts) < 2 {
		writeError(ctx, errorf(fasthttp.StatusNotFound, CodeNotFound, "want /v1/actors/{function}/{id}[/{action}]; escape '/' in ids as %%2F"))
		return
	}
	fnName, interned := r.names.of(parts[0])
	if err := a.mayUse(fnName); err != nil {
		writeError(ctx, err)
		return
	}
	key, err := actorKey(fnName, parts[1])
	if err != nil {
		writeError(ctx, errorf(fasthttp.StatusBadRequest, CodeBadRequest, "actor id is not valid percent-encoding: %v", err))
		return
	}
	if err := key.Validate(); err != nil {
		writeError(ctx, errorf(fasthttp.StatusBadRequest, CodeBadRequest, "%v", err))
		return
	}
	fn, ok := r.backends.Function(fnName)
	if !ok {
		writeError(ctx, errorf(fasthttp.StatusNotFound, CodeUnknownFunction, "no function %q is deployed", fnName))
		return
	}
	if !interned {
		r.names.add(fnName)
	}
	method := methodName(ctx.Method())
	if len(parts) == 2 {
		switch method {
		case fasthttp.MethodGet, fasthttp.MethodHead:
			r.serveGetState(ctx, fn, key)
		case fasthttp.MethodDelete:
			if err := a.mayWrite(); err != nil {
				writeError(ctx, err)
				return
			}
			r.serveDelete(ctx, fn, key)
		default:
			writeError(ctx, errorf(fasthttp.StatusMethodNotAllowed, CodeMethodNotAllowed, "%s /v1/actors/{function}/{id}: use GET or DELETE", method))
		}
		return
	}
	action := string(parts[2])
	switch {
	case method == fasthttp.MethodGet && action == wsAction:
		r.serveWebSocket(ctx, a, fn, key, host)
	case method != fasthttp.MethodPost:
		writeError(ctx, errorf(fasthttp.StatusMethodNotAllowed, CodeMethodNotAllowed, "%s on an action: use POST (or GET .../ws for a WebSocket)", method))
	case !validAction(action):
		writeError(ctx, errorf(fasthttp.StatusBadRequest, CodeBadRequest, "action %q must be 1-%d characters of [A-Za-z0-9_.-]", action, maxActionLen))
	case a.mayWrite() != nil:
		writeError(ctx, a.mayWrite())
	default:
		r.serveInvoke(ctx, a, fn, key, action, host)
	}
}

func (r *Router) serveInvoke(ctx *fasthttp.RequestCtx, a access, fn routing.Function, key statecache.Key, action, host string) {
	start := ctx.Time() // the server read the clock as the request began: one read less
	// Not ctx: a RequestCtx is cancelled when shutdown begins, and in-flight turns must finish.
	tctx := context.Background()
	var tr serverTrace
	if r.tracer != nil {
		tctx, tr.span = r.startServer(ctx, spanActorCall, routeActorCall)
		defer tr.end(ctx)
	}
	// The payload is the call's only until serveInvoke returns: the turn copies it into the
	// envelope, a forward's record and a peer's request, never keeping it.
	pb := payloadBuffers.Get().(*[]byte)
	defer payloadBuffers.Put(pb)
	payload, err := readLimitedInto(ctx, r.cfg.MaxPayloadBytes, *pb)
	if cap(payload) <= maxPooledPayload {
		*pb = payload[:0]
	}
	if err != nil {
		tr.err = err
		r.metrics.observe(fn.Name, kindActor, statusOf(err), start)
		writeError(ctx, err)
		return
	}
	idemKey := string(ctx.Request.Header.Peek(HeaderIdempotencyKey))
	// Only a peer router's call may say it was forwarded (and so carry a workflow's chain, a
	// channel, or the reserved keys of effects and workflows).
	forwarded := a.peer && len(ctx.Request.Header.Peek(HeaderForwarded)) > 0
	if err := checkIdempotencyKey(idemKey, forwarded); err != nil {
		tr.err = err
		r.metrics.observe(fn.Name, kindActor, statusOf(err), start)
		writeError(ctx, err)
		return
	}
	ab := answerBuffers.Get().(*[]byte)
	defer answerBuffers.Put(ab) // after the reply is written, below
	call := &actorCall{fn: fn, key: key, action: action, payload: payload, requestID: r.requestID(ctx),
		forwarded: forwarded, host: host, idemKey: idemKey, answer: *ab}
	if forwarded {
		call.chain = parseChain(ctx.Request.Header.Peek(HeaderChain))
		call.channel = string(ctx.Request.Header.Peek(HeaderChannel))
	}
	if r.tracer == nil {
		call.trace = peekTraceHeaders(&ctx.Request.Header)
	}
	tr.setCall(call)
	ctx.Request.Header.VisitAll(func(k, v []byte) {
		if name, ok := bytes.CutPrefix(k, []byte(metaHeaderPrefix)); ok && len(name) > 0 {
			if key := string(bytes.ToLower(name)); !reservedMeta(key) {
				call.metadata = append(call.metadata, metaPair{key, string(v)})
			}
		}
	})
	res, err := r.run(tctx, call)
	tr.setResult(res, err)
	if err != nil {
		r.metrics.observe(fn.Name, kindActor, statusOf(err), start)
		writeError(ctx, err)
		return
	}
	ctx.Response.Header.Set(HeaderStateVersion, string(res.version))
	if res.pod != "" {
		ctx.Response.Header.Set(HeaderPod, res.pod)
	}
	if res.replayed {
		ctx.Response.Header.Set(HeaderReplayed, "true")
	}
	if res.replyIsRaw {
		ctx.Response.Header.SetContentTypeBytes(contentBinary)
	} else {
		ctx.Response.Header.SetContentTypeBytes(contentJSON)
	}
	ctx.SetBody(res.reply)
	r.metrics.observe(fn.Name, kindActor, fasthttp.StatusOK, start)
}

// actorKey returns the key of the actor whose id is the percent-encoded path segment seg, with
// its name made (statecache.NamedKey): one allocation for a segment without escapes.
func actorKey(fnName string, seg []byte) (statecache.Key, error) {
	if bytes.IndexByte(seg, '%') < 0 {
		return statecache.NamedKey(fnName, seg), nil
	}
	id, err := url.PathUnescape(string(seg))
	if err != nil {
		return statecache.Key{}, err
	}
	return statecache.NamedKey(fnName, []byte(id)), nil
}

// splitSegments appends the '/'-separated segments of path to parts, up to cap(parts); ok is
// false when there are more.
func splitSegments(path []byte, parts [][]byte) (_ [][]byte, ok bool) {
	for {
		seg, rest, more := bytes.Cut(path, []byte("/"))
		if len(parts) == cap(parts) {
			return parts, false
		}
		parts = append(parts, seg)
		if !more {
			return parts, true
		}
		path = rest
	}
}

// payloadBuffers and answerBuffers hold the buffers actor calls read their payloads and their
// answers (parseCommonAnswer) into. An answer larger than its buffer is allocated.
var (
	payloadBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}
	answerBuffers  = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}
)

// maxPooledPayload bounds the payload buffers kept for reuse, as maxPooledEnvelope does.
const maxPooledPayload = 64 << 10

// send posts the envelope to a pod and validates its answer, whose state and reply go in room
// when they fit (nil: allocated). span is the function call's span (nil with tracing off).
func (r *Router) send(addr string, env *envelope, deadline time.Time, maxState int, span trace.Span, room []byte) (outcome, error) {
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.Header.SetMethod(fasthttp.MethodPost)
	req.URI().SetScheme("http")
	req.URI().SetHost(addr)
	req.URI().SetPathBytes(invokePath)
	req.Header.SetContentTypeBytes(contentJSON)
	for _, m := range env.trace { // for HTTP instrumentations in the pod (otelhttp, ...)
		req.Header.Set(m.key, m.value)
	}
	buf := envelopeBuffers.Get().(*[]byte)
	*buf = env.appendJSON((*buf)[:0])
	req.SetBodyRaw(*buf)
	err := r.client.DoDeadline(req, resp, deadline)
	req.ResetBody() // before the buffer goes back: req no longer refers to it
	if cap(*buf) <= maxPooledEnvelope {
		envelopeBuffers.Put(buf)
	}
	switch {
	case errors.Is(err, fasthttp.ErrTimeout):
		return outcome{}, errorf(fasthttp.StatusGatewayTimeout, CodeFunctionTimeout, "function did not answer before the deadline")
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		return outcome{}, badReply("answer is over the limit of %d bytes", r.cfg.MaxReplyBytes)
	case err != nil:
		return outcome{}, &unreachableError{errorf(fasthttp.StatusBadGateway, CodeFunctionFailed, "calling the function's pod: %v", err), err}
	}
	status := resp.StatusCode()
	setStatusCode(span, status)
	body := resp.Body()
	if status < fasthttp.StatusOK || status >= fasthttp.StatusMultipleChoices {
		// The error form may come with its own status; anything else is a failed function.
		if out, perr := parseAnswer(body, env.function, maxState, r.cfg.MaxEffectsPerTurn, room); perr == nil && out.fnErr != nil && out.fnErr.status == status {
			return out, nil
		}
		return outcome{}, functionFailed(status, body)
	}
	return parseAnswer(body, env.function, maxState, r.cfg.MaxEffectsPerTurn, room)
}

// envelopeBuffers recycles the buffers envelopes are encoded into (a fasthttp request does not
// keep a body given to SetBodyRaw), so a turn allocates none once the router is warm.
var envelopeBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// maxPooledEnvelope bounds the buffers kept for reuse: a rare large state must not pin its
// buffer for ever.
const maxPooledEnvelope = 64 << 10

// maxLostPods bounds how often one call follows its actor to a new owner after the old one
// died under it.
const maxLostPods = 3

// podGoneWait is how long a call whose pod stopped answering waits for the runtime to notice: a
// local process exit is seen at once, a Kubernetes pod in about a second.
const podGoneWait = 2 * time.Second

// errUnreachable marks a call whose pod could not be reached or broke the connection before
// answering. Nothing was committed, so the turn may run again elsewhere.
var errUnreachable = errors.New("pod unreachable")

type unreachableError struct {
	*apiError
	cause error
}

func (e *unreachableError) Unwrap() []error { return []error{e.apiError, errUnreachable, e.cause} }

// awaitPodGone is called after a call could not reach pod. A refused connection means the
// process is gone: wait (up to podGoneWait) for the runtime to take it out of the ready set, so
// the retry goes to the actor's next owner. A connection broken mid-way is retried at once: it
// is often a kept-alive connection to a pod that has since restarted at the same address.
func (r *Router) awaitPodGone(ctx context.Context, function string, pod placement.Pod, err error) {
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return
	}
	changed := r.backends.Changed(function)
	if !r.backends.Ready(function).Contains(pod.Name) {
		return
	}
	select {
	case <-changed:
	case <-r.clock.After(podGoneWait):
	case <-ctx.Done():
	}
}

// serveGetState answers the actor's current state without calling the function; with
// ?view=record, the whole record as JSON: state, version, timers, outbox and channels.
func (r *Router) serveGetState(ctx *fasthttp.RequestCtx, fn routing.Function, key statecache.Key) {
	start := ctx.Time()
	c, cancel := context.WithTimeout(context.Background(), r.cfg.CallTimeout)
	defer cancel()
	view := string(ctx.QueryArgs().Peek("view"))
	e, rec, err := r.loadRecord(c, key)
	switch {
	case err != nil:
	case view != "" && view != "record":
		err = errorf(fasthttp.StatusBadRequest, CodeBadRequest, "view %q: the only view is \"record\"", view)
	case view == "record" && rec.Empty():
		err = errorf(fasthttp.StatusNotFound, CodeActorNotFound, "actor %q of function %q has no state, timers or pending effects", key.ID, key.Function)
	case view == "" && !rec.HasState:
		err = errorf(fasthttp.StatusNotFound, CodeActorNotFound, "actor %q of function %q has no state", key.ID, key.Function)
	}
	if err != nil {
		r.metrics.observe(fn.Name, kindState, statusOf(err), start)
		writeError(ctx, err)
		return
	}
	ctx.Response.Header.Set(HeaderStateVersion, string(e.Version))
	if n := rec.Keys(); n > 0 {
		ctx.Response.Header.Set(HeaderRememberedKeys, strconv.Itoa(n))
	}
	if n := len(rec.Timers()); n > 0 {
		ctx.Response.Header.Set(HeaderTimers, strconv.Itoa(n))
	}
	if view == "record" {
		ctx.Response.Header.SetContentTypeBytes(contentJSON)
		ctx.SetBody(appendRecordView(nil, key, e.Version, &rec))
	} else {
		ctx.Response.Header.SetContentTypeBytes(contentTypeOf(rec.State))
		ctx.SetBody(rec.State)
	}
	r.metrics.observe(fn.Name, kindState, fasthttp.StatusOK, start)
}

// appendRecordView appends the JSON of GET ...?view=record (docs/api.md).
func appendRecordView(b []byte, key statecache.Key, version statecache.Version, rec *record.Record) []byte {
	b = append(b, `{"function":`...)
	b = appendJSONString(b, key.Function)
	b = append(b, `,"actor":`...)
	b = appendJSONString(b, key.ID)
	b = append(b, `,"version":`...)
	b = appendJSONString(b, string(version))
	if rec.HasState {
		b = appendValue(b, "state", rec.State)
	}
	b = append(b, `,"timers":`...)
	b = appendTimers(b, rec.Timers(), true)
	b = append(b, `,"pending_effects":`...)
	b = strconv.AppendInt(b, int64(len(rec.Outbox())), 10)
	b = append(b, `,"channels":`...)
	b = appendStrings(b, rec.Channels())
	b = append(b, `,"remembered_keys":`...)
	b = strconv.AppendInt(b, int64(rec.Keys()), 10)
	return append(b, '}')
}

func contentTypeOf(v []byte) []byte {
	if json.Valid(v) {
		return contentJSON
	}
	return contentBinary
}

// serveDelete deletes the actor's state as a turn, so it never interleaves with a call.
func (r *Router) serveDelete(ctx *fasthttp.RequestCtx, fn routing.Function, key statecache.Key) {
	start := ctx.Time()
	err := r.deleteActor(context.Background(), key)
	if err != nil {
		r.metrics.observe(fn.Name, kindState, statusOf(err), start)
		writeError(ctx, err)
		return
	}
	ctx.SetStatusCode(fasthttp.StatusNoContent)
	r.metrics.observe(fn.Name, kindState, fasthttp.StatusNoContent, start)
}

// deleteActor deletes the actor's state as a turn: its state, timers, channels and idempotency
// keys go (a repeat of an old call runs anew). Effects it asked for and that are not delivered
// yet stay in its outbox until they are.
func (r *Router) deleteActor(parent context.Context, key statecache.Key) error {
	return r.updateRecord(parent, key, func(rec *record.Record) bool {
		if rec.Empty() {
			return false
		}
		outbox := rec.Outbox()
		*rec = record.Record{}
		rec.AddOutgoing(outbox...)
		return true
	})
}

// statusOf is the HTTP status an error answers with.
func statusOf(err error) int { return asAPIError(err).status }
