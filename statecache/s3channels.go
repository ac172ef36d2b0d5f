package statecache

import (
	"context"
	"fmt"
	"strconv"
)

// s3ChannelDir is the folder of the channel index under the store's prefix: one object
// "{prefix}.channels/" + MemberName per member, its body the actor's id (see s3Index).
const s3ChannelDir = ".channels/"

var _ ChannelIndex = (*S3Store)(nil)

// s3ChannelIndex reads the members of one channel's member list.
var s3ChannelIndex = s3Index[Key]{what: "channel index", parse: parseMember, hashed: objectNameHashed}

// Join implements ChannelIndex: it writes the member's object (a PUT of the actor's id, a few
// bytes), durable when Join returns. Joining twice rewrites the same bytes.
func (s *S3Store) Join(ctx context.Context, channel string, key Key) error {
	name, err := s.memberObjectName(channel, key)
	if err != nil {
		return fmt.Errorf("s3 store: join channel %q: %s: %w", channel, key, err)
	}
	if err := s.putIndexObject(ctx, name, key.ID); err != nil {
		return s.explain("join channel "+strconv.Quote(channel), key.String(), err)
	}
	return nil
}

// Leave implements ChannelIndex: it deletes the member's object. An absent object is not an
// error.
func (s *S3Store) Leave(ctx context.Context, channel string, key Key) error {
	name, err := s.memberObjectName(channel, key)
	if err != nil {
		return fmt.Errorf("s3 store: leave channel %q: %s: %w", channel, key, err)
	}
	if err := s.removeIndexObject(ctx, name); err != nil {
		return s.explain("leave channel "+strconv.Quote(channel), key.String(), err)
	}
	return nil
}

// Members implements ChannelIndex: it lists "{prefix}.channels/{channel}/" after after's name,
// one request per 1000 members. Each member is read from its name; one whose name holds a hashed
// id (an id of more than 200 escaped bytes) costs a GET of its body as well.
func (s *S3Store) Members(ctx context.Context, channel string, after Key, limit int) ([]Key, error) {
	op := "members of channel " + strconv.Quote(channel)
	afterName, err := memberCursor(channel, after)
	if err != nil {
		return nil, fmt.Errorf("s3 store: %s: %w", op, err)
	}
	dir := s.cfg.Prefix + s3ChannelDir + channel + "/"
	start := ""
	if afterName != "" {
		start = dir + afterName
	}
	return listIndex(ctx, s, s3ChannelIndex, op, dir, start, s.cfg.Prefix+s3ChannelDir+membersEnd(channel), limit)
}

// memberObjectName returns the name of key's object in channel's member list.
func (s *S3Store) memberObjectName(channel string, key Key) (string, error) {
	name, err := MemberName(channel, key)
	if err != nil {
		return "", err
	}
	return s.cfg.Prefix + s3ChannelDir + name, nil
}
