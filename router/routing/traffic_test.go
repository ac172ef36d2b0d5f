package routing

import (
	"math"
	"strconv"
	"testing"
)

func TestRouteForActor(t *testing.T) {
	const actors = 20000
	tests := []struct {
		name     string
		percents []int
	}{
		{"one target", []int{100}},
		{"80/20", []int{80, 20}},
		{"three ways", []int{50, 30, 20}},
		{"a zero share", []int{0, 100}},
		{"shares short of 100 go to the last", []int{30, 30}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rt := &Route{Function: "f"}
			for i, p := range tc.percents {
				rt.Splits = append(rt.Splits, Split{Target: "rev" + strconv.Itoa(i), Percent: p})
			}
			got := map[string]int{}
			for i := range actors {
				key := "f/" + strconv.Itoa(i)
				sp := rt.ForActor(key)
				if again := rt.ForActor(key); again != sp {
					t.Fatalf("actor %s: %s, then %s", key, sp.Target, again.Target)
				}
				got[sp.Target]++
			}
			sum := 0
			for _, p := range tc.percents {
				sum += p
			}
			for i, p := range tc.percents {
				if i == len(tc.percents)-1 {
					p += 100 - sum
				}
				share := 100 * float64(got["rev"+strconv.Itoa(i)]) / actors
				if math.Abs(share-float64(p)) > 1.5 {
					t.Errorf("rev%d has %.1f%% of the actors, want %d%% (±1.5)", i, share, p)
				}
			}
		})
	}
	if sp := (&Route{}).ForActor("f/1"); sp != nil {
		t.Errorf("a route without splits picked %+v", sp)
	}
}

// TestRouteShiftMovesOnlyTheShare checks a rollout's step moves only the actors whose share
// changes hands: going from 80/20 to 50/50, no actor of the second revision goes back.
func TestRouteShiftMovesOnlyTheShare(t *testing.T) {
	before := &Route{Splits: []Split{{Target: "old", Percent: 80}, {Target: "new", Percent: 20}}}
	after := &Route{Splits: []Split{{Target: "old", Percent: 50}, {Target: "new", Percent: 50}}}
	moved := 0
	for i := range 10000 {
		key := "f/" + strconv.Itoa(i)
		b, a := before.ForActor(key).Target, after.ForActor(key).Target
		if b == "new" && a == "old" {
			t.Fatalf("actor %s went back from new to old", key)
		}
		if b != a {
			moved++
		}
	}
	if moved < 2700 || moved > 3300 {
		t.Errorf("%d of 10000 actors moved, want ~30%%", moved)
	}
}
