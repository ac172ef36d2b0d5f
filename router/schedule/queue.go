// Package schedule is the router's in-memory queue of actors that have something due: a timer
// to fire or an effect to dispatch. It is pure bookkeeping with no clock and no I/O; the router
// feeds it from its own commits and from listings of the store's due-time index, and pops what
// is due by the time it passes in.
package schedule

import (
	"container/heap"
	"time"
)

// Item is an actor due at a time. Listed reports that the entry came from the store's due-time
// index (so the store holds an entry at exactly At, which the router removes once it is
// handled); an item from the router's own commit needs no such cleanup.
type Item struct {
	Actor  string
	At     time.Time
	Listed bool
}

// Queue holds at most one item per actor, the earliest, and knows which actors are being
// handled: an actor pushed while it is handled is popped again once it is done. The zero Queue
// is empty and ready. It is not safe for concurrent use; the router guards it with a mutex.
type Queue struct {
	h      itemHeap
	byKey  map[string]*entry
	active map[string]bool // actors being handled (popped, not yet Done)
	again  map[string]Item // pushed while active: queued again at Done
}

type entry struct {
	Item
	index int
}

// Len returns the number of queued actors (not those being handled).
func (q *Queue) Len() int { return len(q.h) }

// Active returns the number of actors being handled.
func (q *Queue) Active() int { return len(q.active) }

// Push queues it, unless the actor is already queued at an earlier or equal time. An earlier
// time replaces a later one. It reports whether it became the queue's earliest item.
func (q *Queue) Push(it Item) bool {
	if q.byKey == nil {
		q.byKey, q.active, q.again = map[string]*entry{}, map[string]bool{}, map[string]Item{}
	}
	if q.active[it.Actor] {
		if prev, ok := q.again[it.Actor]; !ok || it.At.Before(prev.At) {
			q.again[it.Actor] = it
		}
		return false
	}
	if e, ok := q.byKey[it.Actor]; ok {
		if !it.At.Before(e.At) {
			e.Listed = e.Listed || (it.Listed && it.At.Equal(e.At))
			return false
		}
		e.Item = it
		heap.Fix(&q.h, e.index)
	} else {
		e := &entry{Item: it}
		q.byKey[it.Actor] = e
		heap.Push(&q.h, e)
	}
	return q.h[0].Actor == it.Actor
}

// Has reports whether the actor is queued or being handled.
func (q *Queue) Has(actor string) bool {
	_, queued := q.byKey[actor]
	return queued || q.active[actor]
}

// Next returns the earliest queued time; ok is false when the queue is empty.
func (q *Queue) Next() (at time.Time, ok bool) {
	if len(q.h) == 0 {
		return time.Time{}, false
	}
	return q.h[0].At, true
}

// Pop removes and returns the earliest item if it is due at now, and marks its actor as being
// handled until Done.
func (q *Queue) Pop(now time.Time) (Item, bool) {
	if len(q.h) == 0 || q.h[0].At.After(now) {
		return Item{}, false
	}
	e := heap.Pop(&q.h).(*entry)
	delete(q.byKey, e.Actor)
	q.active[e.Actor] = true
	return e.Item, true
}

// Done ends the handling of actor. An item pushed meanwhile is queued now.
func (q *Queue) Done(actor string) {
	delete(q.active, actor)
	if it, ok := q.again[actor]; ok {
		delete(q.again, actor)
		q.Push(it)
	}
}

// itemHeap is a min-heap of entries by time.
type itemHeap []*entry

func (h itemHeap) Len() int           { return len(h) }
func (h itemHeap) Less(i, j int) bool { return h[i].At.Before(h[j].At) }
func (h itemHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *itemHeap) Push(x any) {
	e := x.(*entry)
	e.index = len(*h)
	*h = append(*h, e)
}
func (h *itemHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return e
}
