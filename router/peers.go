package router

import (
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"strings"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/knactor/knactor/statecache"
)

// HeaderForwarded marks a call one router forwarded to the actor's owner. The owner runs it
// whatever its own view of the routers is, so calls never bounce between routers that
// momentarily disagree about an owner; the store's conditional writes keep such a moment safe.
const HeaderForwarded = "X-Knactor-Forwarded"

// HeaderRouteHost, on a forwarded call, names the Host whose route the call came by (a Knative
// Service's URL or a tag's), so the owner picks the actor's target from the same route.
const HeaderRouteHost = "X-Knactor-Route-Host"

// forwardable errors: the peer could not be reached before the call was sent, so running the
// turn here instead cannot run it twice.
func forwardable(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, fasthttp.ErrNoFreeConns) ||
		errors.Is(err, fasthttp.ErrDialTimeout)
}

// newPeerClient returns the client that forwards calls to owner routers. It never re-sends: a
// forwarded call may have committed on the owner before its connection broke.
func newPeerClient(cfg Config) *fasthttp.Client {
	return &fasthttp.Client{
		Name:                      "knactor-router",
		NoDefaultUserAgentHeader:  true,
		MaxConnsPerHost:           1024,
		MaxConnWaitTimeout:        time.Second,
		MaxIdleConnDuration:       30 * time.Second,
		MaxResponseBodySize:       cfg.MaxReplyBytes + 4<<10,
		ReadBufferSize:            16 << 10,
		MaxIdemponentCallAttempts: 1,
		RetryIfErr:                func(*fasthttp.Request, int, error) (bool, bool) { return false, false },
		// The path names an actor: it must reach the owner byte for byte. Normalizing would
		// decode an id's %2F into a separator and collapse "..", turning an actor call into a
		// call of another path, sent with this router's credentials.
		DisablePathNormalizing: true,
	}
}

// forward runs call on the router at addr. handled is false when the peer could not be reached
// before anything was sent: the caller then runs the turn itself.
func (r *Router) forward(ctx context.Context, addr string, call *actorCall, deadline time.Time) (res *turnResult, handled bool, err error) {
	ctx, span := r.startForward(ctx, call, addr)
	if span != nil {
		defer func() { endForward(span, handled, err) }()
	}
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://" + addr + "/v1/actors/" + url.PathEscape(call.key.Function) + "/" +
		url.PathEscape(call.key.ID) + "/" + call.action)
	req.Header.SetMethod(fasthttp.MethodPost)
	req.Header.SetContentTypeBytes(contentJSON)
	r.setPeerAuth(req)
	if call.host != "" {
		req.Header.Set(HeaderRouteHost, call.host)
	}
	req.Header.Set("X-Request-Id", call.requestID)
	r.injectHeaders(ctx, &call.trace, &req.Header) // one trace spans both routers
	if call.idemKey != "" {
		// The owner runs the turn, so it records the key (and answers a repeat from it).
		req.Header.Set(HeaderIdempotencyKey, call.idemKey)
	}
	if len(call.chain) > 0 {
		req.Header.Set(HeaderChain, strings.Join(call.chain, ","))
	}
	if call.channel != "" {
		req.Header.Set(HeaderChannel, call.channel)
	}
	for _, m := range call.metadata {
		req.Header.Set(metaHeaderPrefix+m.key, m.value)
	}
	req.SetBody(call.payload)
	if err := r.peerClient.DoDeadline(req, resp, deadline); err != nil {
		if forwardable(err) {
			r.log.Debug("owner router unreachable: running the turn here", call.logArgs("owner", addr, "err", err)...)
			return nil, false, nil
		}
		if errors.Is(err, fasthttp.ErrTimeout) || ctx.Err() != nil {
			return nil, true, errorf(fasthttp.StatusGatewayTimeout, CodeFunctionTimeout, "the actor's owner router %s did not answer in time; the call may or may not have run", addr)
		}
		return nil, true, errorf(fasthttp.StatusBadGateway, CodeFunctionFailed, "forwarding to the actor's owner router %s failed; the call may or may not have run: %v", addr, err)
	}
	setStatusCode(span, resp.StatusCode())
	if resp.StatusCode() != fasthttp.StatusOK {
		var body struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		if json.Unmarshal(resp.Body(), &body) != nil || body.Error.Code == "" {
			return nil, true, errorf(fasthttp.StatusBadGateway, CodeFunctionFailed, "the actor's owner router %s answered %d", addr, resp.StatusCode())
		}
		return nil, true, errorf(resp.StatusCode(), body.Error.Code, "%s", body.Error.Message)
	}
	return &turnResult{
		reply:      append([]byte(nil), resp.Body()...),
		replyIsRaw: string(resp.Header.ContentType()) == string(contentBinary),
		version:    statecache.Version(resp.Header.Peek(HeaderStateVersion)),
		pod:        string(resp.Header.Peek(HeaderPod)),
		replayed:   len(resp.Header.Peek(HeaderReplayed)) > 0,
	}, true, nil
}
