package statecache

import (
	"context"
	"errors"
	"fmt"
)

// ChannelIndex is a store's index of channel subscriptions: for each channel, the actors that
// subscribe to it, listed in name order, so a broadcast reaches every subscriber without reading
// every actor.
//
// Like DueIndex, an entry is a hint: the actor's stored record says which channels it subscribes
// to. Writers join a channel before they commit the record that subscribes, and leave after they
// commit the record that no longer does; a broadcast checks each member's record. Joining twice,
// or leaving a channel the actor is not in, is not an error.
type ChannelIndex interface {
	// Join records key as a member of channel.
	Join(ctx context.Context, channel string, key Key) error
	// Leave forgets key as a member of channel.
	Leave(ctx context.Context, channel string, key Key) error
	// Members returns up to limit members of channel in name order (by Key.ObjectName),
	// starting after the member after (the zero Key starts at the beginning).
	Members(ctx context.Context, channel string, after Key, limit int) ([]Key, error)
}

// MaxChannelLen bounds a channel name: a name, not a payload.
const MaxChannelLen = 128

// ErrNoChannelIndex reports a store that keeps no channel index, so it cannot hold subscriptions.
var ErrNoChannelIndex = errors.New("the state store keeps no channel index (channels need the local store, S3 or the memory store)")

// ValidateChannel reports whether name is a channel name: 1 to 128 characters of
// [A-Za-z0-9_.-], not starting with '.'.
func ValidateChannel(name string) error {
	if name == "" || len(name) > MaxChannelLen || name[0] == '.' {
		return fmt.Errorf("%w: channel name %q must be 1-%d characters of [A-Za-z0-9_.-], not starting with '.'", ErrInvalidKey, name, MaxChannelLen)
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; !unreserved(c) {
			return fmt.Errorf("%w: channel name %q must be 1-%d characters of [A-Za-z0-9_.-]", ErrInvalidKey, name, MaxChannelLen)
		}
	}
	return nil
}

// MemberName returns key's name in channel's member list: "{channel}/{function}/{escaped id}".
// Keep the id beside it: a long id is named by its hash (see Key.ObjectName).
func MemberName(channel string, key Key) (string, error) {
	if err := ValidateChannel(channel); err != nil {
		return "", err
	}
	obj, err := key.ObjectName()
	if err != nil {
		return "", err
	}
	return channel + "/" + obj, nil
}

// memberCursor returns a listing's cursor as a name inside channel's member list: "" for the
// zero Key (list from the beginning), else after's Key.ObjectName. It validates channel too.
func memberCursor(channel string, after Key) (string, error) {
	if err := ValidateChannel(channel); err != nil {
		return "", err
	}
	if after == (Key{}) {
		return "", nil
	}
	return after.ObjectName()
}

// membersEnd returns the smallest name that sorts after every member name of channel
// ("{channel}/..."): the channel followed by the byte after '/'. A channel that extends this one
// ("ab" after "a") sorts after it.
func membersEnd(channel string) string {
	return channel + string(rune('/'+1))
}

// parseMember returns the member that obj, a name inside a member list (a Key.ObjectName),
// names. id is the actor's id kept beside the name: it is needed, and checked, only when obj
// names the actor by the id's hash; "" to parse obj alone.
func parseMember(obj, id string) (Key, error) {
	if !objectNameHashed(obj) {
		id = ""
	}
	return parseIndexedObject(obj, id)
}
