package router

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/knactor/knactor/test/proctest"
)

func TestMailboxRunsTurnsOneAtATimeInArrivalOrder(t *testing.T) {
	m := NewMailboxes(100, 0)
	first, err := m.Acquire(context.Background(), "a")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		order []int
		wg    sync.WaitGroup
	)
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			release, err := m.Acquire(context.Background(), "a")
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
			release.Release()
		}()
		waitForWaiters(t, m, "a", i+1) // make arrival order explicit
	}
	first.Release()
	wg.Wait()
	for i, got := range order {
		if got != i {
			t.Fatalf("turns ran in order %v, want arrival order", order)
		}
	}
	if n := m.Active(); n != 0 {
		t.Fatalf("%d mailboxes left after every turn ended, want 0", n)
	}
}

// mustAcquire takes actor's turn, failing the test if it cannot: a setup step of the tests.
func mustAcquire(t *testing.T, m *Mailboxes, actor string) Turn {
	t.Helper()
	turn, err := m.Acquire(context.Background(), actor)
	if err != nil {
		t.Fatalf("Acquire(%q): %v", actor, err)
	}
	return turn
}

// waitForWaiters waits until actor has n calls queued behind the running turn.
func waitForWaiters(t *testing.T, m *Mailboxes, actor string, n int) {
	t.Helper()
	s := m.shardOf(actor)
	proctest.Eventually(t, fmt.Sprintf("%d waiters for %q", n, actor), func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		b := s.boxes[actor]
		return b != nil && b.sem.Waiting() == n || b == nil && n == 0
	})
}

// Different actors run in parallel: each takes its turn at once while the others hold theirs,
// with no room to wait, and also when they share a shard. Each Acquire has a deadline, so a
// mailbox that made one actor wait for another fails the test in bounded time, not by a hang.
func TestMailboxDifferentActorsRunInParallel(t *testing.T) {
	const waitTimeout = 5 * time.Second
	tests := []struct {
		name   string
		limit  int
		actors func(m *Mailboxes) []string
	}{
		{name: "two actors", limit: 1, actors: func(*Mailboxes) []string { return []string{"a", "b"} }},
		{name: "no room to wait", limit: 0, actors: func(*Mailboxes) []string { return []string{"a", "b", "c"} }},
		{name: "one shard", limit: 1, actors: sameShard},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := NewMailboxes(tt.limit, 0)
			var held []string
			for _, actor := range tt.actors(m) {
				ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
				got := make(chan error, 1)
				var turn Turn
				go func() {
					var err error
					turn, err = m.Acquire(ctx, actor)
					got <- err
				}()
				select {
				case err := <-got:
					cancel()
					if err != nil {
						t.Fatalf("Acquire(%q) while %v hold their turns: %v, want the turn at once", actor, held, err)
					}
				case <-time.After(waitTimeout + time.Second):
					cancel()
					t.Fatalf("Acquire(%q) still waits after %v while %v hold their turns", actor, waitTimeout, held)
				}
				defer turn.Release()
				held = append(held, actor)
			}
			if n := m.Active(); n != len(held) {
				t.Fatalf("%d mailboxes for %d busy actors", n, len(held))
			}
		})
	}
}

// sameShard returns three actors whose mailboxes share a shard of m.
func sameShard(m *Mailboxes) []string {
	actors := []string{"a"}
	for i := 0; len(actors) < 3; i++ {
		if id := "actor-" + strconv.Itoa(i); m.shardOf(id) == m.shardOf("a") {
			actors = append(actors, id)
		}
	}
	return actors
}

func TestMailboxQueueIsBounded(t *testing.T) {
	m := NewMailboxes(2, 0)
	release := mustAcquire(t, m, "a")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for range 2 {
		go func() { _, _ = m.Acquire(ctx, "a") }()
	}
	waitForWaiters(t, m, "a", 2)
	_, err := m.Acquire(context.Background(), "a")
	var ae *apiError
	if !errors.As(err, &ae) || ae.status != 429 {
		t.Fatalf("third waiter: err = %v, want 429", err)
	}
	cancel()
	release.Release()
}

// The router-wide bound counts the calls waiting behind every actor's turn: past it a call that
// would wait is refused with 503 and leaves nothing behind, while a call that runs at once (its
// actor idle) is never refused.
func TestMailboxesBoundTheCallsWaitingInAll(t *testing.T) {
	m := NewMailboxes(10, 2)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, b := mustAcquire(t, m, "a"), mustAcquire(t, m, "b")
	waited := make(chan error, 2)
	for _, actor := range []string{"a", "b"} {
		go func() {
			turn, err := m.Acquire(ctx, actor)
			if err == nil {
				turn.Release()
			}
			waited <- err
		}()
	}
	waitForWaiters(t, m, "a", 1)
	waitForWaiters(t, m, "b", 1)
	if got := m.Waiting(); got != 2 {
		t.Fatalf("Waiting() = %d, want 2", got)
	}
	_, err := m.Acquire(context.Background(), "a")
	var ae *apiError
	if !errors.As(err, &ae) || ae.status != 503 || ae.code != CodeNoCapacity {
		t.Fatalf("a third waiting call: err = %v, want 503 %s", err, CodeNoCapacity)
	}
	c := mustAcquire(t, m, "c") // an idle actor's call runs at once, bound or not
	c.Release()
	if got := m.Waiting(); got != 2 {
		t.Fatalf("Waiting() = %d after the refusal, want 2", got)
	}
	a.Release()
	b.Release()
	for range 2 {
		if err := <-waited; err != nil {
			t.Fatalf("a waiting call: %v", err)
		}
	}
	if got, active := m.Waiting(), m.Active(); got != 0 || active != 0 {
		t.Fatalf("Waiting() = %d, Active() = %d at the end, want 0 and 0", got, active)
	}
}

func TestMailboxCancelledWaiterLeavesTheQueue(t *testing.T) {
	m := NewMailboxes(10, 0)
	release := mustAcquire(t, m, "a")
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error)
	go func() { _, err := m.Acquire(ctx, "a"); errc <- err }()
	waitForWaiters(t, m, "a", 1)
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled waiter: err = %v", err)
	}
	waitForWaiters(t, m, "a", 0)
	release.Release()
	if m.Active() != 0 {
		t.Fatal("mailbox leaked after a cancelled waiter")
	}
	// The actor is free again.
	r2, err := m.Acquire(context.Background(), "a")
	if err != nil {
		t.Fatal(err)
	}
	r2.Release()
}

func TestMailboxReleaseIsIdempotent(t *testing.T) {
	m := NewMailboxes(10, 0)
	r1 := mustAcquire(t, m, "a")
	done := make(chan Turn)
	go func() { r, _ := m.Acquire(context.Background(), "a"); done <- r }()
	waitForWaiters(t, m, "a", 1)
	r1.Release()
	r1.Release() // must not hand the turn on a second time
	r2 := <-done
	third := make(chan struct{})
	go func() { r, _ := m.Acquire(context.Background(), "a"); r.Release(); close(third) }()
	waitForWaiters(t, m, "a", 1)
	r2.Release()
	<-third
}

func TestMailboxIdleActorsCostNothing(t *testing.T) {
	m := NewMailboxes(10, 0)
	n := 1_000_000
	if testing.Short() {
		n = 100_000
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range n {
		r, err := m.Acquire(context.Background(), "actor-"+strconv.Itoa(i))
		if err != nil {
			t.Fatal(err)
		}
		r.Release()
	}
	if n := m.Active(); n != 0 {
		t.Fatalf("%d mailboxes kept for idle actors", n)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	// Go maps keep their buckets after deletes, so allow the shards' tables, not the actors.
	if grown := int64(after.HeapAlloc) - int64(before.HeapAlloc); grown > 64<<20 {
		t.Fatalf("heap grew by %d MiB after %d idle actors", grown>>20, n)
	}
}

func BenchmarkMailboxUncontended(b *testing.B) {
	m := NewMailboxes(10, 0)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			r, _ := m.Acquire(context.Background(), "actor-"+strconv.Itoa(i&1023))
			r.Release()
			i++
		}
	})
}

// Mailboxes are recycled: a turn released long ago must not end the turn of whoever holds the
// recycled mailbox now, whichever actor that is.
func TestMailboxStaleTurnOfARecycledMailboxDoesNothing(t *testing.T) {
	m := NewMailboxes(10, 0)
	for _, next := range []string{"a", "b"} {
		old := mustAcquire(t, m, "a")
		old.Release() // its mailbox goes back to the pool
		cur, err := m.Acquire(context.Background(), next)
		if err != nil {
			t.Fatal(err)
		}
		old.Release() // stale: must not free cur's actor
		waiter := make(chan Turn)
		go func() { w, _ := m.Acquire(context.Background(), next); waiter <- w }()
		// The waiter is in line, so cur's actor is still held: a stale Release that had freed
		// it would have let the waiter take the turn at once instead.
		waitForWaiters(t, m, next, 1)
		select {
		case <-waiter:
			t.Fatalf("a stale Release handed %q's turn to a waiter", next)
		default:
		}
		cur.Release()
		(<-waiter).Release()
		if n := m.Active(); n != 0 {
			t.Fatalf("%d mailboxes left", n)
		}
	}
}
