package autoscaler

import (
	"testing"
	"time"
)

func TestBuckets(t *testing.T) {
	sec := func(n float64) time.Time { return t0.Add(time.Duration(n * float64(time.Second))) }
	type obs struct {
		at, weight, conc, reqs float64
	}
	tests := []struct {
		name     string
		window   time.Duration // the ring's (stable) window
		record   []obs
		now      float64
		avg      time.Duration // the window averaged over
		wantConc float64
		wantRPS  float64
		wantOK   bool
	}{{
		name:   "empty",
		window: 10 * time.Second, now: 5, avg: 10 * time.Second,
	}, {
		name:   "partial window averages over what was seen",
		window: 10 * time.Second,
		record: []obs{{1, 1, 10, 5}, {2, 1, 20, 15}},
		now:    2, avg: 10 * time.Second,
		wantConc: 15, wantRPS: 10, wantOK: true,
	}, {
		name:   "two observations in one second are time-weighted",
		window: 10 * time.Second,
		record: []obs{{1.25, 0.25, 40, 1}, {1.99, 0.75, 0, 2}},
		now:    1.5, avg: time.Second,
		wantConc: 10, wantRPS: 3, wantOK: true,
	}, {
		name:   "a long observation weighs its length",
		window: 10 * time.Second,
		record: []obs{{1, 1, 10, 10}, {4, 3, 30, 30}},
		now:    4, avg: 10 * time.Second,
		wantConc: 25, wantRPS: 10, wantOK: true,
	}, {
		name:   "the panic window sees only its seconds",
		window: 10 * time.Second,
		record: []obs{{1, 1, 100, 0}, {2, 1, 100, 0}, {3, 1, 10, 0}},
		now:    3, avg: time.Second,
		wantConc: 10, wantOK: true,
	}, {
		name:   "observations older than the window are gone",
		window: 10 * time.Second,
		record: []obs{{1, 1, 100, 0}},
		now:    11, avg: 10 * time.Second,
	}, {
		name:   "a slot reused by a newer second forgets the older one",
		window: 10 * time.Second,
		record: []obs{{1, 1, 100, 0}, {11, 1, 10, 0}, {1, 1, 1000, 0}},
		now:    11, avg: 10 * time.Second,
		wantConc: 10, wantOK: true,
	}, {
		name:   "observations after now are not averaged",
		window: 10 * time.Second,
		record: []obs{{1, 1, 10, 0}, {3, 1, 1000, 0}},
		now:    2, avg: 10 * time.Second,
		wantConc: 10, wantOK: true,
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := newBuckets(tc.window)
			for _, o := range tc.record {
				b.record(sec(o.at), o.weight, o.conc, o.reqs)
			}
			conc, rps, ok := b.average(sec(tc.now), tc.avg)
			if conc != tc.wantConc || rps != tc.wantRPS || ok != tc.wantOK {
				t.Fatalf("average = %v, %v, %v; want %v, %v, %v", conc, rps, ok, tc.wantConc, tc.wantRPS, tc.wantOK)
			}
		})
	}
}

func TestBucketsResize(t *testing.T) {
	b := newBuckets(10 * time.Second)
	for i := 1; i <= 10; i++ {
		b.record(t0.Add(time.Duration(i)*time.Second), 1, float64(i), 0)
	}
	b.resize(4 * time.Second) // keeps 7..10
	if c, _, _ := b.average(t0.Add(10*time.Second), 10*time.Second); c != 8.5 {
		t.Fatalf("after shrinking: %v, want 8.5", c)
	}
	b.resize(20 * time.Second)
	b.record(t0.Add(11*time.Second), 1, 11, 0)
	if c, _, _ := b.average(t0.Add(11*time.Second), 20*time.Second); c != 9 {
		t.Fatalf("after growing: %v, want 9", c)
	}
}

func TestMaxWindow(t *testing.T) {
	w := &maxWindow{length: 10 * time.Second}
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	for _, c := range []struct {
		at         int
		v, wantMax int32
	}{
		{0, 5, 5}, {2, 3, 5}, {4, 4, 5}, {8, 1, 5},
		{10, 1, 4}, // the 5 of 0 s is a full window old; the 4 of 4 s remains
		{14, 2, 2}, {16, 9, 9}, {25, 0, 9}, {26, 0, 0},
	} {
		if got := w.record(at(c.at), c.v); got != c.wantMax {
			t.Fatalf("record(+%ds, %d) = %d, want %d", c.at, c.v, got, c.wantMax)
		}
	}
	if len(w.entries) != 1 {
		t.Fatalf("entries = %v, want only the latest", w.entries)
	}
}
