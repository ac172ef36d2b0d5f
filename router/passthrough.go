package router

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"net/url"
	gopath "path"
	"strings"
	"sync"

	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel/trace"

	"github.com/knactor/knactor/activator"
	"github.com/knactor/knactor/router/routing"
)

// hopHeaders are connection-level headers a proxy must not forward (RFC 9110 §7.6.1).
var hopHeaders = [...]string{
	"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization",
	"Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// isHopHeader reports whether name is one of hopHeaders, in any case.
func isHopHeader(name []byte) bool {
	for _, hop := range hopHeaders {
		if len(name) == len(hop) && bytes.EqualFold(name, []byte(hop)) {
			return true
		}
	}
	return false
}

// rawHasHopHeader reports whether raw, a request's header lines as they came (the request line
// left out), holds a hop-by-hop header: one scan of the bytes, where stripHopHeaders looks each
// name up. Most requests hold none, and then nothing is stripped.
func rawHasHopHeader(raw []byte) bool {
	for len(raw) > 0 {
		line := raw
		if i := bytes.IndexByte(raw, '\n'); i >= 0 {
			line, raw = raw[:i], raw[i+1:]
		} else {
			raw = nil
		}
		if name, _, ok := bytes.Cut(line, []byte(":")); ok && isHopHeader(bytes.TrimSpace(name)) {
			return true
		}
	}
	return false
}

// responseHasHopHeader reports whether h holds a hop-by-hop header, in one pass over its headers.
func responseHasHopHeader(h *fasthttp.ResponseHeader) bool {
	for name := range h.All() {
		if isHopHeader(name) {
			return true
		}
	}
	return false
}

// stripHopHeaders deletes the hop-by-hop headers h holds, and the headers its Connection
// header names (RFC 9110 §7.6.1, as net/http/httputil's proxy does). Finding none allocates
// nothing; rawHasHopHeader and responseHasHopHeader tell first, faster, whether there are any.
func stripHopHeaders(h interface {
	Peek(key string) []byte
	Del(key string)
	DelBytes(key []byte)
}) {
	// The names Connection lists first: deleting Connection forgets them.
	for list := h.Peek(fasthttp.HeaderConnection); len(list) > 0; {
		var name []byte
		name, list, _ = bytes.Cut(list, []byte(","))
		if name = bytes.TrimSpace(name); len(name) > 0 && !bytes.EqualFold(name, []byte("close")) &&
			!bytes.EqualFold(name, []byte("keep-alive")) {
			h.DelBytes(name)
		}
	}
	for _, hop := range hopHeaders {
		if len(h.Peek(hop)) > 0 {
			h.Del(hop)
		}
	}
}

// contractPath reports whether a pass-through path (after /v1/functions/{function}/) reaches
// one of the function contract's endpoints, /v1/invoke or /healthz, as the function's HTTP
// server would route it: percent-decoded and cleaned ("%761/invoke", "a/../v1/invoke/",
// "//healthz"). A path that does not decode is treated as one, and refused.
func contractPath(path []byte) bool {
	if !bytes.ContainsAny(path, "%.\\") && !bytes.Contains(path, []byte("//")) {
		p := bytes.TrimRight(path, "/") // the common case, without allocating
		return string(p) == "v1/invoke" || string(p) == "healthz"
	}
	decoded, err := url.PathUnescape(string(path))
	if err != nil {
		return true
	}
	p := strings.TrimPrefix(gopath.Clean("/"+strings.ReplaceAll(decoded, "\\", "/")), "/")
	return p == "v1/invoke" || p == "healthz"
}

// servePassThrough proxies /v1/functions/{function}/{path...} to /{path...} on one of the
// function's ready pods: method, query, headers and body as they came, the request's body
// streamed, and the answer's too unless it is small (passTransport).
// The function's contract endpoints are not reachable this way, so callers cannot forge an
// envelope. host is the Host whose route the request came by, empty for the function's main
// route; the route's split, drawn at random, picks the target (revision) and adds its headers.
// interned says fnName is the router's own copy (names.of), so a known function's is not kept.
func (r *Router) servePassThrough(ctx *fasthttp.RequestCtx, a access, fnName string, interned bool, path []byte, host string) {
	start := ctx.Time() // the server read the clock as the request began: the deadline counts from it
	if err := a.mayUse(fnName); err != nil {
		writeError(ctx, err)
		return
	}
	if !ctx.IsGet() && !ctx.IsHead() {
		if err := a.mayWrite(); err != nil {
			writeError(ctx, err)
			return
		}
	}
	fn, ok := r.backends.Function(fnName)
	if !ok {
		writeError(ctx, errorf(fasthttp.StatusNotFound, CodeUnknownFunction, "no function %q is deployed", fnName))
		return
	}
	if !interned {
		r.names.add(fnName)
	}
	if contractPath(path) {
		r.metrics.observe(fn.Name, kindPassThrough, fasthttp.StatusBadRequest, start)
		writeError(ctx, errorf(fasthttp.StatusBadRequest, CodeBadRequest, "/%s is the function contract's endpoint; call actors through /v1/actors", path))
		return
	}
	var split *routing.Split
	fn = r.target(fn, host, func(rt *routing.Route) *routing.Split { split = rt.Random(); return split })
	inStats := r.stats.Enter(fn.Target(), "")
	defer inStats.End()
	timeout := fn.Timeout
	if timeout <= 0 {
		timeout = r.cfg.CallTimeout
	}
	deadline := start.Add(timeout)
	pctx := context.Background()
	if r.tracer != nil {
		var span trace.Span
		pctx, span = r.startPassThrough(ctx, fn)
		defer endServer(ctx, span, nil)
	}
	claim, err := r.pick(pctx, deadline, fn, activator.LeastLoaded())
	if err != nil {
		r.metrics.observe(fn.Name, kindPassThrough, statusOf(err), start)
		writeError(ctx, err)
		return
	}
	defer claim.Release()
	pod := claim.Pod

	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	ctx.Request.Header.CopyTo(&req.Header)
	if raw := ctx.Request.Header.RawHeaders(); len(raw) == 0 || rawHasHopHeader(raw) {
		stripHopHeaders(&req.Header)
	}
	if len(r.grants) > 0 {
		req.Header.Del(fasthttp.HeaderAuthorization) // knactor's token is not the function's business
	}
	req.Header.Del(HeaderPeerToken) // nor the routers' secret
	var ipBuf [64]byte
	req.Header.SetBytesV("X-Forwarded-For", appendIP(ipBuf[:0], ctx.RemoteIP()))
	req.Header.SetBytesV("X-Forwarded-Host", ctx.Host())
	if r.tracer != nil {
		r.prop.Inject(pctx, headerCarrier{&req.Header}) // the pod continues the router's span
	}
	if split != nil {
		for k, v := range split.Headers {
			req.Header.Set(k, v)
		}
	}
	req.SetRequestURI("/")
	req.URI().SetScheme("http")
	req.URI().SetHost(pod.Addr)
	var pathBuf [256]byte
	req.URI().SetPathBytes(append(append(pathBuf[:0], '/'), path...))
	req.URI().SetQueryStringBytes(ctx.URI().QueryString())
	// A request has a body when it says so: a length, or chunked (-1). Reading a body-less
	// request's stream would wait for the client to close the connection.
	body := clientBodies.Get().(*clientBody)
	defer func() { *body = clientBody{}; clientBodies.Put(body) }() // after req let go of it, below
	if n := ctx.Request.Header.ContentLength(); n > 0 || n == -1 {
		// Wrapped so that releasing req does not release the server's own body stream (a
		// fasthttp stream handed to SetBodyStream is closed and pooled with the request, and the
		// server would release it a second time), and so that a client that does not send its
		// body is told so (408) rather than the function blamed.
		body.r = ctx.RequestBodyStream()
		req.SetBodyStream(body, n)
	}

	resp := fasthttp.AcquireResponse()
	err = r.passClient.DoDeadline(req, resp, deadline)
	req.ResetBody() // the request is sent (or failed): body is ours again
	if err != nil {
		fasthttp.ReleaseResponse(resp)
		ae := errorf(fasthttp.StatusBadGateway, CodeFunctionFailed, "calling the function's pod: %v", err)
		if err == fasthttp.ErrTimeout {
			ae = errorf(fasthttp.StatusGatewayTimeout, CodeFunctionTimeout, "function did not answer within %v", timeout)
		}
		if body.err != nil {
			ae = bodyReadError(ctx, body.err)
		}
		r.metrics.observe(fn.Name, kindPassThrough, ae.status, start)
		writeError(ctx, ae)
		return
	}
	resp.Header.CopyTo(&ctx.Response.Header)
	if responseHasHopHeader(&resp.Header) {
		stripHopHeaders(&ctx.Response.Header)
	}
	status := resp.StatusCode()
	ctx.SetStatusCode(status)
	if resp.IsBodyStream() {
		sb := streamedBodies.Get().(*streamedBody)
		sb.resp = resp
		ctx.Response.SetBodyStream(sb, resp.Header.ContentLength())
	} else {
		ctx.SetBody(resp.Body())
		fasthttp.ReleaseResponse(resp)
	}
	r.metrics.observe(fn.Name, kindPassThrough, status, start)
}

// streamedBody relays a pod's response body and releases the response once fasthttp has
// written it (fasthttp closes a body stream that is an io.Closer).
type streamedBody struct {
	resp *fasthttp.Response
}

func (b *streamedBody) Read(p []byte) (int, error) { return b.resp.BodyStream().Read(p) }

func (b *streamedBody) Close() error {
	err := b.resp.CloseBodyStream()
	fasthttp.ReleaseResponse(b.resp)
	b.resp = nil
	streamedBodies.Put(b) // fasthttp closes a body stream once, when it is done with it
	return err
}

// clientBodies and streamedBodies recycle the wrappers of a pass-through's bodies.
var (
	clientBodies   = sync.Pool{New: func() any { return new(clientBody) }}
	streamedBodies = sync.Pool{New: func() any { return new(streamedBody) }}
)

// appendIP appends ip's text form (an IPv4-mapped address as IPv4) without allocating.
func appendIP(b []byte, ip net.IP) []byte {
	addr, ok := netip.AddrFromSlice(ip)
	if !ok {
		return b
	}
	return addr.Unmap().AppendTo(b)
}
