package router

import (
	"context"
	"errors"
	"hash/maphash"
	"sync"
	"sync/atomic"

	"github.com/knactor/knactor/internal/fifo"
	"github.com/valyala/fasthttp"
)

// mailboxShards spread actors over independent locks so turns of different actors rarely
// contend; 64 is far more than two cores need and costs little.
const mailboxShards = 64

// Mailboxes give every actor a turn queue: its calls run one at a time, in arrival order, and
// different actors run in parallel. An actor has a mailbox only while a call for it runs or
// waits, so a million distinct actors cost nothing once they are idle.
//
// Concurrency: each shard's mutex guards its map and every mailbox in it, the mailbox's FIFO
// semaphore (internal/fifo) included. The goroutine that holds an actor's turn hands it to the
// first waiter directly (FIFO), never through a race.
type Mailboxes struct {
	seed  maphash.Seed
	limit int // calls that may wait per actor
	// maxWaiting bounds the calls waiting across all actors (0: no bound); waiting counts them.
	maxWaiting int64
	waiting    atomic.Int64
	shards     [mailboxShards]mailboxShard
}

type mailboxShard struct {
	mu    sync.Mutex
	boxes map[string]*mailbox
}

// mailbox is the queue of one actor: a FIFO semaphore of one slot (the turn) and a line of
// waiters behind it, guarded by its shard's mutex.
type mailbox struct {
	sem fifo.Sem
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
var errQueueFull = errorf(fasthttp.StatusTooManyRequests, CodeActorBusy, "too many calls are waiting for this actor; retry later")

// errTooManyWaiting refuses a call that would wait for its actor while the router already holds
// Config.MaxWaitingCalls waiting calls.
var errTooManyWaiting = errorf(fasthttp.StatusServiceUnavailable, CodeNoCapacity, "too many calls are waiting for their actors in this router; retry later")

// NewMailboxes returns mailboxes that let at most limit calls wait per actor and maxWaiting
// calls wait in all (0: no bound but the actors').
func NewMailboxes(limit, maxWaiting int) *Mailboxes {
	m := &Mailboxes{seed: maphash.MakeSeed(), limit: limit, maxWaiting: int64(maxWaiting)}
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
		box.sem.Init(1, max(m.limit, 0)) // a negative limit lets no call wait, as 0 does
		s.boxes[actor] = box
	}
	if box.sem.TryAcquire() {
		turn := box.turn
		s.mu.Unlock()
		return Turn{s: s, box: box, actor: actor, turn: turn}, nil
	}
	if n := m.waiting.Add(1); m.maxWaiting > 0 && n > m.maxWaiting {
		m.waiting.Add(-1)
		s.dropIfIdle(actor, box)
		s.mu.Unlock()
		return Turn{}, errTooManyWaiting
	}
	err := box.sem.Wait(ctx, &s.mu)
	m.waiting.Add(-1)
	if err != nil {
		// A turn handed over just as ctx ended went on to the next waiter, or freed the actor.
		s.dropIfIdle(actor, box)
		s.mu.Unlock()
		if errors.Is(err, fifo.ErrFull) {
			return Turn{}, errQueueFull
		}
		return Turn{}, err
	}
	turn := box.turn
	s.mu.Unlock()
	return Turn{s: s, box: box, actor: actor, turn: turn}, nil
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
	box.sem.Release()
	t.s.dropIfIdle(t.actor, box)
}

// dropIfIdle removes actor's mailbox, box, once no turn is held or waited for, and recycles it.
// Hold s.mu.
func (s *mailboxShard) dropIfIdle(actor string, box *mailbox) {
	if !box.sem.Idle() {
		return
	}
	delete(s.boxes, actor)
	boxes.Put(box) // its turn count goes on rising, so no Turn of its past matches again
}

func (m *Mailboxes) shardOf(actor string) *mailboxShard {
	return &m.shards[maphash.String(m.seed, actor)%mailboxShards]
}

// Waiting returns the calls waiting for their actors' turns.
func (m *Mailboxes) Waiting() int { return int(m.waiting.Load()) }

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
