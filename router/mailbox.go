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
	// turn counts the hand-overs: a Turn is the holder's only while it matches.
	turn uint64
}

// boxes recycles mailboxes: an actor gets one each time it goes from idle to busy.
var boxes = sync.Pool{New: func() any { return new(mailbox) }}

// Turn is an actor's turn, held from Acquire until Release. It is a value, so taking a turn
// allocates nothing beyond the actor's mailbox.
type Turn struct {
	s     *mailboxShard
	box   *mailbox
	actor string
	turn  uint64
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

// Acquire waits for actor's turn and returns it; Release ends it. It fails with a 429 apiError
// when the queue is full, or with ctx's error when ctx ends first (the caller then never held
// the turn).
func (m *Mailboxes) Acquire(ctx context.Context, actor string) (Turn, error) {
	s := m.shardOf(actor)
	s.mu.Lock()
	box, busy := s.boxes[actor]
	if !busy {
		box = boxes.Get().(*mailbox)
		s.boxes[actor] = box
		turn := box.turn
		s.mu.Unlock()
		return Turn{s: s, box: box, actor: actor, turn: turn}, nil
	}
	if len(box.waiters) >= m.limit {
		s.mu.Unlock()
		return Turn{}, errQueueFull
	}
	ready := make(chan struct{})
	box.waiters = append(box.waiters, ready)
	s.mu.Unlock()

	select {
	case <-ready:
		return m.handedTo(s, box, actor), nil
	case <-ctx.Done():
	}
	s.mu.Lock()
	for i, w := range box.waiters {
		if w == ready {
			box.waiters = append(box.waiters[:i], box.waiters[i+1:]...)
			s.mu.Unlock()
			return Turn{}, ctx.Err()
		}
	}
	s.mu.Unlock()
	// The turn was handed over just as ctx ended: pass it on rather than leak it.
	m.handedTo(s, box, actor).Release()
	return Turn{}, ctx.Err()
}

// handedTo is the turn a waiter of box was handed.
func (m *Mailboxes) handedTo(s *mailboxShard, box *mailbox, actor string) Turn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Turn{s: s, box: box, actor: actor, turn: box.turn}
}

// Release ends the turn: the first waiter gets it, or the actor's mailbox goes. Releasing a
// turn again, or the zero Turn, does nothing.
func (t Turn) Release() {
	if t.s == nil {
		return
	}
	t.s.mu.Lock()
	defer t.s.mu.Unlock()
	box := t.s.boxes[t.actor]
	if box != t.box || box.turn != t.turn {
		return // released already
	}
	box.turn++
	if len(box.waiters) == 0 {
		delete(t.s.boxes, t.actor)
		box.waiters = box.waiters[:0]
		boxes.Put(box) // its turn count goes on rising, so no Turn of its past matches again
		return
	}
	next := box.waiters[0]
	box.waiters[0] = nil
	box.waiters = box.waiters[1:]
	close(next)
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
