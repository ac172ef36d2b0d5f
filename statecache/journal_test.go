package statecache_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/knactor/knactor/statecache"
)

// Changes a closing write-behind cache could not make durable survive in the journal: the next
// cache on the journal takes them back (sealed on disk), serves them, and flushes them once, also
// when the last flush before the close had landed without an answer.
func TestWriteBehindJournalKeepsWhatTheFinalFlushCouldNot(t *testing.T) {
	outages := []struct {
		name string
		down func(spy *spyStore)
	}{
		{"the store refuses", func(spy *spyStore) { spy.failPuts.Store(1 << 30) }},
		{"every answer is lost", func(spy *spyStore) { spy.losePuts.Store(1 << 30) }},
	}
	for _, o := range outages {
		t.Run(o.name, func(t *testing.T) {
			flushStores(t, func(t *testing.T, spy *spyStore, store statecache.Store) {
				testJournal(t, spy, store, o.down)
			})
		})
	}
}

func testJournal(t *testing.T, spy *spyStore, store statecache.Store, down func(*spyStore)) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "journal")
	keys := keyring(t, "k1")
	cfg := statecache.Config{Mode: statecache.WriteBehind, FlushInterval: time.Hour, JournalDir: dir, Keys: keys}
	alice, bob, carol := statecache.Key{Function: "f", ID: "alice"}, statecache.Key{Function: "f", ID: "bob"}, statecache.Key{Function: "f", ID: "carol"}

	a, err := statecache.NewCache(store, cfg)
	if err != nil {
		t.Fatal(err)
	}
	vc := mustPut(t, a, carol, "carol's", "")
	if err := a.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	mustPut(t, a, alice, "alice's secret", "")
	mustPut(t, a, bob, "bob's", "")
	if _, err := a.Delete(ctx, carol, vc, "delete-carol"); err != nil {
		t.Fatal(err)
	}
	down(spy)
	err = a.Close(ctx)
	if err == nil || !strings.Contains(err.Error(), "3 changes kept in the write-behind journal") {
		t.Fatalf("close with the store down: %v, want the flush's error naming the journal", err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "changes-*.jsonl"))
	if len(files) != 1 {
		t.Fatalf("journal files %v, want one", files)
	}
	raw, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), "secret") {
		t.Fatal("the journal holds a value in plaintext; it must be sealed as in the store")
	}

	spy.failPuts.Store(0) // the store is back
	spy.losePuts.Store(0)
	b, err := statecache.NewCache(store, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(ctx)
	if st := b.Stats(); st.Journaled != 3 || st.Dirty != 3 {
		t.Fatalf("stats after taking the journal back: %+v, want 3 journaled changes", st)
	}
	if e := mustGet(t, b, alice); string(e.Value) != "alice's secret" {
		t.Fatalf("alice before any flush: %q, want the journaled change", e.Value)
	}
	if e := mustGet(t, b, carol); e.Exists {
		t.Fatalf("carol before any flush: %q, want the journaled delete", e.Value)
	}
	if _, err := statecache.NewCache(store, cfg); err == nil || !strings.Contains(err.Error(), "in use by another knactor process") {
		t.Fatalf("a second cache on the journal: %v, want it refused", err)
	}
	if err := b.Flush(ctx); err != nil {
		t.Fatalf("flush of the journaled changes: %v", err)
	}
	for k, want := range map[statecache.Key]string{alice: "alice's secret", bob: "bob's", carol: "<absent>"} {
		sealed := storeValue(t, spy, k)
		if want == "<absent>" {
			if sealed != want {
				t.Errorf("store holds %q for %s, want it deleted", sealed, k)
			}
			continue
		}
		if got := mustGet(t, b, k); string(got.Value) != want {
			t.Errorf("%s = %q after the flush, want %q", k, got.Value, want)
		}
	}
	if st := b.Stats(); st.Dirty != 0 || st.Journaled != 0 || st.LostConflicts != 0 {
		t.Fatalf("stats after the flush: %+v, want nothing waiting and no lost conflict", st)
	}
	if left := b.JournalFiles(); len(left) != 0 {
		t.Fatalf("journal files %v after their changes are durable, want none", left)
	}
	if files, _ := filepath.Glob(filepath.Join(dir, "changes-*.jsonl")); len(files) != 0 {
		t.Fatalf("journal files %v left on disk", files)
	}
}

// A cache whose final flush succeeds writes no journal.
func TestWriteBehindJournalOnlyWhenTheFlushFails(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "journal")
	c, err := statecache.NewCache(&statecache.MemStore{}, statecache.Config{Mode: statecache.WriteBehind, FlushInterval: time.Hour, JournalDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	mustPut(t, c, alice, "1", "")
	if err := c.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if files, _ := filepath.Glob(filepath.Join(dir, "changes-*.jsonl")); len(files) != 0 {
		t.Fatalf("journal files %v after a clean close", files)
	}
	_, err = statecache.NewCache(&statecache.MemStore{}, statecache.Config{Mode: statecache.WriteThrough, JournalDir: dir})
	if err == nil || !strings.Contains(err.Error(), "needs the write-behind mode") {
		t.Fatalf("a journal on a write-through cache: %v", err)
	}
}
