// Package chaos holds knactor's fault tests of the durable write of a turn. Each runs real
// processes (knactor, function pods, MinIO) under load from many callers, breaks something on
// purpose — freezes the store, SIGKILLs a router or `knactor up`, runs two routers on one
// bucket, puts a fault-injecting proxy in front of the store — and then counts exactly:
//
//   - Calls with an idempotency key are retried by the test's client, with the same key, until
//     they succeed. Afterwards every actor's stored total must equal the number of distinct
//     calls made on it: nothing lost, nothing applied twice.
//   - Calls without a key are sent once. Afterwards the stored total must be at least the
//     number acknowledged (no acknowledged write lost) and at most acknowledged + failed (a
//     failed call may have committed, but no call committed twice).
//
// The tests are bounded in time (about a minute each) and print their figures. With
// KNACTOR_CHAOS_DOCS=docs/reliability.md (hack/chaos.sh sets it), each test also writes its row
// into that file's table. `go test -short` skips them.
package chaos
