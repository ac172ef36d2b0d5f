package statecache

import (
	"context"
	"errors"
)

// Version identifies one stored revision of a key's value. It is opaque: compare it, pass it
// back, never parse it. NoVersion means the key has never been written (or, for a store that
// cannot delete conditionally, was deleted without a trace).
type Version string

// NoVersion is the version of a key that holds nothing. Put with NoVersion creates the key only
// if it is absent.
const NoVersion Version = ""

var (
	// ErrConflict reports a conditional write whose expected version no longer matches the
	// store: someone else wrote the key since it was read. Re-read and re-apply the change.
	ErrConflict = errors.New("state version conflict")

	// ErrUnavailable reports that the store could not be reached or answered with a transient
	// failure after retries. The write may be retried later; nothing was changed by this call
	// as far as the caller can tell.
	ErrUnavailable = errors.New("state store unavailable")
)

// Entry is what a store holds for one key.
type Entry struct {
	// Value is the stored bytes; nil when the key is absent.
	Value []byte
	// Version is the revision to pass to a conditional write. An absent key may still carry a
	// version (a store's deletion marker); pass it back as is.
	Version Version
	// Exists reports whether the key holds a value.
	Exists bool
}

// Store is durable, versioned storage for actor state. Implementations are safe for concurrent
// use and never let two writers that read the same version both succeed.
type Store interface {
	// Get returns the key's entry. An absent key is not an error: it returns Exists false.
	Get(ctx context.Context, key Key) (Entry, error)
	// Put stores value if the key's current version equals expect and returns the new version.
	// An absent key matches the version Get returned for it (NoVersion unless the store keeps
	// deletion markers). A mismatch returns ErrConflict and changes nothing.
	Put(ctx context.Context, key Key, value []byte, expect Version) (Version, error)
	// Delete removes the key's value if its current version equals expect and returns the
	// version the absent key now has. A mismatch returns ErrConflict and changes nothing.
	// Deleting an absent key with its current version succeeds and changes nothing.
	Delete(ctx context.Context, key Key, expect Version) (Version, error)
}
