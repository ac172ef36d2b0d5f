package statecache

import (
	"context"
	"fmt"
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
	return c.addIndexEntry(ctx, dueEntry(d), func(ctx context.Context) error { return idx.AddDue(ctx, d) })
}

// RemoveDue implements DueIndex with the store's index. With WriteThrough the entry goes at once.
// With WriteBehind, while the key has a change buffered the removal waits for the flush that
// makes it durable: until then the stored record, which a crash would bring back, may still
// need the entry.
func (c *Cache) RemoveDue(ctx context.Context, d Due) error {
	if _, err := c.dueIndex(); err != nil {
		return err
	}
	return c.removeIndexEntry(ctx, dueEntry(d))
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
