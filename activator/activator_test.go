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

// fakePods is a ready set that tests change by hand.
type fakePods struct {
	mu      sync.Mutex
	set     *placement.Set
	changed chan struct{}
}

func newFakePods() *fakePods {
	return &fakePods{set: placement.NewSet(nil), changed: make(chan struct{})}
}

func (f *fakePods) Ready(string) *placement.Set {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.set
}

func (f *fakePods) Changed(string) <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.changed
}

func (f *fakePods) setPods(pods ...placement.Pod) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.set = placement.NewSet(pods)
	close(f.changed)
	f.changed = make(chan struct{})
}

type countingPoker struct{ n atomic.Int64 }

func (p *countingPoker) Poke(string) { p.n.Add(1) }

func TestHeldCallsAreReleasedWhenAPodIsReady(t *testing.T) {
	pods, poker := newFakePods(), &countingPoker{}
	a := New(Config{}, pods, poker)
	var wg sync.WaitGroup
	for range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			set, err := a.AwaitReady(context.Background(), "fn")
			if err != nil || set.Len() != 1 {
				t.Errorf("AwaitReady = %v, %v", set, err)
			}
		}()
	}
	proctest.Eventually(t, "200 held calls", func() bool { return a.Waiting("fn") == 200 })
	if poker.n.Load() == 0 {
		t.Fatal("the autoscaler was not poked")
	}
	pods.setPods() // a change that still has no ready pod keeps them held
	pods.setPods(placement.Pod{Name: "p", Addr: "127.0.0.1:1"})
	wg.Wait()
	if a.Waiting("fn") != 0 {
		t.Fatal("held calls left behind")
	}
}

func TestQueueFullAndDeadline(t *testing.T) {
	pods := newFakePods()
	a := New(Config{QueueDepth: 2}, pods, &countingPoker{})
	ctx, cancel := context.WithCancel(context.Background())
	for range 2 {
		go func() { _, _ = a.AwaitReady(ctx, "fn") }()
	}
	proctest.Eventually(t, "2 held calls", func() bool { return a.Waiting("fn") == 2 })
	if _, err := a.AwaitReady(context.Background(), "fn"); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("third call: %v, want ErrQueueFull", err)
	}
	cancel()
	proctest.Eventually(t, "no held calls", func() bool { return a.Waiting("fn") == 0 })
	short, cancel2 := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel2()
	if _, err := a.AwaitReady(short, "fn"); !errors.Is(err, ErrNoPod) {
		t.Fatalf("deadline: %v, want ErrNoPod", err)
	}
}

func TestReadyFunctionIsNotHeld(t *testing.T) {
	pods, poker := newFakePods(), &countingPoker{}
	pods.setPods(placement.Pod{Name: "p", Addr: "x"})
	a := New(Config{}, pods, poker)
	if _, err := a.AwaitReady(context.Background(), "fn"); err != nil || poker.n.Load() != 0 {
		t.Fatalf("err %v, pokes %d: a warm function must pass straight through", err, poker.n.Load())
	}
}

func TestCapacityIsPerPodAndFIFO(t *testing.T) {
	a := New(Config{}, newFakePods(), &countingPoker{})
	pod := placement.Pod{Name: "p"}
	var running, peak atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var order []int
	first, err := a.Acquire(context.Background(), pod, 1)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			release, err := a.Acquire(context.Background(), pod, 1)
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
			release()
		}()
		proctest.Eventually(t, fmt.Sprintf("%d waiting for the slot", i+1), func() bool {
			b := a.breakers["p"]
			b.mu.Lock()
			defer b.mu.Unlock()
			return b.sem.Waiting() == i+1
		})
	}
	first()
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
			release, err := a.Acquire(context.Background(), placement.Pod{Name: "r"}, 3)
			if err != nil {
				t.Error(err)
				return
			}
			n := running.Add(1)
			for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
			}
			time.Sleep(time.Millisecond)
			running.Add(-1)
			release()
		}()
	}
	wg.Wait()
	if peak.Load() > 3 {
		t.Fatalf("%d calls ran on a pod of capacity 3", peak.Load())
	}
	// Unlimited capacity never waits.
	for range 100 {
		r, err := a.Acquire(context.Background(), placement.Pod{Name: "q"}, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer r()
	}
}

func TestCancelledCapacityWaiterLeaves(t *testing.T) {
	a := New(Config{}, newFakePods(), &countingPoker{})
	pod := placement.Pod{Name: "p"}
	r, err := a.Acquire(context.Background(), pod, 1)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if _, err := a.Acquire(ctx, pod, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v", err)
	}
	r()
	r2, err := a.Acquire(context.Background(), pod, 1)
	if err != nil {
		t.Fatal(err)
	}
	r2()
}
