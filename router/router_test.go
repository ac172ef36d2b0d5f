package router

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/knactor/knactor/router/placement"
	"github.com/knactor/knactor/router/routing"
	"github.com/knactor/knactor/statecache"
	"github.com/knactor/knactor/test/proctest"
)

func TestActorCallsStateAndDelete(t *testing.T) {
	h := newHarness(t, Config{})
	h.deploy(counterFn, newTestActor())
	for i := 1; i <= 3; i++ {
		rp := h.do("POST", "/v1/actors/counter/alice/add", `{"by":2}`)
		rp.want(t, 200, fmt.Sprintf(`{"value":%d}`, 2*i))
		if rp.header.Get(HeaderStateVersion) == "" || rp.header.Get(HeaderPod) == "" {
			t.Fatalf("missing version or pod header: %v", rp.header)
		}
	}
	h.do("POST", "/v1/actors/counter/alice/get", ``).want(t, 200, `{"value":6}`)
	st := h.do("GET", "/v1/actors/counter/alice", "")
	st.want(t, 200, `{"value":6}`)
	if st.header.Get("Content-Type") != "application/json" {
		t.Fatalf("state content type %q", st.header.Get("Content-Type"))
	}
	h.do("DELETE", "/v1/actors/counter/alice", "").want(t, 204, "")
	h.do("GET", "/v1/actors/counter/alice", "").want(t, 404, "")
	h.do("POST", "/v1/actors/counter/alice/get", ``).want(t, 200, `{"value":0}`)
	// A function-side delete.
	h.do("POST", "/v1/actors/counter/bob/add", `{"by":1}`).want(t, 200, `{"value":1}`)
	h.do("POST", "/v1/actors/counter/bob/del", ``).want(t, 200, `{"value":0}`)
	h.do("GET", "/v1/actors/counter/bob", "").want(t, 404, "")
}

func TestTrickyActorIDsRoundTrip(t *testing.T) {
	h := newHarness(t, Config{})
	h.deploy(counterFn, newTestActor())
	for i, id := range []string{"a%2Fb", "..", "%2E%2E%2F%2E%2E", "a%20b", "%C3%BC", "%25", "~x"} {
		h.do("POST", "/v1/actors/counter/"+id+"/add", fmt.Sprintf(`{"by":%d}`, i+1)).want(t, 200, fmt.Sprintf(`{"value":%d}`, i+1))
	}
	for i, id := range []string{"a%2Fb", "..", "%2E%2E%2F%2E%2E", "a%20b", "%C3%BC", "%25", "~x"} {
		h.do("GET", "/v1/actors/counter/"+id, "").want(t, 200, fmt.Sprintf(`{"value":%d}`, i+1))
	}
}

func TestBadRequestsGetJSONErrors(t *testing.T) {
	h := newHarness(t, Config{MaxPayloadBytes: 1024})
	h.deploy(counterFn, newTestActor())
	h.backends.Set(routing.Function{Name: "idle"}) // deployed, no ready pod
	tests := []struct {
		name, method, path, body string
		status                   int
		code                     string
	}{
		{"unknown function", "POST", "/v1/actors/nope/a/add", `{}`, 404, CodeUnknownFunction},
		{"bad function name", "POST", "/v1/actors/Bad_Name/a/add", `{}`, 400, CodeBadRequest},
		{"id too long", "POST", "/v1/actors/counter/" + strings.Repeat("x", 1025) + "/add", `{}`, 400, CodeBadRequest},
		{"unescaped slash in id", "POST", "/v1/actors/counter/a/b/add", `{}`, 404, CodeNotFound},
		{"bad action", "POST", "/v1/actors/counter/a/b%21", `{}`, 400, CodeBadRequest},
		{"method on action", "PUT", "/v1/actors/counter/a/add", `{}`, 405, CodeMethodNotAllowed},
		{"method on actor", "POST", "/v1/actors/counter/a", `{}`, 405, CodeMethodNotAllowed},
		{"body too large", "POST", "/v1/actors/counter/a/add", strings.Repeat(" ", 1025), 413, CodeTooLarge},
		{"unknown path", "GET", "/v2/whatever", ``, 404, CodeNotFound},
		{"no ready pod", "POST", "/v1/actors/idle/a/add", `{}`, 503, CodeNoCapacity},
		{"no state", "GET", "/v1/actors/counter/nobody", ``, 404, CodeActorNotFound},
		{"function error", "POST", "/v1/actors/counter/a/fail", `{}`, 422, "nope"},
		{"payload not an object", "POST", "/v1/actors/counter/a/add", `[1]`, 400, "bad_payload"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rp := h.do(tt.method, tt.path, tt.body)
			var e struct {
				Error struct{ Code, Message string } `json:"error"`
			}
			if err := json.Unmarshal([]byte(rp.body), &e); err != nil || rp.status != tt.status || e.Error.Code != tt.code || e.Error.Message == "" {
				t.Fatalf("got %d %s, want %d with code %q", rp.status, rp.body, tt.status, tt.code)
			}
			if rp.header.Get("Content-Type") != "application/json" {
				t.Fatalf("content type %q", rp.header.Get("Content-Type"))
			}
			if (tt.status == 503 || tt.status == 429) && rp.header.Get("Retry-After") == "" {
				t.Fatal("no Retry-After")
			}
		})
	}
	h.do("GET", "/v1/actors/counter/a", "").want(t, 404, "") // none of it created state

	// Go's client refuses to send a bad escape; write the request by hand.
	conn, err := net.Dial("tcp", strings.TrimPrefix(h.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprint(conn, "POST /v1/actors/counter/%zz/add HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 400 || !strings.Contains(string(body), CodeBadRequest) {
		t.Fatalf("bad escape: %d %s", resp.StatusCode, body)
	}

	// A request fasthttp cannot parse still gets the JSON error form.
	conn2, err := net.Dial("tcp", strings.TrimPrefix(h.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close()
	fmt.Fprint(conn2, "NOT HTTP AT ALL\r\n\r\n")
	resp, err = http.ReadResponse(bufio.NewReader(conn2), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	if resp.StatusCode != 400 || resp.Header.Get("Content-Type") != "application/json" || !strings.Contains(string(body), `"code":"bad_request"`) {
		t.Fatalf("unparsable request: %d %s %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
}

// TestFailedCallsNeverChangeState drives every failure of the call path against an actor with
// state and checks the state afterwards.
func TestFailedCallsNeverChangeState(t *testing.T) {
	hang := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select { // past the router's deadline, bounded so the test server can close
		case <-r.Context().Done():
		case <-time.After(2 * time.Second):
		}
	})
	big := `{"state":"` + strings.Repeat("x", DefaultMaxStateBytes) + `"}`
	tests := []struct {
		name   string
		pod    http.Handler
		status int
		code   string
	}{
		{"garbage answer", rawPod(200, `this is not json`), 502, CodeBadFunctionReply},
		{"HTTP 500", rawPod(500, `oops`), 502, CodeFunctionFailed},
		{"error form with bad status", rawPod(200, `{"error":{"status":200,"code":"x"}}`), 502, CodeBadFunctionReply},
		{"error form", rawPod(409, `{"error":{"status":409,"code":"taken","message":"name taken"}}`), 409, "taken"},
		{"state and delete", rawPod(200, `{"state":1,"delete":true}`), 502, CodeBadFunctionReply},
		{"forward without action", rawPod(200, `{"state":1,"forward":{"actor":"x"}}`), 502, CodeBadFunctionReply},
		{"state too large", rawPod(200, big), 502, CodeBadFunctionReply},
		{"bad effect", rawPod(200, `{"state":1,"effects":[{"actor":"","action":"add"}]}`), 502, CodeBadFunctionReply},
		{"timeout", hang, 504, CodeFunctionTimeout},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, Config{CallTimeout: 500 * time.Millisecond})
			h.deploy(counterFn, newTestActor())
			h.do("POST", "/v1/actors/counter/a/add", `{"by":7}`).want(t, 200, `{"value":7}`)
			before := h.do("GET", "/v1/actors/counter/a", "")
			h.deploy(counterFn, tt.pod)
			rp := h.do("POST", "/v1/actors/counter/a/add", `{"by":1}`)
			if rp.status != tt.status || !strings.Contains(rp.body, `"code":"`+tt.code+`"`) {
				t.Fatalf("got %d %s, want %d %s", rp.status, rp.body, tt.status, tt.code)
			}
			after := h.do("GET", "/v1/actors/counter/a", "")
			if after.body != before.body || after.header.Get(HeaderStateVersion) != before.header.Get(HeaderStateVersion) {
				t.Fatalf("state changed by a failed call: %s → %s", before.body, after.body)
			}
		})
	}
}

func TestPodDownAndStoreDown(t *testing.T) {
	h := newHarness(t, Config{})
	pods := h.deploy(counterFn, newTestActor())
	h.do("POST", "/v1/actors/counter/a/add", `{"by":1}`).want(t, 200, `{"value":1}`)
	// A pod address nobody listens on.
	dead := proctest.ClosedAddr(t)
	h.backends.Set(counterFn, placement.Pod{Name: dead, Addr: dead})
	_ = pods
	rp := h.do("POST", "/v1/actors/counter/a/add", `{"by":1}`)
	if rp.status != 502 || !strings.Contains(rp.body, CodeFunctionFailed) {
		t.Fatalf("pod down: %d %s", rp.status, rp.body)
	}

	// The store fails: its calls come back unavailable.
	h2 := newHarnessOn(t, Config{StoreTimeout: 200 * time.Millisecond}, failingStore{})
	h2.deploy(counterFn, newTestActor())
	rp = h2.do("POST", "/v1/actors/counter/a/add", `{"by":1}`)
	if rp.status != 503 || !strings.Contains(rp.body, CodeStoreUnavailable) || rp.header.Get("Retry-After") == "" {
		t.Fatalf("store down: %d %s %v", rp.status, rp.body, rp.header)
	}
}

type failingStore struct{}

func (failingStore) Get(context.Context, statecache.Key) (statecache.Entry, error) {
	return statecache.Entry{}, fmt.Errorf("test: %w", statecache.ErrUnavailable)
}
func (failingStore) Put(context.Context, statecache.Key, []byte, statecache.Version, statecache.Commit) (statecache.Version, error) {
	return "", fmt.Errorf("test: %w", statecache.ErrUnavailable)
}
func (failingStore) Delete(context.Context, statecache.Key, statecache.Version, statecache.Commit) (statecache.Version, error) {
	return "", fmt.Errorf("test: %w", statecache.ErrUnavailable)
}

func TestTurnsOfOneActorNeverOverlap(t *testing.T) {
	h := newHarness(t, Config{})
	a := newTestActor()
	h.deploy(counterFn, a)
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h.do("POST", "/v1/actors/counter/hot/slow-add", `{"by":1,"ms":5}`).want(t, 200, "")
		}()
	}
	wg.Wait()
	if m := a.maxRunning.Load(); m != 1 {
		t.Fatalf("%d turns of one actor ran at once, want 1", m)
	}
	h.do("GET", "/v1/actors/counter/hot", "").want(t, 200, `{"value":20}`)
	if n := h.r.mailboxes.Active(); n != 0 {
		t.Fatalf("%d mailboxes left", n)
	}
}

func TestFullQueueAnswers429(t *testing.T) {
	h := newHarness(t, Config{MaxQueuePerActor: 1})
	h.deploy(counterFn, newTestActor())
	results := make(chan reply, 3)
	for range 3 {
		go func() { results <- h.do("POST", "/v1/actors/counter/hot/slow-add", `{"by":1,"ms":300}`) }()
	}
	got := map[int]int{}
	for range 3 {
		rp := <-results
		got[rp.status]++
		if rp.status == 429 && rp.header.Get("Retry-After") == "" {
			t.Fatal("429 without Retry-After")
		}
	}
	if got[200] != 2 || got[429] != 1 {
		t.Fatalf("statuses %v, want two 200 and one 429", got)
	}
}

// TestConflictsAcrossRoutersRerunTheTurn runs two routers with their own caches over one store:
// every increment lands exactly once. (A read-only turn on the router that did not write last
// may still see its cached, older state: the store is the judge here.)
func TestConflictsAcrossRoutersRerunTheTurn(t *testing.T) {
	store, err := statecache.OpenDirStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	cfg := Config{ConflictRetries: 100}
	a, b := newHarnessOn(t, cfg, store), newHarnessOn(t, cfg, store)
	actor := newTestActor()
	a.deploy(counterFn, actor)
	b.deploy(counterFn, actor)
	var wg sync.WaitGroup
	for i := range 8 {
		h := []*harness{a, b}[i%2]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 25 {
				h.do("POST", "/v1/actors/counter/shared/add", `{"by":1}`).want(t, 200, "")
			}
		}()
	}
	wg.Wait()
	e, err := store.Get(context.Background(), statecache.Key{Function: "counter", ID: "shared"})
	if err != nil || string(e.Value) != `{"value":200}` {
		t.Fatalf("store holds %s (%v), want 200 increments", e.Value, err)
	}
}

func TestEffectsRunAfterCommit(t *testing.T) {
	h := newHarness(t, Config{})
	h.deploy(counterFn, newTestActor())
	h.do("POST", "/v1/actors/counter/a/send", `{"to":"b","by":5}`).want(t, 200, `{"value":1}`)
	proctest.Eventually(t, "the effect", func() bool {
		return h.do("GET", "/v1/actors/counter/b", "").body == `{"value":5}`
	})
	// A failed turn runs no effect. Its pod fails a's turn but asks for an effect on c anyway,
	// and reports every call for another actor on calls: the event an effect that fired would
	// cause. An immediate effect is dispatched before its turn is answered, on a goroutine that
	// r.effects counts, so once the answer is in and r.effects is idle, an effect that fired
	// has called the pod; one kept for later would be pending in a's record.
	calls := make(chan string, 10)
	h.deploy(counterFn, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/invoke" {
			_, _ = io.WriteString(w, "ok") // not a call (a health check)
			return
		}
		var env struct {
			Actor  string `json:"actor"`
			Action string `json:"action"`
		}
		if err := json.NewDecoder(r.Body).Decode(&env); err != nil {
			t.Errorf("the pod got an envelope it cannot decode: %v", err)
		}
		w.Header().Set("Content-Type", "application/json")
		if env.Actor != "a" {
			calls <- env.Actor + "/" + env.Action
			_, _ = io.WriteString(w, `{"state":{"value":1},"reply":{"value":1}}`)
			return
		}
		w.WriteHeader(http.StatusUnprocessableEntity)
		_, _ = io.WriteString(w, `{"error":{"status":422,"code":"no"},"effects":[{"actor":"c","action":"add","payload":{"by":1}}]}`)
	}))
	h.do("POST", "/v1/actors/counter/a/send", `{}`).want(t, 422, "")
	h.r.effects.Wait()
	select {
	case call := <-calls:
		t.Fatalf("the failed turn's effect ran: the pod got a call of %s", call)
	default:
	}
	var rec struct {
		Pending int `json:"pending_effects"`
	}
	rp := h.do("GET", "/v1/actors/counter/a?view=record", "")
	if err := json.Unmarshal([]byte(rp.body), &rec); rp.status != 200 || err != nil || rec.Pending != 0 {
		t.Fatalf("a's record after the failed turn: %d %s (%v), want no pending effect", rp.status, rp.body, err)
	}
	h.do("GET", "/v1/actors/counter/c", "").want(t, 404, "")
}

func TestAuthTokens(t *testing.T) {
	token := "s3cret-token-0123456789"
	h := newHarness(t, Config{AuthTokens: []string{token}})
	h.deploy(counterFn, newTestActor())
	for _, hdr := range [][]string{nil, {"Authorization", "Bearer wrong-token-0123456789"}, {"Authorization", token}} {
		rp := h.do("POST", "/v1/actors/counter/a/add", `{"by":1}`, hdr...)
		if rp.status != 401 || rp.header.Get("WWW-Authenticate") == "" || !strings.Contains(rp.body, CodeUnauthorized) {
			t.Fatalf("header %v: got %d %s, want 401", hdr, rp.status, rp.body)
		}
	}
	h.do("POST", "/v1/actors/counter/a/add", `{"by":1}`, "Authorization", "Bearer "+token).want(t, 200, `{"value":1}`)
	h.do("GET", "/metrics", "").want(t, 401, "")
	h.do("GET", "/healthz", "").want(t, 200, "ok")
}

func TestConfigRefusesOpenListenerWithoutTokens(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"loopback", Config{Listen: "127.0.0.1:0"}, true},
		{"localhost", Config{Listen: "localhost:0"}, true},
		{"ipv6 loopback", Config{Listen: "[::1]:0"}, true},
		{"all interfaces", Config{Listen: ":8080"}, false},
		{"all interfaces with token", Config{Listen: ":8080", AuthTokens: []string{"0123456789abcdef"}}, true},
		{"explicitly open", Config{Listen: "0.0.0.0:8080", AllowUnauthenticated: true}, true},
		{"short token", Config{AuthTokens: []string{"short"}}, false},
		{"negative limit", Config{MaxStateBytes: -1}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.SetDefaults()
			if err := tt.cfg.Validate(); (err == nil) != tt.ok {
				t.Fatalf("Validate() = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func TestMetricsAndStats(t *testing.T) {
	h := newHarness(t, Config{})
	h.deploy(counterFn, newTestActor())
	h.do("POST", "/v1/actors/counter/a/add", `{"by":1}`).want(t, 200, "")
	h.do("POST", "/v1/actors/nope/a/add", `{"by":1}`).want(t, 404, "")
	m := h.do("GET", "/metrics", "")
	for _, want := range []string{
		`knactor_router_requests_total{code="200",function="counter",kind="actor"} 1`,
		`knactor_router_request_duration_seconds_bucket{function="counter",kind="actor"`,
		`knactor_router_inflight_requests{function="counter"} 0`,
		"knactor_router_active_actors 0",
		"knactor_router_waiting_calls 0",
		"knactor_router_scheduled_actors 0",
		"knactor_router_websocket_sessions 0",
		"knactor_router_open_connections 1", // the harness's own connection
		`knactor_router_refused_total{reason="waiting_calls"} 0`,
		`knactor_router_refused_total{reason="connections"} 0`,
	} {
		if !strings.Contains(m.body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if s := h.r.Stats().EndWindow("counter"); s.Requests != 1 || s.ActiveActors != 1 {
		t.Fatalf("stats snapshot %+v, want 1 request from 1 actor", s)
	}
}
