package router

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/knactor/knactor/statecache"
	"github.com/knactor/knactor/test/proctest"
)

// peerTable is the routers of one actor system as each of them sees it: routers are numbered in
// the order they start, and owner says which number owns an actor. Each router's view is a
// routing.PeerWatcher, told when a router joins.
type peerTable struct {
	mu      sync.Mutex
	addrs   []string
	changed []chan struct{}
	owner   map[string]int // actor key → its owner's number; 0 when not named
}

// join starts router number len(addrs) on store, deploys the counter on it and adds it to the
// table. The routers' clock never moves: the relay's periodic look at the routers never comes,
// so their links are made at start or when told of a change.
func (pt *peerTable) join(t *testing.T, store statecache.Store) *harness {
	t.Helper()
	pt.mu.Lock()
	self := len(pt.addrs)
	pt.addrs = append(pt.addrs, "")
	pt.changed = append(pt.changed, make(chan struct{}, 1))
	pt.mu.Unlock()
	h := newHarnessOn(t, peerConfig, store, func(o *Options) {
		o.Peers = peerView{pt, self}
		o.Clock = clocktesting.NewFakeClock(time.Now())
	})
	h.deploy(counterFn, newTestActor())
	pt.mu.Lock()
	pt.addrs[self] = strings.TrimPrefix(h.url, "http://")
	for i, ch := range pt.changed {
		if i != self {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}
	pt.mu.Unlock()
	return h
}

// peerView is router self's routing.PeerWatcher over the table.
type peerView struct {
	t    *peerTable
	self int
}

func (v peerView) Owner(key string) (string, bool) {
	v.t.mu.Lock()
	defer v.t.mu.Unlock()
	i := v.t.owner[key]
	if i == v.self || v.t.addrs[i] == "" {
		return "", false
	}
	return v.t.addrs[i], true
}

func (v peerView) Changed() <-chan struct{} {
	v.t.mu.Lock()
	defer v.t.mu.Unlock()
	return v.t.changed[v.self]
}

func (v peerView) Others() []string {
	v.t.mu.Lock()
	defer v.t.mu.Unlock()
	var out []string
	for i, a := range v.t.addrs {
		if i != v.self && a != "" {
			out = append(out, a)
		}
	}
	return out
}

// wantStates reads n state pushes from c and checks they count from first up, in order.
func wantStates(t *testing.T, who string, c *websocket.Conn, first, n int) {
	t.Helper()
	for v := first; v < first+n; v++ {
		m := readJSON(t, c)
		st, _ := m["state"].(map[string]any)
		if m["event"] != "state" || st["value"] != float64(v) {
			t.Fatalf("%s: push %d is %v, want the state {\"value\":%d}", who, v-first+1, m, v)
		}
	}
}

// A subscriber gets every committed change of its actor whichever router commits it (issue 16,
// point 9: commits made on the owner router never reached subscribers connected to another):
// calls through either router commit on the owner, and the subscribers on both routers see every
// change once, in order; a router that joins later relays its commits too (the others link to it
// as soon as they are told of it); and a subscriber that leaves takes its interest with it.
func TestSubscribersGetCommitsMadeOnAnyRouter(t *testing.T) {
	store := localStore(t)
	pt := &peerTable{owner: map[string]int{"counter/x": 0, "counter/y": 1, "counter/z": 2}}
	a, b := pt.join(t, store), pt.join(t, store)
	links := func(n int, hs ...*harness) func() bool {
		return func() bool {
			for _, h := range hs {
				if h.r.hub.relay.connected() != n {
					return false
				}
			}
			return true
		}
	}
	proctest.Eventually(t, "the two routers' relay links are up", links(1, a, b))

	// x is a's, y is b's: each has a subscriber on both routers.
	for _, id := range []string{"x", "y"} {
		onA := dialWS(t, a, "/v1/actors/counter/"+id+"/ws?subscribe=1", nil)
		onB := dialWS(t, b, "/v1/actors/counter/"+id+"/ws?subscribe=1", nil)
		const calls = 20
		for i := range calls {
			h := []*harness{a, b}[i%2]
			h.do("POST", "/v1/actors/counter/"+id+"/add", `{"by":1}`).want(t, 200, fmt.Sprintf(`{"value":%d}`, i+1))
		}
		wantStates(t, id+"'s subscriber on router a", onA, 1, calls)
		wantStates(t, id+"'s subscriber on router b", onB, 1, calls)
	}

	// A third router joins and owns z: a's subscriber gets z's changes once a's link to it is up.
	onA := dialWS(t, a, "/v1/actors/counter/z/ws?subscribe=1", nil)
	c := pt.join(t, store)
	proctest.Eventually(t, "every router's links to the two others are up", links(2, a, b, c))
	for i := range 5 {
		b.do("POST", "/v1/actors/counter/z/add", `{"by":1}`).want(t, 200, fmt.Sprintf(`{"value":%d}`, i+1))
	}
	wantStates(t, "z's subscriber on router a", onA, 1, 5)

	// The subscriber leaves: the other routers forget a's interest in z.
	onA.Close()
	interested := func(h *harness, key string) bool {
		h.r.hub.mu.Lock()
		defer h.r.hub.mu.Unlock()
		return len(h.r.hub.relays[key]) > 0
	}
	proctest.Eventually(t, "the routers forget the interest of a subscriber that left",
		func() bool { return !interested(c, "counter/z") && !interested(b, "counter/z") })
}

// The relay route is the routers' own: a caller without the shared secret cannot open a link,
// and a link that names something other than an actor is closed.
func TestRelayLinkIsForRoutersOnly(t *testing.T) {
	h := newHarness(t, peerConfig)
	url := "ws" + strings.TrimPrefix(h.url, "http") + relayPathString
	for _, tc := range []struct {
		name   string
		header http.Header
		status int
	}{
		{"no secret", nil, http.StatusForbidden},
		{"wrong secret", http.Header{HeaderPeerToken: {strings.Repeat("x", 36)}}, http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, resp, err := websocket.DefaultDialer.Dial(url, tc.header)
			if err == nil || resp == nil || resp.StatusCode != tc.status {
				t.Fatalf("dial: %v, %v; want HTTP %d", err, resp, tc.status)
			}
		})
	}
	conn, _, err := websocket.DefaultDialer.Dial(url, http.Header{HeaderPeerToken: {peerConfig.PeerToken}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.WriteJSON(relayInterest{Seq: 1, Add: []string{"counter/ok"}}); err != nil {
		t.Fatal(err)
	}
	if m := readJSON(t, conn); m["ack"] != 1.0 {
		t.Fatalf("answer to an interest message: %v, want {\"ack\":1}", m)
	}
	if err := conn.WriteJSON(relayInterest{Seq: 2, Add: []string{"Not_A_Function/x"}}); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, _, err = conn.ReadMessage()
	if !websocket.IsCloseError(err, websocket.ClosePolicyViolation) {
		t.Fatalf("after a bad key the link reads %v, want a 1008 close", err)
	}
}
