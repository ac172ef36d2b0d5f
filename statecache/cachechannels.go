package statecache

import (
	"context"
	"fmt"
)

var _ ChannelIndex = (*Cache)(nil)

// Join implements ChannelIndex with the store's index: the membership goes to the store at once,
// even with WriteBehind (it must be durable before the record that subscribes). It returns an
// error wrapping ErrNoChannelIndex when the store keeps no channel index.
//
// With WriteBehind it also cancels a Leave of the same channel by the same actor that waits for
// a flush (see Leave): the record about to be written subscribes again.
func (c *Cache) Join(ctx context.Context, channel string, key Key) error {
	idx, err := c.channelIndex()
	if err != nil {
		return err
	}
	return c.addIndexEntry(ctx, memberEntry(channel, key), func(ctx context.Context) error { return idx.Join(ctx, channel, key) })
}

// Leave implements ChannelIndex with the store's index. With WriteThrough the membership goes at
// once. With WriteBehind, while the key has a change buffered the Leave waits for the flush that
// makes it durable: until then the stored record, which a crash would bring back, may still
// subscribe.
func (c *Cache) Leave(ctx context.Context, channel string, key Key) error {
	if _, err := c.channelIndex(); err != nil {
		return err
	}
	// Checked now, as the store would: a Leave that waits for a flush reports nothing then.
	if _, err := MemberName(channel, key); err != nil {
		return fmt.Errorf("cache: leave channel %q: %s: %w", channel, key, err)
	}
	return c.removeIndexEntry(ctx, memberEntry(channel, key))
}

// Members implements ChannelIndex with the store's index.
func (c *Cache) Members(ctx context.Context, channel string, after Key, limit int) ([]Key, error) {
	idx, err := c.channelIndex()
	if err != nil {
		return nil, err
	}
	return idx.Members(ctx, channel, after, limit)
}

// channelIndex returns the store's channel index, or an error wrapping ErrNoChannelIndex.
func (c *Cache) channelIndex() (ChannelIndex, error) {
	if idx, ok := c.store.(ChannelIndex); ok {
		return idx, nil
	}
	return nil, fmt.Errorf("cache over %T: %w", c.store, ErrNoChannelIndex)
}
