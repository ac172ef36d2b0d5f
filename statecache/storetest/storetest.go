// Package storetest is the contract test suite of statecache.Store: every implementation must
// pass Run. It checks conditional writes, deletion, id escaping and concurrent writers.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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
		{"EntriesNameTheirCommit", testCommitRecorded},
		{"RetriedWriteOfItsOwnCommitSucceeds", testRetriedWrite},
		{"ConflictNamesTheOtherCommit", testConflictNamesCommit},
	}
	if _, ok := open(t).(statecache.BatchWriter); ok {
		tests = append(tests, struct {
			name string
			fn   func(t *testing.T, s statecache.Store)
		}{"BatchChecksEachWrite", testBatch})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, open(t)) })
	}
}

var ctx = context.Background()

var commits atomic.Uint64

// commit returns a new commit id: every write the suite makes is its own, unless a test retries.
func commit() statecache.Commit {
	return statecache.Commit("storetest-" + strconv.FormatUint(commits.Add(1), 10))
}

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
	ver, err := s.Put(ctx, k, v, expect, commit())
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
	_, err := s.Put(ctx, k, []byte(`{"value":99}`), absent, commit())
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
	_, err := s.Put(ctx, k, []byte("stale"), v1, commit())
	wantConflict(t, err, "update with stale version")
	_, err = s.Put(ctx, k, []byte("made-up"), "not-a-version", commit())
	wantConflict(t, err, "update with unknown version")
	wantValue(t, s, k, []byte("2"), v2)
}

func testDelete(t *testing.T, s statecache.Store) {
	k := statecache.Key{Function: "counter", ID: "carol"}
	absent := get(t, s, k).Version
	if _, err := s.Delete(ctx, k, absent, commit()); err != nil {
		t.Fatalf("delete of an absent key with its version: %v", err)
	}
	absent = get(t, s, k).Version
	v1 := put(t, s, k, []byte("1"), absent)
	v2 := put(t, s, k, []byte("2"), v1)
	_, err := s.Delete(ctx, k, v1, commit())
	wantConflict(t, err, "delete with stale version")
	wantValue(t, s, k, []byte("2"), v2)

	gone, err := s.Delete(ctx, k, v2, commit())
	if err != nil {
		t.Fatalf("delete: %v", err)
	}
	e := get(t, s, k)
	if e.Exists || e.Version != gone {
		t.Fatalf("after delete: got %+v, want absent with version %q", e, gone)
	}
	_, err = s.Put(ctx, k, []byte("late"), v2, commit())
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
		if _, err := s.Put(ctx, k, []byte("x"), "", commit()); !errors.Is(err, statecache.ErrInvalidKey) {
			t.Errorf("Put(%q): err = %v, want ErrInvalidKey", k, err)
		}
		if _, err := s.Delete(ctx, k, "", commit()); !errors.Is(err, statecache.ErrInvalidKey) {
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
		_, err := s.Put(ctx, k, []byte(fmt.Sprint(i)), absent, commit())
		return err
	})
}

func testConcurrentUpdate(t *testing.T, s statecache.Store) {
	k := statecache.Key{Function: "race", ID: "update"}
	v := put(t, s, k, []byte("base"), get(t, s, k).Version)
	race(t, func(i int) error {
		_, err := s.Put(ctx, k, []byte(fmt.Sprint(i)), v, commit())
		return err
	})
}

func testCommitRecorded(t *testing.T, s statecache.Store) {
	k := statecache.Key{Function: "commits", ID: "recorded"}
	c1 := commit()
	v1, err := s.Put(ctx, k, []byte("1"), get(t, s, k).Version, c1)
	if err != nil {
		t.Fatal(err)
	}
	if e := get(t, s, k); e.Commit != c1 || e.Version != v1 {
		t.Fatalf("after put: commit %q version %q, want %q %q", e.Commit, e.Version, c1, v1)
	}
	c2 := commit()
	gone, err := s.Delete(ctx, k, v1, c2)
	if err != nil {
		t.Fatal(err)
	}
	if e := get(t, s, k); e.Exists || e.Commit != c2 || e.Version != gone {
		t.Fatalf("after delete: %+v, want absent, commit %q, version %q", e, c2, gone)
	}
}

// testRetriedWrite is the ambiguous write: the first try landed but its answer was lost, and
// the writer retries the same write (same expected version, same commit).
func testRetriedWrite(t *testing.T, s statecache.Store) {
	k := statecache.Key{Function: "commits", ID: "retried"}
	absent := get(t, s, k).Version
	c1 := commit()
	v1 := mustWrite(t, "create", func() (statecache.Version, error) { return s.Put(ctx, k, []byte("1"), absent, c1) })
	again := mustWrite(t, "retried create", func() (statecache.Version, error) { return s.Put(ctx, k, []byte("1"), absent, c1) })
	if again != v1 {
		t.Fatalf("retried create returned version %q, want the landed %q", again, v1)
	}
	c2 := commit()
	v2 := mustWrite(t, "update", func() (statecache.Version, error) { return s.Put(ctx, k, []byte("2"), v1, c2) })
	if got := mustWrite(t, "retried update", func() (statecache.Version, error) { return s.Put(ctx, k, []byte("2"), v1, c2) }); got != v2 {
		t.Fatalf("retried update returned %q, want %q", got, v2)
	}
	wantValue(t, s, k, []byte("2"), v2)
	c3 := commit()
	gone := mustWrite(t, "delete", func() (statecache.Version, error) { return s.Delete(ctx, k, v2, c3) })
	if got := mustWrite(t, "retried delete", func() (statecache.Version, error) { return s.Delete(ctx, k, v2, c3) }); got != gone {
		t.Fatalf("retried delete returned %q, want %q", got, gone)
	}
	// An older commit is not this write's: the key has moved on.
	if _, err := s.Put(ctx, k, []byte("2"), v1, c2); !errors.Is(err, statecache.ErrConflict) {
		t.Fatalf("a retry after the key moved on: err = %v, want ErrConflict", err)
	}
	// Without a commit id nothing is ever recognised as a repeat.
	v4 := mustWrite(t, "put without commit", func() (statecache.Version, error) { return s.Put(ctx, k, []byte("4"), gone, statecache.NoCommit) })
	if _, err := s.Put(ctx, k, []byte("4"), gone, statecache.NoCommit); !errors.Is(err, statecache.ErrConflict) {
		t.Fatalf("a repeated write without commit: err = %v, want ErrConflict", err)
	}
	wantValue(t, s, k, []byte("4"), v4)
}

func testConflictNamesCommit(t *testing.T, s statecache.Store) {
	k := statecache.Key{Function: "commits", ID: "conflict"}
	absent := get(t, s, k).Version
	mine := commit()
	v1 := mustWrite(t, "create", func() (statecache.Version, error) { return s.Put(ctx, k, []byte("1"), absent, mine) })
	_, err := s.Put(ctx, k, []byte("other"), absent, commit())
	var ce *statecache.ConflictError
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v, want a *ConflictError", err)
	}
	if ce.Current != v1 || ce.Commit != mine {
		t.Fatalf("conflict names version %q commit %q, want %q %q", ce.Current, ce.Commit, v1, mine)
	}
	if _, err := s.Put(ctx, k, []byte("x"), v1, "bad commit"); err == nil || errors.Is(err, statecache.ErrConflict) {
		t.Fatalf("a commit id with a space: err = %v, want a validation error", err)
	}
}

func mustWrite(t *testing.T, what string, write func() (statecache.Version, error)) statecache.Version {
	t.Helper()
	v, err := write()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

// testBatch checks a BatchWriter: each write of a batch passes or fails its own check, a retried
// batch of the same commits returns the same versions, and the writes that passed are all there.
func testBatch(t *testing.T, s statecache.Store) {
	bw := s.(statecache.BatchWriter)
	k := func(id string) statecache.Key { return statecache.Key{Function: "batch", ID: id} }
	va := put(t, s, k("a"), []byte("a0"), statecache.NoVersion)
	vb := put(t, s, k("b"), []byte("b0"), statecache.NoVersion)
	vc := put(t, s, k("c"), []byte("c0"), statecache.NoVersion)
	writes := []statecache.Write{
		{Key: k("a"), Value: []byte("a1"), Exists: true, Expect: va, Commit: commit()},
		{Key: k("b"), Value: []byte("b1"), Exists: true, Expect: "stale", Commit: commit()},
		{Key: k("c"), Expect: vc, Commit: commit()},
		{Key: k("d"), Value: []byte("d1"), Exists: true, Expect: get(t, s, k("d")).Version, Commit: commit()},
		{Key: statecache.Key{Function: "Bad Name", ID: "x"}, Value: []byte("x"), Exists: true, Commit: commit()},
		{Key: k("a"), Value: []byte("twice"), Exists: true, Expect: va, Commit: commit()},
	}
	res := bw.WriteBatch(ctx, writes)
	if len(res) != len(writes) {
		t.Fatalf("%d results for %d writes", len(res), len(writes))
	}
	for i, want := range []string{"ok", "conflict", "ok", "ok", "error", "error"} {
		got := "ok"
		switch {
		case errors.Is(res[i].Err, statecache.ErrConflict):
			got = "conflict"
		case res[i].Err != nil:
			got = "error"
		case res[i].Version == statecache.NoVersion:
			t.Fatalf("write %d succeeded without a version", i)
		}
		if got != want {
			t.Fatalf("write %d (%s): %s (%v), want %s", i, writes[i].Key, got, res[i].Err, want)
		}
	}
	wantValue(t, s, k("a"), []byte("a1"), res[0].Version)
	wantValue(t, s, k("b"), []byte("b0"), vb)
	if e := get(t, s, k("c")); e.Exists || e.Version != res[2].Version {
		t.Fatalf("c after the batch's delete: %+v, want absent at %q", e, res[2].Version)
	}
	wantValue(t, s, k("d"), []byte("d1"), res[3].Version)

	// The same batch again, as after a lost answer: the landed writes are recognised.
	again := bw.WriteBatch(ctx, writes[:4])
	for _, i := range []int{0, 2, 3} {
		if again[i].Err != nil || again[i].Version != res[i].Version {
			t.Fatalf("retried write %d: %q, %v; want %q", i, again[i].Version, again[i].Err, res[i].Version)
		}
	}
	if len(bw.WriteBatch(ctx, nil)) != 0 {
		t.Fatal("an empty batch has results")
	}
}
