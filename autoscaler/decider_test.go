package autoscaler

import (
	"fmt"
	"testing"
	"time"

	"github.com/knactor/knactor/router/stats"
)

var t0 = time.Unix(1_700_000_000, 0)

// follow as a step's ready means: the ready pods are the previous decision (pods start at once).
const follow = -1

// step is a stretch of load followed by one decision. Every second of the stretch records one
// snapshot covering that second.
type step struct {
	// secs is the seconds of load recorded before the decision (0: decide at once).
	secs int
	// conc is the average concurrency of each snapshot; reqs the requests each counts; actors
	// its active actors.
	conc   float64
	reqs   uint64
	actors int
	// noStats records nothing during secs (the clock still moves).
	noStats bool
	// poke pokes the decider just before the decision.
	poke bool
	// ready is the ready pods at the decision; follow for the previous decision.
	ready int
	// repeat makes the step happen this many times (0 or 1: once); only the last decision is
	// checked.
	repeat int
	// want is the expected DesiredPods; panic the expected Panicking; pending the expected
	// ScaleToZeroPending.
	want    int32
	panic   bool
	pending bool
	// valid, when set, is the expected Valid (default: expect true).
	valid *bool
}

func ptr[T any](v T) *T { return &v }

// run plays steps on a new decider for spec, starting at t0, and checks every step's last
// decision. It returns the decider and the time it ended at.
func run(t *testing.T, spec Spec, steps []step) (*Decider, time.Time) {
	t.Helper()
	d, err := NewDecider(spec)
	if err != nil {
		t.Fatalf("NewDecider: %v", err)
	}
	now := t0
	var last Decision
	for i, s := range steps {
		for r := 0; r < max(1, s.repeat); r++ {
			for range s.secs {
				now = now.Add(time.Second)
				if !s.noStats {
					d.Record(stats.Snapshot{Time: now, Window: time.Second, AverageConcurrency: s.conc,
						InFlight: int(s.conc), Requests: s.reqs, ActiveActors: s.actors})
				}
			}
			if s.poke {
				d.Poke(now)
			}
			ready := s.ready
			if ready == follow {
				ready = int(last.DesiredPods)
			}
			last = d.Decide(now, ready)
		}
		wantValid := s.valid == nil || *s.valid
		if last.DesiredPods != s.want || last.Panicking != s.panic || last.Valid != wantValid ||
			last.ScaleToZeroPending != s.pending {
			t.Fatalf("step %d at +%v: got desired=%d panic=%v valid=%v pending=%v (%+v); want desired=%d panic=%v valid=%v pending=%v",
				i, now.Sub(t0), last.DesiredPods, last.Panicking, last.Valid, last.ScaleToZeroPending, last,
				s.want, s.panic, wantValid, s.pending)
		}
	}
	return d, now
}

func withSpec(f func(*Spec)) Spec {
	s := DefaultSpec()
	if f != nil {
		f(&s)
	}
	return s
}

func TestDecide(t *testing.T) {
	// With the defaults a pod is sized for 100 × 0.7 = 70 requests in flight.
	tests := []struct {
		name  string
		spec  Spec
		steps []step
	}{{
		name: "steady load gives a stable count",
		spec: DefaultSpec(),
		steps: []step{
			{secs: 2, conc: 140, ready: 0, want: 2},
			{secs: 2, conc: 140, ready: follow, repeat: 60, want: 2},
			// 141 needs a third pod.
			{secs: 2, conc: 141, ready: follow, repeat: 40, want: 3},
		},
	}, {
		name: "no data yet keeps the initial scale and makes no decision",
		spec: DefaultSpec(),
		steps: []step{
			{ready: 0, want: 1, valid: ptr(false)},
			{secs: 10, noStats: true, ready: 0, want: 1, valid: ptr(false)},
		},
	}, {
		name: "no data on a restarted autoscaler keeps the ready pods",
		spec: DefaultSpec(),
		steps: []step{
			{ready: 5, want: 5, panic: true, valid: ptr(false)},
		},
	}, {
		name: "a restarted autoscaler keeps its pods for a stable window (Knative starts in panic)",
		spec: DefaultSpec(),
		steps: []step{
			{secs: 2, conc: 70, ready: 5, want: 5, panic: true},
			{secs: 2, conc: 70, ready: 5, repeat: 30, want: 5, panic: true}, // +62 s: not yet past +2 s + 60 s
			{secs: 2, conc: 70, ready: 5, want: 2},                          // panic over; down at most ½
		},
	}, {
		name: "a burst panics within the panic window and pods rise",
		spec: DefaultSpec(),
		steps: []step{
			{secs: 2, conc: 70, ready: 1, repeat: 30, want: 1},
			// Two seconds of 700: the 6 s panic window averages (4×70 + 2×700)/6 = 280 → 4 pods,
			// 4/1 ≥ 200%; the stable window only (58×70 + 2×700)/60 = 91 → 2.
			{secs: 2, conc: 700, ready: 1, want: 4, panic: true},
			// (2×70 + 4×700)/6 = 490 → 7.
			{secs: 2, conc: 700, ready: 4, want: 7, panic: true},
			{secs: 2, conc: 700, ready: 7, want: 10, panic: true},
		},
	}, {
		name: "no scale-down while panicking; panic ends a stable window after the last tick over",
		spec: DefaultSpec(),
		steps: []step{
			{secs: 2, conc: 70, ready: 1, repeat: 30, want: 1},
			{secs: 2, conc: 700, ready: 1, want: 4, panic: true}, // last tick over: T = +62 s
			// The load is gone; panic holds the 4 pods.
			{secs: 2, conc: 0, ready: 4, want: 4, panic: true},
			{secs: 2, conc: 0, ready: 4, repeat: 28, want: 4, panic: true}, // T + 58 s
			{secs: 2, conc: 0, ready: 4, want: 4, panic: true},             // T + 60 s: not yet past
			// T + 62 s: past a stable window. The stable window is all zeros; down by at most ½.
			{secs: 2, conc: 0, ready: 4, want: 2},
		},
	}, {
		name: "panic keeps the most pods wanted during it",
		spec: DefaultSpec(),
		steps: []step{
			{secs: 2, conc: 70, ready: 1, repeat: 30, want: 1},
			{secs: 2, conc: 700, ready: 1, want: 4, panic: true},
			{secs: 2, conc: 700, ready: 4, want: 7, panic: true},
			{secs: 2, conc: 700, ready: 7, want: 10, panic: true},
			// The burst halves: the panic window, (2×700 + 4×350)/6 = 467, wants 7; 10 were wanted.
			{secs: 4, conc: 350, ready: 10, want: 10, panic: true},
		},
	}, {
		name: "scale up is limited to MaxScaleUpRate × ready per decision",
		spec: withSpec(func(s *Spec) { s.MaxScaleUpRate = 2; s.PanicThresholdPercentage = 1000 }),
		steps: []step{
			// Wants 10; 10/1 pods is over even a 1000% threshold, but panic wants only what the
			// rate limit allows as well.
			{secs: 2, conc: 700, ready: 1, want: 2, panic: true},
			{secs: 2, conc: 700, ready: 2, want: 4, panic: true},
			{secs: 2, conc: 700, ready: 4, want: 8, panic: true},
			{secs: 2, conc: 700, ready: 8, want: 10, panic: true},
		},
	}, {
		name: "a scale-up rate that rounds down still grows by a pod",
		spec: withSpec(func(s *Spec) { s.MaxScaleUpRate = 1.1; s.PanicThresholdPercentage = 1000 }),
		steps: []step{
			// Knative's example: floor would keep 2 pods; ceil(1.1 × 2) = 3 grows by one.
			{secs: 2, conc: 700, ready: 2, want: 3, panic: true}, // (the restart guard panics)
			{secs: 2, conc: 700, ready: 3, want: 4, panic: true}, // ceil(1.1 × 3) = 4
		},
	}, {
		name: "scale down is limited to ready / MaxScaleDownRate per decision",
		spec: DefaultSpec(),
		steps: []step{
			{secs: 2, conc: 0, ready: 1, want: 1, pending: true},
			{secs: 2, conc: 0, ready: 16, want: 8},
			{secs: 2, conc: 0, ready: 8, want: 4},
			{secs: 2, conc: 0, ready: 4, want: 2},
			{secs: 2, conc: 0, ready: 2, want: 1},
			// 0 is wanted now, but scale to zero waits (see below).
			{secs: 2, conc: 0, ready: 1, want: 1, pending: true},
		},
	}, {
		name: "a gentler scale-down rate",
		spec: withSpec(func(s *Spec) { s.MaxScaleDownRate = 4 }),
		steps: []step{
			{secs: 2, conc: 0, ready: 1, want: 1, pending: true},
			{secs: 2, conc: 0, ready: 16, want: 4},
		},
	}, {
		name: "no scale-down delay: down as soon as the stable window drops",
		spec: withSpec(func(s *Spec) { s.StableWindow = 6 * time.Second; s.PanicThresholdPercentage = 1000 }),
		steps: []step{
			{secs: 2, conc: 350, ready: 1, want: 5},
			{secs: 2, conc: 350, ready: 5, want: 5},
			{secs: 2, conc: 0, ready: 5, want: 4}, // (4×350)/6 = 233 → 4
			{secs: 2, conc: 0, ready: 5, want: 2}, // 117 → 2
		},
	}, {
		name: "scale-down delay keeps the most pods wanted over the delay",
		spec: withSpec(func(s *Spec) {
			s.StableWindow = 6 * time.Second
			s.PanicThresholdPercentage = 1000
			s.ScaleDownDelay = 10 * time.Second
		}),
		steps: []step{
			{secs: 2, conc: 350, ready: 1, want: 5}, // +2 s: 5
			{secs: 2, conc: 350, ready: 5, want: 5}, // +4 s: 5
			{secs: 2, conc: 0, ready: 5, want: 5},   // +6 s: 4 wanted
			{secs: 2, conc: 0, ready: 5, want: 5},   // +8 s: 2 wanted
			{secs: 4, conc: 0, ready: 5, want: 5},   // +12 s: 2 wanted; the 5 of +4 s still counts
			{secs: 2, conc: 0, ready: 5, want: 4},   // +14 s: the 5 of +4 s is 10 s old; the 4 of +6 s counts
			{secs: 2, conc: 0, ready: 5, want: 2},   // +16 s
			{secs: 2, conc: 700, ready: 2, want: 4}, // up is never delayed: (2×700)/6 = 233 → 4
		},
	}, {
		name: "min-scale keeps pods without load and never scales to zero",
		spec: withSpec(func(s *Spec) { s.MinScale = 2 }),
		steps: []step{
			{secs: 2, conc: 0, ready: 0, want: 2},
			{secs: 2, conc: 0, ready: follow, repeat: 100, want: 2},
		},
	}, {
		name: "max-scale caps a burst",
		spec: withSpec(func(s *Spec) { s.MaxScale = 3 }),
		steps: []step{
			{secs: 2, conc: 7000, ready: 1, want: 3, panic: true},
			{secs: 2, conc: 7000, ready: 3, want: 3, panic: true},
		},
	}, {
		name: "initial scale holds until that many pods have been ready",
		spec: withSpec(func(s *Spec) { s.InitialScale = 3 }),
		steps: []step{
			{secs: 2, conc: 0, ready: 0, want: 3},
			{secs: 2, conc: 0, ready: 2, repeat: 40, want: 3}, // +82 s: still not 3 ready
			{secs: 2, conc: 0, ready: 3, want: 1},             // initialized; down by ½ of 3
		},
	}, {
		name: "initial scale 0, when allowed, starts at zero and stays there",
		spec: withSpec(func(s *Spec) { s.InitialScale = 0; s.AllowZeroInitialScale = true }),
		steps: []step{
			{ready: 0, want: 0, valid: ptr(false)},
			{secs: 2, conc: 0, ready: 0, want: 0},
			{secs: 2, conc: 0, ready: 0, repeat: 50, want: 0},
		},
	}, {
		name: "activation scale: from zero straight to activation-scale pods",
		spec: withSpec(func(s *Spec) { s.InitialScale = 0; s.AllowZeroInitialScale = true; s.ActivationScale = 3 }),
		steps: []step{
			{secs: 2, conc: 0, ready: 0, want: 0},
			{secs: 2, conc: 1, ready: 0, want: 3},
			{secs: 2, conc: 1, ready: 3, want: 3},
			{secs: 2, conc: 1, ready: 3, repeat: 40, want: 3}, // a light load keeps 3
		},
	}, {
		name: "scale to zero after the stable window and then the grace period, not before",
		spec: DefaultSpec(),
		steps: []step{
			{secs: 10, conc: 10, ready: 1, want: 1}, // the last activity is at +10 s
			{secs: 2, conc: 0, ready: 1, repeat: 29, want: 1},
			// +70 s: the stable window is empty: 0 wanted, the grace period starts.
			{secs: 2, conc: 0, ready: 1, want: 1, pending: true},
			{secs: 2, conc: 0, ready: 1, repeat: 14, want: 1, pending: true}, // +98 s
			{secs: 2, conc: 0, ready: 1, want: 0},                            // +100 s
			{secs: 2, conc: 0, ready: 0, repeat: 10, want: 0},
		},
	}, {
		name: "activity during the grace period restarts it",
		spec: DefaultSpec(),
		steps: []step{
			{secs: 10, conc: 10, ready: 1, want: 1},
			{secs: 2, conc: 0, ready: 1, repeat: 40, want: 1, pending: true}, // +90 s
			{secs: 2, conc: 1, ready: 1, want: 1},                            // +92 s: a call
			{secs: 2, conc: 0, ready: 1, repeat: 44, want: 1, pending: true}, // +180 s
			{secs: 2, conc: 0, ready: 1, want: 0},                            // +182 s = 92 + 60 + 30
		},
	}, {
		name: "a new function with no traffic keeps its initial pod for a stable window and the grace period",
		spec: DefaultSpec(),
		steps: []step{
			{secs: 1, conc: 0, ready: 0, want: 1, pending: true}, // first decision at +1 s
			{secs: 2, conc: 0, ready: 1, repeat: 44, want: 1, pending: true},
			{secs: 2, conc: 0, ready: 1, want: 0}, // +91 s
		},
	}, {
		name: "a poke at zero wants a pod at once, without statistics",
		spec: withSpec(func(s *Spec) { s.InitialScale = 0; s.AllowZeroInitialScale = true }),
		steps: []step{
			{ready: 0, want: 0, valid: ptr(false)},
			{secs: 1, noStats: true, poke: true, ready: 0, want: 1},
			// No statistics ever arrive: the poke counts as activity, so the pod stays for a
			// stable window and the grace period after it.
			{secs: 2, noStats: true, ready: 1, want: 1, valid: ptr(false)},
		},
	}, {
		name: "a poke at zero with statistics of zeros",
		spec: DefaultSpec(),
		steps: []step{
			{secs: 10, conc: 1, ready: 1, want: 1},
			{secs: 2, conc: 0, ready: 1, repeat: 45, want: 0}, // +100 s: at zero
			{secs: 2, conc: 0, ready: 0, want: 0},
			{poke: true, ready: 0, want: 1},
			// Zeros are recorded but the poke at +102 s is activity: one pod is kept.
			{secs: 2, conc: 0, ready: 1, repeat: 29, want: 1, pending: true}, // +160 s
			{secs: 2, conc: 0, ready: 1, want: 1, pending: true},             // +162 s: the grace period starts
			{secs: 2, conc: 0, ready: 1, repeat: 14, want: 1, pending: true}, // +190 s
			{secs: 2, conc: 0, ready: 1, want: 0},                            // +192 s = 102 + 60 + 30
		},
	}, {
		name: "a poke wants activation-scale pods",
		spec: withSpec(func(s *Spec) { s.InitialScale = 0; s.AllowZeroInitialScale = true; s.ActivationScale = 4 }),
		steps: []step{
			{ready: 0, want: 0, valid: ptr(false)},
			{poke: true, ready: 0, want: 4},
		},
	}, {
		name: "a poke never lowers the decision",
		spec: DefaultSpec(),
		steps: []step{
			{secs: 2, conc: 700, ready: 10, repeat: 32, want: 10},
			{secs: 2, conc: 700, poke: true, ready: 10, want: 10},
		},
	}, {
		name: "actors per pod wins when larger",
		spec: withSpec(func(s *Spec) { s.TargetActorsPerPod = 10 }),
		steps: []step{
			{secs: 2, conc: 70, actors: 45, ready: 1, want: 5}, // concurrency wants 1, actors 5
			{secs: 2, conc: 70, actors: 45, ready: 5, want: 5},
			{secs: 2, conc: 70, actors: 45, ready: 5, repeat: 40, want: 5},
			// Actors leave: the newest snapshot's count is used at once, but down is rate-limited.
			{secs: 2, conc: 70, actors: 5, ready: 5, want: 2},
		},
	}, {
		name: "concurrency wins when larger than the actors' need",
		spec: withSpec(func(s *Spec) { s.TargetActorsPerPod = 10 }),
		steps: []step{
			{secs: 2, conc: 700, actors: 5, ready: 10, repeat: 32, want: 10},
		},
	}, {
		name: "actors are ignored when the signal is off",
		spec: DefaultSpec(),
		steps: []step{
			{secs: 2, conc: 70, actors: 1000, ready: 1, repeat: 3, want: 1},
		},
	}, {
		name: "rps metric: requests per second over 200 × 0.7 per pod",
		spec: withSpec(func(s *Spec) { s.Metric = MetricRPS }),
		steps: []step{
			{secs: 2, reqs: 700, conc: 1, ready: 5, repeat: 32, want: 5},
			{secs: 2, reqs: 1400, conc: 1, ready: 10, repeat: 32, want: 10},
		},
	}, {
		name: "rps metric with a target",
		spec: withSpec(func(s *Spec) { s.Metric = MetricRPS; s.Target = 10; s.TargetUtilization = 1 }),
		steps: []step{
			{secs: 2, reqs: 35, ready: 4, repeat: 32, want: 4},
		},
	}, {
		name: "containerConcurrency lowers the target",
		spec: withSpec(func(s *Spec) { s.ContainerConcurrency = 10; s.TargetUtilization = 1 }),
		steps: []step{
			{secs: 2, conc: 35, ready: 4, repeat: 32, want: 4},
		},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			run(t, tc.spec, tc.steps)
		})
	}
}

func TestDecideTimeWeighted(t *testing.T) {
	// Snapshots of uneven windows: 1.5 s at 100 and 0.5 s at 20 average (150+10)/2 = 80 over
	// 2 s, not (100+20)/2 = 60. Target 10 per pod.
	spec := withSpec(func(s *Spec) { s.Target = 10; s.TargetUtilization = 1; s.PanicThresholdPercentage = 1000 })
	d, err := NewDecider(spec)
	if err != nil {
		t.Fatal(err)
	}
	d.Record(stats.Snapshot{Time: t0.Add(1500 * time.Millisecond), Window: 1500 * time.Millisecond, AverageConcurrency: 100})
	d.Record(stats.Snapshot{Time: t0.Add(2000 * time.Millisecond), Window: 500 * time.Millisecond, AverageConcurrency: 20})
	dec := d.Decide(t0.Add(2*time.Second), 8)
	if dec.StableValue != 80 || dec.PanicValue != 80 || dec.DesiredPods != 8 {
		t.Fatalf("got %+v; want stable = panic = 80, 8 pods", dec)
	}
}

func TestDecideStaleStatistics(t *testing.T) {
	// Statistics older than the stable window are gone: no decision, the previous one stands.
	d, err := NewDecider(DefaultSpec())
	if err != nil {
		t.Fatal(err)
	}
	d.Record(stats.Snapshot{Time: t0.Add(time.Second), Window: time.Second, AverageConcurrency: 700})
	if dec := d.Decide(t0.Add(2*time.Second), 1); dec.DesiredPods != 10 || !dec.Valid {
		t.Fatalf("got %+v; want 10 pods", dec)
	}
	// The +1 s snapshot covers (0 s, 1 s], the window at +60 s covers (0 s, 60 s].
	if dec := d.Decide(t0.Add(60*time.Second), 10); !dec.Valid || dec.StableValue != 700 {
		t.Fatalf("at +60 s got %+v; want the +1 s snapshot still in the window", dec)
	}
	dec := d.Decide(t0.Add(61*time.Second), 10)
	if dec.Valid || dec.DesiredPods != 10 || dec.StableValue != 0 {
		t.Fatalf("at +61 s got %+v; want no decision, 10 pods kept", dec)
	}
	// A snapshot a window older than one already recorded in its slot is dropped.
	d.Record(stats.Snapshot{Time: t0.Add(62 * time.Second), Window: time.Second, AverageConcurrency: 70})
	d.Record(stats.Snapshot{Time: t0.Add(2 * time.Second), Window: time.Second, AverageConcurrency: 7000})
	if dec := d.Decide(t0.Add(62*time.Second), 10); dec.StableValue != 70 {
		t.Fatalf("got %+v; want only the +62 s snapshot", dec)
	}
}

func TestDecideUnseenFunctionSnapshot(t *testing.T) {
	// The recorder answers a function it has not seen with a window of no length; it counts as
	// one second of its InFlight (zero), which is data: a decision is made.
	d, err := NewDecider(DefaultSpec())
	if err != nil {
		t.Fatal(err)
	}
	d.Record(stats.Snapshot{Time: t0.Add(time.Second)})
	dec := d.Decide(t0.Add(time.Second), 0)
	if !dec.Valid || dec.DesiredPods != 1 || !dec.ScaleToZeroPending {
		t.Fatalf("got %+v; want a valid decision holding the initial pod", dec)
	}
}

func TestDeciderUpdate(t *testing.T) {
	d, now := run(t, DefaultSpec(), []step{{secs: 2, conc: 140, ready: 2, repeat: 32, want: 2}})
	if err := d.Update(withSpec(func(s *Spec) { s.StableWindow = 5 * time.Second })); err == nil {
		t.Fatal("Update accepted an invalid spec")
	}
	// A smaller target: the same load needs more pods; the statistics are kept.
	if err := d.Update(withSpec(func(s *Spec) { s.Target = 10; s.StableWindow = 30 * time.Second })); err != nil {
		t.Fatal(err)
	}
	dec := d.Decide(now, 2)
	if dec.StableValue != 140 || dec.DesiredPods != 20 || !dec.Valid {
		t.Fatalf("got %+v; want 140 → 20 pods", dec)
	}
	if d.Spec().Target != 10 {
		t.Fatalf("Spec() = %+v", d.Spec())
	}
}

func BenchmarkDecide(b *testing.B) {
	for _, window := range []time.Duration{DefaultStableWindow, MaxStableWindow} {
		b.Run(fmt.Sprintf("window=%v", window), func(b *testing.B) {
			spec := withSpec(func(s *Spec) { s.StableWindow = window; s.TargetActorsPerPod = 10 })
			d, err := NewDecider(spec)
			if err != nil {
				b.Fatal(err)
			}
			now := t0
			for range int(window.Seconds()) {
				now = now.Add(time.Second)
				d.Record(stats.Snapshot{Time: now, Window: time.Second, AverageConcurrency: 350, Requests: 1000, ActiveActors: 40})
			}
			ready := 5
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				now = now.Add(time.Second)
				d.Record(stats.Snapshot{Time: now, Window: time.Second, AverageConcurrency: float64(300 + i%100), Requests: 1000, ActiveActors: 40})
				ready = int(d.Decide(now, ready).DesiredPods)
			}
		})
	}
}
