package activator

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/knactor/knactor/router/placement"
	"github.com/knactor/knactor/test/proctest"
)

// fakePods is a ready set that tests change by hand: every target's, or only the one named
// target's (the others have none).
type fakePods struct {
	mu      sync.Mutex
	target  string // "": the set is every target's
	set     *placement.Set
	changed chan struct{}
}

func newFakePods() *fakePods {
	return &fakePods{set: placement.NewSet(nil), changed: make(chan struct{})}
}

func (f *fakePods) Ready(target string) *placement.Set {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.target != "" && target != f.target {
		return placement.NewSet(nil)
	}
	return f.set
}

func (f *fakePods) Changed(string) <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.changed
}

func (f *fakePods) setPods(pods ...placement.Pod) { f.setTarget("", pods...) }

// setTarget makes pods the ready set of target ("": of every target).
func (f *fakePods) setTarget(target string, pods ...placement.Pod) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.target = target
	f.set = placement.NewSet(pods)
	close(f.changed)
	f.changed = make(chan struct{})
}

type countingPoker struct{ n atomic.Int64 }

func (p *countingPoker) Poke(string) { p.n.Add(1) }

// try claims a pod of target fn with capacity, choosing the owner of "k".
func try(ctx context.Context, a *Activator, capacity int) (Claim, error) {
	return a.Try(ctx, time.Time{}, Target{Name: "fn", Capacity: capacity}, OwnerOf("k"))
}

// slotsWaiting returns how many calls wait for a capacity slot of the named pod.
func (a *Activator) slotsWaiting(pod string) int {
	a.mu.RLock()
	p := a.byName[pod]
	a.mu.RUnlock()
	if p == nil {
		return 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sem.Waiting()
}

// tracked returns how many targets and pods the activator keeps state for.
func (a *Activator) tracked() (targets, pods int) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return len(a.targets), len(a.byName)
}

func TestHeldCallsAreReleasedWhenAPodIsReady(t *testing.T) {
	pods, poker := newFakePods(), &countingPoker{}
	a := New(Config{}, pods, poker)
	var wg sync.WaitGroup
	for range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := a.Try(context.Background(), time.Time{}, Target{Name: "fn"}, LeastLoaded())
			if err != nil || c.Pod.Name != "p" {
				t.Errorf("Try = %v, %v", c.Pod, err)
			}
			c.Release()
		}()
	}
	proctest.Eventually(t, "200 held calls", func() bool { return a.Waiting("fn") == 200 })
	if poker.n.Load() == 0 {
		t.Fatal("the autoscaler was not poked")
	}
	pods.setPods() // a change that still has no ready pod keeps them held
	pods.setPods(placement.Pod{Name: "p", Addr: "127.0.0.1:1"})
	wg.Wait()
	if a.Waiting("fn") != 0 || a.InFlight("p") != 0 {
		t.Fatalf("%d held calls and %d in flight left behind", a.Waiting("fn"), a.InFlight("p"))
	}
}

func TestQueueFullAndDeadline(t *testing.T) {
	pods := newFakePods()
	a := New(Config{QueueDepth: 2}, pods, &countingPoker{})
	ctx, cancel := context.WithCancel(context.Background())
	for range 2 {
		go func() { _, _ = try(ctx, a, 0) }()
	}
	proctest.Eventually(t, "2 held calls", func() bool { return a.Waiting("fn") == 2 })
	if _, err := try(context.Background(), a, 0); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("third call: %v, want ErrQueueFull", err)
	}
	cancel()
	proctest.Eventually(t, "no held calls", func() bool { return a.Waiting("fn") == 0 })
	// The deadline bounds the hold as the context does.
	_, err := a.Try(context.Background(), time.Now().Add(10*time.Millisecond), Target{Name: "fn"}, LeastLoaded())
	if !errors.Is(err, ErrNoPod) {
		t.Fatalf("deadline: %v, want ErrNoPod", err)
	}
}

func TestWithoutAReadyPod(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		ready   bool
		wantErr error
		pokes   int64
	}{
		{name: "warm function passes straight through", ready: true},
		{name: "no hold fails at once", cfg: Config{NoHold: true}, wantErr: ErrNoReadyPod},
		{name: "no hold passes a warm function", cfg: Config{NoHold: true}, ready: true},
		{name: "cold function is held and poked", wantErr: ErrNoPod, pokes: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pods, poker := newFakePods(), &countingPoker{}
			if tt.ready {
				pods.setPods(placement.Pod{Name: "p", Addr: "x"})
			}
			a := New(tt.cfg, pods, poker)
			c, err := a.Try(context.Background(), time.Now().Add(10*time.Millisecond), Target{Name: "fn"}, OwnerOf("k"))
			if !errors.Is(err, tt.wantErr) || poker.n.Load() != tt.pokes {
				t.Fatalf("err %v, pokes %d; want %v, %d", err, poker.n.Load(), tt.wantErr, tt.pokes)
			}
			if err == nil && c.Pod.Name != "p" {
				t.Fatalf("claimed %q, want p", c.Pod.Name)
			}
			c.Release()
		})
	}
}

func TestChoices(t *testing.T) {
	pods := []placement.Pod{{Name: "a", Addr: "1"}, {Name: "b", Addr: "2"}}
	set := placement.NewSet(pods)
	owner, _ := set.Owner("actor-7")
	tests := []struct {
		name   string
		choice Choice
		busy   string // a pod that holds calls before the choice
		want   string
	}{
		{name: "owner of the key", choice: OwnerOf("actor-7"), want: owner.Name},
		{name: "owner even when busy", choice: OwnerOf("actor-7"), busy: owner.Name, want: owner.Name},
		{name: "least loaded of two avoids a", choice: LeastLoaded(), busy: "a", want: "b"},
		{name: "least loaded of two avoids b", choice: LeastLoaded(), busy: "b", want: "a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fp := newFakePods()
			fp.setPods(pods...)
			a := New(Config{}, fp, &countingPoker{})
			if tt.busy != "" {
				key := "k"
				for i := 0; ; i++ { // a key the busy pod owns
					if p, _ := set.Owner(key); p.Name == tt.busy {
						break
					}
					key = fmt.Sprint("k", i)
				}
				for range 3 {
					c, err := a.Try(context.Background(), time.Time{}, Target{Name: "fn"}, OwnerOf(key))
					if err != nil || c.Pod.Name != tt.busy {
						t.Fatalf("claimed %q (%v), want the busy pod %q", c.Pod.Name, err, tt.busy)
					}
					defer c.Release()
				}
			}
			for range 20 {
				c, err := a.Try(context.Background(), time.Time{}, Target{Name: "fn"}, tt.choice)
				if err != nil || c.Pod.Name != tt.want {
					t.Fatalf("chose %q (%v), want %q", c.Pod.Name, err, tt.want)
				}
				c.Release()
			}
		})
	}
}

func TestCapacityIsPerPodAndFIFO(t *testing.T) {
	pods := newFakePods()
	pods.setPods(placement.Pod{Name: "p"})
	a := New(Config{}, pods, &countingPoker{})
	var running, peak atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var order []int
	first, err := try(context.Background(), a, 1)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := try(context.Background(), a, 1)
			if err != nil {
				t.Error(err)
				return
			}
			n := running.Add(1)
			for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
			}
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
			running.Add(-1)
			c.Release()
		}()
		proctest.Eventually(t, fmt.Sprintf("%d waiting for the slot", i+1), func() bool { return a.slotsWaiting("p") == i+1 })
	}
	if got := a.InFlight("p"); got != 11 {
		t.Fatalf("%d calls in flight, want 11 (one running, ten waiting)", got)
	}
	first.Release()
	wg.Wait()
	if peak.Load() > 1 {
		t.Fatalf("%d calls ran on a pod of capacity 1", peak.Load())
	}
	for i, got := range order {
		if got != i {
			t.Fatalf("slots given in order %v, want arrival order", order)
		}
	}
	// Capacity 3 under contention: never more than 3 at once.
	running.Store(0)
	peak.Store(0)
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := try(context.Background(), a, 3)
			if err != nil {
				t.Error(err)
				return
			}
			n := running.Add(1)
			for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
			}
			time.Sleep(time.Millisecond)
			running.Add(-1)
			c.Release()
		}()
	}
	wg.Wait()
	if peak.Load() > 3 {
		t.Fatalf("%d calls ran on a pod of capacity 3", peak.Load())
	}
	// Unlimited capacity never waits.
	for range 100 {
		c, err := try(context.Background(), a, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Release()
	}
}

func TestCancelledCapacityWaiterLeaves(t *testing.T) {
	pods := newFakePods()
	pods.setPods(placement.Pod{Name: "p"})
	a := New(Config{}, pods, &countingPoker{})
	c, err := try(context.Background(), a, 1)
	if err != nil {
		t.Fatal(err)
	}
	_, err = a.Try(context.Background(), time.Now().Add(10*time.Millisecond), Target{Name: "fn", Capacity: 1}, OwnerOf("k"))
	var slot *SlotError
	if !errors.As(err, &slot) || slot.Pod != "p" || slot.Capacity != 1 || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, want a SlotError of p", err)
	}
	if a.InFlight("p") != 1 || a.slotsWaiting("p") != 0 {
		t.Fatalf("the waiter that gave up is still counted: %d in flight, %d waiting", a.InFlight("p"), a.slotsWaiting("p"))
	}
	c.Release()
	c2, err := try(context.Background(), a, 1)
	if err != nil {
		t.Fatal(err)
	}
	c2.Release()
}

// A pod's capacity changes (the function was updated) while calls hold its slots: the calls
// admitted never exceed the larger of the two capacities, as they did when a new capacity
// brought a fresh set of slots.
func TestCapacityChangeNeverAdmitsTwice(t *testing.T) {
	tests := []struct {
		name     string
		from, to int
	}{
		{name: "grows", from: 2, to: 4},
		{name: "shrinks", from: 3, to: 1},
		{name: "unchanged", from: 2, to: 2},
		{name: "limit lifted", from: 2, to: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pods := newFakePods()
			pods.setPods(placement.Pod{Name: "p"})
			a := New(Config{}, pods, &countingPoker{})
			var held []Claim
			for range tt.from {
				c, err := try(context.Background(), a, tt.from)
				if err != nil {
					t.Fatal(err)
				}
				held = append(held, c)
			}
			const callers = 6
			var running atomic.Int64
			admitted := make(chan Claim, callers)
			for range callers {
				go func() {
					c, err := try(context.Background(), a, tt.to)
					if err != nil {
						t.Error(err)
					}
					running.Add(1)
					admitted <- c
				}()
			}
			// Extra admissions: what the new capacity has beyond the slots held (all, without one).
			extra := callers
			if tt.to > 0 {
				extra = max(tt.to-tt.from, 0)
			}
			proctest.Eventually(t, "the callers admitted or in line", func() bool {
				return a.InFlight("p") == int64(tt.from+callers) && a.slotsWaiting("p") == callers-extra
			})
			if got := running.Load(); got != int64(extra) {
				t.Fatalf("%d callers admitted beside the %d held slots, want %d", got, tt.from, extra)
			}
			for _, c := range held {
				c.Release()
			}
			want := callers
			if tt.to > 0 {
				want = min(tt.to, callers)
			}
			proctest.Eventually(t, "the new capacity filled", func() bool { return running.Load() == int64(want) })
			time.Sleep(10 * time.Millisecond) // nobody else may get in
			if got := running.Load(); got != int64(want) {
				t.Fatalf("%d running after the old slots went, want %d", got, want)
			}
			for range callers {
				c := <-admitted
				c.Release()
			}
			if n := a.InFlight("p"); n != 0 {
				t.Fatalf("%d in flight after every release", n)
			}
		})
	}
}

// The activator keeps state only for the pods in the ready sets it has seen, and for pods that
// left them only until their last call ends: pod names are unique on Kubernetes (and revisions'
// names too), so state kept after that would only grow.
func TestStateFollowsTheReadySets(t *testing.T) {
	tests := []struct {
		name string
		// target returns the target of round i: one function whose pods churn (local mode), or
		// a new revision each time (Kubernetes rollouts).
		target func(i int) string
	}{
		{name: "pods churn", target: func(int) string { return "fn" }},
		{name: "revisions churn", target: func(i int) string { return fmt.Sprintf("fn-%05d", i) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pods := newFakePods()
			a := New(Config{}, pods, &countingPoker{})
			for i := range 500 {
				target := tt.target(i)
				pods.setTarget(target, placement.Pod{Name: fmt.Sprintf("pod-%05d", i)}, placement.Pod{Name: fmt.Sprintf("pod-%05d-b", i)})
				for _, capacity := range []int{0, 2} {
					c, err := a.Try(context.Background(), time.Time{}, Target{Name: target, Capacity: capacity}, LeastLoaded())
					if err != nil {
						t.Fatal(err)
					}
					c.Release()
				}
				if targets, podStates := a.tracked(); targets > 1 || podStates > 2 {
					t.Fatalf("round %d: state for %d targets and %d pods, want at most 1 and 2", i, targets, podStates)
				}
			}
		})
	}
}

// A pod that leaves the ready set while calls run on it is counted until they end (the
// router's Drain waits on it), then forgotten.
func TestLeavingPodIsCountedUntilItsLastCall(t *testing.T) {
	pods := newFakePods()
	pods.setPods(placement.Pod{Name: "old"})
	a := New(Config{}, pods, &countingPoker{})
	c, err := try(context.Background(), a, 1)
	if err != nil {
		t.Fatal(err)
	}
	pods.setPods(placement.Pod{Name: "new"})
	next, err := try(context.Background(), a, 1) // sees the change: "old" leaves
	if err != nil || next.Pod.Name != "new" {
		t.Fatalf("claimed %q (%v), want new", next.Pod.Name, err)
	}
	next.Release()
	if n := a.InFlight("old"); n != 1 {
		t.Fatalf("old pod: %d in flight, want 1 until its call ends", n)
	}
	c.Release()
	if _, podStates := a.tracked(); a.InFlight("old") != 0 || podStates != 1 {
		t.Fatalf("old pod still kept after its last call: %d pods", podStates)
	}
}

// A call to a warm pod, with or without a capacity, allocates nothing (the router's hot path).
func TestTryOnAWarmPodDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts: the race detector allocates on its own")
	}
	for _, capacity := range []int{0, 4} {
		pods := newFakePods()
		pods.setPods(placement.Pod{Name: "a"}, placement.Pod{Name: "b"})
		a := New(Config{}, pods, &countingPoker{})
		for _, choice := range []Choice{OwnerOf("k"), LeastLoaded()} {
			allocs := testing.AllocsPerRun(100, func() {
				c, err := a.Try(context.Background(), time.Now().Add(time.Second), Target{Name: "fn", Capacity: capacity}, choice)
				if err != nil {
					t.Fatal(err)
				}
				c.Release()
			})
			if allocs != 0 {
				t.Errorf("capacity %d, %+v: %.1f allocations per call, want 0", capacity, choice, allocs)
			}
		}
	}
}
