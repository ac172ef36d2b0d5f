package statecache

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// pebbleDuePrefix holds the due-time index: "d/" + DueName, its value the actor's id.
const pebbleDuePrefix = "d/"

var _ DueIndex = (*PebbleStore)(nil)

// AddDue implements DueIndex. The entry's key is "d/" + DueName(d) and its value the actor's
// id, so a name that holds a hashed id still names its actor.
//
// The write is not synced (pebble.NoSync): it is durable once any later write is. The
// write-ahead log is one sequence of records, replayed in order up to the first damaged one,
// and a sync covers every record before it (a log that is rotated out is synced as it is
// closed). A writer adds the entry before it commits the record that needs it, and that commit
// is synced, so once the record is durable so is its entry. A crash before the commit loses
// the entry with the record, which then schedules nothing.
func (s *PebbleStore) AddDue(_ context.Context, d Due) error {
	k, err := pebbleDueKey(d)
	if err == nil {
		err = s.setIndexEntry(k, d.Key.ID)
	}
	if err != nil {
		return fmt.Errorf("local store: add due %s: %w", d.Key, err)
	}
	return nil
}

// RemoveDue implements DueIndex. Like AddDue the write is not synced: a removal lost in a
// crash leaves a stale entry, which whoever finds it removes again.
func (s *PebbleStore) RemoveDue(_ context.Context, d Due) error {
	k, err := pebbleDueKey(d)
	if err == nil {
		err = s.deleteIndexEntry(k)
	}
	if err != nil {
		return fmt.Errorf("local store: remove due %s: %w", d.Key, err)
	}
	return nil
}

// ListDue implements DueIndex with one bounded iterator over the index's keys after after's
// and before DueUntil(until).
func (s *PebbleStore) ListDue(ctx context.Context, until time.Time, after Due, limit int) ([]Due, error) {
	afterName, err := dueAfterName(after)
	if err != nil {
		return nil, fmt.Errorf("local store: list due: %w", err)
	}
	if limit <= 0 {
		return nil, nil
	}
	lower := []byte(pebbleDuePrefix)
	if afterName != "" {
		lower = append(lower, afterName...)
		lower = append(lower, 0) // the first key after after's
	}
	upper := []byte(pebbleDuePrefix + DueUntil(until))
	if bytes.Compare(lower, upper) >= 0 {
		return nil, nil
	}
	return pebbleScan(ctx, s, "list due", pebbleDuePrefix, lower, upper, limit, func(name string, id []byte) (Due, error) {
		return ParseDueName(name, string(id))
	})
}

// pebbleScan lists up to limit entries of an index kept under prefix (keys prefix + name, each
// valued with the id of the actor it names) with one bounded iterator over [lower, upper). parse
// makes an entry of a key's name (the key less prefix) and value. op names the listing in errors.
func pebbleScan[T any](ctx context.Context, s *PebbleStore, op, prefix string, lower, upper []byte, limit int, parse func(name string, id []byte) (T, error)) ([]T, error) {
	it, err := s.db.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return nil, fmt.Errorf("local store: %s: %w: %w", op, ErrUnavailable, err)
	}
	var out []T
	for ok := it.First(); ok && len(out) < limit; ok = it.Next() {
		name := string(it.Key()[len(prefix):])
		id, err := it.ValueAndErr()
		if err != nil {
			it.Close()
			return nil, fmt.Errorf("local store: %s: read %s: %w: %w", op, name, ErrUnavailable, err)
		}
		e, err := parse(name, id)
		if err != nil {
			// Nothing but the index's own writes go under its prefix; an entry that does not
			// parse can neither be acted on nor removed by what it names, and must not stop
			// every listing.
			slog.Warn("local store: skipping a damaged index entry", "dir", s.dir, "op", op, "key", prefix+name, "err", err)
			continue
		}
		out = append(out, e)
	}
	if err := it.Close(); err != nil { // Close returns the iteration's error, if any
		return nil, fmt.Errorf("local store: %s: %w: %w", op, ErrUnavailable, err)
	}
	return out, nil
}

// setIndexEntry writes the index key k, valued with the id of the actor it names, without a
// sync: the synced write of the record that needs it, which follows, makes it durable (see
// AddDue).
func (s *PebbleStore) setIndexEntry(k []byte, id string) error {
	if err := s.db.Set(k, []byte(id), pebble.NoSync); err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return nil
}

// deleteIndexEntry deletes the index key k without a sync: a deletion lost in a crash leaves a
// stale hint, which whoever finds it removes again.
func (s *PebbleStore) deleteIndexEntry(k []byte) error {
	if err := s.db.Delete(k, pebble.NoSync); err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return nil
}

// pebbleDueKey returns d's key in the index.
func pebbleDueKey(d Due) ([]byte, error) {
	name, err := DueName(d)
	if err != nil {
		return nil, err
	}
	return append([]byte(pebbleDuePrefix), name...), nil
}
