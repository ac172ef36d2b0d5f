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
	m := NewMailboxes(100)
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

func TestMailboxDifferentActorsRunInParallel(t *testing.T) {
	m := NewMailboxes(1)
	a, err := m.Acquire(context.Background(), "a")
	if err != nil {
		t.Fatal(err)
	}
	defer a.Release()
	b, err := m.Acquire(context.Background(), "b") // must not wait for a
	if err != nil {
		t.Fatal(err)
	}
	b.Release()
}

func TestMailboxQueueIsBounded(t *testing.T) {
	m := NewMailboxes(2)
	release, _ := m.Acquire(context.Background(), "a")
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

func TestMailboxCancelledWaiterLeavesTheQueue(t *testing.T) {
	m := NewMailboxes(10)
	release, _ := m.Acquire(context.Background(), "a")
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
	m := NewMailboxes(10)
	r1, _ := m.Acquire(context.Background(), "a")
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
	m := NewMailboxes(10)
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
	m := NewMailboxes(10)
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
	m := NewMailboxes(10)
	for _, next := range []string{"a", "b"} {
		old, _ := m.Acquire(context.Background(), "a")
		old.Release() // its mailbox goes back to the pool
		cur, err := m.Acquire(context.Background(), next)
		if err != nil {
			t.Fatal(err)
		}
		old.Release() // stale: must not free cur's actor
		waiter := make(chan Turn)
		go func() { w, _ := m.Acquire(context.Background(), next); waiter <- w }()
		waitForWaiters(t, m, next, 1)
		select {
		case <-waiter:
			t.Fatalf("a stale Release handed %q's turn to a waiter", next)
		case <-time.After(20 * time.Millisecond):
		}
		cur.Release()
		(<-waiter).Release()
		if n := m.Active(); n != 0 {
			t.Fatalf("%d mailboxes left", n)
		}
	}
}
