package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/knactor/knactor/test/proctest"
)

// post sends a call with optional headers (name, value pairs) and returns status and body.
func post(t testing.TB, url, path, body string, header ...string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest("POST", url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// A pipe and a forward across three functions (relay → relay2 → counter): the caller gets the
// last actor's reply, and a repeat with the same idempotency key follows the chain again without
// applying any turn twice.
func TestPipeAndForwardChainAcrossThreeFunctions(t *testing.T) {
	skipShort(t)
	u := startUp(t, nil,
		"-f", proctest.Manifest(t, "relay", "test/e2e/testdata/relay"),
		"-f", proctest.Manifest(t, "relay2", "test/e2e/testdata/relay"),
		"-f", proctest.CounterManifest(t, "counter"))
	route := `{"by":3,"route":[{"function":"relay2","actor":"b","action":"forward"},{"function":"counter","actor":"c1","action":"add"}]}`
	for range 3 {
		status, body := post(t, u.url, "/v1/actors/relay/a/pipe", route, "Idempotency-Key", "chain-1")
		if status != 200 || string(body) != `{"value":3}` {
			t.Fatalf("chain: %d %s, want the counter's reply {\"value\":3}", status, body)
		}
	}
	r := routerProc{Process: u.Process, url: u.url}
	if v := stateOf(t, r, "c1"); v != 3 {
		t.Fatalf("counter c1 = %d after three tries of one keyed chain, want 3 (applied once)", v)
	}
	// Without a key each call is a new chain.
	if status, body := post(t, u.url, "/v1/actors/relay/a/pipe", route); status != 200 || string(body) != `{"value":6}` {
		t.Fatalf("second chain: %d %s", status, body)
	}
	// A forward back to an actor the chain has passed through is a cycle, not a hang.
	cycle := `{"route":[{"function":"relay2","actor":"b","action":"forward"}]}`
	status, body := post(t, u.url, "/v1/actors/relay2/b/forward", cycle)
	if status != 508 || !strings.Contains(string(body), "workflow_cycle") {
		t.Fatalf("cycle: %d %s, want 508 workflow_cycle", status, body)
	}
}

// A thousand bidders bid through pipes and subscribe to the auction's channel; when the auction's
// timer closes it, its broadcast reaches every bidder exactly once, and WebSocket watchers of
// the channel (a client here, and the example's own watcher process) see the result.
func TestBroadcastReachesAThousandSubscribersOnce(t *testing.T) {
	skipShort(t)
	const bidders = 1000
	u := startUp(t, nil,
		"-f", proctest.Manifest(t, "auction", "examples/auction"),
		"-f", proctest.Manifest(t, "bidder", "examples/auction bidder"))
	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(u.url, "http")+"/v1/channels/auction.lot/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	watcher := proctest.Start(t, "watch", []string{"KNACTOR_URL=" + u.url}, proctest.Build(t, "examples/auction"), "watch", "auction.lot")
	waitLog(t, watcher, "watching auction.lot", 10*time.Second)
	call(t, u.url, "auction", "lot", "open", `{"item":"painting","duration_ms":8000}`)
	var accepted, best atomic.Int64
	parallel(bidders, 32, func(i int) {
		status, body := post(t, u.url, "/v1/actors/bidder/b"+strconv.Itoa(i)+"/bid", fmt.Sprintf(`{"auction":"lot","amount":%d}`, i+1))
		switch status {
		case 200:
			accepted.Add(1)
			for b := best.Load(); int64(i+1) > b && !best.CompareAndSwap(b, int64(i+1)); b = best.Load() {
			}
		case 409: // outbid meanwhile: still subscribed
		default:
			t.Errorf("bid of b%d: %d %s", i, status, body)
		}
	})
	winner := "b" + strconv.Itoa(int(best.Load())-1)
	t.Logf("%d of %d bids accepted; the best is %s's %d", accepted.Load(), bidders, winner, best.Load())

	_ = ws.SetReadDeadline(time.Now().Add(30 * time.Second))
	_, msg, err := ws.ReadMessage()
	if err != nil {
		t.Fatalf("the channel's WebSocket: %v", err)
	}
	var pushed struct {
		Event, Channel, Action string
		Payload                struct{ Winner string }
	}
	if err := json.Unmarshal(msg, &pushed); err != nil || pushed.Event != "broadcast" || pushed.Channel != "auction.lot" || pushed.Payload.Winner != winner {
		t.Fatalf("pushed %s, want the broadcast naming %s", msg, winner)
	}
	waitLog(t, watcher, `"winner":"`+winner+`"`, 30*time.Second)
	type bidder struct {
		Heard   int
		Results map[string]struct{ Winner string }
	}
	deadline := time.Now().Add(60 * time.Second)
	var missing atomic.Int64
	for {
		missing.Store(0)
		parallel(bidders, 16, func(i int) {
			var b bidder
			if err := json.Unmarshal(call(t, u.url, "bidder", "b"+strconv.Itoa(i), "status", ""), &b); err != nil {
				t.Error(err)
			}
			if b.Heard == 0 {
				missing.Add(1)
			}
		})
		if missing.Load() == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	parallel(bidders, 16, func(i int) {
		var b bidder
		if err := json.Unmarshal(call(t, u.url, "bidder", "b"+strconv.Itoa(i), "status", ""), &b); err != nil {
			t.Error(err)
		}
		if b.Heard != 1 || b.Results["lot"].Winner != winner {
			t.Errorf("b%d heard the result %d times, winner %q; want once, %q", i, b.Heard, b.Results["lot"].Winner, winner)
		}
	})
}

// waitLog waits until p's log holds want, failing t if p exits or limit passes first.
func waitLog(t *testing.T, p *proctest.Process, want string, limit time.Duration) {
	t.Helper()
	deadline := time.After(limit)
	for !strings.Contains(p.Log(), want) {
		select {
		case <-p.Exited():
			t.Fatalf("%q never came: the process exited: %s", want, p.Log())
		case <-deadline:
			t.Fatalf("%q did not come within %v: %s", want, limit, p.Log())
		case <-time.After(20 * time.Millisecond):
		}
	}
}
