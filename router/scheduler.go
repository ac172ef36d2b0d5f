package router

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/knactor/knactor/router/record"
	"github.com/knactor/knactor/router/schedule"
	"github.com/knactor/knactor/statecache"
)

// Defaults of the scheduler, which fires timers and dispatches outboxes (docs/protocol.md).
const (
	// DefaultScanInterval is how often a router lists the store's due-time index. Timers and
	// effects set through this router are queued in memory and fire on time; the listing finds
	// the rest (after a restart, or of actors whose owner was another router) at most this late.
	DefaultScanInterval = time.Second
	// DefaultTimerConcurrency bounds the actors whose due timers and effects run at once.
	DefaultTimerConcurrency = 64
	// scanPage is how many index entries one listing request asks for.
	scanPage = 1000
	// maxQueued bounds the actors queued in memory. A listing stops there and resumes where it
	// stopped, so a backlog of millions of due entries costs memory for this many.
	maxQueued = 100_000
)

// scheduler queues the actors that have something due and runs it: their due timers, as turns,
// and their due outbox entries, as deliveries. It learns of them from the router's own commits
// (push) and from listings of the store's due-time index (scan), which is how a restarted router,
// or the new owner of an actor, finds what is due without reading every actor.
//
// Goroutines: run owns the loop, and handle runs one actor on a goroutine of its own, at most
// TimerConcurrency at once (slots). mu guards queue, claimed, tries and cursor.
type scheduler struct {
	r *Router

	mu      sync.Mutex
	queue   schedule.Queue
	claimed map[string]bool       // outbox keys being dispatched by this router
	tries   map[string]timerTries // failed tries of firings, by actor and timer
	cursor  statecache.Due        // where the next listing resumes; zero: from the start
	scanned atomic.Int64          // the time (Unix ns, the clock's) the latest finished listing was as of

	poke  chan struct{} // the earliest queued time changed, or a slot came free
	slots chan struct{}
	wg    sync.WaitGroup // handle goroutines
	stop  chan struct{}
	done  chan struct{}
	once  sync.Once
}

func newScheduler(r *Router) *scheduler {
	return &scheduler{
		r: r, claimed: map[string]bool{}, tries: map[string]timerTries{},
		poke: make(chan struct{}, 1), slots: make(chan struct{}, r.cfg.TimerConcurrency),
		stop: make(chan struct{}), done: make(chan struct{}),
	}
}

// start runs the loop until shutdown; it is called once, by Serve.
func (s *scheduler) start() {
	s.once.Do(func() { go s.run() })
}

// shutdown stops the loop and waits (bounded by ctx) for the actors being handled.
func (s *scheduler) shutdown(ctx context.Context) error {
	started := true
	s.once.Do(func() { started = false })
	close(s.stop)
	if !started {
		return nil
	}
	<-s.done
	waited := make(chan struct{})
	go func() { s.wg.Wait(); close(waited) }()
	select {
	case <-waited:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// push queues key at at (listed: the index holds an entry at exactly at).
func (s *scheduler) push(key statecache.Key, at time.Time, listed bool) {
	s.mu.Lock()
	first := s.queue.Push(schedule.Item{Actor: key.String(), At: at, Listed: listed})
	s.mu.Unlock()
	if first {
		s.wake()
	}
}

// queued returns the actors queued for a due time (a timer or an outbox entry).
func (s *scheduler) queued() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queue.Len()
}

func (s *scheduler) wake() {
	select {
	case s.poke <- struct{}{}:
	default:
	}
}

// claim returns the entries no other goroutine of this router is dispatching, and marks them.
func (s *scheduler) claim(entries []record.Outgoing) []record.Outgoing {
	s.mu.Lock()
	defer s.mu.Unlock()
	var mine []record.Outgoing
	for _, o := range entries {
		if !s.claimed[o.Key] {
			s.claimed[o.Key] = true
			mine = append(mine, o)
		}
	}
	return mine
}

func (s *scheduler) unclaim(entries []record.Outgoing) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, o := range entries {
		delete(s.claimed, o.Key)
	}
}

func (s *scheduler) run() {
	defer close(s.done)
	clk := s.r.clock
	nextScan := clk.Now()
	for {
		now := clk.Now()
		if !now.Before(nextScan) {
			s.scan(now)
			// From the time the listing was as of, not the clock after it: a clock that moved
			// on during the listing (a slow store, a test's step) must not push the next
			// listing past what it made due.
			nextScan = now.Add(s.r.cfg.ScanInterval)
		}
		wake := nextScan
		s.mu.Lock()
		for len(s.slots) < cap(s.slots) {
			it, ok := s.queue.Pop(now)
			if !ok {
				break
			}
			s.slots <- struct{}{}
			s.wg.Add(1)
			go s.handle(it)
		}
		if at, ok := s.queue.Next(); ok && len(s.slots) < cap(s.slots) && at.Before(wake) {
			wake = at
		}
		s.mu.Unlock()
		// The wait is measured from the clock as it is now: time may have passed (or a test's
		// clock stepped) since now was read.
		wait := wake.Sub(clk.Now())
		if wait <= 0 {
			continue
		}
		t := clk.NewTimer(wait)
		select {
		case <-t.C():
		case <-s.poke:
			t.Stop()
		case <-s.stop:
			t.Stop()
			return
		}
	}
}

// scan lists the index entries due by a little after now and queues those of actors this
// router owns.
func (s *scheduler) scan(now time.Time) {
	r := s.r
	until := now.Add(2 * r.cfg.ScanInterval)
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.StoreTimeout)
	defer cancel()
	s.mu.Lock()
	after := s.cursor
	s.mu.Unlock()
	defer s.scanned.Store(now.UnixNano())
	for {
		list, err := r.state.ListDue(ctx, until, after, scanPage)
		if err != nil {
			if !errors.Is(err, statecache.ErrNoDueIndex) {
				r.log.Warn("listing the due-time index failed; timers and effects of other routers' actors fire late", "err", err)
				r.metrics.scanError()
			}
			return
		}
		for _, d := range list {
			if r.peers != nil {
				if _, remote := r.peers.Owner(d.Key.String()); remote {
					continue
				}
			}
			s.push(d.Key, d.At, true)
		}
		s.mu.Lock()
		full := s.queue.Len() >= maxQueued
		switch {
		case len(list) < scanPage:
			s.cursor = statecache.Due{}
		case full:
			s.cursor = list[len(list)-1]
		}
		s.mu.Unlock()
		if len(list) < scanPage || full {
			return
		}
		after = list[len(list)-1]
	}
}

// handle runs what is due of one actor: its due timers, one turn each in due order, and its due
// outbox entries. Then it queues the actor's next due time, and removes the index entry it was
// listed by once that entry is no longer the actor's next.
func (s *scheduler) handle(it schedule.Item) {
	r := s.r
	key, _ := statecache.ParseName(it.Actor) // it.Actor is the key's String
	var retryAt time.Time
	defer func() {
		s.mu.Lock()
		s.queue.Done(it.Actor)
		s.mu.Unlock()
		if !retryAt.IsZero() {
			s.push(key, retryAt, false)
		}
		<-s.slots
		s.wg.Done()
		s.wake()
	}()
	if r.peers != nil {
		if _, remote := r.peers.Owner(it.Actor); remote {
			return // the owner's own listing finds it
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.StoreTimeout)
	defer cancel()
	_, rec, err := r.loadRecord(ctx, key)
	if err != nil {
		r.log.Warn("loading an actor with something due failed; retrying", "function", key.Function, "actor", key.ID, "err", err)
		retryAt = r.clock.Now().Add(timerRetryBackoff)
		return
	}
	now := r.clock.Now()
	for _, t := range append([]record.Timer(nil), rec.Timers()...) {
		if t.Due.After(now) {
			break
		}
		tk := it.Actor + "\x00" + t.Name
		s.mu.Lock()
		tries := s.tries[tk]
		s.mu.Unlock()
		at := r.fireTimer(key, t.Name, &tries)
		s.mu.Lock()
		if at.IsZero() {
			delete(s.tries, tk)
		} else {
			s.tries[tk] = tries
		}
		s.mu.Unlock()
		if !at.IsZero() {
			retryAt = at
			break // the actor's later timers wait behind this one
		}
	}
	var due []record.Outgoing
	for _, o := range rec.Outbox() {
		if !o.Due.After(now) {
			due = append(due, o)
		}
	}
	if len(due) > 0 {
		r.deliver(context.Background(), key, due)
	}
	_, rec, err = r.loadRecord(ctx, key)
	if err != nil {
		retryAt = r.clock.Now().Add(timerRetryBackoff)
		return
	}
	next, ok := rec.NextDue()
	if ok && (retryAt.IsZero() || next.After(retryAt)) {
		s.push(key, next, false)
	}
	if it.Listed && !(ok && next.Equal(it.At)) {
		r.removeDue(key, it.At)
	}
}

// addDue adds an index entry before a write that needs it (see writeRecord).
func (r *Router) addDue(ctx context.Context, key statecache.Key, at time.Time) error {
	sctx := r.newStoreCtx(ctx)
	defer sctx.stop()
	do := func(ctx context.Context) error { return r.state.AddDue(ctx, statecache.Due{At: at, Key: key}) }
	return r.withStore(sctx, key.Function, "index", do(sctx), do)
}

// join adds key to channel's members before a write that subscribes it (see writeRecord).
func (r *Router) join(ctx context.Context, channel string, key statecache.Key) error {
	sctx := r.newStoreCtx(ctx)
	defer sctx.stop()
	do := func(ctx context.Context) error { return r.state.Join(ctx, channel, key) }
	return r.withStore(sctx, key.Function, "index", do(sctx), do)
}

// leave removes key from channel's members after a write that unsubscribed it. A failure only
// leaves a stale member, which a broadcast skips.
func (r *Router) leave(channel string, key statecache.Key) {
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.StoreTimeout)
	defer cancel()
	if err := r.state.Leave(ctx, channel, key); err != nil {
		r.log.Debug("removing a stale channel member failed", "channel", channel, "function", key.Function, "actor", key.ID, "err", err)
	}
}

// removeDue removes an index entry that is no longer the actor's next due time. A failure only
// leaves a stale entry, which the scheduler removes when it comes due.
func (r *Router) removeDue(key statecache.Key, at time.Time) {
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.StoreTimeout)
	defer cancel()
	if err := r.state.RemoveDue(ctx, statecache.Due{At: at, Key: key}); err != nil {
		r.log.Debug("removing a stale due-time index entry failed", "function", key.Function, "actor", key.ID, "err", err)
	}
}
