package statecache

import (
	"context"
	"slices"
	"time"
)

// indexEntry is one entry of the store's indexes that a write-behind Cache may have to remove
// only after a flush (see removeIndexEntry): a due-time entry or a channel membership.
type indexEntry struct {
	key    Key
	member bool      // a channel membership; else a due-time entry
	at     time.Time // a due-time entry's time
	// channel is a membership's channel.
	channel string
}

// dueEntry is d as an indexEntry.
func dueEntry(d Due) indexEntry { return indexEntry{key: d.Key, at: d.At} }

// memberEntry is key's membership of channel as an indexEntry.
func memberEntry(channel string, key Key) indexEntry {
	return indexEntry{key: key, member: true, channel: channel}
}

// same reports whether e and o are the same entry.
func (e indexEntry) same(o indexEntry) bool {
	return e.key.Equal(o.key) && e.member == o.member && e.at.Equal(o.at) && e.channel == o.channel
}

// remove removes e from the store's index.
func (e indexEntry) remove(ctx context.Context, c *Cache) error {
	if e.member {
		idx, err := c.channelIndex()
		if err != nil {
			return err
		}
		return idx.Leave(ctx, e.channel, e.key)
	}
	idx, err := c.dueIndex()
	if err != nil {
		return err
	}
	return idx.RemoveDue(ctx, Due{At: e.at, Key: e.key})
}

// addIndexEntry runs add, which adds e to the store's index, at once, even with WriteBehind (an
// entry must be durable before the record that needs it). With WriteBehind it first cancels a
// removal of e that waits for a flush (see removeIndexEntry): the record about to be written
// needs e again. add runs under e's key stripe, so a removal being applied never undoes it.
func (c *Cache) addIndexEntry(ctx context.Context, e indexEntry, add func(context.Context) error) error {
	if c.cfg.Mode != WriteBehind {
		return add(ctx)
	}
	id := e.key.String()
	mu := c.stripe(id)
	mu.Lock()
	defer mu.Unlock()
	c.dirtyMu.Lock()
	if w, ok := c.dirty[id]; ok {
		w.removals = slices.DeleteFunc(w.removals, e.same)
	}
	c.removable = slices.DeleteFunc(c.removable, e.same)
	c.dirtyMu.Unlock()
	return add(ctx)
}

// removeIndexEntry removes e from the store's index. With WriteThrough it goes at once. With
// WriteBehind, while the key has a change buffered the removal waits for the flush that makes
// it durable: until then the stored record, which a crash would bring back, may still need e.
// The caller has checked that the store keeps e's index and that e is valid.
func (c *Cache) removeIndexEntry(ctx context.Context, e indexEntry) error {
	if c.cfg.Mode != WriteBehind {
		return e.remove(ctx, c)
	}
	id := e.key.String()
	mu := c.stripe(id)
	mu.Lock()
	defer mu.Unlock()
	c.dirtyMu.Lock()
	if w, ok := c.dirty[id]; ok {
		if !slices.ContainsFunc(w.removals, e.same) {
			w.removals = append(w.removals, e)
		}
		c.dirtyMu.Unlock()
		return nil
	}
	c.dirtyMu.Unlock()
	return e.remove(ctx, c)
}

// applyRemovals removes the entries of removable (after a flush). Each removal holds its key's
// stripe and checks that the entry is still to go, so an add of the same entry (which holds the
// stripe too) is never undone.
func (c *Cache) applyRemovals(ctx context.Context) {
	c.dirtyMu.Lock()
	todo := slices.Clone(c.removable)
	c.dirtyMu.Unlock()
	for _, e := range todo {
		mu := c.stripe(e.key.String())
		mu.Lock()
		c.dirtyMu.Lock()
		i := slices.IndexFunc(c.removable, e.same)
		if i >= 0 {
			c.removable = slices.Delete(c.removable, i, i+1)
		}
		c.dirtyMu.Unlock()
		if i >= 0 {
			// A failure leaves a stale entry, which is only a hint: the scheduler removes a due
			// entry when it comes due, and a broadcast skips a member whose record no longer
			// subscribes.
			_ = e.remove(ctx, c)
		}
		mu.Unlock()
	}
}

// containsEntry reports whether es holds e.
func containsEntry(es []indexEntry, e indexEntry) bool {
	return slices.ContainsFunc(es, e.same)
}
