package statecache

import (
	"fmt"
	"strconv"
)

// WriteMode says when a Cache makes a write durable.
type WriteMode int

const (
	// WriteThrough returns from Put only after the Store has the value. A crash loses nothing
	// that was acknowledged, and several caches (routers) may share one Store.
	WriteThrough WriteMode = iota
	// WriteBehind returns from Put at once and writes to the Store later, coalescing repeated
	// writes of one key. Faster, but a crash loses up to FlushInterval of writes, and the Cache
	// must be the Store's only writer for the keys it holds.
	WriteBehind
)

// String returns the mode's name as used in flags and annotations.
func (m WriteMode) String() string {
	switch m {
	case WriteThrough:
		return "write-through"
	case WriteBehind:
		return "write-behind"
	}
	return "WriteMode(" + strconv.Itoa(int(m)) + ")"
}

// ParseWriteMode parses "write-through" or "write-behind".
func ParseWriteMode(s string) (WriteMode, error) {
	switch s {
	case "write-through", "":
		return WriteThrough, nil
	case "write-behind":
		return WriteBehind, nil
	}
	return 0, fmt.Errorf("unknown write mode %q: want write-through or write-behind", s)
}
