package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/knactor/knactor/test/proctest"
)

// auction is the state of an examples/auction actor, as "status" replies it.
type auction struct {
	Open     bool   `json:"open"`
	Winner   string `json:"winner"`
	Closings int    `json:"closings"`
	Bids     int    `json:"bids"`
}

// call posts body to an actor's action and returns the reply body; it fails t on any status
// but 200.
func call(t testing.TB, url, function, actor, action, body string) []byte {
	t.Helper()
	resp, err := client.Post(url+"/v1/actors/"+function+"/"+actor+"/"+action, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatalf("%s/%s/%s: %v", function, actor, action, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("%s/%s/%s: %d %s", function, actor, action, resp.StatusCode, b)
	}
	return b
}

func auctionOf(t testing.TB, url, actor string) auction {
	t.Helper()
	var a auction
	if err := json.Unmarshal(call(t, url, "auction", actor, "status", ""), &a); err != nil {
		t.Fatal(err)
	}
	return a
}

// parallel runs f(i) for i in [0, n) on workers goroutines.
func parallel(n, workers int, f func(i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				f(i)
			}
		}()
	}
	wg.Wait()
}

// waitClosed waits until every auction is closed and checks that each closed exactly once,
// to the winner of its bids.
func waitClosed(t *testing.T, url string, n int, limit time.Duration, winner func(i int) string) {
	t.Helper()
	deadline := time.Now().Add(limit)
	open := n
	for open > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d auctions still open after %v", open, n, limit)
		}
		time.Sleep(200 * time.Millisecond)
		var mu sync.Mutex
		open = 0
		parallel(n, 16, func(i int) {
			if a := auctionOf(t, url, "lot-"+strconv.Itoa(i)); a.Open {
				mu.Lock()
				open++
				mu.Unlock()
			}
		})
	}
	parallel(n, 16, func(i int) {
		a := auctionOf(t, url, "lot-"+strconv.Itoa(i))
		if a.Closings != 1 || a.Winner != winner(i) {
			t.Errorf("lot-%d: closed %d times, winner %q; want once, %q", i, a.Closings, a.Winner, winner(i))
		}
	})
}

// Timers live in the store: `knactor up` killed with SIGKILL and started again on the same
// state directory closes every auction on its timer, exactly once.
func TestTimersFireAfterUpIsKilledAndRestarted(t *testing.T) {
	skipShort(t)
	state := filepath.Join(t.TempDir(), "state")
	manifest := proctest.Manifest(t, "auction", "examples/auction")
	u := startUp(t, nil, "-f", manifest, "--state-dir", state)
	const lots = 50
	parallel(lots, 8, func(i int) {
		lot := "lot-" + strconv.Itoa(i)
		call(t, u.url, "auction", lot, "open", `{"item":"vase","duration_ms":4000}`)
		if i%2 == 0 {
			call(t, u.url, "auction", lot, "bid", `{"bidder":"ann","amount":10}`)
		}
	})
	u.Signal(syscall.SIGKILL)
	<-u.Exited()

	u2 := startUp(t, nil, "-f", manifest, "--state-dir", state)
	waitClosed(t, u2.url, lots, 30*time.Second, func(i int) string {
		if i%2 == 0 {
			return "ann"
		}
		return ""
	})
}

// A due timer wakes its function from zero pods, through the activator.
func TestTimerWakesAFunctionAtZero(t *testing.T) {
	skipShort(t)
	manifest := proctest.Manifest(t, "auction", "examples/auction",
		"autoscaling.knative.dev/initial-scale", "0",
		"autoscaling.knative.dev/window", "6s")
	u := startUp(t, nil, "-f", manifest, "--allow-zero-initial-scale", "--scale-to-zero-grace", "1s")
	call(t, u.url, "auction", "lot-0", "open", `{"item":"clock","duration_ms":20000}`)
	u.waitPodsOf(t, "auction", "scale to zero before the timer is due", 18*time.Second, func(n int) bool { return n == 0 })
	if fired := u.metric(t, "knactor_router_timer_firings_total", `function="auction",result="fired"`); fired > 0 {
		t.Fatal("the timer fired before it was due")
	}
	waitClosed(t, u.url, 1, 20*time.Second, func(int) string { return "" })
	if fired := u.metric(t, "knactor_router_timer_firings_total", `function="auction",result="fired"`); fired != 1 {
		t.Fatalf("timer firings = %v, want 1", fired)
	}
}

// Ten thousand timers due in the same second all fire, each exactly once.
func TestTenThousandTimersDueInOneSecondFireOnce(t *testing.T) {
	skipShort(t)
	const lots = 10_000
	u := startUp(t, nil, "-f", proctest.Manifest(t, "auction", "examples/auction"))
	closesAt := time.Now().Add(20 * time.Second).Truncate(time.Second).UTC().Format(time.RFC3339)
	start := time.Now()
	parallel(lots, 32, func(i int) {
		call(t, u.url, "auction", "lot-"+strconv.Itoa(i), "open", fmt.Sprintf(`{"item":"pin","closes_at":%q}`, closesAt))
	})
	t.Logf("opened %d auctions in %v, all closing at %s", lots, time.Since(start).Round(time.Millisecond), closesAt)
	waitClosed(t, u.url, lots, 60*time.Second, func(int) string { return "" })
	if fired := u.metric(t, "knactor_router_timer_firings_total", `function="auction",result="fired"`); fired != lots {
		t.Fatalf("timer firings = %v, want %d", fired, lots)
	}
}

// The durable outbox: effects committed with a turn are delivered exactly once although
// `knactor up` is killed with SIGKILL right after the commits (immediate effects in flight to a
// function at zero, delayed ones not due yet), and started again on the same state directory.
func TestOutboxSurvivesSIGKILLBetweenCommitAndDispatch(t *testing.T) {
	skipShort(t)
	state := filepath.Join(t.TempDir(), "state")
	relay := proctest.Manifest(t, "relay", "test/e2e/testdata/relay")
	counter := proctest.CounterManifest(t, "counter",
		"autoscaling.knative.dev/initial-scale", "0")
	args := []string{"-f", relay, "-f", counter, "--state-dir", state, "--allow-zero-initial-scale"}
	u := startUp(t, nil, args...)
	call(t, u.url, "relay", "now", "fan", `{"function":"counter","prefix":"now-","count":64}`)
	call(t, u.url, "relay", "later", "fan", `{"function":"counter","prefix":"later-","count":64,"delay_ms":3000}`)
	u.Signal(syscall.SIGKILL) // the immediate effects wait for a counter pod to start
	<-u.Exited()

	u2 := startUp(t, nil, args...)
	r := routerProc{Process: u2.Process, url: u2.url}
	for _, prefix := range []string{"now-", "later-"} {
		for i := range 64 {
			actor := prefix + strconv.Itoa(i)
			deadline := time.Now().Add(30 * time.Second)
			for stateOf(t, r, actor) == 0 && time.Now().Before(deadline) {
				time.Sleep(100 * time.Millisecond)
			}
			if got := stateOf(t, r, actor); got != 1 {
				t.Errorf("counter %s = %d after the restart, want exactly 1", actor, got)
			}
		}
	}
	for _, src := range []string{"now", "later"} {
		deadline := time.Now().Add(10 * time.Second)
		for pendingEffects(t, u2.url, "relay", src) > 0 && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		if n := pendingEffects(t, u2.url, "relay", src); n != 0 {
			t.Errorf("relay/%s still holds %d effects in its outbox", src, n)
		}
	}
}

// pendingEffects reads the number of effects in an actor's outbox (GET ?view=record).
func pendingEffects(t testing.TB, url, function, actor string) int {
	t.Helper()
	resp, err := client.Get(url + "/v1/actors/" + function + "/" + actor + "?view=record")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v struct {
		Pending int `json:"pending_effects"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil || resp.StatusCode != 200 {
		t.Fatalf("record of %s/%s: %d %v", function, actor, resp.StatusCode, err)
	}
	return v.Pending
}

// A turn that cancels a timer wins over the timer's firing even when the timer comes due while
// that turn runs: the firing waits for the actor, then finds nothing to fire.
func TestCancelWinsOverATimerDueDuringTheTurn(t *testing.T) {
	skipShort(t)
	u := startUp(t, nil, "-f", proctest.Manifest(t, "relay", "test/e2e/testdata/relay"))
	call(t, u.url, "relay", "r1", "arm", `{"in_ms":500}`)
	call(t, u.url, "relay", "r1", "slow-cancel", `{"ms":2000}`) // the timer is due 1.5 s into it
	time.Sleep(2 * time.Second)                                 // a firing would have run by now
	resp, err := client.Get(u.url + "/v1/actors/relay/r1?view=record")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	// Nothing is left of the actor (no state, no timer), or at least no ring and no timer.
	if resp.StatusCode != 404 && (strings.Contains(string(body), `"rings"`) || !strings.Contains(string(body), `"timers":[]`)) {
		t.Fatalf("after the cancel: %d %s, want no firing and no timer", resp.StatusCode, body)
	}
	if fired := u.metric(t, "knactor_router_timer_firings_total", `function="relay",result="fired"`); fired > 0 {
		t.Fatalf("timer firings = %v, want none", fired)
	}
}
