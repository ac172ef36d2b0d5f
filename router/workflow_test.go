package router

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/knactor/knactor/router/routing"
	"github.com/knactor/knactor/sdk"
	"github.com/knactor/knactor/test/proctest"
)

// member is a test function for workflows: hops along a route, subscribes, shouts to a channel
// and counts what it hears.
type member struct {
	*sdk.Actor[memberState]
	heard atomic.Int64
}

type memberState struct {
	Heard int `json:"heard"`
	Sum   int `json:"sum"`
}

type route struct {
	By    int          `json:"by"`
	Route []sdk.Target `json:"route"`
}

func newMember() *member {
	m := &member{Actor: sdk.NewActor[memberState]()}
	sdk.Handle(m.Actor, "pipe", func(_ context.Context, t *sdk.Turn[memberState], p route) (route, error) {
		t.Pipe(p.Route[0])
		return route{By: p.By, Route: p.Route[1:]}, nil
	})
	sdk.Handle(m.Actor, "forward", func(_ context.Context, t *sdk.Turn[memberState], p route) (int, error) {
		t.Forward(p.Route[0])
		return 0, nil
	})
	sdk.Handle(m.Actor, "add", func(_ context.Context, t *sdk.Turn[memberState], p route) (int, error) {
		t.State.Sum += p.By
		return t.State.Sum, nil
	})
	// relay forwards to the next actor of an endless line: r0 → r1 → r2 → ...
	sdk.Handle(m.Actor, "relay", func(_ context.Context, t *sdk.Turn[memberState], _ struct{}) (int, error) {
		n, _ := strconv.Atoi(t.Actor[1:])
		t.Forward(sdk.Target{Actor: "r" + strconv.Itoa(n+1), Action: "relay"})
		return 0, nil
	})
	sdk.Handle(m.Actor, "join", func(_ context.Context, t *sdk.Turn[memberState], ch string) (int, error) {
		t.Subscribe(ch)
		return len(t.Channels()), nil
	})
	sdk.Handle(m.Actor, "leave", func(_ context.Context, t *sdk.Turn[memberState], ch string) (int, error) {
		t.Unsubscribe(ch)
		return 0, nil
	})
	sdk.Handle(m.Actor, "shout", func(_ context.Context, t *sdk.Turn[memberState], ch string) (int, error) {
		t.Broadcast(sdk.Broadcast{Channel: ch, Action: "hear", Payload: map[string]string{"from": t.Actor}})
		return 0, nil
	})
	sdk.Handle(m.Actor, "hear", func(_ context.Context, t *sdk.Turn[memberState], p struct{ From string }) (int, error) {
		if t.Metadata["channel"] == "" || p.From == "" {
			return 0, sdk.Errorf(400, "bad_broadcast", "metadata %v", t.Metadata)
		}
		m.heard.Add(1)
		t.State.Heard++
		return t.State.Heard, nil
	})
	return m
}

func TestChainsOfForwardsAndPipes(t *testing.T) {
	h := newHarness(t, Config{})
	h.deploy(routing.Function{Name: "m1"}, newMember())
	h.deploy(routing.Function{Name: "m2"}, newMember())
	h.deploy(routing.Function{Name: "m3"}, newMember())
	chain := `{"by":2,"route":[{"function":"m2","actor":"b","action":"forward"},{"function":"m3","actor":"c","action":"add"}]}`
	tests := []struct {
		name, path, body string
		header           []string
		status           int
		want             string
	}{
		{"pipe then forward", "/v1/actors/m1/a/pipe", chain, nil, 200, "2"},
		{"keyed", "/v1/actors/m1/a/pipe", chain, withKey("k1"), 200, "4"},
		{"keyed repeat follows the chain, applies nothing", "/v1/actors/m1/a/pipe", chain, withKey("k1"), 200, "4"},
		{"cycle", "/v1/actors/m2/b/forward", `{"route":[{"function":"m2","actor":"b","action":"forward"}]}`, nil, 508, ""},
		{"too long", "/v1/actors/m1/r0/relay", `{}`, nil, 508, ""},
		{"unknown function", "/v1/actors/m1/a/forward", `{"route":[{"function":"nope","actor":"x","action":"add"}]}`, nil, 404, ""},
		{"callers cannot use flow keys", "/v1/actors/m1/a/pipe", chain, withKey("flow:x"), 400, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rp := h.do("POST", tt.path, tt.body, tt.header...)
			rp.want(t, tt.status, tt.want)
		})
	}
	// The chain that was too long stopped after MaxHops hops: r0 .. r8 ran, nothing further.
	v := h.do("GET", "/v1/actors/m3/c?view=record", "")
	v.want(t, 200, "")
}

func TestBroadcastRunsOnceOnEverySubscriber(t *testing.T) {
	h := newHarness(t, Config{})
	m := newMember()
	h.deploy(routing.Function{Name: "m1"}, m)
	const n = 50
	for i := range n {
		h.do("POST", fmt.Sprintf("/v1/actors/m1/s%d/join", i), `"room"`).want(t, 200, "0")
	}
	h.do("POST", "/v1/actors/m1/s0/leave", `"room"`).want(t, 200, "0")
	ws := dialWS(t, h, "/v1/channels/room/ws", nil)
	h.do("POST", "/v1/actors/m1/boss/shout", `"room"`).want(t, 200, "0")
	msg := readJSON(t, ws)
	if msg["event"] != "broadcast" || msg["channel"] != "room" || msg["action"] != "hear" {
		t.Fatalf("pushed %v", msg)
	}
	proctest.Eventually(t, "every subscriber heard it", func() bool { return m.heard.Load() >= n-1 })
	proctest.Eventually(t, "the outbox is empty", func() bool {
		rp := h.do("GET", "/v1/actors/m1/boss?view=record", "")
		return rp.status == 404 // no state, nothing pending: nothing left of it
	})
	if got := m.heard.Load(); got != n-1 {
		t.Fatalf("heard %d times, want %d (one per subscriber; s0 left)", got, n-1)
	}
	h.do("GET", "/v1/actors/m1/s0", "").want(t, 404, "")
	h.do("GET", "/v1/actors/m1/s1", "").want(t, 200, `{"heard":1,"sum":0}`)
	// A channel socket only listens.
	if err := ws.WriteMessage(1, []byte(`{"id":1,"action":"x"}`)); err != nil {
		t.Fatal(err)
	}
	if m := readJSON(t, ws); m["error"] == nil {
		t.Fatalf("a message on a channel socket: %v, want an error", m)
	}
}

// peerList is a Peers under which this router owns every actor and knows other routers.
type peerList []string

func (peerList) Owner(string) (string, bool) { return "", false }
func (p peerList) Others() []string          { return p }

// A broadcast's WebSocket push reaches the channel's clients on the other routers too.
func TestBroadcastPushReachesClientsOfOtherRouters(t *testing.T) {
	store := localStore(t)
	other := newHarnessOn(t, peerConfig, store)
	h := newHarnessOn(t, peerConfig, store, func(o *Options) {
		o.Peers = peerList{strings.TrimPrefix(other.url, "http://")}
	})
	h.deploy(routing.Function{Name: "m1"}, newMember())
	here, there := dialWS(t, h, "/v1/channels/room/ws", nil), dialWS(t, other, "/v1/channels/room/ws", nil)
	h.do("POST", "/v1/actors/m1/boss/shout", `"room"`).want(t, 200, "0")
	for name, ws := range map[string]*websocket.Conn{"this router": here, "the other router": there} {
		if m := readJSON(t, ws); m["event"] != "broadcast" || m["channel"] != "room" {
			t.Fatalf("%s's client got %v", name, m)
		}
	}
	// Only routers push: a caller without the routers' secret gets 403, forwarded mark or not.
	other.do("POST", "/v1/channels/room/push", `{"event":"broadcast"}`).want(t, 403, "")
	other.do("POST", "/v1/channels/room/push", `{"event":"broadcast"}`, HeaderForwarded, "1").want(t, 403, "")
}
