package main

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/knactor/knactor/router"
	"github.com/knactor/knactor/router/placement"
	"github.com/knactor/knactor/router/routing"
	"github.com/knactor/knactor/statecache"
)

// TestWebSocketRoom runs the flow of the package doc through a real router (in process, with
// state in a temporary directory) and the chat actor as its pod: two members on subscribed
// sockets, each sees the other's messages pushed as state events.
func TestWebSocketRoom(t *testing.T) {
	base := startRouter(t)
	ann := dial(t, base+"/v1/actors/chat/lobby/ws?subscribe=1")
	bob := dial(t, base+"/v1/actors/chat/lobby/ws?subscribe=1")

	// ann joins: she gets the push of the new state and her reply; bob gets the push.
	send(t, ann, `{"id":1,"action":"join","payload":{"name":"ann"}}`)
	if got := string(awaitReply(t, ann, "1")["reply"]); got != `{"members":["ann"]}` {
		t.Errorf("join reply = %s", got)
	}
	awaitState(t, bob, func(s State) bool { return slices.Contains(s.Members, "ann") })

	send(t, bob, `{"id":"b1","action":"join","payload":{"name":"bob"}}`)
	if got := string(awaitReply(t, bob, `"b1"`)["reply"]); got != `{"members":["ann","bob"]}` {
		t.Errorf("join reply = %s", got)
	}

	// ann says something: both sockets receive the room's state with her message last (ann's
	// push may come before or after her reply).
	send(t, ann, `{"id":2,"action":"say","payload":{"from":"ann","text":"hi bob"}}`)
	reply, pushes := awaitReplyPushes(t, ann, "2")
	if got := string(reply["reply"]); got != `{"seq":1}` {
		t.Errorf("say reply = %s", got)
	}
	hasMessage := func(s State) bool { return len(s.Messages) > 0 }
	if !slices.ContainsFunc(pushes, hasMessage) {
		pushes = append(pushes, awaitState(t, ann, hasMessage))
	}
	want := Message{From: "ann", Text: "hi bob", Seq: 1}
	for name, st := range map[string]State{"ann": pushes[len(pushes)-1], "bob": awaitState(t, bob, hasMessage)} {
		if last := st.Messages[len(st.Messages)-1]; last != want {
			t.Errorf("%s's push ends with %+v, want %+v", name, last, want)
		}
	}

	// A non-member is refused on the socket, with the turn's id; history answers. Neither
	// changes the room, so neither pushes anything.
	send(t, bob, `{"id":"b2","action":"say","payload":{"from":"eve","text":"hi"}}`)
	send(t, bob, `{"id":"b3","action":"history","payload":{"since":0}}`)
	e, pushes := awaitReplyPushes(t, bob, `"b2"`)
	if got := string(e["error"]); !strings.Contains(got, `"status":403`) || !strings.Contains(got, `"code":"not_a_member"`) {
		t.Errorf("say from eve = %s, want 403 not_a_member", got)
	}
	h, more := awaitReplyPushes(t, bob, `"b3"`)
	if got := string(h["reply"]); got != `{"messages":[{"from":"ann","text":"hi bob","seq":1}]}` {
		t.Errorf("history reply = %s", got)
	}
	if n := len(pushes) + len(more); n > 0 {
		t.Errorf("%d state pushes after a refused say and a history, want none", n)
	}
}

// startRouter starts a router in process with the chat actor deployed as function "chat" on
// one pod, and returns its ws:// base URL.
func startRouter(t *testing.T) string {
	t.Helper()
	pod := httptest.NewServer(newActor())
	t.Cleanup(pod.Close)
	store, err := statecache.OpenDirStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cache, err := statecache.NewCache(store, statecache.Config{})
	if err != nil {
		t.Fatal(err)
	}
	backends := routing.NewStatic()
	addr := strings.TrimPrefix(pod.URL, "http://")
	backends.Set(routing.Function{Name: "chat"}, placement.Pod{Name: addr, Addr: addr})
	r, err := router.New(router.Config{}, router.Options{Backends: backends, State: cache})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- r.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := errors.Join(r.Shutdown(ctx), <-served, cache.Close(ctx), store.Close()); err != nil {
			t.Errorf("router shutdown: %v", err)
		}
	})
	return "ws://" + ln.Addr().String()
}

// dial opens a WebSocket to url, closed when the test ends.
func dial(t *testing.T, url string) *websocket.Conn {
	t.Helper()
	c, resp, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	resp.Body.Close()
	t.Cleanup(func() { c.Close() })
	return c
}

// send sends one text message.
func send(t *testing.T, c *websocket.Conn, msg string) {
	t.Helper()
	if err := c.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
		t.Fatal(err)
	}
}

// next reads the next message from c as a JSON object.
func next(t *testing.T, c *websocket.Conn) map[string]json.RawMessage {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, data, err := c.ReadMessage()
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("message %s: %v", data, err)
	}
	return m
}

// awaitReply reads from c until the answer to the turn with the given JSON id, skipping pushes.
func awaitReply(t *testing.T, c *websocket.Conn, id string) map[string]json.RawMessage {
	t.Helper()
	m, _ := awaitReplyPushes(t, c, id)
	return m
}

// awaitReplyPushes reads from c until the answer to the turn with the given JSON id and returns
// it with the rooms of the state pushes read on the way.
func awaitReplyPushes(t *testing.T, c *websocket.Conn, id string) (map[string]json.RawMessage, []State) {
	t.Helper()
	var pushes []State
	for {
		m := next(t, c)
		if _, push := m["event"]; !push {
			if string(m["id"]) == id {
				return m, pushes
			}
			continue
		}
		if string(m["event"]) == `"state"` {
			var s State
			if err := json.Unmarshal(m["state"], &s); err != nil {
				t.Fatalf("state push %s: %v", m["state"], err)
			}
			pushes = append(pushes, s)
		}
	}
}

// awaitState reads from c until a state push whose room passes every check, skipping replies.
func awaitState(t *testing.T, c *websocket.Conn, checks ...func(State) bool) State {
	t.Helper()
next:
	for {
		m := next(t, c)
		if string(m["event"]) != `"state"` {
			continue
		}
		if len(m["version"]) < 3 { // a non-empty JSON string
			t.Errorf("state push without a version: %v", m)
		}
		var s State
		if err := json.Unmarshal(m["state"], &s); err != nil {
			t.Fatalf("state push %s: %v", m["state"], err)
		}
		for _, ok := range checks {
			if !ok(s) {
				continue next
			}
		}
		return s
	}
}
