package router

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/knactor/knactor/router/routing"
	"github.com/knactor/knactor/test/proctest"
)

// peersFunc is a Peers whose owner is decided by a function.
type peersFunc func(key string) (string, bool)

func (f peersFunc) Owner(key string) (string, bool) { return f(key) }

// forwardingPair starts two routers on one store: front forwards every actor call to owner, its
// owner router, with the routers' shared secret (peerConfig).
func forwardingPair(t *testing.T, options ...func(*Options)) (owner, front *harness) {
	t.Helper()
	store := localStore(t)
	owner = newHarnessOn(t, peerConfig, store, options...)
	addr := strings.TrimPrefix(owner.url, "http://")
	front = newHarnessOn(t, peerConfig, store, append(options, func(o *Options) {
		o.Peers = peersFunc(func(string) (string, bool) { return addr, true })
	})...)
	return owner, front
}

// Two routers on one store: every call to the first is forwarded to the second, the actor's
// owner, so turns never race across routers (no conflicts, one call at a time) and the count is
// exact; the first router counts none of them in its statistics.
func TestForwardToOwnerRouter(t *testing.T) {
	owner, front := forwardingPair(t)
	a := newTestActor()
	fn := routing.Function{Name: "counter"}
	owner.deploy(fn, a)
	front.deploy(fn, a)

	const callers, calls = 8, 25
	var wg sync.WaitGroup
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h := []*harness{owner, front}[i%2]
			for range calls {
				rp := h.do("POST", "/v1/actors/counter/shared/slow-add", `{"by":1,"ms":1}`, "X-Knactor-Meta-Tenant", "t1")
				if rp.status != 200 {
					t.Errorf("call via %s: %d %s", h.url, rp.status, rp.body)
					return
				}
			}
		}()
	}
	wg.Wait()
	front.do("POST", "/v1/actors/counter/shared/get", `{}`).want(t, 200, fmt.Sprintf(`{"value":%d}`, callers*calls))
	if m := a.maxRunning.Load(); m != 1 {
		t.Errorf("%d turns of one actor ran at once across the two routers, want 1", m)
	}
	if fns := front.r.Stats().Functions(); len(fns) != 0 {
		t.Errorf("the forwarding router counted forwarded calls in its statistics: %v", fns)
	}
}

// An owner that cannot be reached before anything is sent (connection refused) is not fatal:
// the turn runs on the router that has the call, and conditional writes keep it safe.
func TestForwardFallsBackWhenOwnerRefuses(t *testing.T) {
	dead := proctest.ClosedAddr(t)
	store := localStore(t)
	h := newHarnessOn(t, peerConfig, store, func(o *Options) {
		o.Peers = peersFunc(func(string) (string, bool) { return dead, true })
	})
	h.deploy(routing.Function{Name: "counter"}, newTestActor())
	h.do("POST", "/v1/actors/counter/a/add", `{"by":2}`).want(t, 200, `{"value":2}`)
}

// Ids that URL parsers like to rewrite reach the owner router byte for byte: the call forwarded
// through a peer lands on exactly the actor the caller named, never on another actor or path
// (issue 16, point 3: the peer client normalized paths, so "a/b" became two segments and
// "x/../../../functions/hello/hi" a pass-through call sent with the router's credentials).
func TestForwardingKeepsTrickyIDsExact(t *testing.T) {
	owner, front := forwardingPair(t)
	fn := routing.Function{Name: "counter"}
	owner.deploy(fn, newTestActor())
	front.deploy(fn, newTestActor())
	var hits atomic.Int64 // calls that reached another function's pod
	owner.deploy(routing.Function{Name: "hello"}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	front.deploy(routing.Function{Name: "hello"}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))

	ids := []string{
		"a/b", "a//b", "/lead", "trail/", "x/../../../functions/hello/hi", "../functions/hello/hi", "a/./b",
		"..x", "x..", "%2F", "%252F", "a%b", "a?b=c", "a#frag", "a;b", "a b", "ü/ß", "a\\b", "+plus",
	}
	for _, id := range ids {
		path := "/v1/actors/counter/" + url.PathEscape(id)
		front.do("POST", path+"/add", `{"by":1}`).want(t, 200, `{"value":1}`)
		// The owner, asked directly, holds the count under exactly that id.
		if rp := owner.do("GET", path, ""); rp.status != 200 || rp.body != `{"value":1}` {
			t.Errorf("id %q: the owner's state is %d %s, want {\"value\":1}", id, rp.status, rp.body)
		}
	}
	for _, action := range []string{".", ".."} {
		front.do("POST", "/v1/actors/counter/z/"+action, `{}`).want(t, 400, "")
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("%d forwarded calls reached another function's pod", n)
	}
}
