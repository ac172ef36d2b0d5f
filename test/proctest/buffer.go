package proctest

import (
	"bytes"
	"sync"
)

// Buffer collects what a process, a server's goroutines or a logger write while the test reads
// it: a bytes.Buffer whose Write and String may be called concurrently. The zero value is
// ready to use.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
