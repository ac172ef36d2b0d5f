package fifo

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// waitTimeout bounds every wait of these tests, so a broken Sem fails them instead of hanging.
const waitTimeout = 5 * time.Second

// guarded is a Sem with the lock that guards it, as its users keep them.
type guarded struct {
	mu  sync.Mutex
	sem Sem
}

func newGuarded(capacity, maxWaiting int) *guarded {
	g := &guarded{}
	g.sem.Init(capacity, maxWaiting)
	return g
}

func (g *guarded) acquire(ctx context.Context) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.sem.Acquire(ctx, &g.mu)
}

func (g *guarded) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.sem.Release()
}

func (g *guarded) state() (held, waiting int, idle bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.sem.Held(), g.sem.Waiting(), g.sem.Idle()
}

// awaitWaiting waits until n callers wait in g's line.
func (g *guarded) awaitWaiting(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		_, waiting, _ := g.state()
		if waiting == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d waiting, want %d", waiting, n)
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// acquireAsync starts an acquire on its own goroutine and returns where its error arrives.
func (g *guarded) acquireAsync(ctx context.Context) <-chan error {
	errc := make(chan error, 1)
	go func() { errc <- g.acquire(ctx) }()
	return errc
}

func receive(t *testing.T, errc <-chan error, what string) error {
	t.Helper()
	select {
	case err := <-errc:
		return err
	case <-time.After(waitTimeout):
		t.Fatalf("%s: no answer within %v", what, waitTimeout)
		return nil
	}
}

func TestTryAcquireTakesFreeSlotsOnly(t *testing.T) {
	tests := []struct {
		name       string
		capacity   int
		maxWaiting int
		wantTaken  int
	}{
		{name: "no slot", capacity: 0, wantTaken: 0},
		{name: "one slot", capacity: 1, wantTaken: 1},
		{name: "three slots, unbounded line", capacity: 3, maxWaiting: -1, wantTaken: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s Sem
			s.Init(tt.capacity, tt.maxWaiting)
			if !s.Idle() {
				t.Fatal("a new Sem is not idle")
			}
			taken := 0
			for s.TryAcquire() {
				taken++
				if taken > tt.capacity {
					t.Fatalf("TryAcquire succeeded %d times with %d slots", taken, tt.capacity)
				}
			}
			if taken != tt.wantTaken || s.Held() != tt.wantTaken {
				t.Fatalf("took %d (held %d), want %d", taken, s.Held(), tt.wantTaken)
			}
			for range taken {
				s.Release()
			}
			if !s.Idle() {
				t.Fatalf("held %d, waiting %d after every slot was given back", s.Held(), s.Waiting())
			}
		})
	}
}

// Waiters are served in arrival order, one freed slot each, and never more than capacity hold
// at once.
func TestWaitersAreServedInArrivalOrder(t *testing.T) {
	tests := []struct {
		name     string
		capacity int
		waiters  int
	}{
		{name: "one slot", capacity: 1, waiters: 20},
		{name: "three slots", capacity: 3, waiters: 30},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := newGuarded(tt.capacity, -1)
			for range tt.capacity {
				if err := g.acquire(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			served := make(chan int)
			done := make([]chan struct{}, tt.waiters)
			var wg sync.WaitGroup
			for i := range tt.waiters {
				done[i] = make(chan struct{})
				wg.Add(1)
				go func() {
					defer wg.Done()
					if err := g.acquire(context.Background()); err != nil {
						t.Error(err)
						return
					}
					served <- i
					<-done[i]
					g.release()
				}()
				g.awaitWaiting(t, i+1) // make the arrival order explicit
			}
			// Free one slot at a time: the test's own first, then the earliest waiters'.
			for k := range tt.waiters {
				if k < tt.capacity {
					g.release()
				} else {
					close(done[k-tt.capacity])
				}
				select {
				case got := <-served:
					if got != k {
						t.Fatalf("slot %d went to waiter %d, want %d (arrival order)", k, got, k)
					}
				case <-time.After(waitTimeout):
					t.Fatalf("slot %d was not handed to anyone", k)
				}
				if held, _, _ := g.state(); held > tt.capacity {
					t.Fatalf("%d held, capacity %d", held, tt.capacity)
				}
			}
			for k := tt.waiters - tt.capacity; k < tt.waiters; k++ {
				close(done[k])
			}
			wg.Wait()
			if _, _, idle := g.state(); !idle {
				t.Fatal("not idle after every holder released")
			}
		})
	}
}

func TestTheLineIsBounded(t *testing.T) {
	tests := []struct {
		name       string
		maxWaiting int
		fill       int // waiters that fit
	}{
		{name: "no room", maxWaiting: 0, fill: 0},
		{name: "two", maxWaiting: 2, fill: 2},
		{name: "unbounded", maxWaiting: -1, fill: 50},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := newGuarded(1, tt.maxWaiting)
			if err := g.acquire(context.Background()); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			var errs []<-chan error
			for i := range tt.fill {
				errs = append(errs, g.acquireAsync(ctx))
				g.awaitWaiting(t, i+1)
			}
			if tt.maxWaiting >= 0 {
				if err := g.acquire(context.Background()); !errors.Is(err, ErrFull) {
					t.Fatalf("one waiter past the bound: err = %v, want ErrFull", err)
				}
				if _, waiting, _ := g.state(); waiting != tt.fill {
					t.Fatalf("%d waiting after a refusal, want %d", waiting, tt.fill)
				}
			}
			cancel()
			for _, errc := range errs {
				if err := receive(t, errc, "a cancelled waiter"); !errors.Is(err, context.Canceled) {
					t.Fatalf("cancelled waiter: err = %v", err)
				}
			}
			g.release()
			if held, waiting, idle := g.state(); !idle {
				t.Fatalf("held %d, waiting %d at the end, want idle", held, waiting)
			}
		})
	}
}

// hookedLocker runs hook once, after its first Unlock: inside Wait, that is when the caller
// has joined the line and not yet looked at its context or its turn.
type hookedLocker struct {
	sync.Locker
	once sync.Once
	hook func()
}

func (l *hookedLocker) Unlock() {
	l.Locker.Unlock()
	l.once.Do(l.hook)
}

// A waiter whose context ends leaves the line; one handed the slot just as its context ended
// either takes it or passes it on, so no slot leaks either way.
func TestCancelledWaiterLeavesTheLine(t *testing.T) {
	tests := []struct {
		name string
		// handOver gives the waiter the slot as its context ends: both are ready when it looks,
		// and Go's select picks one at random, so the case runs often enough to see both.
		handOver  bool
		nextWaits bool // a second waiter lines up behind it
	}{
		{name: "cancelled while waiting"},
		{name: "cancelled while waiting, with one behind", nextWaits: true},
		{name: "handed the slot as it was cancelled", handOver: true},
		{name: "handed the slot as it was cancelled, with one behind", handOver: true, nextWaits: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			runs := 1
			if tt.handOver {
				runs = 200
			}
			took, passed := 0, 0
			for range runs {
				g := newGuarded(1, -1)
				if err := g.acquire(context.Background()); err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithCancel(context.Background())
				var second <-chan error
				l := &hookedLocker{Locker: &g.mu, hook: func() {
					if tt.nextWaits {
						second = g.acquireAsync(context.Background())
						g.awaitWaiting(t, 2)
					}
					if tt.handOver {
						g.release() // to the first in line: the waiter
					}
					cancel()
				}}
				l.Lock()
				err := g.sem.Wait(ctx, l)
				l.Unlock()
				switch {
				case err == nil && tt.handOver:
					took++
					g.release()
				case errors.Is(err, context.Canceled) && tt.handOver:
					passed++ // to the second waiter, or freed
				case errors.Is(err, context.Canceled):
					g.release() // the holder gives its slot back
				default:
					t.Fatalf("Wait = %v", err)
				}
				if second != nil {
					if err := receive(t, second, "the second waiter"); err != nil {
						t.Fatalf("second waiter: %v", err)
					}
					g.release()
				}
				if held, waiting, idle := g.state(); !idle {
					t.Fatalf("held %d, waiting %d at the end, want idle: a slot leaked", held, waiting)
				}
			}
			if tt.handOver && (took == 0 || passed == 0) {
				t.Fatalf("in %d runs the waiter took the slot %d times and passed it on %d times; want both ways seen", runs, took, passed)
			}
		})
	}
}

// Init makes a used Sem new again, with its new capacity and bound.
func TestInitResets(t *testing.T) {
	var s Sem
	s.Init(1, 0)
	if !s.TryAcquire() || s.TryAcquire() {
		t.Fatal("a Sem of one slot gave out other than one")
	}
	s.Release()
	s.Init(2, 1)
	if !s.TryAcquire() || !s.TryAcquire() || s.TryAcquire() {
		t.Fatal("after Init(2, 1) the Sem gave out other than two slots")
	}
}

func BenchmarkUncontended(b *testing.B) {
	g := newGuarded(1, 10)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := g.acquire(ctx); err != nil {
			b.Fatal(err)
		}
		g.release()
	}
}

func TestUncontendedAcquireAllocatesNothing(t *testing.T) {
	g := newGuarded(1, 10)
	ctx := context.Background()
	if n := testing.AllocsPerRun(100, func() {
		if err := g.acquire(ctx); err != nil {
			t.Fatal(err)
		}
		g.release()
	}); n != 0 {
		t.Fatalf("an uncontended acquire and release allocate %v times, want 0", n)
	}
}

func TestResizeNeverAdmitsMoreThanTheLargerCapacity(t *testing.T) {
	tests := []struct {
		name     string
		from, to int
		held     int // slots held before the resize
		waiters  int // callers in line before the resize
		// admitted is how many waiters get a slot at the resize; afterRelease how many more
		// get one when every slot held before it is released.
		admitted, afterRelease int
	}{
		{name: "grow hands new slots to waiters", from: 2, to: 4, held: 2, waiters: 3, admitted: 2, afterRelease: 1},
		{name: "shrink admits nobody until below", from: 3, to: 1, held: 3, waiters: 2, admitted: 0, afterRelease: 1},
		{name: "same size changes nothing", from: 2, to: 2, held: 2, waiters: 1, admitted: 0, afterRelease: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := newGuarded(tt.from, -1)
			for range tt.held {
				if err := g.acquire(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			errcs := make([]<-chan error, tt.waiters)
			for i := range errcs {
				errcs[i] = g.acquireAsync(context.Background())
				g.awaitWaiting(t, i+1)
			}
			g.mu.Lock()
			g.sem.Resize(tt.to)
			g.mu.Unlock()
			for i := range tt.admitted {
				if err := receive(t, errcs[i], "admitted waiter"); err != nil {
					t.Fatal(err)
				}
			}
			g.awaitWaiting(t, tt.waiters-tt.admitted)
			if held, _, _ := g.state(); held > max(tt.from, tt.to) {
				t.Fatalf("%d held after the resize, over %d", held, max(tt.from, tt.to))
			}
			for range tt.held {
				g.release()
			}
			for i := tt.admitted; i < tt.admitted+tt.afterRelease; i++ {
				if err := receive(t, errcs[i], "waiter after release"); err != nil {
					t.Fatal(err)
				}
			}
			g.awaitWaiting(t, tt.waiters-tt.admitted-tt.afterRelease)
			if held, _, _ := g.state(); held != tt.admitted+tt.afterRelease {
				t.Fatalf("%d held after the releases, want %d", held, tt.admitted+tt.afterRelease)
			}
		})
	}
}
