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
// not within 10 s. It polls at once, then after 1 ms, doubling up to every 10 ms,
// so a condition that holds soon is seen soon and a slow one does not busy the machine.
// Call it from the test's goroutine.
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	timeout := eventuallyTimeout
	deadline := time.Now().Add(timeout)
	wait := time.Millisecond
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s (%v)", what, timeout)
		}
		time.Sleep(wait)
		wait = min(2*wait, 10*time.Millisecond)
	}
}
