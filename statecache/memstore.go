package statecache

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"
)

// MemStore keeps state in memory: a Store with S3Store's semantics (conditional writes,
// tombstones, commits) and no durability. It is for benchmarks that measure what sits above a
// store, and for tests that need a store and nothing else; it passes the same contract suite.
// The zero value is ready to use.
type MemStore struct {
	mu      sync.Mutex // guards seq, m, due and members
	seq     uint64
	m       map[string]Entry
	due     map[string]Due // the due-time index, by DueName
	members map[string]Key // the channel index, by MemberName
}

var (
	_ Store        = (*MemStore)(nil)
	_ DueIndex     = (*MemStore)(nil)
	_ ChannelIndex = (*MemStore)(nil)
)

// Get implements Store.
func (s *MemStore) Get(_ context.Context, key Key) (Entry, error) {
	if err := key.Validate(); err != nil {
		return Entry{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.m[key.String()]
	e.Value = append([]byte(nil), e.Value...)
	if e.Exists && e.Value == nil {
		e.Value = []byte{}
	}
	return e, nil
}

// Put implements Store.
func (s *MemStore) Put(_ context.Context, key Key, value []byte, expect Version, commit Commit) (Version, error) {
	return s.write(key, Entry{Value: append([]byte{}, value...), Exists: true, Commit: commit}, expect)
}

// Delete implements Store: it leaves a tombstone that records commit.
func (s *MemStore) Delete(_ context.Context, key Key, expect Version, commit Commit) (Version, error) {
	return s.write(key, Entry{Commit: commit}, expect)
}

func (s *MemStore) write(key Key, e Entry, expect Version) (Version, error) {
	if err := key.Validate(); err != nil {
		return NoVersion, err
	}
	if err := e.Commit.Validate(); err != nil {
		return NoVersion, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	id := key.String()
	cur := s.m[id]
	if cur.Version != expect {
		if sameCommit(cur.Commit, e.Commit) {
			return cur.Version, nil
		}
		return NoVersion, &ConflictError{Key: key, Current: cur.Version, Commit: cur.Commit}
	}
	if !e.Exists && !cur.Exists {
		return cur.Version, nil
	}
	if s.m == nil {
		s.m = make(map[string]Entry)
	}
	s.seq++
	e.Version = Version("m" + strconv.FormatUint(s.seq, 36))
	s.m[id] = e
	return e.Version, nil
}

// AddDue implements DueIndex.
func (s *MemStore) AddDue(_ context.Context, d Due) error {
	name, err := DueName(d)
	if err != nil {
		return fmt.Errorf("memory store: add due %s: %w", d.Key, err)
	}
	// Kept as the other stores return it: its time to the millisecond, as the name holds it.
	kept, err := ParseDueName(name, d.Key.ID)
	if err != nil {
		return fmt.Errorf("memory store: add due %s: %w", d.Key, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.due == nil {
		s.due = make(map[string]Due)
	}
	s.due[name] = kept
	return nil
}

// RemoveDue implements DueIndex.
func (s *MemStore) RemoveDue(_ context.Context, d Due) error {
	name, err := DueName(d)
	if err != nil {
		return fmt.Errorf("memory store: remove due %s: %w", d.Key, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.due, name)
	return nil
}

// ListDue implements DueIndex. It sorts the entries in range at every call: fine for tests
// and benchmarks, not for a large index.
func (s *MemStore) ListDue(_ context.Context, until time.Time, after Due, limit int) ([]Due, error) {
	afterName, err := dueAfterName(after)
	if err != nil {
		return nil, fmt.Errorf("memory store: list due: %w", err)
	}
	if limit <= 0 {
		return nil, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return sortedRange(s.due, afterName, DueUntil(until), limit), nil
}

// Join implements ChannelIndex.
func (s *MemStore) Join(_ context.Context, channel string, key Key) error {
	name, err := MemberName(channel, key)
	if err != nil {
		return fmt.Errorf("memory store: join channel %q: %s: %w", channel, key, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.members == nil {
		s.members = make(map[string]Key)
	}
	s.members[name] = key
	return nil
}

// Leave implements ChannelIndex.
func (s *MemStore) Leave(_ context.Context, channel string, key Key) error {
	name, err := MemberName(channel, key)
	if err != nil {
		return fmt.Errorf("memory store: leave channel %q: %s: %w", channel, key, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.members, name)
	return nil
}

// Members implements ChannelIndex. Like ListDue it sorts at every call.
func (s *MemStore) Members(_ context.Context, channel string, after Key, limit int) ([]Key, error) {
	afterName, err := memberCursor(channel, after)
	if err != nil {
		return nil, fmt.Errorf("memory store: members of channel %q: %w", channel, err)
	}
	if limit <= 0 {
		return nil, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// Every member name of channel sorts after channel + "/" and before membersEnd(channel).
	return sortedRange(s.members, channel+"/"+afterName, membersEnd(channel), limit), nil
}

// sortedRange returns the values of m whose names sort after after and before end, up to limit,
// in name order.
func sortedRange[T any](m map[string]T, after, end string, limit int) []T {
	var names []string
	for name := range m {
		if name > after && name < end {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	names = names[:min(len(names), limit)]
	out := make([]T, len(names))
	for i, name := range names {
		out[i] = m[name]
	}
	return out
}
