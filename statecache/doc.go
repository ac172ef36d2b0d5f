// Package statecache keeps every actor's state: an in-memory cache (bigcache) in front of a
// durable Store.
//
// A Store is the source of truth. It offers three operations on one key: Get (value and version),
// a conditional Put (create only if absent, or update only if the version still matches) and a
// conditional Delete. Two implementations ship: S3Store (S3 or MinIO through minio-go, using
// If-Match / If-None-Match) and DirStore (a local directory, the embedded default). Both map an
// actor Key to one object name inside the function's prefix, whatever the id holds.
//
// A Cache serves reads from memory and writes either through to the Store before returning
// (WriteThrough, the default) or later in coalesced batches (WriteBehind). Idle actors are
// passivated from memory only once their state is durable.
//
// Versions make lost updates impossible: a writer passes the version it read, and a write based
// on a stale read fails with ErrConflict instead of overwriting someone else's change.
package statecache
