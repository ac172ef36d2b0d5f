package statecache

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"
)

// maxMaybeLanded bounds the commits a buffered change remembers of earlier flushes whose outcome
// is unknown. Each ambiguously failed flush of a hot actor adds one per flush interval; 1024 is
// 17 minutes of outage at the default 1 s. The oldest are kept: one of those flushes may have
// landed as the store went away, and the later ones most likely never reached it.
const maxMaybeLanded = 1024

// maxBatchBytes bounds the values of one batch (a batch ends after the write that reaches it):
// one log record of 64 MiB is written in well under a second, and stays far below Pebble's
// 4 GiB limit of a batch, which 4096 actors of the largest allowed state would pass.
const maxBatchBytes = 64 << 20

// dirtyWrite is one buffered write-behind change of a key.
type dirtyWrite struct {
	key     Key
	value   []byte
	exists  bool    // false: a buffered delete
	base    Version // the store's version this change applies to
	version Version // the version callers were given for it
	commit  Commit  // the commit of the turn that made the change
	// maybeLanded are commits of older changes of this key whose flush failed ambiguously: the
	// store may hold one of them instead of base. Finding one there is no conflict; the change
	// then applies on top of it.
	maybeLanded []Commit
	// flushFailed marks a change whose flush failed ambiguously: a change that replaces it
	// adds its commit to maybeLanded.
	flushFailed bool
	// removals are index entries (due times, channel memberships) to remove once this change
	// (or a later one) is durable: the stored record may still need them until then (see
	// Cache.removeIndexEntry).
	removals []indexEntry
	// inFlight marks a change a flush is writing (from pending to settle): settle tells by the
	// pointer whether it is still the key's latest change, so a newer change of the key takes a
	// new dirtyWrite. A change not in flight is updated in place (no allocation per write of a
	// hot actor between flushes).
	inFlight bool
	// journaled marks a change taken back from the write-behind journal: the journal's files
	// stay until no such change waits (see settleJournal).
	journaled bool
}

// appendMaybe adds commit to maybe, up to maxMaybeLanded commits (the oldest are kept).
func appendMaybe(maybe []Commit, commit Commit) []Commit {
	if len(maybe) >= maxMaybeLanded || slices.Contains(maybe, commit) {
		return maybe
	}
	return append(maybe, commit)
}

// writeBehind buffers a change of key. The caller holds id's stripe.
func (c *Cache) writeBehind(ctx context.Context, key Key, id string, value []byte, exists bool, expect Version, commit Commit) (Version, error) {
	// A key with a buffered change has its versions there (the cached entry agrees: both change
	// only under the stripe), so a hot actor's write does not copy its value out of bigcache.
	var cur cached
	c.dirtyMu.Lock()
	prev, dirty := c.dirty[id]
	if err := c.refuseLocked(prev, len(value)); err != nil {
		c.dirtyMu.Unlock()
		return NoVersion, err
	}
	if dirty {
		cur = cached{Entry: Entry{Version: prev.version, Commit: prev.commit}, durable: prev.base}
	}
	c.dirtyMu.Unlock()
	if !dirty {
		var err error
		if cur, err = c.load(ctx, key, id); err != nil {
			return NoVersion, err
		}
	}
	if cur.Version != expect {
		return NoVersion, &ConflictError{Key: key, Current: cur.Version, Commit: cur.Commit}
	}
	var vb [64]byte
	v := Version(strconv.AppendUint(append(append(append(vb[:0], "wb-"...), c.localTag...), '-'), c.localSeq.Add(1), 36))
	// remember copies value (the caller may reuse its buffer once Put returns); the copy is the
	// buffered change's.
	value = c.remember(id, cached{Entry: Entry{Value: value, Version: v, Exists: exists, Commit: commit}, durable: cur.durable})
	c.dirtyMu.Lock()
	defer c.dirtyMu.Unlock()
	next := dirtyWrite{key: key, value: value, exists: exists, base: cur.durable, version: v, commit: commit}
	prev, ok := c.dirty[id]
	if !ok {
		c.dirty[id] = newDirtyWrite(next)
		c.dirtyBytes += len(value)
		return v, nil
	}
	c.dirtyBytes += len(value) - len(prev.value)
	next.maybeLanded, next.removals = prev.maybeLanded, prev.removals
	if prev.flushFailed {
		next.maybeLanded = appendMaybe(slices.Clone(next.maybeLanded), prev.commit)
	}
	if prev.inFlight {
		c.dirty[id] = newDirtyWrite(next)
	} else {
		*prev = next
	}
	return v, nil
}

// newDirtyWrite returns w on the heap; writeBehind's own w stays on the stack when it updates a
// change in place.
func newDirtyWrite(w dirtyWrite) *dirtyWrite { return &w }

// refuseLocked returns why a change of size bytes replacing prev (nil: none) may not be
// buffered: too much is buffered already, or flushes have failed for longer than MaxDirtyAge.
// The caller holds dirtyMu.
func (c *Cache) refuseLocked(prev *dirtyWrite, size int) error {
	grown := size
	if prev != nil {
		grown -= len(prev.value)
	}
	if grown > 0 && c.dirtyBytes+grown > c.cfg.MaxDirtyBytes {
		return fmt.Errorf("%w: %d bytes of write-behind changes wait for the store, the limit is %d",
			ErrUnavailable, c.dirtyBytes, c.cfg.MaxDirtyBytes)
	}
	if !c.failingSince.IsZero() {
		if d := c.cfg.Clock.Since(c.failingSince); d > c.cfg.MaxDirtyAge {
			return fmt.Errorf("%w: flushes to the store have failed for %v (limit %v); %d write-behind changes wait",
				ErrUnavailable, d.Round(time.Second), c.cfg.MaxDirtyAge, len(c.dirty))
		}
	}
	return nil
}

// isDirty reports whether id has a buffered change.
func (c *Cache) isDirty(id string) bool {
	c.dirtyMu.Lock()
	_, dirty := c.dirty[id]
	c.dirtyMu.Unlock()
	return dirty
}

// Flush writes every buffered write-behind change to the store and returns the errors of those
// that failed (they stay buffered, except conflicts). Only one flush runs at a time. Journal
// files whose changes are all durable now are removed.
func (c *Cache) Flush(ctx context.Context) (err error) {
	c.flushMu.Lock()
	defer c.flushMu.Unlock()
	defer func() { err = errors.Join(err, c.settleJournal()) }()
	c.dirtyMu.Lock()
	ids := make([]string, 0, len(c.dirty))
	for id := range c.dirty {
		ids = append(ids, id)
	}
	c.dirtyMu.Unlock()
	defer c.applyRemovals(ctx)
	if bw, ok := c.store.(BatchWriter); ok {
		return c.flushBatches(ctx, bw, ids)
	}

	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
		sem  = make(chan struct{}, c.cfg.FlushConcurrency)
	)
	for _, id := range ids {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := c.flushKey(ctx, id); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// flushBatches writes the changes of ids in batches of at most Config.FlushBatch writes and
// about maxBatchBytes: each costs the store one write and one fsync. Changes rebased on an
// earlier flush that landed go in one more round, as flushKey retries them.
func (c *Cache) flushBatches(ctx context.Context, bw BatchWriter, ids []string) error {
	var errs []error
	for round := 0; round < 2 && len(ids) > 0; round++ {
		var rebased []string
		for len(ids) > 0 {
			var (
				fs     []flushing
				writes []Write
				names  []string
				size   int
			)
			for len(ids) > 0 && len(writes) < c.cfg.FlushBatch && size < maxBatchBytes {
				id := ids[0]
				ids = ids[1:]
				if f, ok := c.pending(id); ok {
					fs, names = append(fs, f), append(names, id)
					writes = append(writes, f.write(c.cfg.Keys))
					size += len(f.d.value)
				}
			}
			if len(writes) == 0 {
				continue
			}
			for i, r := range bw.WriteBatch(ctx, writes) {
				err := c.settle(names[i], fs[i], r.Version, r.Err)
				switch {
				case errors.Is(err, errRebased) && round == 0:
					rebased = append(rebased, names[i])
				case err != nil:
					errs = append(errs, err)
				}
			}
		}
		ids = rebased
	}
	return errors.Join(errs...)
}

// flushKey makes one key's buffered change durable. The store write runs without the key's
// stripe, so turns on the key go on meanwhile; a change buffered during the write is rebased on
// the version the write produced.
func (c *Cache) flushKey(ctx context.Context, id string) error {
	err := c.flushOnce(ctx, id)
	if errors.Is(err, errRebased) {
		err = c.flushOnce(ctx, id)
	}
	return err
}

// errRebased reports a flush that found an earlier, ambiguously failed flush of the key landed:
// the change was rebased on it and is written by the next try.
var errRebased = errors.New("rebased on an earlier flush that landed")

func (c *Cache) flushOnce(ctx context.Context, id string) error {
	f, ok := c.pending(id)
	if !ok {
		return nil
	}
	var v Version
	var err error
	if f.d.exists {
		v, err = c.store.Put(ctx, f.d.key, c.cfg.Keys.Seal(f.d.key, f.d.value), f.base, f.d.commit)
	} else {
		v, err = c.store.Delete(ctx, f.d.key, f.base, f.d.commit)
	}
	return c.settle(id, f, v, err)
}

// flushing is one buffered change on its way to the store, with what it was written against.
type flushing struct {
	d     *dirtyWrite
	base  Version
	maybe []Commit
}

// pending returns id's buffered change, if any, as a flush writes it.
func (c *Cache) pending(id string) (flushing, bool) {
	c.dirtyMu.Lock()
	defer c.dirtyMu.Unlock()
	d, ok := c.dirty[id]
	if !ok {
		return flushing{}, false
	}
	d.inFlight = true
	return flushing{d: d, base: d.base, maybe: d.maybeLanded}, true
}

// write is f as a store write, its value sealed with keys (Config.Keys).
func (f flushing) write(keys *Keyring) Write {
	w := Write{Key: f.d.key, Exists: f.d.exists, Expect: f.base, Commit: f.d.commit}
	if w.Exists {
		w.Value = keys.Seal(f.d.key, f.d.value)
	}
	return w
}

// settle records the outcome of f's store write (version v or err) in the buffer and the cache.
func (c *Cache) settle(id string, f flushing, v Version, err error) error {
	d, key, maybe := f.d, f.d.key, f.maybe
	mu := c.stripe(id)
	mu.Lock()
	defer mu.Unlock()
	c.dirtyMu.Lock()
	defer c.dirtyMu.Unlock()
	d.inFlight = false
	cur := c.dirty[id]
	var conflict *ConflictError
	switch {
	case errors.As(err, &conflict) && conflict.Current != NoVersion && slices.Contains(maybe, conflict.Commit):
		// An older change's flush that failed ambiguously had landed after all: this change
		// applies on top of it, at the next flush.
		if cur != nil {
			cur.base, cur.maybeLanded = conflict.Current, nil
		}
		if e, ok := c.fromMemory(id); ok {
			e.durable = conflict.Current
			c.remember(id, e)
		}
		return fmt.Errorf("flush %s: %w", key, errRebased)
	case errors.Is(err, ErrConflict):
		// Another writer changed the key: this cache was not its only writer. Drop the buffered
		// change loudly and let the next read load what the store has.
		if cur == d {
			delete(c.dirty, id)
			c.dirtyBytes -= len(d.value)
			c.mem.Delete(id)
		}
		c.lostConflicts.Add(1)
		c.reportFlush(key, err)
		return fmt.Errorf("flush %s: write-behind change lost to another writer: %w", key, err)
	case err != nil:
		// The write may have landed. A retry of this change carries the same commit, and the
		// store recognises it; a newer change buffered meanwhile remembers the commit instead.
		switch {
		case cur == d:
			d.flushFailed = true
		case cur != nil:
			cur.maybeLanded = appendMaybe(cur.maybeLanded, d.commit)
		}
		if c.failingSince.IsZero() {
			c.failingSince = c.cfg.Clock.Now()
		}
		c.reportFlush(key, err)
		return fmt.Errorf("flush %s: %w", key, err)
	}
	c.flushed.Add(1)
	c.failingSince = time.Time{} // the store takes writes
	if cur == d {
		delete(c.dirty, id)
		c.dirtyBytes -= len(d.value)
	} else if cur != nil {
		// A newer change was buffered meanwhile; it now applies on top of v.
		cur.base, cur.maybeLanded = v, nil
		cur.removals = slices.DeleteFunc(cur.removals, func(r indexEntry) bool { return containsEntry(d.removals, r) })
	}
	c.removable = append(c.removable, d.removals...)
	// The cached entry, whichever change it shows, now sits on store version v.
	if e, ok := c.fromMemory(id); ok {
		e.durable = v
		c.remember(id, e)
	}
	return nil
}

// reportFlush counts a failed flush of key and tells Config.OnFlushError.
func (c *Cache) reportFlush(key Key, err error) {
	c.flushErrors.Add(1)
	if c.cfg.OnFlushError != nil {
		c.cfg.OnFlushError(key, err)
	}
}

// loop flushes (write-behind) and passivates on every tick until Close.
func (c *Cache) loop() {
	defer close(c.done)
	t := c.cfg.Clock.NewTicker(c.cfg.FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C():
			if c.cfg.Mode == WriteBehind {
				_ = c.Flush(context.Background()) // failures are reported per key and retried next tick
			}
			c.Passivate()
		}
	}
}
