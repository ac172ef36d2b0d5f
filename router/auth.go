package router

import (
	"bytes"
	"crypto/subtle"
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/valyala/fasthttp"
)

// HeaderPeerToken carries the secret the routers of one actor system share (Config.PeerToken) on
// every call between them. Only a call that carries it may use the internal headers
// (HeaderForwarded, HeaderRouteHost, HeaderChain, HeaderChannel), the reserved idempotency keys
// of effects and workflows, and POST /v1/channels/{channel}/push. It never reaches a function.
const HeaderPeerToken = "X-Knactor-Peer-Token"

// MinPeerTokenLength bounds the shared secret from below: 32 characters of a random token are
// beyond guessing.
const MinPeerTokenLength = 32

// AuthToken is one entry of Config.AuthTokens: a bearer token and what it may do.
//
// An entry is written TOKEN, or TOKEN:SCOPE[;SCOPE...] where a SCOPE is
//   - functions=NAME[+NAME...]: only these functions' actors and pass-through paths (no channel
//     sockets, no /metrics, no /v1/functions), so one team's token cannot call another's actors;
//   - read-only: reads only: an actor's state and record, state subscriptions, GET and HEAD
//     pass-through requests, /metrics and the function list; no turn, delete or deploy.
//
// A token holds no ':', ',' or white space.
type AuthToken struct {
	Token string
	// Functions limits the token to these functions; nil means every function.
	Functions []string
	ReadOnly  bool
}

// ParseAuthToken reads one AuthTokens entry. Errors never quote the token.
func ParseAuthToken(entry string) (AuthToken, error) {
	tok, scopes, scoped := strings.Cut(strings.TrimSpace(entry), ":")
	t := AuthToken{Token: tok}
	if len(tok) < MinAuthTokenLength {
		return t, fmt.Errorf("token is shorter than %d characters", MinAuthTokenLength)
	}
	if strings.ContainsAny(tok, ", \t\r\n") {
		return t, fmt.Errorf("token holds a comma or white space")
	}
	if !scoped {
		return t, nil
	}
	for _, s := range strings.Split(scopes, ";") {
		switch name, value, _ := strings.Cut(strings.TrimSpace(s), "="); name {
		case "read-only":
			if value != "" {
				return t, fmt.Errorf("scope read-only takes no value")
			}
			t.ReadOnly = true
		case "functions":
			if value == "" || t.Functions != nil {
				return t, fmt.Errorf("scope functions= wants one list of function names joined by '+'")
			}
			t.Functions = strings.Split(value, "+")
			for _, fn := range t.Functions {
				if !validFunctionName(fn) {
					return t, fmt.Errorf("scope functions=: %q is not a function name", fn)
				}
			}
		default:
			return t, fmt.Errorf("unknown scope %q: want functions=NAME[+NAME...] or read-only", name)
		}
	}
	return t, nil
}

// validFunctionName accepts a Kubernetes DNS label, the form of a Knative Service's name.
func validFunctionName(s string) bool {
	if len(s) == 0 || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// grant is a parsed AuthToken as the router checks it.
type grant struct {
	token     []byte
	functions []string // nil: every function
	readOnly  bool
}

// access is what the caller of one request may do: a peer router or a public caller with its
// token's grant (nil when the router has no tokens, so everything is allowed).
type access struct {
	peer  bool
	grant *grant
}

var (
	errReadOnly      = errorf(fasthttp.StatusForbidden, CodeForbidden, "this token is read-only: it may read state but not run turns, delete or deploy")
	errNotAllTokens  = errorf(fasthttp.StatusForbidden, CodeForbidden, "this token is limited to some functions: channels, metrics and the function list need a token for every function")
	errBadPeerToken  = errorf(fasthttp.StatusUnauthorized, CodeUnauthorized, "invalid "+HeaderPeerToken)
	errInternalRoute = errorf(fasthttp.StatusForbidden, CodeForbidden, "only the actor system's routers may use this route")
)

// mayUse checks that the caller may reach function fn's actors or pass-through paths.
func (a access) mayUse(fn string) error {
	if a.grant == nil || a.grant.functions == nil || slices.Contains(a.grant.functions, fn) {
		return nil
	}
	return errorf(fasthttp.StatusForbidden, CodeForbidden, "this token may not call function %q (it is limited to %s)", fn, strings.Join(a.grant.functions, ", "))
}

// mayWrite checks that the caller may run turns, delete or deploy.
func (a access) mayWrite() error {
	if a.grant != nil && a.grant.readOnly {
		return errReadOnly
	}
	return nil
}

// mayUseAll checks that the caller is not limited to some functions.
func (a access) mayUseAll() error {
	if a.grant != nil && a.grant.functions != nil {
		return errNotAllTokens
	}
	return nil
}

// authorize tells who sent the request, answering 401 itself when it must be refused. A request
// with HeaderPeerToken is a peer's and needs the right secret; any other needs a bearer token
// when tokens are configured. Every configured secret is compared in constant time, so timing
// tells nothing about them.
func (r *Router) authorize(ctx *fasthttp.RequestCtx) (access, bool) {
	if pt := ctx.Request.Header.Peek(HeaderPeerToken); len(pt) > 0 {
		if len(r.peerToken) == 0 || subtle.ConstantTimeCompare(pt, r.peerToken) != 1 {
			writeError(ctx, errBadPeerToken)
			return access{}, false
		}
		return access{peer: true}, true
	}
	if len(r.grants) == 0 {
		if err := r.guardTokenless(ctx); err != nil {
			writeError(ctx, err)
			return access{}, false
		}
		return access{}, true
	}
	h := ctx.Request.Header.Peek(fasthttp.HeaderAuthorization)
	got, ok := bytes.CutPrefix(h, bearerPrefix)
	match := -1
	for i := range r.grants {
		if subtle.ConstantTimeCompare(got, r.grants[i].token) == 1 {
			match = i
		}
	}
	if !ok || match < 0 {
		writeError(ctx, errBadAuth)
		return access{}, false
	}
	return access{grant: &r.grants[match]}, true
}

// setPeerAuth marks req as a call between routers.
func (r *Router) setPeerAuth(req *fasthttp.Request) {
	req.Header.SetBytesV(HeaderPeerToken, r.peerToken)
	req.Header.Set(HeaderForwarded, "1")
}

// guardTokenless keeps web pages from driving a router that has no tokens (docs/security.md,
// "Browsers"). Any page a browser shows can send it requests: a cross-origin POST of
// text/plain needs no CORS preflight, and DNS rebinding points a page's own host name at
// 127.0.0.1. So a request that a browser sent from another origin (its Origin header) is
// refused unless --allowed-origin lists it, and a router listening on loopback answers only
// loopback host names (and the hosts of its routes), which a rebinding page cannot send.
func (r *Router) guardTokenless(ctx *fasthttp.RequestCtx) error {
	host := ctx.Host()
	if r.listensLoopback.Load() && !loopbackHost(host) && !r.routeHost(host) {
		return errorf(fasthttp.StatusForbidden, CodeForbidden,
			"host %q: a router without tokens on a loopback address answers only 127.0.0.1, localhost and [::1]; set KNACTOR_AUTH_TOKENS to serve other names",
			truncate(string(host), 256))
	}
	if origin := ctx.Request.Header.Peek("Origin"); len(origin) > 0 && !r.originAllowed(origin, host) {
		return errorf(fasthttp.StatusForbidden, CodeForbidden,
			"origin %q may not call a router without tokens: only pages of the router itself may, or those listed with --allowed-origin",
			truncate(string(origin), 256))
	}
	return nil
}

// originAllowed reports whether a browser page of origin may call the router at host.
func (r *Router) originAllowed(origin, host []byte) bool {
	if allowed := r.cfg.AllowedOrigins; len(allowed) > 0 {
		return slices.Contains(allowed, "*") || slices.Contains(allowed, string(origin))
	}
	u, err := url.Parse(string(origin))
	return err == nil && strings.EqualFold(u.Host, string(host))
}

// routeHost reports whether host is the Host of one of the router's routes (Traffic).
func (r *Router) routeHost(host []byte) bool {
	if r.traffic == nil {
		return false
	}
	_, ok := r.traffic.Host(string(host))
	return ok
}

// loopbackHost reports whether host (a Host header: a name or address, maybe with a port)
// names this machine's loopback interface. It runs on every call of a tokenless router on
// loopback (knactor up's default), so the usual names are recognised without allocating.
func loopbackHost(host []byte) bool {
	h := host
	if i := bytes.LastIndexByte(h, ':'); i >= 0 && bytes.IndexByte(h[:i], ':') < 0 {
		h = h[:i] // name:port (one colon: not a bare IPv6 address)
	} else if bytes.HasPrefix(h, []byte("[")) {
		if end := bytes.IndexByte(h, ']'); end > 0 {
			h = h[1:end] // [v6]:port
		}
	}
	switch {
	case bytes.EqualFold(h, []byte("localhost")), string(h) == "::1":
		return true
	case bytes.HasPrefix(h, []byte("127.")) && len(bytes.Trim(h, "0123456789.")) == 0:
		return true
	}
	return isLoopback(strings.ToLower(string(h))) // other spellings of a loopback address
}
