package statecache_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/knactor/knactor/statecache"
	"github.com/knactor/knactor/statecache/storetest"
)

var ctx = context.Background()

func openPebbleAt(t *testing.T, dir string) *statecache.PebbleStore {
	t.Helper()
	s, err := statecache.OpenPebbleStore(dir, statecache.PebbleOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestPebbleStoreReopenKeepsStateAndNeverReusesVersions(t *testing.T) {
	dir := t.TempDir()
	s := openPebbleAt(t, dir)
	k := statecache.Key{Function: "counter", ID: "alice"}
	v1, err := s.Put(ctx, k, []byte("1"), statecache.NoVersion, "c1")
	if err != nil {
		t.Fatal(err)
	}
	gone, err := s.Delete(ctx, statecache.Key{Function: "counter", ID: "bob"}, statecache.NoVersion, "c0")
	if err != nil || gone != statecache.NoVersion {
		t.Fatalf("delete of an absent key: %q, %v", gone, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openPebbleAt(t, dir)
	defer s.Close()
	e, err := s.Get(ctx, k)
	if err != nil || string(e.Value) != "1" || e.Version != v1 || e.Commit != "c1" {
		t.Fatalf("after reopen: %+v, %v; want 1 at %q by c1", e, err, v1)
	}
	// A version handed out after a restart is new, so a writer holding one from before the
	// restart can never match a later write by chance.
	v2, err := s.Put(ctx, k, []byte("2"), v1, "c2")
	if err != nil {
		t.Fatal(err)
	}
	if v2 == v1 {
		t.Fatalf("version %q handed out twice", v1)
	}
}

func TestPebbleStoreDueIndexSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	s := openPebbleAt(t, dir)
	at := time.UnixMilli(1_900_000_000_000)
	ds := []statecache.Due{
		{At: at, Key: statecache.Key{Function: "timer", ID: "a"}},
		{At: at.Add(time.Second), Key: statecache.Key{Function: "timer", ID: strings.Repeat("long/", statecache.MaxIDBytes/5)}},
		{At: at.Add(2 * time.Second), Key: statecache.Key{Function: "timer", ID: "removed"}},
	}
	for _, d := range ds {
		if err := s.AddDue(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.RemoveDue(ctx, ds[2]); err != nil {
		t.Fatal(err)
	}
	// The index's writes are not synced themselves: a synced write, the record's commit that
	// follows them, carries them to the disk. Close flushes either way.
	if _, err := s.Put(ctx, statecache.Key{Function: "timer", ID: "a"}, []byte("1"), statecache.NoVersion, "c1"); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openPebbleAt(t, dir)
	defer s.Close()
	got, err := s.ListDue(ctx, at.Add(time.Hour), statecache.Due{}, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || !got[0].At.Equal(ds[0].At) || got[0].Key != ds[0].Key || !got[1].At.Equal(ds[1].At) || got[1].Key != ds[1].Key {
		t.Fatalf("after reopen: %v, want the entries of %s and %.20s...", got, ds[0].Key, ds[1].Key)
	}
}

func TestPebbleStoreChannelIndexSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	s := openPebbleAt(t, dir)
	keys := []statecache.Key{
		{Function: "chat", ID: "a"},
		{Function: "chat", ID: strings.Repeat("long/", statecache.MaxIDBytes/5)},
		{Function: "chat", ID: "left"},
	}
	for _, k := range keys {
		if err := s.Join(ctx, "room", k); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Leave(ctx, "room", keys[2]); err != nil {
		t.Fatal(err)
	}
	// As with the due-time index, the record's synced commit carries the unsynced joins.
	if _, err := s.Put(ctx, keys[0], []byte("1"), statecache.NoVersion, "c1"); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openPebbleAt(t, dir)
	defer s.Close()
	got, err := s.Members(ctx, "room", statecache.Key{}, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0] != keys[0] || got[1] != keys[1] {
		t.Fatalf("after reopen: %v, want %s and %.20s...", got, keys[0], keys[1])
	}
}

func TestPebbleStoreRefusesALockedDirectory(t *testing.T) {
	dir := t.TempDir()
	s := openPebbleAt(t, dir)
	defer s.Close()
	_, err := statecache.OpenPebbleStore(dir, statecache.PebbleOptions{})
	if err == nil || !strings.Contains(err.Error(), "in use by another knactor process") {
		t.Fatalf("second open: %v, want an error that says the directory is in use", err)
	}
}

func TestPebbleStoreRefusesADamagedDatabase(t *testing.T) {
	dir := t.TempDir()
	s := openPebbleAt(t, dir)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	manifests, err := filepath.Glob(filepath.Join(dir, "store.pebble", "MANIFEST-*"))
	if err != nil {
		t.Fatal(err)
	}
	if len(manifests) == 0 {
		t.Fatal("no MANIFEST file")
	}
	for _, m := range manifests {
		if err := os.WriteFile(m, []byte("not a manifest"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	_, err = statecache.OpenPebbleStore(dir, statecache.PebbleOptions{})
	if err == nil || !strings.Contains(err.Error(), "restore the directory from a backup") {
		t.Fatalf("open of a damaged database: %v, want a clear error", err)
	}
}

// TestPebbleStoreRecoversATornLogTail is a crash in the middle of a log write: the last record is
// cut off (the file ends there, or zeros follow, as in a preallocated log), or garbage follows
// it. Every write before it is there after the restart; a torn record's write is not (it was
// never acknowledged), an intact one's is.
func TestPebbleStoreRecoversATornLogTail(t *testing.T) {
	marker := []byte("TORN-TAIL-MARKER")
	last := append(append([]byte{}, marker...), strings.Repeat("x", 4096)...)
	tests := []struct {
		name     string
		tear     func(log []byte, at int) []byte // at: where the last write's value starts
		lastKept bool
	}{
		{"file ends in half a record", func(log []byte, at int) []byte { return log[:at+len(last)/2] }, false},
		{"zeros after half a record", func(log []byte, at int) []byte {
			clear(log[at+len(last)/2:])
			return log
		}, false},
		{"garbage after the last record", func(log []byte, at int) []byte {
			copy(log[at+len(last):], strings.Repeat("\xde\xad\xbe\xef", 1000))
			return log
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			s := openPebbleAt(t, dir)
			key := func(i int) statecache.Key { return statecache.Key{Function: "torn", ID: fmt.Sprint(i)} }
			const acked = 50
			for i := range acked {
				if _, err := s.Put(ctx, key(i), []byte(fmt.Sprint(i)), statecache.NoVersion, ""); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := s.Put(ctx, key(acked), last, statecache.NoVersion, ""); err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			log := newestLog(t, dir)
			data, err := os.ReadFile(log)
			if err != nil {
				t.Fatal(err)
			}
			at := bytes.Index(data, marker)
			if at < 0 {
				t.Fatal("the last write is not in the newest log: the log rotated")
			}
			if err := os.WriteFile(log, tt.tear(data, at), 0o600); err != nil {
				t.Fatal(err)
			}

			s = openPebbleAt(t, dir)
			defer s.Close()
			for i := range acked {
				if e, err := s.Get(ctx, key(i)); err != nil || string(e.Value) != fmt.Sprint(i) {
					t.Fatalf("write %d after recovery: %+v, %v", i, e, err)
				}
			}
			if e, err := s.Get(ctx, key(acked)); err != nil || e.Exists != tt.lastKept {
				t.Fatalf("the last write after recovery: exists %v, %v; want %v", e.Exists, err, tt.lastKept)
			}
			// The store takes writes again.
			if _, err := s.Put(ctx, key(acked+1), []byte("after"), statecache.NoVersion, ""); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func newestLog(t *testing.T, dir string) string {
	t.Helper()
	logs, _ := filepath.Glob(filepath.Join(dir, "store.pebble", "*.log"))
	if len(logs) == 0 {
		t.Fatalf("no write-ahead log in %s", dir)
	}
	return logs[len(logs)-1] // names are zero-padded numbers
}

// TestPebbleStoreGroupsFsyncs checks the point of the store: writers of different actors share
// fsyncs, and a batch of any size costs one.
func TestPebbleStoreGroupsFsyncs(t *testing.T) {
	s := openPebbleAt(t, t.TempDir())
	defer s.Close()

	const writers, each = 64, 20
	before := s.Stats().Syncs
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k := statecache.Key{Function: "group", ID: fmt.Sprint(w)}
			v := statecache.NoVersion
			for i := range each {
				var err error
				if v, err = s.Put(ctx, k, []byte(fmt.Sprint(i)), v, ""); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := errors.Join(<-errs); err != nil {
		t.Fatal(err)
	}
	syncs := s.Stats().Syncs - before
	t.Logf("%d writes by %d writers: %d fsyncs", writers*each, writers, syncs)
	if syncs == 0 || syncs > writers*each/2 {
		t.Fatalf("%d fsyncs for %d concurrent writes: they should share", syncs, writers*each)
	}

	// A batch costs one fsync however many writes it holds. A write that fills the memtable adds
	// one: the log is closed (fsynced) and a new one begun. Pebble starts with a small memtable
	// and doubles it up to its size, so these batches rotate it now and then.
	const batches, size = 5, 1000
	before = s.Stats().Syncs
	for b := range batches {
		writes := make([]statecache.Write, size)
		for i := range writes {
			writes[i] = statecache.Write{Key: statecache.Key{Function: "batch", ID: fmt.Sprint(b, "-", i)}, Value: []byte("v"), Exists: true}
		}
		for i, r := range s.WriteBatch(ctx, writes) {
			if r.Err != nil {
				t.Fatalf("batch write %d: %v", i, r.Err)
			}
		}
	}
	if n := s.Stats().Syncs - before; n > 2*batches {
		t.Fatalf("%d batches of %d writes took %d fsyncs, want about one each", batches, size, n)
	}
}

// TestPebbleStoreMigratesADirStore opens a state directory written by DirStore: every actor,
// with its commit, is in the new store, the old files are kept aside, and a migration that was
// interrupted before it moved a function's files finishes without undoing later writes.
func TestPebbleStoreMigratesADirStore(t *testing.T) {
	dir := t.TempDir()
	old, err := statecache.OpenDirStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	type actor struct {
		key    statecache.Key
		value  string
		commit statecache.Commit
	}
	var actors []actor
	for i, id := range storetest.TrickyIDs {
		fn := []string{"counter", "chat"}[i%2]
		actors = append(actors, actor{statecache.Key{Function: fn, ID: id}, fmt.Sprintf(`{"n":%d}`, i), statecache.Commit(fmt.Sprint("c-", i))})
	}
	for _, a := range actors {
		if _, err := old.Put(ctx, a.key, []byte(a.value), statecache.NoVersion, a.commit); err != nil {
			t.Fatal(err)
		}
	}
	gone := statecache.Key{Function: "counter", ID: "deleted"}
	v, err := old.Put(ctx, gone, []byte("x"), statecache.NoVersion, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := old.Delete(ctx, gone, v, ""); err != nil {
		t.Fatal(err)
	}
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}

	s := openPebbleAt(t, dir)
	for _, a := range actors {
		e, err := s.Get(ctx, a.key)
		if err != nil || !e.Exists || string(e.Value) != a.value || e.Commit != a.commit {
			t.Fatalf("%s after migration: %+v, %v; want %s by %s", a.key, e, err, a.value, a.commit)
		}
	}
	if e, _ := s.Get(ctx, gone); e.Exists {
		t.Fatalf("a deleted actor came back: %+v", e)
	}
	for _, fn := range []string{"counter", "chat"} {
		if _, err := os.Stat(filepath.Join(dir, fn)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s/ is still in the state directory: %v", fn, err)
		}
		if _, err := os.Stat(filepath.Join(dir, "migrated.dirstore", fn)); err != nil {
			t.Fatalf("no backup of %s/: %v", fn, err)
		}
	}
	// A later write, then the files of one function back in place, as if the migration had
	// stopped before moving them: opening again keeps the later write.
	first := actors[0]
	cur, err := s.Get(ctx, first.key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx, first.key, []byte("later"), cur.Version, "later"); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "migrated.dirstore", first.key.Function), filepath.Join(dir, first.key.Function)); err != nil {
		t.Fatal(err)
	}
	s = openPebbleAt(t, dir)
	defer s.Close()
	if e, _ := s.Get(ctx, first.key); string(e.Value) != "later" {
		t.Fatalf("a second migration overwrote a later write: %q", e.Value)
	}
	if _, err := os.Stat(filepath.Join(dir, first.key.Function)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the re-migrated function's files are still in place: %v", err)
	}
}
