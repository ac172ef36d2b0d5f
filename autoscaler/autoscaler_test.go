package autoscaler

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/knactor/knactor/router/stats"
)

// fakeSource reports, for each function, one second of a set concurrency and actor count.
type fakeSource struct {
	clk *clocktesting.FakeClock

	mu     sync.Mutex
	conc   map[string]float64
	actors map[string]int
}

func (s *fakeSource) set(function string, conc float64, actors int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.conc[function], s.actors[function] = conc, actors
}

func (s *fakeSource) Snapshot(function string) stats.Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.conc[function]
	return stats.Snapshot{Function: function, Time: s.clk.Now(), Window: time.Second,
		AverageConcurrency: c, InFlight: int(c), ActiveActors: s.actors[function]}
}

// fakeScaler makes pods ready the moment they are asked for, and can fail calls.
type fakeScaler struct {
	mu    sync.Mutex
	pods  map[string]int
	calls []string // "function=n"
	fail  map[string]int
}

func (s *fakeScaler) Scale(_ context.Context, function string, desired int32) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, fmt.Sprintf("%s=%d", function, desired))
	if s.fail[function] > 0 {
		s.fail[function]--
		return errors.New("scale target unavailable")
	}
	s.pods[function] = int(desired)
	return nil
}

func (s *fakeScaler) ReadyPods(function string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pods[function]
}

// setPods makes the function run n ready pods, as if something other than the Autoscaler
// scaled it.
func (s *fakeScaler) setPods(function string, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pods[function] = n
}

// takeCalls returns the Scale calls since the previous takeCalls.
func (s *fakeScaler) takeCalls() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	calls := s.calls
	s.calls = nil
	return calls
}

type harness struct {
	t     *testing.T
	clk   *clocktesting.FakeClock
	src   *fakeSource
	sc    *fakeScaler
	a     *Autoscaler
	loops chan time.Time
	stop  func() error

	// applied, when not nil, receives "function=n" after each Scale call ("function=n!" when
	// it failed), and waitLoop does not wait for the appliers.
	applied chan string
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	return newHarnessWith(t, nil)
}

// newHarnessWith is newHarness with the Scaler wrap returns around the fakeScaler (nil: the
// fakeScaler itself); with a wrap, waitLoop returns without waiting for Scale calls, which
// h.applied reports instead.
func newHarnessWith(t *testing.T, wrap func(*fakeScaler) Scaler) *harness {
	t.Helper()
	clk := clocktesting.NewFakeClock(t0)
	h := &harness{
		t:     t,
		clk:   clk,
		src:   &fakeSource{clk: clk, conc: map[string]float64{}, actors: map[string]int{}},
		sc:    &fakeScaler{pods: map[string]int{}, fail: map[string]int{}},
		loops: make(chan time.Time, 1),
	}
	var scaler Scaler = h.sc
	if wrap != nil {
		scaler = wrap(h.sc)
		h.applied = make(chan string, 100)
	}
	h.a = New(Config{}, h.src, scaler, clk, nil)
	h.a.afterLoop = func(now time.Time) { h.loops <- now }
	if h.applied != nil {
		h.a.afterApply = func(function string, desired int32, err error) {
			mark := ""
			if err != nil {
				mark = "!"
			}
			h.applied <- fmt.Sprintf("%s=%d%s", function, desired, mark)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- h.a.Run(ctx) }()
	var once sync.Once
	var err error
	h.stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-errc:
			case <-time.After(10 * time.Second):
				err = errors.New("Run did not return after its context ended")
			}
		})
		return err
	}
	t.Cleanup(func() { _ = h.stop() })
	return h
}

// waitLoop waits for the loop to finish handling one tick or round of pokes and, unless
// h.applied reports them, for the Scale calls it started.
func (h *harness) waitLoop() time.Time {
	h.t.Helper()
	var now time.Time
	select {
	case now = <-h.loops:
	case <-time.After(10 * time.Second):
		h.t.Fatal("the autoscaler loop did not run")
	}
	if h.applied == nil {
		// The loop is back in its select and starts no applier before the test's next step.
		settled := make(chan struct{})
		go func() { h.a.appliers.Wait(); close(settled) }()
		select {
		case <-settled:
		case <-time.After(10 * time.Second):
			h.t.Fatal("the Scale calls did not end")
		}
	}
	return now
}

// waitApplied waits for the Scale calls want (in any order) to end, as h.applied reports them.
func (h *harness) waitApplied(want ...string) {
	h.t.Helper()
	var got []string
	for len(got) < len(want) {
		select {
		case c := <-h.applied:
			got = append(got, c)
		case <-time.After(10 * time.Second):
			h.t.Fatalf("at +%v Scale calls ended %q, want %q", h.clk.Now().Sub(t0), got, want)
		}
	}
	slices.Sort(got)
	want = slices.Sorted(slices.Values(want))
	if !slices.Equal(got, want) {
		h.t.Fatalf("at +%v Scale calls ended %q, want %q", h.clk.Now().Sub(t0), got, want)
	}
}

// step moves the clock one scrape interval, once the loop's ticker exists, and waits for the
// loop to handle the tick.
func (h *harness) step(n int) {
	h.t.Helper()
	for range n {
		for !h.clk.HasWaiters() {
			runtime.Gosched()
		}
		h.clk.Step(time.Second)
		if now := h.waitLoop(); !now.Equal(h.clk.Now()) {
			h.t.Fatalf("the loop handled %v, the clock is at %v", now, h.clk.Now())
		}
	}
}

func (h *harness) wantCalls(want ...string) {
	h.t.Helper()
	if got := h.sc.takeCalls(); !slices.Equal(got, want) {
		h.t.Fatalf("at +%v Scale calls = %q, want %q", h.clk.Now().Sub(t0), got, want)
	}
}

// wantCallsInAnyOrder is wantCalls for calls made by several appliers at once.
func (h *harness) wantCallsInAnyOrder(want ...string) {
	h.t.Helper()
	got := slices.Sorted(slices.Values(h.sc.takeCalls()))
	if want = slices.Sorted(slices.Values(want)); !slices.Equal(got, want) {
		h.t.Fatalf("at +%v Scale calls = %q, want %q", h.clk.Now().Sub(t0), got, want)
	}
}

func (h *harness) status(function string) Status {
	h.t.Helper()
	st, ok := h.a.Status(function)
	if !ok {
		h.t.Fatalf("no status for %s", function)
	}
	return st
}

func TestAutoscaler(t *testing.T) {
	h := newHarness(t)
	if err := h.a.Add("fn", DefaultSpec()); err != nil {
		t.Fatal(err)
	}
	if st := h.status("fn"); st.DesiredPods != 1 || st.AppliedPods != -1 || !st.LastDecision.IsZero() || st.TargetPerPod != 70 {
		t.Fatalf("status before Run = %+v", st)
	}

	// +1 s: the first tick decides at once: the initial pod.
	h.step(1)
	h.wantCalls("fn=1")
	if st := h.status("fn"); st.DesiredPods != 1 || st.AppliedPods != 1 || st.ReadyPods != 0 ||
		!st.LastDecision.Equal(t0.Add(time.Second)) {
		t.Fatalf("status at +1 s = %+v", st)
	}

	// A burst. +2 s only records; +3 s decides: (0 + 700 + 700)/3 = 467 → 7 pods, panicking.
	h.src.set("fn", 700, 0)
	h.step(1)
	h.wantCalls()
	if st := h.status("fn"); !st.LastDecision.Equal(t0.Add(time.Second)) {
		t.Fatalf("decided at +2 s: %+v", st)
	}
	h.step(1)
	h.wantCalls("fn=7")
	if st := h.status("fn"); st.DesiredPods != 7 || st.AppliedPods != 7 || !st.Panicking ||
		st.ReadyPods != 1 || st.PanicValue != 466.666667 {
		t.Fatalf("status at +3 s = %+v", st)
	}

	// A failed Scale is recorded and retried at the next decision.
	h.src.set("fn", 7000, 0)
	h.sc.mu.Lock()
	h.sc.fail["fn"] = 1
	h.sc.mu.Unlock()
	h.step(2) // +5 s: (0 + 2×700 + 2×7000)/5 = 3080 → 44 pods
	h.wantCalls("fn=44")
	if st := h.status("fn"); st.DesiredPods != 44 || st.AppliedPods != 7 || st.ScaleError == "" {
		t.Fatalf("status after a failed Scale = %+v", st)
	}
	h.step(2) // +7 s: (0 + 2×700 + 4×7000)/6 = 4900 → 70 pods
	h.wantCalls("fn=70")
	if st := h.status("fn"); st.AppliedPods != 70 || st.ScaleError != "" {
		t.Fatalf("status after the retry = %+v", st)
	}
	// An unchanged decision calls nothing.
	h.step(2)
	h.step(2)
	h.wantCalls("fn=100") // the 6 s panic window is all 7000 now
	h.step(2)
	h.wantCalls()

	// A function at zero is scaled up at once on a poke, without a clock step.
	spec := DefaultSpec()
	spec.InitialScale, spec.AllowZeroInitialScale = 0, true
	if err := h.a.Add("zero", spec); err != nil {
		t.Fatal(err)
	}
	h.step(1)
	h.wantCalls("zero=0")
	h.a.Poke("zero")
	h.waitLoop()
	h.wantCalls("zero=1")
	if st := h.status("zero"); st.DesiredPods != 1 || st.AppliedPods != 1 {
		t.Fatalf("status after a poke = %+v", st)
	}
	h.a.Poke("unknown") // ignored, never blocks

	// Removing a function stops its scaling.
	if got := h.a.Functions(); !slices.Equal(got, []string{"fn", "zero"}) {
		t.Fatalf("Functions() = %q", got)
	}
	h.a.Remove("fn")
	if _, ok := h.a.Status("fn"); ok {
		t.Fatal("Status of a removed function")
	}
	h.src.set("fn", 0, 0)
	h.step(10)
	for _, c := range h.sc.takeCalls() {
		if c[:3] == "fn=" {
			t.Fatalf("Scale called for a removed function: %s", c)
		}
	}

	if err := h.stop(); err != nil {
		t.Fatalf("Run() = %v", err)
	}
}

func TestAutoscalerScalesToZeroAndBack(t *testing.T) {
	h := newHarness(t)
	spec := DefaultSpec()
	spec.TargetActorsPerPod = 2
	if err := h.a.Add("fn", spec); err != nil {
		t.Fatal(err)
	}
	// Light load for 10 s on the initial pod; 5 active actors want 3 pods.
	h.src.set("fn", 1, 5)
	h.step(1)
	h.wantCalls("fn=3")
	h.step(9) // +10 s
	h.wantCalls()
	if st := h.status("fn"); st.ActiveActors != 5 || st.DesiredPods != 3 {
		t.Fatalf("status = %+v", st)
	}
	// Idle: down to 1 as the rate limit allows, then zero a stable window and the grace period
	// after the last activity (+10 s): the decision at +101 s (decisions fall on odd seconds).
	h.src.set("fn", 0, 0)
	h.step(1) // +11 s: decides 1 (the actors are gone; 3/2 → 1)
	h.wantCalls("fn=1")
	h.step(89) // +100 s
	h.wantCalls()
	h.step(1) // +101 s
	h.wantCalls("fn=0")
	if st := h.status("fn"); st.DesiredPods != 0 || st.ReadyPods != 1 {
		t.Fatalf("status = %+v", st)
	}
	h.step(10)
	h.wantCalls()

	// A call arrives: the activator pokes.
	h.a.Poke("fn")
	h.waitLoop()
	h.wantCalls("fn=1")
}

// Something else scales the target to zero behind the decider (Knative retiring a revision):
// the next decision (a call's poke, or the next tick) applies the decision again although it is
// the one applied, and keeps applying it until a pod is ready.
func TestAutoscalerReappliesWhileNoPodIsReady(t *testing.T) {
	h := newHarness(t)
	if err := h.a.Add("fn", DefaultSpec()); err != nil {
		t.Fatal(err)
	}
	h.src.set("fn", 1, 1)
	h.step(1)
	h.wantCalls("fn=1")
	h.step(1)
	h.wantCalls() // unchanged: nothing to apply

	h.sc.setPods("fn", 0) // scaled down by someone else
	h.a.Poke("fn")
	h.waitLoop()
	h.wantCalls("fn=1")
	if st := h.status("fn"); st.AppliedPods != 1 || st.ReadyPods != 0 {
		t.Fatalf("status = %+v", st)
	}
	// The pod is slow to come (or scaled away again): every decision applies the scale.
	h.sc.setPods("fn", 0)
	h.step(2) // one decision (they come every 2 s)
	h.wantCalls("fn=1")
	// With the pod back, nothing is applied.
	h.step(2)
	h.wantCalls()
	h.a.Poke("fn")
	h.waitLoop()
	h.wantCalls()
}

func TestAutoscalerAddUpdatesSpec(t *testing.T) {
	h := newHarness(t)
	if err := h.a.Add("fn", DefaultSpec()); err != nil {
		t.Fatal(err)
	}
	h.src.set("fn", 140, 0)
	h.step(1)
	h.wantCalls("fn=2")
	spec := DefaultSpec()
	spec.MinScale = 5
	if err := h.a.Add("fn", spec); err != nil {
		t.Fatal(err)
	}
	h.step(2)
	h.wantCalls("fn=5")

	bad := DefaultSpec()
	bad.StableWindow = time.Second
	var fe *FieldError
	if err := h.a.Add("fn", bad); !errors.As(err, &fe) || fe.Field != AnnotationWindow {
		t.Fatalf("Add(invalid) = %v", err)
	}
	if err := h.a.Add("other", bad); err == nil {
		t.Fatal("Add(invalid) of a new function succeeded")
	}
	if _, ok := h.a.Status("other"); ok {
		t.Fatal("an invalid function was added")
	}
}

func TestAutoscalerRunsOnce(t *testing.T) {
	h := newHarness(t)
	for !h.clk.HasWaiters() { // the first Run is in its loop
		runtime.Gosched()
	}
	if err := h.a.Run(context.Background()); err == nil {
		t.Fatal("a second Run started")
	}
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
	// Stopped, it can run again.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := h.a.Run(ctx); err != nil {
		t.Fatalf("Run after a stop = %v", err)
	}
}

// blockingScaler is a fakeScaler whose Scale calls for one function block until release is
// closed or their context ends.
type blockingScaler struct {
	*fakeScaler
	slow    string
	release chan struct{}
	started chan int32 // the scale of each call for slow, when it starts
}

func (s *blockingScaler) Scale(ctx context.Context, function string, desired int32) error {
	if function == s.slow {
		s.started <- desired
		select {
		case <-s.release:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return s.fakeScaler.Scale(ctx, function, desired)
}

// One function's Scale hangs: the other functions are still decided and scaled, a poke still
// scales one from zero, the hung function is still decided, and once its call returns only its
// latest decision is applied. When Run's context ends, a hung Scale is cancelled and Run
// returns.
func TestAutoscalerScaleNeverBlocksDeciding(t *testing.T) {
	for _, tc := range []struct {
		name    string
		release bool // release the hung call; otherwise Run's context ends while it hangs
	}{
		{name: "released", release: true},
		{name: "stopped"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bs := &blockingScaler{slow: "slow", release: make(chan struct{}), started: make(chan int32, 10)}
			h := newHarnessWith(t, func(f *fakeScaler) Scaler { bs.fakeScaler = f; return bs })
			zero := DefaultSpec()
			zero.InitialScale, zero.AllowZeroInitialScale = 0, true
			for name, spec := range map[string]Spec{"slow": DefaultSpec(), "fast": DefaultSpec(), "zero": zero} {
				if err := h.a.Add(name, spec); err != nil {
					t.Fatal(err)
				}
			}
			wantStarted := func(want ...int32) {
				t.Helper()
				var got []int32
				for done := false; !done; {
					select {
					case d := <-bs.started:
						got = append(got, d)
					default:
						done = true
					}
				}
				if !slices.Equal(got, want) {
					t.Fatalf("at +%v Scale calls started for slow: %v, want %v", h.clk.Now().Sub(t0), got, want)
				}
			}

			// +1 s: the first decisions. slow's call hangs; the others end.
			h.step(1)
			h.waitApplied("fast=1", "zero=0")
			select {
			case d := <-bs.started:
				if d != 1 {
					t.Fatalf("slow's first Scale asked %d, want 1", d)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("slow's Scale did not start")
			}

			// A burst on both: fast is scaled at +3 s and +5 s while slow's call hangs; slow is
			// decided too (7 at +3 s, then 44 at +5 s with more load).
			h.src.set("fast", 700, 0)
			h.src.set("slow", 700, 0)
			h.step(2)
			h.waitApplied("fast=7")
			if st := h.status("slow"); st.DesiredPods != 7 || st.AppliedPods != -1 || !st.LastDecision.Equal(t0.Add(3*time.Second)) {
				t.Fatalf("slow's status at +3 s = %+v", st)
			}
			h.src.set("slow", 7000, 0)
			h.step(2)
			h.waitApplied("fast=8")
			if st := h.status("slow"); st.DesiredPods != 44 || st.AppliedPods != -1 || !st.LastDecision.Equal(t0.Add(5*time.Second)) {
				t.Fatalf("slow's status at +5 s = %+v", st)
			}

			// A poke scales zero from zero at once.
			h.a.Poke("zero")
			h.waitLoop()
			h.waitApplied("zero=1")
			if st := h.status("zero"); st.AppliedPods != 1 {
				t.Fatalf("zero's status after a poke = %+v", st)
			}
			wantStarted() // one call for slow at a time

			if !tc.release {
				if err := h.stop(); err != nil {
					t.Fatalf("Run() with a hung Scale = %v", err)
				}
				h.waitApplied("slow=1!")
				wantStarted() // the latest decision is not applied after the stop
				h.wantCallsInAnyOrder("fast=1", "zero=0", "fast=7", "fast=8", "zero=1")
				return
			}
			// The hung call returns: only slow's latest decision follows it, not the 7.
			close(bs.release)
			h.waitApplied("slow=1", "slow=44")
			wantStarted(44)
			if st := h.status("slow"); st.AppliedPods != 44 || st.ScaleError != "" {
				t.Fatalf("slow's status after the release = %+v", st)
			}
			h.wantCallsInAnyOrder("fast=1", "zero=0", "fast=7", "fast=8", "zero=1", "slow=1", "slow=44")
			if err := h.stop(); err != nil {
				t.Fatalf("Run() = %v", err)
			}
		})
	}
}
