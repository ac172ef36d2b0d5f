package router

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
)

// peersFunc is a Peers whose owner is decided by a function.
type peersFunc func(key string) (string, bool)

func (f peersFunc) Owner(key string) (string, bool) { return f(key) }

// Two routers on one store: every call to the first is forwarded to the second, the actor's
// owner, so turns never race across routers (no conflicts, one call at a time) and the count is
// exact; the first router counts none of them in its statistics.
func TestForwardToOwnerRouter(t *testing.T) {
	store := localStore(t)
	owner := newHarnessOn(t, peerConfig, store)
	addr := strings.TrimPrefix(owner.url, "http://")
	front := newHarnessOn(t, peerConfig, store, func(o *Options) {
		o.Peers = peersFunc(func(string) (string, bool) { return addr, true })
	})
	a := newTestActor()
	fn := Function{Name: "counter"}
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
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	store := localStore(t)
	h := newHarnessOn(t, peerConfig, store, func(o *Options) {
		o.Peers = peersFunc(func(string) (string, bool) { return dead, true })
	})
	h.deploy(Function{Name: "counter"}, newTestActor())
	h.do("POST", "/v1/actors/counter/a/add", `{"by":2}`).want(t, 200, `{"value":2}`)
}
