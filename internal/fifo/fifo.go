// Package fifo is knactor's one FIFO semaphore: a number of slots that callers take and give
// back, with the callers that find none free waiting in a bounded line and served strictly in
// arrival order. A freed slot passes straight to the first waiter, so a caller that arrives
// later can never overtake one that waits.
//
// The router's actor mailboxes (one slot per actor: its turn) and the activator's per-pod
// capacity breakers (containerConcurrency slots) are both built on it.
//
// A Sem has no lock of its own: like a sync.Cond's L, a lock of the caller's guards it, so a
// mailbox can keep it under the lock of its shard's map without a second lock on the hot path.
// Every method must be called with that lock held.
package fifo

import (
	"context"
	"errors"
	"slices"
	"sync"
)

// ErrFull is returned by Wait when the line already holds the Sem's maximum of waiters.
var ErrFull = errors.New("fifo: too many waiters")

// Sem is a counting semaphore whose waiters are served in arrival order. Its zero value has no
// slot and no room to wait; Init sets both. A lock of the caller's guards it (see the package
// documentation).
type Sem struct {
	capacity   int
	maxWaiting int
	held       int
	waiters    []chan struct{} // closed to hand a slot to that waiter
}

// Init sets s to capacity slots, none held, and a line of at most maxWaiting waiters (negative:
// no bound). It keeps the storage of an earlier line, so a pooled Sem is reused without
// allocating. Call it only on a Sem nobody holds or waits on.
func (s *Sem) Init(capacity, maxWaiting int) {
	s.capacity, s.maxWaiting, s.held = capacity, maxWaiting, 0
	clear(s.waiters)
	s.waiters = s.waiters[:0]
}

// TryAcquire takes a free slot if there is one and nobody waits for it, and reports whether it
// did. It never waits or allocates.
func (s *Sem) TryAcquire() bool {
	if s.held < s.capacity && len(s.waiters) == 0 {
		s.held++
		return true
	}
	return false
}

// Acquire takes a slot, waiting in line for one if needed: TryAcquire, then Wait. It is called
// with mu held and returns with mu held; mu is released while the caller waits.
func (s *Sem) Acquire(ctx context.Context, mu sync.Locker) error {
	if s.TryAcquire() {
		return nil
	}
	return s.Wait(ctx, mu)
}

// Wait joins the end of the line and waits until a slot is handed over (nil: the caller holds
// it). It is called with mu, the lock that guards s, held; it releases mu while it waits and
// holds it again when it returns, as sync.Cond.Wait does. It fails at once with ErrFull when
// the line is full, and with ctx's error when ctx ends first: the caller then holds no slot and
// has left the line (a slot handed over just as ctx ended is passed on to the next waiter).
//
// Call it after TryAcquire failed: a caller that waits while a slot is free waits for ever.
func (s *Sem) Wait(ctx context.Context, mu sync.Locker) error {
	if s.maxWaiting >= 0 && len(s.waiters) >= s.maxWaiting {
		return ErrFull
	}
	ready := make(chan struct{})
	s.waiters = append(s.waiters, ready)
	mu.Unlock()
	select {
	case <-ready:
		mu.Lock()
		return nil
	case <-ctx.Done():
	}
	mu.Lock()
	if i := slices.Index(s.waiters, ready); i >= 0 {
		s.waiters = slices.Delete(s.waiters, i, i+1)
		return ctx.Err()
	}
	// The slot was handed over just as ctx ended: pass it on rather than leak it.
	s.Release()
	return ctx.Err()
}

// Release gives back a slot: the first waiter gets it, or it is free again. A slot given back
// while more are held than the capacity allows (Resize shrank it) is retired instead of handed
// on. Releasing a slot that is not held is a bug of the caller's; s does not detect it.
func (s *Sem) Release() {
	if len(s.waiters) > 0 && s.held <= s.capacity {
		next := s.waiters[0]
		s.waiters[0] = nil
		s.waiters = s.waiters[1:]
		close(next) // the slot passes straight to the next waiter: held stays the same
		return
	}
	s.held--
}

// Resize sets s to capacity slots, keeping the slots held and the line as they are: a larger
// capacity hands the new slots to the first waiters at once; a smaller one admits nobody until
// enough held slots are released to bring their number below it. So a change of capacity never
// lets more than the larger of the two capacities hold a slot at once.
func (s *Sem) Resize(capacity int) {
	s.capacity = capacity
	for s.held < s.capacity && len(s.waiters) > 0 {
		next := s.waiters[0]
		s.waiters[0] = nil
		s.waiters = s.waiters[1:]
		s.held++
		close(next)
	}
}

// Capacity returns how many slots s has.
func (s *Sem) Capacity() int { return s.capacity }

// Held returns how many slots are held.
func (s *Sem) Held() int { return s.held }

// Waiting returns how many callers wait in line.
func (s *Sem) Waiting() int { return len(s.waiters) }

// Idle reports whether no slot is held and nobody waits.
func (s *Sem) Idle() bool { return s.held == 0 && len(s.waiters) == 0 }
