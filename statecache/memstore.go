package statecache

import (
	"context"
	"strconv"
	"sync"
)

// MemStore keeps state in memory: a Store with S3Store's semantics (conditional writes,
// tombstones, commits) and no durability. It is for benchmarks that measure what sits above a
// store, and for tests that need a store and nothing else; it passes the same contract suite.
// The zero value is ready to use.
type MemStore struct {
	mu  sync.Mutex // guards seq and m
	seq uint64
	m   map[string]Entry
}

var _ Store = (*MemStore)(nil)

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
