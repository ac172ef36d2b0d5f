package proctest

import (
	"testing"
	"time"
)

// eventuallyTimeout is how long Eventually waits for its condition: far longer than anything a
// healthy test waits for, so that only a broken one times out, even on a loaded machine. A var
// so that proctest's own tests can shorten it.
var eventuallyTimeout = 10 * time.Second

// Eventually polls cond until it holds, and fails t ("timed out waiting for what") if it does
// not within 10 s: EventuallyWithin with a bound that only a broken test reaches.
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	EventuallyWithin(t, eventuallyTimeout, what, cond)
}

// EventuallyWithin polls cond until it holds, and fails t ("timed out waiting for what") if it
// does not within d: for a test whose bound is part of what it checks (a connection closed
// within its timeout). It polls at once, then after 1 ms, doubling up to every 10 ms, so a
// condition that holds soon is seen soon and a slow one does not busy the machine. Call it from
// the test's goroutine.
func EventuallyWithin(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	wait := time.Millisecond
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s (%v)", what, d)
		}
		time.Sleep(wait)
		wait = min(2*wait, 10*time.Millisecond)
	}
}
