package statecache

import (
	"context"
	"fmt"
	"slices"
	"time"
)

var _ DueIndex = (*Cache)(nil)

// AddDue implements DueIndex with the store's index: the entry goes to the store at once, even
// with WriteBehind (an entry must be durable before the record that needs it). It returns an
// error wrapping ErrNoDueIndex when the store keeps no index.
//
// With WriteBehind it also cancels a removal of the same entry that waits for a flush (see
// RemoveDue): the record about to be written needs the entry again.
func (c *Cache) AddDue(ctx context.Context, d Due) error {
	idx, err := c.dueIndex()
	if err != nil {
		return err
	}
	if c.cfg.Mode != WriteBehind {
		return idx.AddDue(ctx, d)
	}
	id := d.Key.String()
	mu := c.stripe(id)
	mu.Lock()
	defer mu.Unlock()
	c.dirtyMu.Lock()
	if w, ok := c.dirty[id]; ok {
		w.removals = slices.DeleteFunc(w.removals, func(r Due) bool { return sameDue(r, d) })
	}
	c.removable = slices.DeleteFunc(c.removable, func(r Due) bool { return sameDue(r, d) })
	c.dirtyMu.Unlock()
	return idx.AddDue(ctx, d)
}

// RemoveDue implements DueIndex with the store's index. With WriteThrough the entry goes at once.
// With WriteBehind, while the key has a change buffered the removal waits for the flush that
// makes it durable: until then the stored record, which a crash would bring back, may still
// need the entry.
func (c *Cache) RemoveDue(ctx context.Context, d Due) error {
	idx, err := c.dueIndex()
	if err != nil {
		return err
	}
	if c.cfg.Mode != WriteBehind {
		return idx.RemoveDue(ctx, d)
	}
	id := d.Key.String()
	mu := c.stripe(id)
	mu.Lock()
	defer mu.Unlock()
	c.dirtyMu.Lock()
	if w, ok := c.dirty[id]; ok {
		if !containsDue(w.removals, d) {
			w.removals = append(w.removals, d)
		}
		c.dirtyMu.Unlock()
		return nil
	}
	c.dirtyMu.Unlock()
	return idx.RemoveDue(ctx, d)
}

// applyRemovals removes the entries of removable (after a flush). Each removal holds its key's
// stripe and checks that the entry is still to go, so an AddDue of the same entry (which holds
// the stripe too) is never undone.
func (c *Cache) applyRemovals(ctx context.Context) {
	idx, err := c.dueIndex()
	if err != nil {
		return
	}
	c.dirtyMu.Lock()
	todo := slices.Clone(c.removable)
	c.dirtyMu.Unlock()
	for _, d := range todo {
		mu := c.stripe(d.Key.String())
		mu.Lock()
		c.dirtyMu.Lock()
		i := slices.IndexFunc(c.removable, func(r Due) bool { return sameDue(r, d) })
		if i >= 0 {
			c.removable = slices.Delete(c.removable, i, i+1)
		}
		c.dirtyMu.Unlock()
		if i >= 0 {
			// A failure leaves a stale entry: the scheduler removes it when it comes due.
			_ = idx.RemoveDue(ctx, d)
		}
		mu.Unlock()
	}
}

func sameDue(a, b Due) bool { return a.Key == b.Key && a.At.Equal(b.At) }

func containsDue(ds []Due, d Due) bool {
	return slices.ContainsFunc(ds, func(r Due) bool { return sameDue(r, d) })
}

// ListDue implements DueIndex with the store's index.
func (c *Cache) ListDue(ctx context.Context, until time.Time, after Due, limit int) ([]Due, error) {
	idx, err := c.dueIndex()
	if err != nil {
		return nil, err
	}
	return idx.ListDue(ctx, until, after, limit)
}

// dueIndex returns the store's index, or an error wrapping ErrNoDueIndex.
func (c *Cache) dueIndex() (DueIndex, error) {
	if idx, ok := c.store.(DueIndex); ok {
		return idx, nil
	}
	return nil, fmt.Errorf("cache over %T: %w", c.store, ErrNoDueIndex)
}
