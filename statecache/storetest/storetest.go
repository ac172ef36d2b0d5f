// Package storetest is the contract test suite of statecache.Store: every implementation must
// pass Run. It checks conditional writes, deletion, id escaping and concurrent writers.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/knactor/knactor/statecache"
)

// TrickyIDs are actor ids that must each map to their own key and round-trip exactly: path
// separators and traversal, escapes, spaces, non-ASCII, case, and the longest allowed id.
var TrickyIDs = []string{
	"alice", "Alice", "a/b", "/", "//", ".", "..", "../..", "../../etc/passwd", "..%2F..",
	"%", "%2F", "%25", "a b", " ", "~", "~abc", "tab\there", "new\nline", "nul\x00byte",
	"ünïcødé ✓", "日本語", "emoji 🎉", ".hidden", "-dash", "q?x=1&y=2#frag", `back\slash`,
	strings.Repeat("x", statecache.MaxIDBytes),
	strings.Repeat("/", statecache.MaxIDBytes),
	strings.Repeat("é", statecache.MaxIDBytes/2),
	strings.Repeat("y", statecache.MaxIDBytes-1) + "z",
}

// Run runs the contract suite. open returns a new, empty store for each subtest.
func Run(t *testing.T, open func(t *testing.T) statecache.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s statecache.Store)
	}{
		{"AbsentKey", testAbsent},
		{"CreateOnlyIfAbsent", testCreate},
		{"UpdateIfVersionMatches", testUpdate},
		{"Delete", testDelete},
		{"EmptyAndBinaryValues", testValues},
		{"TrickyIDsRoundTrip", testTrickyIDs},
		{"FunctionsAreSeparate", testFunctions},
		{"InvalidKeys", testInvalid},
		{"ConcurrentCreateOneWins", testConcurrentCreate},
		{"ConcurrentUpdateOneWins", testConcurrentUpdate},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, open(t)) })
	}
}

var ctx = context.Background()

func get(t *testing.T, s statecache.Store, k statecache.Key) statecache.Entry {
	t.Helper()
	e, err := s.Get(ctx, k)
	if err != nil {
		t.Fatalf("Get(%q): %v", k, err)
	}
	return e
}

func put(t *testing.T, s statecache.Store, k statecache.Key, v []byte, expect statecache.Version) statecache.Version {
	t.Helper()
	ver, err := s.Put(ctx, k, v, expect)
	if err != nil {
		t.Fatalf("Put(%q, expect %q): %v", k, expect, err)
	}
	if ver == statecache.NoVersion {
		t.Fatalf("Put(%q) returned no version", k)
	}
	return ver
}

func wantValue(t *testing.T, s statecache.Store, k statecache.Key, want []byte, wantVersion statecache.Version) {
	t.Helper()
	e := get(t, s, k)
	if !e.Exists || !bytes.Equal(e.Value, want) {
		t.Fatalf("Get(%q) = %q (exists %v), want %q", k, e.Value, e.Exists, want)
	}
	if wantVersion != "" && e.Version != wantVersion {
		t.Fatalf("Get(%q) version = %q, want %q", k, e.Version, wantVersion)
	}
}

func wantConflict(t *testing.T, err error, what string) {
	t.Helper()
	if !errors.Is(err, statecache.ErrConflict) {
		t.Fatalf("%s: err = %v, want ErrConflict", what, err)
	}
}

func testAbsent(t *testing.T, s statecache.Store) {
	e := get(t, s, statecache.Key{Function: "counter", ID: "nobody"})
	if e.Exists || e.Value != nil {
		t.Fatalf("absent key: got %+v, want Exists false and no value", e)
	}
}

func testCreate(t *testing.T, s statecache.Store) {
	k := statecache.Key{Function: "counter", ID: "alice"}
	absent := get(t, s, k).Version
	v1 := put(t, s, k, []byte(`{"value":1}`), absent)
	_, err := s.Put(ctx, k, []byte(`{"value":99}`), absent)
	wantConflict(t, err, "second create")
	wantValue(t, s, k, []byte(`{"value":1}`), v1)
}

func testUpdate(t *testing.T, s statecache.Store) {
	k := statecache.Key{Function: "counter", ID: "bob"}
	v1 := put(t, s, k, []byte("1"), get(t, s, k).Version)
	v2 := put(t, s, k, []byte("2"), v1)
	if v2 == v1 {
		t.Fatalf("update kept version %q", v1)
	}
	_, err := s.Put(ctx, k, []byte("stale"), v1)
	wantConflict(t, err, "update with stale version")
	_, err = s.Put(ctx, k, []byte("made-up"), "not-a-version")
	wantConflict(t, err, "update with unknown version")
	wantValue(t, s, k, []byte("2"), v2)
}

func testDelete(t *testing.T, s statecache.Store) {
	k := statecache.Key{Function: "counter", ID: "carol"}
	absent := get(t, s, k).Version
	if _, err := s.Delete(ctx, k, absent); err != nil {
		t.Fatalf("delete of an absent key with its version: %v", err)
	}
	absent = get(t, s, k).Version
	v1 := put(t, s, k, []byte("1"), absent)
	v2 := put(t, s, k, []byte("2"), v1)
	_, err := s.Delete(ctx, k, v1)
	wantConflict(t, err, "delete with stale version")
	wantValue(t, s, k, []byte("2"), v2)

	gone, err := s.Delete(ctx, k, v2)
	if err != nil {
		t.Fatalf("delete: %v", err)
	}
	e := get(t, s, k)
	if e.Exists || e.Version != gone {
		t.Fatalf("after delete: got %+v, want absent with version %q", e, gone)
	}
	_, err = s.Put(ctx, k, []byte("late"), v2)
	wantConflict(t, err, "update of a deleted key")
	put(t, s, k, []byte("again"), gone)
	wantValue(t, s, k, []byte("again"), "")
}

func testValues(t *testing.T, s statecache.Store) {
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	for name, v := range map[string][]byte{"empty": {}, "binary": all, "large": bytes.Repeat([]byte("z"), 1<<20)} {
		k := statecache.Key{Function: "values", ID: name}
		ver := put(t, s, k, v, get(t, s, k).Version)
		wantValue(t, s, k, v, ver)
	}
}

func testTrickyIDs(t *testing.T, s statecache.Store) {
	names := make(map[string]string)
	for _, id := range TrickyIDs {
		k := statecache.Key{Function: "tricky", ID: id}
		name, err := k.ObjectName()
		if err != nil {
			t.Fatalf("ObjectName(%q): %v", id, err)
		}
		if other, dup := names[name]; dup {
			t.Fatalf("ids %q and %q share object name %q", id, other, name)
		}
		names[name] = id
		put(t, s, k, []byte(id), get(t, s, k).Version)
	}
	for _, id := range TrickyIDs {
		wantValue(t, s, statecache.Key{Function: "tricky", ID: id}, []byte(id), "")
	}
}

func testFunctions(t *testing.T, s statecache.Store) {
	a := statecache.Key{Function: "fn-a", ID: "same"}
	b := statecache.Key{Function: "fn-b", ID: "same"}
	put(t, s, a, []byte("a"), get(t, s, a).Version)
	put(t, s, b, []byte("b"), get(t, s, b).Version)
	wantValue(t, s, a, []byte("a"), "")
	wantValue(t, s, b, []byte("b"), "")
}

func testInvalid(t *testing.T, s statecache.Store) {
	for _, k := range []statecache.Key{
		{Function: "", ID: "x"},
		{Function: "Upper", ID: "x"},
		{Function: "../etc", ID: "x"},
		{Function: "a/b", ID: "x"},
		{Function: "counter", ID: ""},
		{Function: "counter", ID: strings.Repeat("x", statecache.MaxIDBytes+1)},
		{Function: "counter", ID: "bad\xffutf8"},
	} {
		if _, err := s.Get(ctx, k); !errors.Is(err, statecache.ErrInvalidKey) {
			t.Errorf("Get(%q): err = %v, want ErrInvalidKey", k, err)
		}
		if _, err := s.Put(ctx, k, []byte("x"), ""); !errors.Is(err, statecache.ErrInvalidKey) {
			t.Errorf("Put(%q): err = %v, want ErrInvalidKey", k, err)
		}
		if _, err := s.Delete(ctx, k, ""); !errors.Is(err, statecache.ErrInvalidKey) {
			t.Errorf("Delete(%q): err = %v, want ErrInvalidKey", k, err)
		}
	}
}

// writers is how many goroutines race for one key; the toolchain notes measured exactly one
// winner among 16 on MinIO.
const writers = 16

func race(t *testing.T, try func(i int) error) {
	t.Helper()
	var (
		wg              sync.WaitGroup
		mu              sync.Mutex
		wins, conflicts int
		other           []error
		start           = make(chan struct{})
	)
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			err := try(i)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				wins++
			case errors.Is(err, statecache.ErrConflict):
				conflicts++
			default:
				other = append(other, err)
			}
		}()
	}
	close(start)
	wg.Wait()
	if len(other) > 0 {
		t.Fatalf("unexpected errors: %v", errors.Join(other...))
	}
	if wins != 1 || conflicts != writers-1 {
		t.Fatalf("%d writers: %d won and %d conflicted, want exactly 1 winner", writers, wins, conflicts)
	}
}

func testConcurrentCreate(t *testing.T, s statecache.Store) {
	k := statecache.Key{Function: "race", ID: "create"}
	absent := get(t, s, k).Version
	race(t, func(i int) error {
		_, err := s.Put(ctx, k, []byte(fmt.Sprint(i)), absent)
		return err
	})
}

func testConcurrentUpdate(t *testing.T, s statecache.Store) {
	k := statecache.Key{Function: "race", ID: "update"}
	v := put(t, s, k, []byte("base"), get(t, s, k).Version)
	race(t, func(i int) error {
		_, err := s.Put(ctx, k, []byte(fmt.Sprint(i)), v)
		return err
	})
}
