package statecache

import (
	"context"
	"errors"
	"fmt"
)

// Version identifies one stored revision of a key's value. It is opaque: compare it, pass it
// back, never parse it. NoVersion means the key has never been written (or, for a store that
// cannot delete conditionally, was deleted without a trace).
type Version string

// NoVersion is the version of a key that holds nothing. Put with NoVersion creates the key only
// if it is absent.
const NoVersion Version = ""

// Commit names one write: the turn, and the attempt of that turn, that made it. A writer makes a
// new commit id for every write it means to make and reuses it only to retry that same write, so
// a store that finds a key already written by the commit knows the earlier try landed.
//
// Commit ids are 1-128 printable ASCII characters (they travel as S3 user metadata). NoCommit is
// allowed for writes that need no such check (tools, tests); such a write is never recognised
// as a repeat.
type Commit string

// NoCommit marks a write without a commit id.
const NoCommit Commit = ""

// MaxCommitBytes bounds a commit id: S3 keeps user metadata in 2 KiB per object, and an id is a
// router's prefix, a sequence number and an attempt.
const MaxCommitBytes = 128

// Validate reports whether c can be stored with a write.
func (c Commit) Validate() error {
	if len(c) > MaxCommitBytes {
		return fmt.Errorf("commit id is %d bytes, over %d", len(c), MaxCommitBytes)
	}
	for i := 0; i < len(c); i++ {
		if c[i] < 0x21 || c[i] > 0x7e {
			return fmt.Errorf("commit id %q: only printable ASCII without spaces", string(c))
		}
	}
	return nil
}

var (
	// ErrConflict reports a conditional write whose expected version no longer matches the
	// store: someone else wrote the key since it was read. Re-read and re-apply the change.
	// Stores return it as a *ConflictError.
	ErrConflict = errors.New("state version conflict")

	// ErrUnavailable reports that the store could not be reached or answered with a transient
	// failure after retries. The write may or may not have happened: retry it with the same
	// commit id, and the store tells a landed earlier try from another writer.
	ErrUnavailable = errors.New("state store unavailable")
)

// ConflictError is the ErrConflict of one write: the key held another version than the writer
// expected, and that version was not written by the writer's own commit.
type ConflictError struct {
	Key Key
	// Current and Commit are the version the key holds and the commit that wrote it, when the
	// store learned them (S3 does with one extra request per conflict); empty otherwise.
	Current Version
	Commit  Commit
	// AfterAmbiguous reports that an earlier try of this same write failed without an answer
	// (a timeout, a broken connection): it may have landed before the other writer's, whose
	// write then hides it. Such a writer cannot know whether its write took effect.
	AfterAmbiguous bool
}

func (e *ConflictError) Error() string {
	if e.AfterAmbiguous {
		return fmt.Sprintf("write %s: %v after a try whose outcome is unknown", e.Key, ErrConflict)
	}
	return fmt.Sprintf("write %s: %v", e.Key, ErrConflict)
}

// Is makes errors.Is(err, ErrConflict) true.
func (e *ConflictError) Is(target error) bool { return target == ErrConflict }

// Entry is what a store holds for one key.
type Entry struct {
	// Value is the stored bytes; nil when the key is absent.
	Value []byte
	// Version is the revision to pass to a conditional write. An absent key may still carry a
	// version (a store's deletion marker); pass it back as is.
	Version Version
	// Exists reports whether the key holds a value.
	Exists bool
	// Commit is the commit id of the write that produced Version (NoCommit when unknown).
	Commit Commit
}

// Store is durable, versioned storage for actor state. Implementations are safe for concurrent
// use and never let two writers that read the same version both succeed.
//
// Writes are idempotent per commit: a Put or Delete whose expected version no longer matches,
// but whose key holds what this same commit wrote, returns that version and no error. So a write
// retried after an ambiguous failure (a timeout or a broken connection after the request was
// sent, ErrUnavailable) never turns a landed write into a conflict, and the writer never runs
// its turn a second time.
type Store interface {
	// Get returns the key's entry. An absent key is not an error: it returns Exists false.
	Get(ctx context.Context, key Key) (Entry, error)
	// Put stores value, recording commit with it, if the key's current version equals expect
	// and returns the new version. An absent key matches the version Get returned for it
	// (NoVersion unless the store keeps deletion markers). A mismatch returns a *ConflictError
	// and changes nothing, unless the key's current write is commit's own (see Store).
	Put(ctx context.Context, key Key, value []byte, expect Version, commit Commit) (Version, error)
	// Delete removes the key's value if its current version equals expect and returns the
	// version the absent key now has, like Put. Deleting an absent key with its current
	// version succeeds and changes nothing.
	Delete(ctx context.Context, key Key, expect Version, commit Commit) (Version, error)
}

// sameCommit reports whether a key whose current write is cur was written by commit.
func sameCommit(cur, commit Commit) bool { return commit != NoCommit && cur == commit }

// Write is one conditional write of a batch: a Put of Value, or a Delete when Exists is false.
type Write struct {
	Key    Key
	Value  []byte
	Exists bool
	Expect Version
	Commit Commit
}

func (w Write) op() string {
	if w.Exists {
		return "put"
	}
	return "delete"
}

// WriteResult is the outcome of one Write: what its Put or Delete would have returned.
type WriteResult struct {
	Version Version
	Err     error
}

// BatchWriter is a Store that makes many writes durable at the cost of one (one log append and
// one fsync). Each write is checked on its own: one's conflict does not fail the others. A key
// may appear once per batch.
type BatchWriter interface {
	Store
	WriteBatch(ctx context.Context, writes []Write) []WriteResult
}
