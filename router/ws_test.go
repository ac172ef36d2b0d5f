package router

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/knactor/knactor/router/routing"
	"github.com/knactor/knactor/statecache"
	"github.com/knactor/knactor/test/proctest"
)

func dialWS(t *testing.T, h *harness, path string, header http.Header) *websocket.Conn {
	t.Helper()
	c, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(h.url, "http")+path, header)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial %s: %v (HTTP %d)", path, err, status)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func readJSON(t *testing.T, c *websocket.Conn) map[string]any {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var m map[string]any
	if err := c.ReadJSON(&m); err != nil {
		t.Fatalf("read: %v", err)
	}
	return m
}

func TestWebSocketInvocationsAndStatePushes(t *testing.T) {
	h := newHarness(t, Config{})
	h.deploy(counterFn, newTestActor())
	watcher := dialWS(t, h, "/v1/actors/counter/room/ws?subscribe=1", nil)
	caller := dialWS(t, h, "/v1/actors/counter/room/ws", nil)

	if err := caller.WriteJSON(map[string]any{"id": 1, "action": "add", "payload": map[string]int{"by": 3}}); err != nil {
		t.Fatal(err)
	}
	if m := readJSON(t, caller); m["id"] != 1.0 || m["reply"].(map[string]any)["value"] != 3.0 || m["version"] == "" {
		t.Fatalf("reply = %v", m)
	}
	if m := readJSON(t, watcher); m["event"] != "state" || m["state"].(map[string]any)["value"] != 3.0 {
		t.Fatalf("push = %v", m)
	}
	// An HTTP call on the same actor is pushed too.
	h.do("POST", "/v1/actors/counter/room/add", `{"by":2}`).want(t, 200, `{"value":5}`)
	if m := readJSON(t, watcher); m["state"].(map[string]any)["value"] != 5.0 {
		t.Fatalf("push after HTTP call = %v", m)
	}
	// Errors answer the message and keep the socket open.
	_ = caller.WriteMessage(websocket.TextMessage, []byte(`not json`))
	if m := readJSON(t, caller); m["error"].(map[string]any)["code"] != CodeBadRequest {
		t.Fatalf("bad message answer = %v", m)
	}
	_ = caller.WriteJSON(map[string]any{"id": "x", "action": "fail"})
	if m := readJSON(t, caller); m["id"] != "x" || m["error"].(map[string]any)["status"] != 422.0 {
		t.Fatalf("function error answer = %v", m)
	}
	h.do("DELETE", "/v1/actors/counter/room", "").want(t, 204, "")
	if m := readJSON(t, watcher); m["event"] != "deleted" {
		t.Fatalf("delete push = %v", m)
	}
}

func TestWebSocketLimitsAndOrigins(t *testing.T) {
	h := newHarness(t, Config{MaxPayloadBytes: 1024, AllowedOrigins: []string{"https://app.example"}})
	h.deploy(counterFn, newTestActor())
	if _, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(h.url, "http")+"/v1/actors/counter/a/ws",
		http.Header{"Origin": {"https://evil.example"}}); err == nil || resp == nil || resp.StatusCode != 403 {
		t.Fatalf("foreign origin: err %v, want HTTP 403", err)
	}
	c := dialWS(t, h, "/v1/actors/counter/a/ws", http.Header{"Origin": {"https://app.example"}})
	big := make([]byte, 1024+wsFrameOverhead+1)
	_, _ = rand.Read(big)
	_ = c.WriteMessage(websocket.BinaryMessage, big)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, _, err := c.ReadMessage()
	if !websocket.IsCloseError(err, websocket.CloseMessageTooBig) {
		t.Fatalf("oversized message: err = %v, want close 1009", err)
	}
}

func TestWebSocketSlowReaderIsClosed(t *testing.T) {
	h := newHarness(t, Config{})
	// Every call stores (and pushes) a 256 KiB state, so the socket buffers fill quickly.
	h.deploy(counterFn, rawPod(200, `{"state":"`+strings.Repeat("x", 256<<10)+`"}`))
	slow := dialWS(t, h, "/v1/actors/counter/busy/ws?subscribe=1", nil)
	// The slow client never reads; the router pushes one message per call. Its socket buffers
	// absorb some, then the send queue fills and the router closes the session.
	payload := `{"by":1}`
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 5000; i++ {
			if h.do("POST", "/v1/actors/counter/busy/add", payload).status != 200 {
				return
			}
			h.r.hub.mu.Lock()
			n := len(h.r.hub.sessions)
			h.r.hub.mu.Unlock()
			if n == 0 {
				return
			}
		}
	}()
	<-done
	h.r.hub.mu.Lock()
	n := len(h.r.hub.sessions)
	h.r.hub.mu.Unlock()
	if n != 0 {
		t.Fatal("a client that never reads kept its session")
	}
	// Drain what was sent: the connection ends. The 1008 close frame arrives when the socket had
	// room for it; a socket that stayed full only sees the connection drop.
	_ = slow.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		_, _, err := slow.ReadMessage()
		if err == nil {
			continue
		}
		var ce *websocket.CloseError
		if errors.As(err, &ce) && ce.Code != websocket.ClosePolicyViolation && ce.Code != websocket.CloseAbnormalClosure {
			t.Fatalf("slow reader closed with %v, want 1008 or a dropped connection", err)
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatal("the connection of a slow reader stayed open")
		}
		return
	}
}

func TestShutdownFinishesTurnsAndClosesWebSockets(t *testing.T) {
	h := newHarness(t, Config{})
	h.deploy(counterFn, newTestActor())
	ws := dialWS(t, h, "/v1/actors/counter/a/ws", nil)
	var wg sync.WaitGroup
	var slow reply
	wg.Add(1)
	go func() { defer wg.Done(); slow = h.do("POST", "/v1/actors/counter/a/slow-add", `{"by":1,"ms":300}`) }()
	proctest.Eventually(t, "the slow call to start", func() bool { return h.r.mailboxes.Active() == 1 })
	if err := h.shutdown(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if slow.status != 200 || slow.body != `{"value":1}` {
		t.Fatalf("in-flight call during shutdown: %d %s, want it finished", slow.status, slow.body)
	}
	_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := ws.ReadMessage(); !websocket.IsCloseError(err, websocket.CloseGoingAway) {
		t.Fatalf("websocket at shutdown: %v, want close 1001", err)
	}
	e, err := h.store.Get(context.Background(), counterKey("a"))
	if err != nil || string(e.Value) != `{"value":1}` {
		t.Fatalf("store after shutdown holds %s (%v)", e.Value, err)
	}
}

// A client that opened a connection and sent part of a request does not hold the shutdown for
// the whole ReadTimeout: it gets shutdownReadGrace, while a call in flight still finishes.
func TestShutdownDoesNotWaitForHalfSentRequests(t *testing.T) {
	h := newHarness(t, Config{ReadTimeout: time.Minute})
	h.deploy(counterFn, newTestActor())
	half, err := net.Dial("tcp", strings.TrimPrefix(h.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer half.Close()
	if _, err := io.WriteString(half, "POST /v1/actors/counter/h/add HTTP/1.1\r\nHost: localhost\r\n"); err != nil {
		t.Fatal(err)
	}
	silent, err := net.Dial("tcp", strings.TrimPrefix(h.url, "http://")) // sends nothing at all
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	var (
		wg   sync.WaitGroup
		slow reply
	)
	wg.Add(1)
	go func() { defer wg.Done(); slow = h.do("POST", "/v1/actors/counter/a/slow-add", `{"by":1,"ms":2500}`) }()
	proctest.Eventually(t, "the slow call to start", func() bool { return h.r.mailboxes.Active() == 1 })
	if err := h.shutdown(); err != nil { // its context allows 10 s, far less than ReadTimeout
		t.Fatal(err)
	}
	wg.Wait()
	if slow.status != 200 || slow.body != `{"value":1}` {
		t.Fatalf("in-flight call during shutdown: %d %s, want it finished past the read grace", slow.status, slow.body)
	}
}

func TestPassThrough(t *testing.T) {
	h := newHarness(t, Config{MaxPayloadBytes: 1024})
	echo := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Seen", r.Method+" "+r.URL.RequestURI()+" "+r.Header.Get("X-Custom")+" auth="+r.Header.Get("Authorization"))
		w.WriteHeader(201)
		_, _ = w.Write(body)
	})
	h.deploy(routing.Function{Name: "echo"}, echo, echo)
	rp := h.do("PUT", "/v1/functions/echo/a/b?x=1&y=%2F", "hello", "X-Custom", "v")
	if rp.status != 201 || rp.body != "hello" || rp.header.Get("X-Seen") != "PUT /a/b?x=1&y=%2F v auth=" {
		t.Fatalf("pass-through: %d %q %q", rp.status, rp.body, rp.header.Get("X-Seen"))
	}
	// Bodies past the actor payload limit stream through.
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<20) // 16 MiB
	resp, err := http.Post(h.url+"/v1/functions/echo/upload", "application/octet-stream", bytes.NewReader(big))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 201 || !bytes.Equal(got, big) {
		t.Fatalf("16 MiB echo: %d, %d bytes back", resp.StatusCode, len(got))
	}
	for _, p := range []string{"/v1/functions/echo/v1/invoke", "/v1/functions/echo/healthz"} {
		if rp := h.do("POST", p, `{}`); rp.status != 400 {
			t.Fatalf("%s: %d, want 400 (contract endpoints are not reachable)", p, rp.status)
		}
	}
	h.do("GET", "/v1/functions/nope/x", "").want(t, 404, "")
	var e struct{ Error struct{ Code string } }
	_ = json.Unmarshal([]byte(h.do("GET", "/v1/functions/nope/x", "").body), &e)
	if e.Error.Code != CodeUnknownFunction {
		t.Fatalf("unknown function code %q", e.Error.Code)
	}
}

func TestPassThroughSpreadsLoad(t *testing.T) {
	h := newHarness(t, Config{})
	var mu sync.Mutex
	hits := map[string]int{}
	pod := func(name string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			mu.Lock()
			hits[name]++
			mu.Unlock()
		})
	}
	h.deploy(routing.Function{Name: "echo"}, pod("a"), pod("b"), pod("c"))
	for range 300 {
		h.do("GET", "/v1/functions/echo/", "").want(t, 200, "")
	}
	for _, n := range []string{"a", "b", "c"} {
		if hits[n] < 50 {
			t.Fatalf("hits %v: pod %s starved", hits, n)
		}
	}
}

func counterKey(id string) statecache.Key { return statecache.Key{Function: "counter", ID: id} }

// TestPassThroughConcurrentBodiesStayApart is the regression test of a pooled body stream
// released twice: under concurrent POSTs, a request could carry another connection's body, and
// the router then panicked.
func TestPassThroughConcurrentBodiesStayApart(t *testing.T) {
	h := newHarness(t, Config{})
	echo := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.Copy(w, r.Body) })
	h.deploy(routing.Function{Name: "echo"}, echo)
	var wg sync.WaitGroup
	for c := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				body := fmt.Sprintf(`{"caller":%d,"call":%d}`, c, i)
				rp := h.do("POST", "/v1/functions/echo/x", body)
				if rp.status != 200 || rp.body != body {
					t.Errorf("sent %s, got %d %s", body, rp.status, rp.body)
					return
				}
			}
		}()
	}
	wg.Wait()
}
