package statecache

import (
	"testing"
	"time"
)

// FuzzKeyNames checks the names of actor keys against arbitrary function names and ids: a valid
// key's object name stays one path element under its function and parses back (or is hashed),
// and its due-index and channel-member names parse back to the same key.
func FuzzKeyNames(f *testing.F) {
	for _, s := range [][2]string{{"counter", "alice"}, {"f", "a/b"}, {"f", ".."}, {"f", "%2F"}, {"f", "~x"}, {"f", "ü ☃"}, {"Bad", "x"}} {
		f.Add(s[0], s[1], int64(1_800_000_000_000))
	}
	f.Fuzz(func(t *testing.T, fn, id string, ms int64) {
		k := Key{Function: fn, ID: id}
		name, err := k.ObjectName()
		if err != nil {
			if k.Validate() == nil {
				t.Fatalf("valid key %q: %v", k, err)
			}
			return
		}
		if len(name) <= len(fn)+1 || name[:len(fn)+1] != fn+"/" {
			t.Fatalf("object name %q is not under %q/", name, fn)
		}
		seg := name[len(fn)+1:]
		for i := 0; i < len(seg); i++ {
			if seg[i] == '/' {
				t.Fatalf("object name %q holds a '/' in its id segment", name)
			}
		}
		if seg == "." || seg == ".." {
			t.Fatalf("object name %q escapes its prefix", name)
		}
		if back, err := ParseObjectName(name); err == nil && back != k {
			t.Fatalf("%q parses back to %q", k, back)
		} else if err != nil && seg[0] != hashedMarker {
			t.Fatalf("escaped name %q does not parse: %v", name, err)
		}
		at := time.UnixMilli(max(ms, 0) % (1 << 50))
		d, err := DueName(Due{At: at, Key: k})
		if err != nil {
			t.Fatal(err)
		}
		if back, err := ParseDueName(d, id); err != nil || back.Key != k || !back.At.Equal(at) {
			t.Fatalf("due name %q parses back to %+v, %v", d, back, err)
		}
	})
}
