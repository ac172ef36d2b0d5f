package record

import (
	"encoding/binary"
	"fmt"
	"slices"
	"time"
)

// Timer is a named timer of an actor, stored in its record: when it is due, it runs Action with
// Payload as a turn of the actor. A repeating timer (Every > 0) is due again Every later.
type Timer struct {
	Name    string
	Due     time.Time // to the millisecond
	Every   time.Duration
	Action  string
	Payload []byte // JSON; nil is null
}

// Outgoing is an effect that a committed turn asked for and that has not been delivered yet: the
// actor's durable outbox. It is dispatched at Due with the idempotency key Key at its target, so
// however often it is dispatched it is applied once.
type Outgoing struct {
	Key      string // the idempotency key at the target
	Due      time.Time
	Attempts int // dispatches that failed in a way that may pass
	Function string
	Actor    string
	Action   string
	Payload  []byte // JSON; nil is null
	CausedBy string // the request id of the turn that asked for it
	// Channel, when set, makes the entry a broadcast: Action runs as a turn of every actor
	// subscribed to Channel (Function and Actor are empty).
	Channel string
}

// schedule is what a record holds besides state and keys: timers, the outbox and the channels
// the actor subscribes to. Records that hold any of it use format 2.
//
// The block, after the entries of format 1:
//
//	count timer...    timer:    name | due (varint ms) | every (uvarint ms) | action | payload
//	count outgoing... outgoing: key | due (varint ms) | attempts | function | actor | action | payload | caused_by | channel
//	count channel...  channel:  name
type schedule struct {
	Timers   []Timer
	Outbox   []Outgoing
	Channels []string
}

func (s *schedule) empty() bool {
	return len(s.Timers) == 0 && len(s.Outbox) == 0 && len(s.Channels) == 0
}

func (s *schedule) append(b []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(s.Timers)))
	for i := range s.Timers {
		t := &s.Timers[i]
		b = appendBytes(b, []byte(t.Name))
		b = binary.AppendVarint(b, t.Due.UnixMilli())
		b = binary.AppendUvarint(b, uint64(t.Every.Milliseconds()))
		b = appendBytes(b, []byte(t.Action))
		b = appendBytes(b, t.Payload)
	}
	b = binary.AppendUvarint(b, uint64(len(s.Outbox)))
	for i := range s.Outbox {
		o := &s.Outbox[i]
		b = appendBytes(b, []byte(o.Key))
		b = binary.AppendVarint(b, o.Due.UnixMilli())
		b = binary.AppendUvarint(b, uint64(o.Attempts))
		for _, f := range []string{o.Function, o.Actor, o.Action} {
			b = appendBytes(b, []byte(f))
		}
		b = appendBytes(b, o.Payload)
		b = appendBytes(b, []byte(o.CausedBy))
		b = appendBytes(b, []byte(o.Channel))
	}
	b = binary.AppendUvarint(b, uint64(len(s.Channels)))
	for _, c := range s.Channels {
		b = appendBytes(b, []byte(c))
	}
	return b
}

// decodeSchedule reads the block; it must be all of b.
func decodeSchedule(b []byte) (schedule, error) {
	d := decoder{b: b}
	var s schedule
	count := func() int {
		n := d.uvarint()
		if d.err == nil && n > uint64(len(d.b)) { // every item takes more than a byte
			d.fail("count")
			return 0
		}
		return int(n)
	}
	str := func() string { return string(d.bytes()) }
	payload := func() []byte {
		p := d.bytes()
		if len(p) == 0 {
			return nil
		}
		return slices.Clone(p)
	}
	for range count() {
		var t Timer
		t.Name = str()
		t.Due = time.UnixMilli(d.varint())
		t.Every = time.Duration(d.uvarint()) * time.Millisecond
		t.Action = str()
		t.Payload = payload()
		s.Timers = append(s.Timers, t)
	}
	for range count() {
		var o Outgoing
		o.Key = str()
		o.Due = time.UnixMilli(d.varint())
		o.Attempts = int(d.uvarint())
		o.Function, o.Actor, o.Action = str(), str(), str()
		o.Payload = payload()
		o.CausedBy = str()
		o.Channel = str()
		s.Outbox = append(s.Outbox, o)
	}
	for range count() {
		s.Channels = append(s.Channels, str())
	}
	if d.err == nil && len(d.b) > 0 {
		d.err = fmt.Errorf("%d bytes after the schedule", len(d.b))
	}
	slices.SortFunc(s.Timers, compareTimers) // as SetTimer keeps them; a hand-made record may not
	return s, d.err
}

// Timer returns the actor's timer called name.
func (r *Record) Timer(name string) (Timer, bool) {
	for _, t := range r.sched.Timers {
		if t.Name == name {
			return t, true
		}
	}
	return Timer{}, false
}

// Timers returns the actor's timers, ordered by due time (then name). The slice is the record's:
// do not change it.
func (r *Record) Timers() []Timer { return r.sched.Timers }

// SetTimer adds t, or replaces the timer of the same name.
func (r *Record) SetTimer(t Timer) {
	t.Due = t.Due.Truncate(time.Millisecond)
	r.sched.Timers = slices.Clone(r.sched.Timers) // the decoded slice may be shared with a cache
	r.sched.Timers = slices.DeleteFunc(r.sched.Timers, func(o Timer) bool { return o.Name == t.Name })
	i, _ := slices.BinarySearchFunc(r.sched.Timers, t, compareTimers)
	r.sched.Timers = slices.Insert(r.sched.Timers, i, t)
}

// CancelTimer removes the timer called name, and reports whether there was one.
func (r *Record) CancelTimer(name string) bool {
	i := slices.IndexFunc(r.sched.Timers, func(t Timer) bool { return t.Name == name })
	if i < 0 {
		return false
	}
	r.sched.Timers = slices.Delete(slices.Clone(r.sched.Timers), i, i+1)
	return true
}

func compareTimers(a, b Timer) int {
	if c := a.Due.Compare(b.Due); c != 0 {
		return c
	}
	if a.Name < b.Name {
		return -1
	}
	if a.Name > b.Name {
		return 1
	}
	return 0
}

// Outbox returns the effects not yet delivered, in the order they were asked for. The slice is
// the record's: do not change it.
func (r *Record) Outbox() []Outgoing { return r.sched.Outbox }

// AddOutgoing appends o to the outbox.
func (r *Record) AddOutgoing(o ...Outgoing) {
	n := len(r.sched.Outbox)
	r.sched.Outbox = append(slices.Clone(r.sched.Outbox), o...)
	for i := n; i < len(r.sched.Outbox); i++ {
		r.sched.Outbox[i].Due = r.sched.Outbox[i].Due.Truncate(time.Millisecond)
	}
}

// UpdateOutgoing replaces the outbox entry of o.Key with o, and reports whether it was there.
func (r *Record) UpdateOutgoing(o Outgoing) bool {
	i := slices.IndexFunc(r.sched.Outbox, func(x Outgoing) bool { return x.Key == o.Key })
	if i < 0 {
		return false
	}
	o.Due = o.Due.Truncate(time.Millisecond)
	r.sched.Outbox = slices.Clone(r.sched.Outbox)
	r.sched.Outbox[i] = o
	return true
}

// RemoveOutgoing drops the outbox entries whose keys are in keys, and reports how many it found.
func (r *Record) RemoveOutgoing(keys map[string]bool) int {
	n := len(r.sched.Outbox)
	r.sched.Outbox = slices.DeleteFunc(slices.Clone(r.sched.Outbox), func(o Outgoing) bool { return keys[o.Key] })
	return n - len(r.sched.Outbox)
}

// Channels returns the channels the actor subscribes to, sorted. The slice is the record's.
func (r *Record) Channels() []string { return r.sched.Channels }

// Subscribe adds channel to the actor's subscriptions and reports whether it was new.
func (r *Record) Subscribe(channel string) bool {
	i, found := slices.BinarySearch(r.sched.Channels, channel)
	if found {
		return false
	}
	r.sched.Channels = slices.Insert(slices.Clone(r.sched.Channels), i, channel)
	return true
}

// Unsubscribe removes channel from the actor's subscriptions and reports whether it was there.
func (r *Record) Unsubscribe(channel string) bool {
	i, found := slices.BinarySearch(r.sched.Channels, channel)
	if !found {
		return false
	}
	r.sched.Channels = slices.Delete(slices.Clone(r.sched.Channels), i, i+1)
	return true
}

// NextDue returns the earliest time something of the actor is due: a timer or an undelivered
// effect. ok is false when nothing is scheduled.
func (r *Record) NextDue() (at time.Time, ok bool) {
	if len(r.sched.Timers) > 0 {
		at, ok = r.sched.Timers[0].Due, true
	}
	for _, o := range r.sched.Outbox {
		if !ok || o.Due.Before(at) {
			at, ok = o.Due, true
		}
	}
	return at, ok
}
