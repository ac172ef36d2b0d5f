// Package storetest is the contract test suite of statecache.Store: every implementation must
// pass Run. It checks conditional writes, deletion, id escaping and concurrent writers.
// RunDueIndex is the suite of statecache.DueIndex, RunChannelIndex that of
// statecache.ChannelIndex.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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

// maxPages bounds a Pages listing: a cursor that does not move forward must fail the test, not
// hang it.
const maxPages = 10000

// Pages lists every item of an index through list, limit at a time: the first page after the
// zero cursor, each next one after the last item of the one before, until a page is short. It
// returns the items in the order listed and the size of each page.
func Pages[T any](t *testing.T, limit int, list func(after T, limit int) []T) (all []T, sizes []int) {
	t.Helper()
	var after T
	for page := 0; ; page++ {
		if page > maxPages {
			t.Fatalf("paging does not end: %d pages of %d", page, limit)
		}
		got := list(after, limit)
		all = append(all, got...)
		sizes = append(sizes, len(got))
		if len(got) < limit || len(got) == 0 {
			return all, sizes
		}
		after = got[len(got)-1]
	}
}

// RunDueIndex runs the contract suite of a due-time index. open returns a new, empty index for
// each subtest.
func RunDueIndex(t *testing.T, open func(t *testing.T) statecache.DueIndex) {
	tests := []struct {
		name string
		fn   func(t *testing.T, idx statecache.DueIndex)
	}{
		{"OrderedByTimeThenName", testDueOrder},
		{"UntilIsInclusiveToTheMillisecond", testDueUntil},
		{"AfterPagesThroughEveryEntryOnce", testDuePaging},
		{"Remove", testDueRemove},
		{"AddTwiceIsOneEntry", testDueAddTwice},
		{"RemoveAbsentIsNotAnError", testDueRemoveAbsent},
		{"TrickyIDsRoundTrip", testDueTrickyIDs},
		{"InvalidKeys", testDueInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, open(t)) })
	}
}

// dueBase is the suite's "now": on a whole millisecond, some years ahead.
var dueBase = time.Date(2031, 3, 4, 5, 6, 7, 0, time.UTC)

// ms is at as an index keeps it: to the millisecond, never before the Unix epoch.
func ms(at time.Time) time.Time { return time.UnixMilli(max(at.UnixMilli(), 0)) }

func due(at time.Time, fn, id string) statecache.Due {
	return statecache.Due{At: at, Key: statecache.Key{Function: fn, ID: id}}
}

func addDue(t *testing.T, idx statecache.DueIndex, ds ...statecache.Due) {
	t.Helper()
	for _, d := range ds {
		if err := idx.AddDue(ctx, d); err != nil {
			t.Fatalf("AddDue(%v %s): %v", d.At, d.Key, err)
		}
	}
}

func removeDue(t *testing.T, idx statecache.DueIndex, d statecache.Due) {
	t.Helper()
	if err := idx.RemoveDue(ctx, d); err != nil {
		t.Fatalf("RemoveDue(%v %s): %v", d.At, d.Key, err)
	}
}

func listDue(t *testing.T, idx statecache.DueIndex, until time.Time, after statecache.Due, limit int) []statecache.Due {
	t.Helper()
	got, err := idx.ListDue(ctx, until, after, limit)
	if err != nil {
		t.Fatalf("ListDue(until %v, after %v %s, limit %d): %v", until, after.At, after.Key, limit, err)
	}
	if len(got) > max(limit, 0) {
		t.Fatalf("ListDue(limit %d) returned %d entries", limit, len(got))
	}
	return got
}

// sortedDues returns ds in the index's order, by name (time, then actor), each at its
// millisecond.
func sortedDues(t *testing.T, ds []statecache.Due) []statecache.Due {
	t.Helper()
	names := make(map[string]statecache.Due, len(ds))
	for _, d := range ds {
		name, err := statecache.DueName(d)
		if err != nil {
			t.Fatalf("DueName(%v %s): %v", d.At, d.Key, err)
		}
		names[name] = statecache.Due{At: ms(d.At), Key: d.Key}
	}
	sorted := slices.Sorted(func(yield func(string) bool) {
		for name := range names {
			if !yield(name) {
				return
			}
		}
	})
	out := make([]statecache.Due, len(sorted))
	for i, name := range sorted {
		out[i] = names[name]
	}
	return out
}

func wantDues(t *testing.T, what string, got, want []statecache.Due) {
	t.Helper()
	same := len(got) == len(want)
	for i := 0; same && i < len(got); i++ {
		same = got[i].Key == want[i].Key && got[i].At.Equal(want[i].At)
	}
	if same {
		return
	}
	show := func(ds []statecache.Due) string {
		var b strings.Builder
		for _, d := range ds {
			fmt.Fprintf(&b, "\n\t%s %.40q", d.At.UTC().Format("2006-01-02T15:04:05.000"), d.Key.String())
		}
		return b.String()
	}
	t.Fatalf("%s: got %d entries:%s\nwant %d:%s", what, len(got), show(got), len(want), show(want))
}

func testDueOrder(t *testing.T, idx statecache.DueIndex) {
	far := dueBase.Add(time.Hour)
	if got := listDue(t, idx, far, statecache.Due{}, 10); len(got) != 0 {
		t.Fatalf("an empty index lists %d entries", len(got))
	}
	ds := []statecache.Due{
		due(dueBase.Add(3*time.Second), "alpha", "a"),
		due(dueBase, "beta", "a"),
		due(dueBase.Add(time.Second), "alpha", "c"),
		due(dueBase, "alpha", "b"),
		due(dueBase.Add(300*time.Microsecond), "alpha", "a"), // the same millisecond as dueBase
		due(dueBase.Add(1100*time.Microsecond), "alpha", "0"),
		due(dueBase.Add(time.Second), "alpha", "a"), // an actor due twice has two entries
		due(dueBase.Add(-time.Minute), "gamma", "z"),
		due(dueBase.Add(time.Second), "alpha", "B"),
	}
	addDue(t, idx, ds...)
	got := listDue(t, idx, far, statecache.Due{}, 100)
	wantDues(t, "all entries", got, sortedDues(t, ds))
	for i := 1; i < len(got); i++ {
		if got[i].At.Before(got[i-1].At) {
			t.Fatalf("entry %d (%v) is listed after a later one (%v)", i, got[i].At, got[i-1].At)
		}
	}
	wantDues(t, "the first 3", listDue(t, idx, far, statecache.Due{}, 3), sortedDues(t, ds)[:3])
	if got := listDue(t, idx, far, statecache.Due{}, 0); len(got) != 0 {
		t.Fatalf("limit 0 lists %d entries", len(got))
	}
}

func testDueUntil(t *testing.T, idx statecache.DueIndex) {
	epoch := time.UnixMilli(0)
	tests := []struct {
		name      string
		at, until time.Time
		listed    bool
	}{
		{"due at until", dueBase, dueBase, true},
		{"due a millisecond after until", dueBase, dueBase.Add(-time.Millisecond), false},
		{"due a nanosecond after until, in the next millisecond", dueBase, dueBase.Add(-time.Nanosecond), false},
		{"due later in until's millisecond", dueBase.Add(999 * time.Microsecond), dueBase, true},
		{"due earlier in until's millisecond", dueBase, dueBase.Add(999999 * time.Nanosecond), true},
		{"due in the millisecond after until's", dueBase.Add(time.Millisecond), dueBase.Add(999999 * time.Nanosecond), false},
		{"due long before until", dueBase.Add(-24 * time.Hour), dueBase, true},
		{"due before the epoch, kept at the epoch", epoch.Add(-time.Hour), dueBase, true},
		{"due at the epoch", epoch, epoch, true},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := due(tt.at, "until", fmt.Sprint("case-", i))
			addDue(t, idx, d)
			var want []statecache.Due
			if tt.listed {
				want = []statecache.Due{{At: ms(tt.at), Key: d.Key}}
			}
			wantDues(t, "listed", listDue(t, idx, tt.until, statecache.Due{}, 10), want)
			removeDue(t, idx, d)
		})
	}
}

func testDuePaging(t *testing.T, idx statecache.DueIndex) {
	const n, limit = 25, 7
	var ds []statecache.Due
	for i := range n {
		// Three entries a millisecond, named against the order they are added in.
		ds = append(ds, due(dueBase.Add(time.Duration(i/3)*time.Millisecond), "page", fmt.Sprintf("id-%02d", n-i)))
	}
	later := due(dueBase.Add(time.Second), "page", "later") // past until: never listed
	addDue(t, idx, later)
	addDue(t, idx, ds...)
	until := dueBase.Add(time.Duration(n/3) * time.Millisecond)
	want := sortedDues(t, ds)

	all, sizes := Pages(t, limit, func(after statecache.Due, limit int) []statecache.Due {
		return listDue(t, idx, until, after, limit)
	})
	if !slices.Equal(sizes, []int{7, 7, 7, 4}) {
		t.Errorf("pages of %v entries, want [7 7 7 4]", sizes)
	}
	wantDues(t, "every page", all, want)
	if got := listDue(t, idx, until, want[n-1], limit); len(got) != 0 {
		t.Fatalf("after the last entry: %d entries", len(got))
	}
	if got := listDue(t, idx, dueBase.Add(-time.Millisecond), later, limit); len(got) != 0 {
		t.Fatalf("after an entry past until: %d entries", len(got))
	}

	// A cursor need not be an entry any more: the listing goes on after where it was.
	removeDue(t, idx, want[10])
	wantDues(t, "after a removed entry", listDue(t, idx, until, want[10], limit), want[11:11+limit])
	// Nor have been one: a cursor between two entries starts at the later one.
	between := statecache.Due{At: want[4].At, Key: statecache.Key{Function: "page", ID: want[4].Key.ID + "0"}}
	wantDues(t, "after a name between two", listDue(t, idx, until, between, 2), want[5:7])
}

func testDueRemove(t *testing.T, idx statecache.DueIndex) {
	a, b, c := due(dueBase, "remove", "a"), due(dueBase, "remove", "b"), due(dueBase.Add(time.Second), "remove", "c")
	addDue(t, idx, a, b, c)
	until := dueBase.Add(time.Minute)
	removeDue(t, idx, b)
	wantDues(t, "after removing b", listDue(t, idx, until, statecache.Due{}, 10), sortedDues(t, []statecache.Due{a, c}))
	// Another time of the same actor is another entry.
	removeDue(t, idx, due(c.At.Add(time.Millisecond), "remove", "c"))
	wantDues(t, "after removing c at another time", listDue(t, idx, until, statecache.Due{}, 10), sortedDues(t, []statecache.Due{a, c}))
	// The same millisecond is the same entry.
	removeDue(t, idx, due(c.At.Add(400*time.Microsecond), "remove", "c"))
	wantDues(t, "after removing c", listDue(t, idx, until, statecache.Due{}, 10), sortedDues(t, []statecache.Due{a}))
	removeDue(t, idx, a)
	wantDues(t, "after removing all", listDue(t, idx, until, statecache.Due{}, 10), nil)
}

func testDueAddTwice(t *testing.T, idx statecache.DueIndex) {
	d := due(dueBase, "twice", "a")
	addDue(t, idx, d, d, due(dueBase.Add(500*time.Microsecond), "twice", "a"))
	wantDues(t, "one entry", listDue(t, idx, dueBase.Add(time.Minute), statecache.Due{}, 10), sortedDues(t, []statecache.Due{d}))
	removeDue(t, idx, d)
	wantDues(t, "after its removal", listDue(t, idx, dueBase.Add(time.Minute), statecache.Due{}, 10), nil)
}

func testDueRemoveAbsent(t *testing.T, idx statecache.DueIndex) {
	d := due(dueBase, "absent", "a")
	removeDue(t, idx, d)
	addDue(t, idx, d)
	removeDue(t, idx, d)
	removeDue(t, idx, d)
	wantDues(t, "listed", listDue(t, idx, dueBase.Add(time.Minute), statecache.Due{}, 10), nil)
}

func testDueTrickyIDs(t *testing.T, idx statecache.DueIndex) {
	var ds []statecache.Due
	hashed := 0
	for i, id := range TrickyIDs {
		d := due(dueBase.Add(time.Duration(i%3)*time.Millisecond), "tricky", id)
		name, err := statecache.DueName(d)
		if err != nil {
			t.Fatalf("DueName(%q): %v", id, err)
		}
		if strings.Contains(name, "/~") {
			hashed++
		}
		ds = append(ds, d)
	}
	if hashed == 0 {
		t.Fatal("no tricky id is named by its hash")
	}
	addDue(t, idx, ds...)
	until := dueBase.Add(time.Minute)
	want := sortedDues(t, ds)
	wantDues(t, "one listing", listDue(t, idx, until, statecache.Due{}, len(ds)+1), want)
	all, _ := Pages(t, 4, func(after statecache.Due, limit int) []statecache.Due {
		return listDue(t, idx, until, after, limit)
	})
	wantDues(t, "pages of 4", all, want)
	for _, d := range ds {
		removeDue(t, idx, d)
	}
	wantDues(t, "after removing all", listDue(t, idx, until, statecache.Due{}, len(ds)), nil)
}

func testDueInvalid(t *testing.T, idx statecache.DueIndex) {
	for _, k := range []statecache.Key{
		{Function: "", ID: "x"},
		{Function: "Upper", ID: "x"},
		{Function: "../etc", ID: "x"},
		{Function: "a/b", ID: "x"},
		{Function: ".due", ID: "x"},
		{Function: "counter", ID: ""},
		{Function: "counter", ID: strings.Repeat("x", statecache.MaxIDBytes+1)},
		{Function: "counter", ID: "bad\xffutf8"},
	} {
		d := statecache.Due{At: dueBase, Key: k}
		if err := idx.AddDue(ctx, d); !errors.Is(err, statecache.ErrInvalidKey) {
			t.Errorf("AddDue(%q): err = %v, want ErrInvalidKey", k, err)
		}
		if err := idx.RemoveDue(ctx, d); !errors.Is(err, statecache.ErrInvalidKey) {
			t.Errorf("RemoveDue(%q): err = %v, want ErrInvalidKey", k, err)
		}
		if _, err := idx.ListDue(ctx, dueBase, d, 10); !errors.Is(err, statecache.ErrInvalidKey) {
			t.Errorf("ListDue(after %q): err = %v, want ErrInvalidKey", k, err)
		}
	}
	// Only the zero Due starts a listing at the beginning; a time alone is no cursor.
	if _, err := idx.ListDue(ctx, dueBase, statecache.Due{At: dueBase}, 10); !errors.Is(err, statecache.ErrInvalidKey) {
		t.Errorf("ListDue(after a Due without a key): err = %v, want ErrInvalidKey", err)
	}
	wantDues(t, "after refused writes", listDue(t, idx, dueBase.Add(time.Minute), statecache.Due{}, 10), nil)
}

// RunChannelIndex runs the contract suite of a channel index. open returns a new, empty index
// for each subtest.
func RunChannelIndex(t *testing.T, open func(t *testing.T) statecache.ChannelIndex) {
	tests := []struct {
		name string
		fn   func(t *testing.T, idx statecache.ChannelIndex)
	}{
		{"MembersInNameOrder", testMembersOrder},
		{"AfterPagesThroughEveryMemberOnce", testMembersPaging},
		{"Leave", testLeave},
		{"JoinTwiceIsOneMember", testJoinTwice},
		{"LeaveAbsentIsNotAnError", testLeaveAbsent},
		{"ChannelsAreSeparate", testChannelsSeparate},
		{"TrickyIDsRoundTrip", testMembersTrickyIDs},
		{"InvalidChannels", testInvalidChannels},
		{"InvalidKeys", testMembersInvalidKeys},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, open(t)) })
	}
}

func key(fn, id string) statecache.Key { return statecache.Key{Function: fn, ID: id} }

func join(t *testing.T, idx statecache.ChannelIndex, channel string, keys ...statecache.Key) {
	t.Helper()
	for _, k := range keys {
		if err := idx.Join(ctx, channel, k); err != nil {
			t.Fatalf("Join(%q, %.40q): %v", channel, k.String(), err)
		}
	}
}

func leave(t *testing.T, idx statecache.ChannelIndex, channel string, keys ...statecache.Key) {
	t.Helper()
	for _, k := range keys {
		if err := idx.Leave(ctx, channel, k); err != nil {
			t.Fatalf("Leave(%q, %.40q): %v", channel, k.String(), err)
		}
	}
}

func members(t *testing.T, idx statecache.ChannelIndex, channel string, after statecache.Key, limit int) []statecache.Key {
	t.Helper()
	got, err := idx.Members(ctx, channel, after, limit)
	if err != nil {
		t.Fatalf("Members(%q, after %.40q, limit %d): %v", channel, after.String(), limit, err)
	}
	if len(got) > max(limit, 0) {
		t.Fatalf("Members(limit %d) returned %d members", limit, len(got))
	}
	return got
}

// allMembers pages through channel's members, limit at a time.
func allMembers(t *testing.T, idx statecache.ChannelIndex, channel string, limit int) []statecache.Key {
	t.Helper()
	all, _ := Pages(t, limit, func(after statecache.Key, limit int) []statecache.Key {
		return members(t, idx, channel, after, limit)
	})
	return all
}

// sortedKeys returns keys in a member list's order, by Key.ObjectName, each once.
func sortedKeys(t *testing.T, keys []statecache.Key) []statecache.Key {
	t.Helper()
	names := make(map[string]statecache.Key, len(keys))
	for _, k := range keys {
		name, err := k.ObjectName()
		if err != nil {
			t.Fatalf("ObjectName(%.40q): %v", k.String(), err)
		}
		names[name] = k
	}
	out := make([]statecache.Key, 0, len(names))
	for _, name := range slices.Sorted(maps.Keys(names)) {
		out = append(out, names[name])
	}
	return out
}

func wantKeys(t *testing.T, what string, got, want []statecache.Key) {
	t.Helper()
	if slices.Equal(got, want) {
		return
	}
	show := func(ks []statecache.Key) string {
		var b strings.Builder
		for _, k := range ks {
			fmt.Fprintf(&b, "\n\t%.40q (%d bytes)", k.String(), len(k.ID))
		}
		return b.String()
	}
	t.Fatalf("%s: got %d members:%s\nwant %d:%s", what, len(got), show(got), len(want), show(want))
}

func testMembersOrder(t *testing.T, idx statecache.ChannelIndex) {
	if got := members(t, idx, "news", statecache.Key{}, 10); len(got) != 0 {
		t.Fatalf("an empty index lists %d members", len(got))
	}
	keys := []statecache.Key{
		key("beta", "a"), key("alpha", "c"), key("alpha", "B"), key("alpha", "a"), key("alpha-2", "a"),
		key("alpha", "a b"), key("alpha", "0"), key("gamma", "z"), key("alpha", "ab"),
	}
	join(t, idx, "news", keys...)
	want := sortedKeys(t, keys)
	wantKeys(t, "all members", members(t, idx, "news", statecache.Key{}, 100), want)
	wantKeys(t, "the first 3", members(t, idx, "news", statecache.Key{}, 3), want[:3])
	for _, limit := range []int{0, -1} {
		if got := members(t, idx, "news", statecache.Key{}, limit); len(got) != 0 {
			t.Fatalf("limit %d lists %d members", limit, len(got))
		}
	}
}

func testMembersPaging(t *testing.T, idx statecache.ChannelIndex) {
	const n, limit = 25, 7
	var keys []statecache.Key
	for i := range n {
		// Named against the order they join in, over two functions.
		keys = append(keys, key([]string{"page", "paged"}[i%2], fmt.Sprintf("id-%02d", n-i)))
	}
	join(t, idx, "paging", keys...)
	join(t, idx, "paging-other", key("page", "other")) // another channel: never listed
	want := sortedKeys(t, keys)

	all, sizes := Pages(t, limit, func(after statecache.Key, limit int) []statecache.Key {
		return members(t, idx, "paging", after, limit)
	})
	if !slices.Equal(sizes, []int{7, 7, 7, 4}) {
		t.Errorf("pages of %v members, want [7 7 7 4]", sizes)
	}
	wantKeys(t, "every page", all, want)
	if got := members(t, idx, "paging", want[n-1], limit); len(got) != 0 {
		t.Fatalf("after the last member: %d members", len(got))
	}

	// A cursor need not be a member any more: the listing goes on after where it was.
	leave(t, idx, "paging", want[10])
	wantKeys(t, "after a member that left", members(t, idx, "paging", want[10], limit), want[11:11+limit])
	// Nor have been one: a cursor between two members starts at the later one.
	between := key(want[4].Function, want[4].ID+"0")
	wantKeys(t, "after a name between two", members(t, idx, "paging", between, 2), want[5:7])
	// Nor be of a function that has members.
	wantKeys(t, "after a function before all", members(t, idx, "paging", key("a", "z"), 2), want[:2])
	if got := members(t, idx, "paging", key("zzz", "a"), limit); len(got) != 0 {
		t.Fatalf("after a function after all: %d members", len(got))
	}
}

func testLeave(t *testing.T, idx statecache.ChannelIndex) {
	a, b, c := key("leave", "a"), key("leave", "b"), key("leave", "c")
	join(t, idx, "room", a, b, c)
	join(t, idx, "hall", b)
	leave(t, idx, "room", b)
	wantKeys(t, "room after b left", members(t, idx, "room", statecache.Key{}, 10), []statecache.Key{a, c})
	wantKeys(t, "hall, which b did not leave", members(t, idx, "hall", statecache.Key{}, 10), []statecache.Key{b})
	// The same id in another function is another member.
	leave(t, idx, "room", key("leave-2", "a"))
	wantKeys(t, "room after another function's a left", members(t, idx, "room", statecache.Key{}, 10), []statecache.Key{a, c})
	leave(t, idx, "room", a, c)
	wantKeys(t, "room after all left", members(t, idx, "room", statecache.Key{}, 10), nil)
}

func testJoinTwice(t *testing.T, idx statecache.ChannelIndex) {
	k := key("twice", "a")
	join(t, idx, "room", k, k)
	wantKeys(t, "one member", members(t, idx, "room", statecache.Key{}, 10), []statecache.Key{k})
	leave(t, idx, "room", k)
	wantKeys(t, "after it left once", members(t, idx, "room", statecache.Key{}, 10), nil)
}

func testLeaveAbsent(t *testing.T, idx statecache.ChannelIndex) {
	k := key("absent", "a")
	leave(t, idx, "room", k)
	leave(t, idx, "never-joined", k)
	join(t, idx, "room", k)
	leave(t, idx, "room", k)
	leave(t, idx, "room", k)
	wantKeys(t, "listed", members(t, idx, "room", statecache.Key{}, 10), nil)
}

// testChannelsSeparate joins channels whose names extend each other, or sort right before or
// after each other's member names ("a-" and "a." before "a/", "a0" just after "a/"): each
// lists its own members only.
func testChannelsSeparate(t *testing.T, idx statecache.ChannelIndex) {
	long := strings.Repeat("c", statecache.MaxChannelLen)
	channels := []string{"a", "ab", "a-", "a.", "a0", "a_", "A", "b", "0", "_", long, long[:statecache.MaxChannelLen-1]}
	shared := key("fn", "everywhere")
	for i, ch := range channels {
		join(t, idx, ch, shared, key("fn", fmt.Sprint("only-", i)))
	}
	for i, ch := range channels {
		want := sortedKeys(t, []statecache.Key{shared, key("fn", fmt.Sprint("only-", i))})
		wantKeys(t, fmt.Sprintf("members of %.20q", ch), members(t, idx, ch, statecache.Key{}, 10), want)
		wantKeys(t, fmt.Sprintf("members of %.20q one at a time", ch), allMembers(t, idx, ch, 1), want)
		// A cursor past a channel's last member lists nothing of the next channel.
		if got := members(t, idx, ch, want[len(want)-1], 10); len(got) != 0 {
			t.Fatalf("after the last member of %.20q: %v", ch, got)
		}
	}
	// Leaving one channel keeps the others.
	leave(t, idx, "a", shared)
	wantKeys(t, "a after shared left", members(t, idx, "a", statecache.Key{}, 10), []statecache.Key{key("fn", "only-0")})
	wantKeys(t, "ab", members(t, idx, "ab", statecache.Key{}, 10), sortedKeys(t, []statecache.Key{shared, key("fn", "only-1")}))
	if got := members(t, idx, "c", statecache.Key{}, 10); len(got) != 0 {
		t.Fatalf("a channel nobody joined lists %v", got)
	}
}

func testMembersTrickyIDs(t *testing.T, idx statecache.ChannelIndex) {
	var keys []statecache.Key
	hashed := 0
	for _, id := range TrickyIDs {
		k := key("tricky", id)
		name, err := statecache.MemberName("tricky-ids", k)
		if err != nil {
			t.Fatalf("MemberName(%q): %v", id, err)
		}
		if strings.Contains(name, "/~") {
			hashed++
		}
		keys = append(keys, k)
	}
	if hashed == 0 {
		t.Fatal("no tricky id is named by its hash")
	}
	join(t, idx, "tricky-ids", keys...)
	want := sortedKeys(t, keys)
	wantKeys(t, "one listing", members(t, idx, "tricky-ids", statecache.Key{}, len(keys)+1), want)
	wantKeys(t, "pages of 4", allMembers(t, idx, "tricky-ids", 4), want)
	// Leaving takes exactly the id it names: every other one first, then the rest.
	var left, kept []statecache.Key
	for i, k := range want {
		if i%2 == 0 {
			left = append(left, k)
		} else {
			kept = append(kept, k)
		}
	}
	leave(t, idx, "tricky-ids", left...)
	wantKeys(t, "after every other one left", members(t, idx, "tricky-ids", statecache.Key{}, len(keys)), kept)
	leave(t, idx, "tricky-ids", kept...)
	wantKeys(t, "after all left", members(t, idx, "tricky-ids", statecache.Key{}, len(keys)), nil)
}

func testInvalidChannels(t *testing.T, idx statecache.ChannelIndex) {
	k := key("fn", "a")
	tests := []struct{ name, channel string }{
		{"empty", ""},
		{"slash", "a/b"},
		{"trailing slash", "a/"},
		{"leading dot", ".x"},
		{"dot", "."},
		{"dot dot", ".."},
		{"too long", strings.Repeat("c", statecache.MaxChannelLen+1)},
		{"space", "a b"},
		{"unicode", "é"},
		{"tilde", "~a"},
		{"percent", "a%2F"},
		{"nul", "a\x00"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := idx.Join(ctx, tt.channel, k); !errors.Is(err, statecache.ErrInvalidKey) {
				t.Errorf("Join(%q): err = %v, want ErrInvalidKey", tt.channel, err)
			}
			if err := idx.Leave(ctx, tt.channel, k); !errors.Is(err, statecache.ErrInvalidKey) {
				t.Errorf("Leave(%q): err = %v, want ErrInvalidKey", tt.channel, err)
			}
			for _, limit := range []int{10, 0} {
				if _, err := idx.Members(ctx, tt.channel, statecache.Key{}, limit); !errors.Is(err, statecache.ErrInvalidKey) {
					t.Errorf("Members(%q, limit %d): err = %v, want ErrInvalidKey", tt.channel, limit, err)
				}
			}
		})
	}
	// Nothing was joined under a name a refused channel could stand for.
	for _, ch := range []string{"a", "b", "x", "c"} {
		if got := members(t, idx, ch, statecache.Key{}, 10); len(got) != 0 {
			t.Fatalf("%q lists %v after refused joins", ch, got)
		}
	}
}

func testMembersInvalidKeys(t *testing.T, idx statecache.ChannelIndex) {
	for _, k := range []statecache.Key{
		{Function: "", ID: "x"},
		{Function: "Upper", ID: "x"},
		{Function: "../etc", ID: "x"},
		{Function: "a/b", ID: "x"},
		{Function: ".channels", ID: "x"},
		{Function: "counter", ID: ""},
		{Function: "counter", ID: strings.Repeat("x", statecache.MaxIDBytes+1)},
		{Function: "counter", ID: "bad\xffutf8"},
	} {
		if err := idx.Join(ctx, "room", k); !errors.Is(err, statecache.ErrInvalidKey) {
			t.Errorf("Join(%q): err = %v, want ErrInvalidKey", k, err)
		}
		if err := idx.Leave(ctx, "room", k); !errors.Is(err, statecache.ErrInvalidKey) {
			t.Errorf("Leave(%q): err = %v, want ErrInvalidKey", k, err)
		}
		if _, err := idx.Members(ctx, "room", k, 10); !errors.Is(err, statecache.ErrInvalidKey) {
			t.Errorf("Members(after %q): err = %v, want ErrInvalidKey", k, err)
		}
	}
	wantKeys(t, "after refused joins", members(t, idx, "room", statecache.Key{}, 10), nil)
}
