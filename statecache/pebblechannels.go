package statecache

import (
	"context"
	"fmt"
	"strconv"
)

// pebbleChannelPrefix holds the channel index: "c/" + MemberName, its value the actor's id.
const pebbleChannelPrefix = "c/"

var _ ChannelIndex = (*PebbleStore)(nil)

// Join implements ChannelIndex. The entry's key is "c/" + MemberName(channel, key) and its value
// the actor's id, so a name that holds a hashed id still names its actor.
//
// Like AddDue, the write is not synced (pebble.NoSync): the writer joins before it commits the
// record that subscribes, and that synced commit makes the entry durable with it.
func (s *PebbleStore) Join(_ context.Context, channel string, key Key) error {
	k, err := pebbleMemberKey(channel, key)
	if err == nil {
		err = s.setIndexEntry(k, key.ID)
	}
	if err != nil {
		return fmt.Errorf("local store: join channel %q: %s: %w", channel, key, err)
	}
	return nil
}

// Leave implements ChannelIndex. Like Join the write is not synced: a Leave lost in a crash
// leaves a stale member, which a broadcast finds unsubscribed by its record.
func (s *PebbleStore) Leave(_ context.Context, channel string, key Key) error {
	k, err := pebbleMemberKey(channel, key)
	if err == nil {
		err = s.deleteIndexEntry(k)
	}
	if err != nil {
		return fmt.Errorf("local store: leave channel %q: %s: %w", channel, key, err)
	}
	return nil
}

// Members implements ChannelIndex with one bounded iterator over the keys of channel's members
// after after's.
func (s *PebbleStore) Members(ctx context.Context, channel string, after Key, limit int) ([]Key, error) {
	op := "members of channel " + strconv.Quote(channel)
	afterName, err := memberCursor(channel, after)
	if err != nil {
		return nil, fmt.Errorf("local store: %s: %w", op, err)
	}
	if limit <= 0 {
		return nil, nil
	}
	prefix := pebbleChannelPrefix + channel + "/"
	lower := []byte(prefix)
	if afterName != "" {
		lower = append(lower, afterName...)
		lower = append(lower, 0) // the first key after after's
	}
	upper := []byte(pebbleChannelPrefix + membersEnd(channel))
	return pebbleScan(ctx, s, op, prefix, lower, upper, limit, func(obj string, id []byte) (Key, error) {
		return parseMember(obj, string(id))
	})
}

// pebbleMemberKey returns key's key in channel's member list.
func pebbleMemberKey(channel string, key Key) ([]byte, error) {
	name, err := MemberName(channel, key)
	if err != nil {
		return nil, err
	}
	return append([]byte(pebbleChannelPrefix), name...), nil
}
