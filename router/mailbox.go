package router

import (
	"context"
	"hash/maphash"
	"sync"
)

// mailboxShards spread actors over independent locks so turns of different actors rarely
// contend; 64 is far more than two cores need and costs little.
const mailboxShards = 64

// Mailboxes give every actor a turn queue: its calls run one at a time, in arrival order, and
// different actors run in parallel. An actor has a mailbox only while a call for it runs or
// waits, so a million distinct actors cost nothing once they are idle.
//
// Concurrency: each shard's mutex guards its map and every mailbox in it. The goroutine that
// holds an actor's turn hands it to the first waiter directly (FIFO), never through a race.
type Mailboxes struct {
	seed   maphash.Seed
	limit  int
	shards [mailboxShards]mailboxShard
}

type mailboxShard struct {
	mu    sync.Mutex
	boxes map[string]*mailbox
}

// mailbox is the queue of one actor: the turn is held by someone, and waiters line up behind.
type mailbox struct {
	waiters []chan struct{} // closed to hand the turn to that waiter
}

// errQueueFull is returned by Acquire when the actor already has limit waiters.
var errQueueFull = errorf(429, CodeActorBusy, "too many calls are waiting for this actor; retry later")

// NewMailboxes returns mailboxes that let at most limit calls wait per actor.
func NewMailboxes(limit int) *Mailboxes {
	m := &Mailboxes{seed: maphash.MakeSeed(), limit: limit}
	for i := range m.shards {
		m.shards[i].boxes = make(map[string]*mailbox)
	}
	return m
}

// Acquire waits for actor's turn and returns the function that ends it. It fails with a 429
// apiError when the queue is full, or with ctx's error when ctx ends first (the caller then
// never held the turn).
func (m *Mailboxes) Acquire(ctx context.Context, actor string) (release func(), err error) {
	s := m.shardOf(actor)
	s.mu.Lock()
	box, busy := s.boxes[actor]
	if !busy {
		s.boxes[actor] = &mailbox{}
		s.mu.Unlock()
		return m.releaser(s, actor), nil
	}
	if len(box.waiters) >= m.limit {
		s.mu.Unlock()
		return nil, errQueueFull
	}
	ready := make(chan struct{})
	box.waiters = append(box.waiters, ready)
	s.mu.Unlock()

	select {
	case <-ready:
		return m.releaser(s, actor), nil
	case <-ctx.Done():
	}
	s.mu.Lock()
	for i, w := range box.waiters {
		if w == ready {
			box.waiters = append(box.waiters[:i], box.waiters[i+1:]...)
			s.mu.Unlock()
			return nil, ctx.Err()
		}
	}
	s.mu.Unlock()
	// The turn was handed over just as ctx ended: pass it on rather than leak it.
	m.releaser(s, actor)()
	return nil, ctx.Err()
}

func (m *Mailboxes) releaser(s *mailboxShard, actor string) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			box := s.boxes[actor]
			if len(box.waiters) == 0 {
				delete(s.boxes, actor)
				return
			}
			next := box.waiters[0]
			box.waiters[0] = nil
			box.waiters = box.waiters[1:]
			close(next)
		})
	}
}

func (m *Mailboxes) shardOf(actor string) *mailboxShard {
	return &m.shards[maphash.String(m.seed, actor)%mailboxShards]
}

// Active returns how many actors have a call running or waiting.
func (m *Mailboxes) Active() int {
	n := 0
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.Lock()
		n += len(s.boxes)
		s.mu.Unlock()
	}
	return n
}
