package stats

import (
	"strconv"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"
)

func TestTotalsDoNotEndTheWindow(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Unix(1000, 0))
	r := NewRecorder(clk)
	end := r.Begin("fn", "a")
	clk.Step(time.Second)
	r.Begin("fn", "b")()
	clk.Step(time.Second)
	req, area, inFlight := r.Totals("fn")
	if req != 2 || area != 2*time.Second || inFlight != 1 {
		t.Fatalf("totals: %d requests, area %v, %d in flight; want 2, 2s, 1", req, area, inFlight)
	}
	end()
	// The autoscaler's window still covers everything.
	if s := r.EndWindow("fn"); s.Requests != 2 || s.Window != 2*time.Second {
		t.Fatalf("snapshot after Totals: %+v", s)
	}
	// Totals survive the snapshot.
	if req, _, _ := r.Totals("fn"); req != 2 {
		t.Fatalf("totals after a snapshot: %d requests, want 2", req)
	}
	if req, area, n := r.Totals("unknown"); req != 0 || area != 0 || n != 0 {
		t.Fatal("an unknown function has totals")
	}
}

func TestHotActors(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Unix(1000, 0))
	r := NewRecorder(clk)
	call := func(actor string, n int) {
		for range n {
			r.Begin("fn", actor)()
		}
	}
	call("hot", 50)
	call("warm", 20)
	r.Begin("fn", "")() // stateless calls have no actor
	// A flood of distinct actors, far past what is tracked, called once each.
	for i := range 10 * hotActorsTracked {
		call("cold-"+strconv.Itoa(i), 1)
	}
	got := r.HotActors("fn", 3)
	if len(got) != 3 || got[0].Actor != "hot" || got[1].Actor != "warm" {
		t.Fatalf("hot actors: %+v, want hot, warm first", got)
	}
	if got[0].Calls < 50 {
		t.Fatalf("hot has %d calls, want at least 50 (counts are upper bounds)", got[0].Calls)
	}
	if n := len(r.HotActors("fn", 1000)); n > 2*hotActorsTracked {
		t.Fatalf("%d actors reported, want at most %d", n, 2*hotActorsTracked)
	}

	// Half a window on: still counted (the previous half).
	clk.Step(HotWindow / 2)
	call("new", 1)
	if got := r.HotActors("fn", 1); got[0].Actor != "hot" {
		t.Fatalf("half a window later: %+v", got)
	}
	// A whole window after the load: only what came since.
	clk.Step(HotWindow / 2)
	if got := r.HotActors("fn", 10); len(got) != 1 || got[0].Actor != "new" || got[0].Calls != 1 {
		t.Fatalf("a window later: %+v, want only new", got)
	}
	clk.Step(3 * HotWindow)
	if got := r.HotActors("fn", 10); len(got) != 0 {
		t.Fatalf("idle for windows: %+v, want none", got)
	}
	if got := r.HotActors("unknown", 10); got != nil {
		t.Fatalf("unknown function: %+v", got)
	}
}
