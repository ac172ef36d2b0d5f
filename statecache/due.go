package statecache

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Due is one entry of a store's due-time index: the actor Key has something scheduled (a timer,
// an effect waiting to be dispatched) at At, to the millisecond.
type Due struct {
	At  time.Time
	Key Key
}

// DueIndex is a store's due-time index: entries (time, actor) listed in order of time, so a
// router finds every actor with a timer or an undelivered effect due by some time without
// reading every actor. It scales as an ordered key range (the local store) or a listable prefix
// (S3): a listing costs what it returns, whatever the number of actors.
//
// An entry is a hint, never the truth: the actor's stored record says what is scheduled. Writers
// add an entry before they commit the record that needs it, so a committed timer always has an
// entry at or before its due time; an entry whose actor holds nothing due then is stale, and is
// removed by whoever finds it. Adding an entry that exists, or removing one that does not, is not
// an error.
type DueIndex interface {
	// AddDue records d. On a local store it becomes durable with the next synced write (the
	// record's commit that follows it); on S3 it is durable when AddDue returns.
	AddDue(ctx context.Context, d Due) error
	// RemoveDue forgets d.
	RemoveDue(ctx context.Context, d Due) error
	// ListDue returns up to limit entries due at or before until, ordered by time (then by
	// name), starting after the entry after (the zero Due starts at the beginning).
	ListDue(ctx context.Context, until time.Time, after Due, limit int) ([]Due, error)
}

// ErrNoDueIndex reports a store that keeps no due-time index, so it cannot hold timers.
var ErrNoDueIndex = errors.New("the state store keeps no due-time index (timers need the local store, S3 or the memory store)")

// dueTimeDigits is the width of an index name's time: milliseconds since the Unix epoch in
// fixed-width hexadecimal, so names sort in time order (16 digits last until the year 10^7).
const dueTimeDigits = 16

// DueName returns d's name in an index: "{time}/{function}/{escaped id}", the time as
// fixed-width hexadecimal milliseconds so that names sort by time, then by actor. An id too
// long to escape is named by its hash (see Key.ObjectName): keep the id beside the name.
func DueName(d Due) (string, error) {
	obj, err := d.Key.ObjectName()
	if err != nil {
		return "", err
	}
	return dueTimePrefix(d.At) + "/" + obj, nil
}

// dueTimePrefix is the time part of an index name.
func dueTimePrefix(at time.Time) string {
	ms := max(at.UnixMilli(), 0)
	s := strconv.FormatUint(uint64(ms), 16)
	return strings.Repeat("0", dueTimeDigits-len(s)) + s
}

// DueUntil returns the smallest index name that sorts after every entry due at or before until.
func DueUntil(until time.Time) string {
	return dueTimePrefix(until.Add(time.Millisecond))
}

// ParseDueName is the inverse of DueName. id is the actor id kept beside the name, used when the
// name holds a hashed id; "" to parse the name alone.
func ParseDueName(name, id string) (Due, error) {
	t, obj, ok := strings.Cut(name, "/")
	if !ok || len(t) != dueTimeDigits {
		return Due{}, fmt.Errorf("%w: due-index name %q", ErrInvalidKey, name)
	}
	ms, err := strconv.ParseUint(t, 16, 64)
	if err != nil {
		return Due{}, fmt.Errorf("%w: due-index name %q: %v", ErrInvalidKey, name, err)
	}
	at := time.UnixMilli(int64(ms))
	if dueTimePrefix(at) != t {
		// Upper-case digits, or a time past int64 milliseconds: not a name DueName makes, and
		// one that would sort out of time order.
		return Due{}, fmt.Errorf("%w: due-index name %q: time is not in canonical form", ErrInvalidKey, name)
	}
	k, err := parseIndexedObject(obj, id)
	if err != nil {
		return Due{}, fmt.Errorf("due-index name %q: %w", name, err)
	}
	return Due{At: at, Key: k}, nil
}

// dueAfterName returns the index name of a listing's cursor: "" for the zero Due (list from the
// beginning), else DueName(after).
func dueAfterName(after Due) (string, error) {
	if after.Key == (Key{}) && after.At.IsZero() {
		return "", nil
	}
	return DueName(after)
}
