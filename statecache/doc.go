// Package statecache keeps every actor's state: an in-memory cache (bigcache) in front of a
// durable Store.
//
// A Store is the source of truth. It offers three operations on one key: Get (value and version),
// a conditional Put (create only if absent, or update only if the version still matches) and a
// conditional Delete. Implementations: PebbleStore (an embedded log-structured database, the
// local default: writes of all actors in flight share one log fsync, and it is a BatchWriter),
// S3Store (S3 or MinIO through minio-go, using If-Match / If-None-Match), DirStore (a file per
// actor: the local store of earlier releases, which PebbleStore migrates from, and a plain store
// for tests) and MemStore (memory only, for tests and benchmarks). All map an actor Key to one
// name inside the function's prefix, whatever the id holds.
//
// A Cache serves reads from memory and writes either through to the Store before returning
// (WriteThrough, the default) or later in coalesced batches (WriteBehind), one batch per flush
// on a BatchWriter. Idle actors are
// passivated from memory only once their state is durable.
//
// Versions make lost updates impossible: a writer passes the version it read, and a write based
// on a stale read fails with ErrConflict instead of overwriting someone else's change.
package statecache
