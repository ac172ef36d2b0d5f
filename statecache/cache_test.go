package statecache_test

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

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/knactor/knactor/statecache"
	"github.com/knactor/knactor/statecache/storetest"
	"github.com/knactor/knactor/test/miniotest"
	"github.com/knactor/knactor/test/proctest"
)

// spyStore counts the calls that reach a Store and can fail the next puts on demand.
type spyStore struct {
	statecache.Store
	gets, puts, deletes atomic.Int64
	failPuts            atomic.Int64 // the next n writes (puts and deletes) fail with ErrUnavailable
	losePuts            atomic.Int64 // the next n writes land, then report ErrUnavailable (a lost answer)
	// beforeWrite, when set, runs as a put or a batch begins: a test holds a flush there.
	beforeWrite func()
}

func (s *spyStore) writing() {
	if s.beforeWrite != nil {
		s.beforeWrite()
	}
}

func (s *spyStore) Get(ctx context.Context, k statecache.Key) (statecache.Entry, error) {
	s.gets.Add(1)
	return s.Store.Get(ctx, k)
}

func (s *spyStore) Put(ctx context.Context, k statecache.Key, v []byte, expect statecache.Version, commit statecache.Commit) (statecache.Version, error) {
	s.writing()
	s.puts.Add(1)
	if s.failPuts.Add(-1) >= 0 {
		return "", fmt.Errorf("spy: %w", statecache.ErrUnavailable)
	}
	s.failPuts.Store(0)
	ver, err := s.Store.Put(ctx, k, v, expect, commit)
	if err == nil && s.losePuts.Add(-1) >= 0 {
		return "", fmt.Errorf("spy: answer lost: %w", statecache.ErrUnavailable)
	}
	s.losePuts.Store(0)
	return ver, err
}

func (s *spyStore) Delete(ctx context.Context, k statecache.Key, expect statecache.Version, commit statecache.Commit) (statecache.Version, error) {
	s.writing()
	s.deletes.Add(1)
	if s.failPuts.Add(-1) >= 0 {
		return "", fmt.Errorf("spy: %w", statecache.ErrUnavailable)
	}
	s.failPuts.Store(0)
	ver, err := s.Store.Delete(ctx, k, expect, commit)
	if err == nil && s.losePuts.Add(-1) >= 0 {
		return "", fmt.Errorf("spy: answer lost: %w", statecache.ErrUnavailable)
	}
	s.losePuts.Store(0)
	return ver, err
}

// batchSpy is a spyStore over a BatchWriter: a flush writes through WriteBatch, and the spy's
// failures apply to every write of a batch.
type batchSpy struct{ *spyStore }

func (s batchSpy) WriteBatch(ctx context.Context, writes []statecache.Write) []statecache.WriteResult {
	s.writing()
	s.puts.Add(int64(len(writes)))
	res := make([]statecache.WriteResult, len(writes))
	if s.failPuts.Add(-1) >= 0 {
		for i := range res {
			res[i].Err = fmt.Errorf("spy: %w", statecache.ErrUnavailable)
		}
		return res
	}
	s.failPuts.Store(0)
	res = s.Store.(statecache.BatchWriter).WriteBatch(ctx, writes)
	if s.losePuts.Add(-1) >= 0 {
		for i := range res {
			res[i] = statecache.WriteResult{Err: fmt.Errorf("spy: answer lost: %w", statecache.ErrUnavailable)}
		}
	}
	s.losePuts.Store(0)
	return res
}

// flushStores runs a write-behind test on a store written key by key (the directory store) and
// on one written in batches (the local store). The test gets the spy, and the store to give the
// cache (the spy itself, or the spy as a BatchWriter).
func flushStores(t *testing.T, test func(t *testing.T, spy *spyStore, store statecache.Store)) {
	t.Run("dir", func(t *testing.T) {
		spy := &spyStore{Store: openDir(t)}
		test(t, spy, spy)
	})
	t.Run("batches", func(t *testing.T) {
		spy := &spyStore{Store: openPebble(t)}
		test(t, spy, batchSpy{spy})
	})
}

var bg = context.Background()

func newCache(t *testing.T, s statecache.Store, cfg statecache.Config) *statecache.Cache {
	t.Helper()
	c, err := statecache.NewCache(s, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(bg) })
	return c
}

func mustGet(t *testing.T, c *statecache.Cache, k statecache.Key) statecache.Entry {
	t.Helper()
	e, err := c.Get(bg, k)
	if err != nil {
		t.Fatalf("Get(%s): %v", k, err)
	}
	return e
}

func mustPut(t *testing.T, c *statecache.Cache, k statecache.Key, v string, expect statecache.Version) statecache.Version {
	t.Helper()
	ver, err := c.Put(bg, k, []byte(v), expect, statecache.NoCommit)
	if err != nil {
		t.Fatalf("Put(%s, %q): %v", k, v, err)
	}
	return ver
}

// storeValue reads what the store itself holds for k.
func storeValue(t *testing.T, s statecache.Store, k statecache.Key) string {
	t.Helper()
	e, err := s.Get(bg, k)
	if err != nil {
		t.Fatal(err)
	}
	if !e.Exists {
		return "<absent>"
	}
	return string(e.Value)
}

var alice = statecache.Key{Function: "counter", ID: "alice"}

func TestCacheHitsNeverTouchTheStore(t *testing.T) {
	spy := &spyStore{Store: openDir(t)}
	c := newCache(t, spy, statecache.Config{})
	absent := mustGet(t, c, alice) // a miss, answered "absent" by the store and cached as such
	if absent.Exists {
		t.Fatalf("new actor exists: %+v", absent)
	}
	v := mustPut(t, c, alice, "1", absent.Version)
	for range 100 {
		if e := mustGet(t, c, alice); string(e.Value) != "1" || e.Version != v {
			t.Fatalf("Get = %+v, want 1 at %q", e, v)
		}
	}
	if got := spy.gets.Load(); got != 1 {
		t.Fatalf("store saw %d gets, want only the first miss", got)
	}
	if st := c.Stats(); st.Hits != 100 || st.Misses != 1 {
		t.Fatalf("stats = %+v, want 100 hits and 1 miss", st)
	}
}

func TestWriteThroughIsDurableWhenPutReturns(t *testing.T) {
	store := openDir(t)
	c := newCache(t, store, statecache.Config{})
	v := mustPut(t, c, alice, "1", "")
	if got := storeValue(t, store, alice); got != "1" {
		t.Fatalf("store holds %q right after Put, want 1", got)
	}
	v2, err := c.Delete(bg, alice, v, statecache.NoCommit)
	if err != nil {
		t.Fatal(err)
	}
	if got := storeValue(t, store, alice); got != "<absent>" {
		t.Fatalf("store holds %q after Delete", got)
	}
	if e := mustGet(t, c, alice); e.Exists || e.Version != v2 {
		t.Fatalf("Get after delete = %+v, want absent at %q", e, v2)
	}
}

func TestConflictReachesCallerAndRefreshesCache(t *testing.T) {
	spy := &spyStore{Store: openDir(t)}
	a := newCache(t, spy, statecache.Config{})
	b := newCache(t, spy, statecache.Config{})
	v := mustPut(t, a, alice, "1", "")
	stale := mustGet(t, b, alice)
	if string(stale.Value) != "1" {
		t.Fatalf("b reads %q", stale.Value)
	}
	mustPut(t, a, alice, "2", v)
	_, err := b.Put(bg, alice, []byte("from-b"), stale.Version, statecache.NoCommit)
	if !errors.Is(err, statecache.ErrConflict) {
		t.Fatalf("stale put: err = %v, want ErrConflict", err)
	}
	gets := spy.gets.Load()
	if e := mustGet(t, b, alice); string(e.Value) != "2" {
		t.Fatalf("after conflict b reads %q, want the winner's 2", e.Value)
	}
	if spy.gets.Load() != gets {
		t.Fatal("the refreshed value was not cached: Get after the conflict went to the store")
	}
	if got := storeValue(t, spy, alice); got != "2" {
		t.Fatalf("store holds %q, want 2 (the failed put changed nothing)", got)
	}
}

func TestFailedWriteChangesNothing(t *testing.T) {
	spy := &spyStore{Store: openDir(t)}
	c := newCache(t, spy, statecache.Config{})
	v := mustPut(t, c, alice, "1", "")
	spy.failPuts.Store(1)
	if _, err := c.Put(bg, alice, []byte("2"), v, statecache.NoCommit); !errors.Is(err, statecache.ErrUnavailable) {
		t.Fatalf("put with store down: err = %v, want ErrUnavailable", err)
	}
	if e := mustGet(t, c, alice); string(e.Value) != "1" || e.Version != v {
		t.Fatalf("after a failed put: %+v, want 1 at %q", e, v)
	}
}

// A write-through put whose store write landed but whose answer was lost fails with
// ErrUnavailable; retried with the same commit it succeeds with the landed version, whether the
// cache has loaded that version in between (a read) or not.
func TestRetriedPutOfALandedWriteSucceeds(t *testing.T) {
	spy := &spyStore{Store: openDir(t)}
	c := newCache(t, spy, statecache.Config{})
	v1 := mustPut(t, c, alice, "1", "")
	tests := []struct {
		name       string
		readBefore bool
	}{
		{"retried at once", false},
		{"retried after a read loaded the landed write", true},
	}
	expect := v1
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			commit := statecache.Commit("turn-" + strconv.Itoa(i))
			value := []byte("v" + strconv.Itoa(i))
			spy.losePuts.Store(1)
			if _, err := c.Put(bg, alice, value, expect, commit); !errors.Is(err, statecache.ErrUnavailable) {
				t.Fatalf("put with a lost answer: err = %v, want ErrUnavailable", err)
			}
			if tt.readBefore {
				if e := mustGet(t, c, alice); string(e.Value) != string(value) || e.Commit != commit {
					t.Fatalf("read after the lost answer: %+v, want the landed write", e)
				}
			}
			v, err := c.Put(bg, alice, value, expect, commit)
			if err != nil {
				t.Fatalf("retry of the landed write: %v", err)
			}
			if e := mustGet(t, c, alice); e.Version != v || string(e.Value) != string(value) {
				t.Fatalf("after the retry: %+v, want %q at %q", e, value, v)
			}
			// Another commit with the old version is a real conflict.
			if _, err := c.Put(bg, alice, []byte("other"), expect, "someone-else"); !errors.Is(err, statecache.ErrConflict) {
				t.Fatalf("stale put of another commit: err = %v, want ErrConflict", err)
			}
			expect = v
		})
	}
}

// A write-behind flush whose answer was lost landed all the same; the change buffered after it
// was based on the older version. The next flush finds the lost flush's commit in the store,
// rebases on it and writes: nothing is dropped as a conflict.
func TestWriteBehindRebasesOnAFlushThatLanded(t *testing.T) { flushStores(t, testRebase) }

func testRebase(t *testing.T, spy *spyStore, store statecache.Store) {
	c := newCache(t, store, statecache.Config{Mode: statecache.WriteBehind, FlushInterval: time.Hour})
	v, err := c.Put(bg, alice, []byte("1"), mustGet(t, c, alice).Version, "turn-1")
	if err != nil {
		t.Fatal(err)
	}
	spy.losePuts.Store(1)
	if err := c.Flush(bg); !errors.Is(err, statecache.ErrUnavailable) {
		t.Fatalf("flush with a lost answer: err = %v, want ErrUnavailable", err)
	}
	if got := storeValue(t, spy, alice); got != "1" {
		t.Fatalf("store holds %q, want the landed 1", got)
	}
	if _, err := c.Put(bg, alice, []byte("2"), v, "turn-2"); err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(bg); err != nil {
		t.Fatalf("flush after the lost answer: %v", err)
	}
	if got := storeValue(t, spy, alice); got != "2" {
		t.Fatalf("store holds %q, want 2", got)
	}
	if st := c.Stats(); st.LostConflicts != 0 || st.Dirty != 0 {
		t.Fatalf("stats %+v: want no lost conflict and nothing dirty", st)
	}
}

func TestWriteBehindCoalescesAndFlushesOnTheInterval(t *testing.T) { flushStores(t, testCoalesce) }

func testCoalesce(t *testing.T, spy *spyStore, store statecache.Store) {
	clk := clocktesting.NewFakeClock(time.Unix(0, 0))
	c := newCache(t, store, statecache.Config{Mode: statecache.WriteBehind, FlushInterval: time.Second, Clock: clk})
	v := mustGet(t, c, alice).Version
	for i := 1; i <= 100; i++ {
		v = mustPut(t, c, alice, strconv.Itoa(i), v)
	}
	if got := storeValue(t, spy, alice); got != "<absent>" {
		t.Fatalf("write-behind wrote through: store holds %q", got)
	}
	if e := mustGet(t, c, alice); string(e.Value) != "100" || e.Version != v {
		t.Fatalf("cache serves %+v, want 100 at %q", e, v)
	}
	proctest.Eventually(t, "the flush ticker", clk.HasWaiters)
	clk.Step(time.Second)
	proctest.Eventually(t, "the flush", func() bool { return c.Stats().Dirty == 0 })
	if got := storeValue(t, spy, alice); got != "100" {
		t.Fatalf("store holds %q after flush, want 100", got)
	}
	if got := spy.puts.Load(); got != 1 {
		t.Fatalf("100 writes reached the store as %d puts, want 1", got)
	}
	// The version callers hold survives the flush.
	mustPut(t, c, alice, "101", v)
}

func TestWriteBehindChangesDuringAFlushWaitForTheNext(t *testing.T) {
	flushStores(t, testChangesDuringAFlush)
}

// testChangesDuringAFlush buffers changes of a key while a flush is writing the key's previous
// change: the flush settles its own change only, and the next flush writes the latest, once.
func testChangesDuringAFlush(t *testing.T, spy *spyStore, store statecache.Store) {
	c := newCache(t, store, statecache.Config{Mode: statecache.WriteBehind, FlushInterval: time.Hour})
	v := mustPut(t, c, alice, "1", mustGet(t, c, alice).Version)
	writing, resume := make(chan struct{}), make(chan struct{})
	spy.beforeWrite = func() { close(writing); <-resume }
	flushed := make(chan error, 1)
	go func() { flushed <- c.Flush(bg) }()
	<-writing // the flush holds change "1" on its way to the store
	spy.beforeWrite = nil
	v = mustPut(t, c, alice, "2", v)
	v = mustPut(t, c, alice, "3", v)
	close(resume)
	if err := <-flushed; err != nil {
		t.Fatal(err)
	}
	if got := storeValue(t, spy, alice); got != "1" {
		t.Fatalf("store holds %q after the first flush, want 1 (the change it was writing)", got)
	}
	if st := c.Stats(); st.Dirty != 1 {
		t.Fatalf("%d changes wait after the first flush, want the one of 2 and 3", st.Dirty)
	}
	if err := c.Flush(bg); err != nil {
		t.Fatal(err)
	}
	if got, puts := storeValue(t, spy, alice), spy.puts.Load(); got != "3" || puts != 2 {
		t.Fatalf("store holds %q after %d puts, want 3 after 2", got, puts)
	}
	if e := mustGet(t, c, alice); string(e.Value) != "3" || e.Version != v {
		t.Fatalf("cache serves %+v, want 3 at %q", e, v)
	}
	mustPut(t, c, alice, "4", v) // the version callers hold survives both flushes
}

func TestWriteBehindCloseFlushes(t *testing.T) { flushStores(t, testCloseFlushes) }

func testCloseFlushes(t *testing.T, _ *spyStore, store statecache.Store) {
	c, err := statecache.NewCache(store, statecache.Config{Mode: statecache.WriteBehind, FlushInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		k := statecache.Key{Function: "counter", ID: strconv.Itoa(i)}
		mustPut(t, c, k, "v"+strconv.Itoa(i), "")
	}
	bob := statecache.Key{Function: "counter", ID: "bob"}
	bv := mustPut(t, c, bob, "x", "")
	if _, err := c.Delete(bg, bob, bv, statecache.NoCommit); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(bg); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for i := range 50 {
		k := statecache.Key{Function: "counter", ID: strconv.Itoa(i)}
		if got := storeValue(t, store, k); got != "v"+strconv.Itoa(i) {
			t.Fatalf("%s: store holds %q after Close", k, got)
		}
	}
	if got := storeValue(t, store, bob); got != "<absent>" {
		t.Fatalf("deleted key holds %q after Close", got)
	}
}

func TestWriteBehindFlushFailureIsRetriedAndReported(t *testing.T) { flushStores(t, testFlushFailure) }

func testFlushFailure(t *testing.T, spy *spyStore, store statecache.Store) {
	var mu sync.Mutex
	var reported []error
	c := newCache(t, store, statecache.Config{Mode: statecache.WriteBehind, FlushInterval: time.Hour,
		OnFlushError: func(k statecache.Key, err error) {
			mu.Lock()
			reported = append(reported, fmt.Errorf("%s: %w", k, err))
			mu.Unlock()
		}})
	v := mustPut(t, c, alice, "1", "")
	spy.failPuts.Store(2)
	for range 2 {
		if err := c.Flush(bg); !errors.Is(err, statecache.ErrUnavailable) {
			t.Fatalf("Flush with store down: err = %v, want ErrUnavailable", err)
		}
	}
	if st := c.Stats(); st.Dirty != 1 || st.FlushErrors != 2 {
		t.Fatalf("stats = %+v, want the write still dirty after 2 reported failures", st)
	}
	if len(reported) != 2 || !errors.Is(reported[0], statecache.ErrUnavailable) {
		t.Fatalf("reported = %v, want 2 ErrUnavailable", reported)
	}
	if err := c.Flush(bg); err != nil {
		t.Fatalf("Flush after recovery: %v", err)
	}
	if got := storeValue(t, spy, alice); got != "1" {
		t.Fatalf("store holds %q, want the retried write 1", got)
	}
	mustPut(t, c, alice, "2", v)
}

func TestWriteBehindConflictOnFlushIsReportedNotSilent(t *testing.T) {
	flushStores(t, testFlushConflict)
}

func testFlushConflict(t *testing.T, _ *spyStore, store statecache.Store) {
	var lost atomic.Int64
	c := newCache(t, store, statecache.Config{Mode: statecache.WriteBehind, FlushInterval: time.Hour,
		OnFlushError: func(_ statecache.Key, err error) {
			if errors.Is(err, statecache.ErrConflict) {
				lost.Add(1)
			}
		}})
	mustPut(t, c, alice, "mine", "")
	if _, err := store.Put(bg, alice, []byte("theirs"), "", statecache.NoCommit); err != nil { // a second writer
		t.Fatal(err)
	}
	if err := c.Flush(bg); !errors.Is(err, statecache.ErrConflict) {
		t.Fatalf("Flush: err = %v, want ErrConflict", err)
	}
	if lost.Load() != 1 || c.Stats().LostConflicts != 1 {
		t.Fatalf("conflict reported %d times (stats %+v), want 1", lost.Load(), c.Stats())
	}
	if e := mustGet(t, c, alice); string(e.Value) != "theirs" {
		t.Fatalf("after the lost flush the cache serves %q, want the store's value", e.Value)
	}
}

func TestPassivationDropsOnlyDurableIdleEntries(t *testing.T) {
	spy := &spyStore{Store: openDir(t)}
	clk := clocktesting.NewFakeClock(time.Unix(0, 0))
	c := newCache(t, spy, statecache.Config{Mode: statecache.WriteBehind, FlushInterval: time.Hour,
		IdleAfter: 10 * time.Second, Clock: clk})
	bob := statecache.Key{Function: "counter", ID: "bob"}
	mustPut(t, c, alice, "a", "")
	mustPut(t, c, bob, "b", "")
	if err := c.Flush(bg); err != nil {
		t.Fatal(err)
	}
	mustPut(t, c, alice, "a2", mustGet(t, c, alice).Version) // alice dirty again

	clk.Step(5 * time.Second)
	if n := c.Passivate(); n != 0 {
		t.Fatalf("passivated %d entries after 5 s, want 0", n)
	}
	clk.Step(6 * time.Second)
	if n := c.Passivate(); n != 1 {
		t.Fatalf("passivated %d entries, want 1 (bob; alice is dirty)", n)
	}
	gets := spy.gets.Load()
	if e := mustGet(t, c, bob); string(e.Value) != "b" || spy.gets.Load() != gets+1 {
		t.Fatalf("bob after passivation: %q, store gets %d→%d; want a reload of b", e.Value, gets, spy.gets.Load())
	}
	if e := mustGet(t, c, alice); string(e.Value) != "a2" || spy.gets.Load() != gets+1 {
		t.Fatalf("alice (dirty) = %q, want a2 from memory", e.Value)
	}
	if err := c.Flush(bg); err != nil {
		t.Fatal(err)
	}
	clk.Step(11 * time.Second)
	if n := c.Passivate(); n != 2 {
		t.Fatalf("passivated %d entries once durable, want 2", n)
	}
	if got := storeValue(t, spy, alice); got != "a2" {
		t.Fatalf("store holds %q for alice, want a2", got)
	}
	if ids := c.WarmIDs("counter"); len(ids) != 0 {
		t.Fatalf("warm ids after passivating all: %v", ids)
	}
	mustGet(t, c, bob)
	if ids := c.WarmIDs("counter"); len(ids) != 1 || ids[0] != "bob" {
		t.Fatalf("warm ids = %v, want [bob]", ids)
	}
}

// A function's own idle time (knactor.dev/passivate-after) wins over the cache's, both ways.
func TestPassivationFollowsEachFunctionsIdleTime(t *testing.T) {
	tests := []struct {
		name      string
		cacheIdle time.Duration
		own       map[string]time.Duration // SetIdleAfter, in order of the map's keys
		after     time.Duration
		want      []string // the keys passivated, of chat/a, counter/a, shop/a
	}{
		{"cache's only", 10 * time.Second, nil, 11 * time.Second, []string{"chat/a", "counter/a", "shop/a"}},
		{"none at all", 0, nil, time.Hour, nil},
		{"a function's own, none for the cache", 0, map[string]time.Duration{"chat": 5 * time.Second}, 6 * time.Second, []string{"chat/a"}},
		{"a function never", 10 * time.Second, map[string]time.Duration{"shop": 0}, time.Hour, []string{"chat/a", "counter/a"}},
		{"a function longer", 10 * time.Second, map[string]time.Duration{"shop": time.Minute}, 11 * time.Second, []string{"chat/a", "counter/a"}},
		{"a function back to the cache's", 10 * time.Second, map[string]time.Duration{"shop": -1}, 11 * time.Second, []string{"chat/a", "counter/a", "shop/a"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := clocktesting.NewFakeClock(time.Unix(0, 0))
			c := newCache(t, openDir(t), statecache.Config{FlushInterval: time.Hour, IdleAfter: tt.cacheIdle, Clock: clk})
			for _, fn := range slices.Sorted(maps.Keys(tt.own)) {
				if tt.own[fn] < 0 {
					c.SetIdleAfter(fn, time.Minute) // then back to the cache's
				}
				c.SetIdleAfter(fn, tt.own[fn])
			}
			keys := []statecache.Key{{Function: "chat", ID: "a"}, {Function: "counter", ID: "a"}, {Function: "shop", ID: "a"}}
			for _, k := range keys {
				mustPut(t, c, k, "v", "")
			}
			clk.Step(tt.after)
			if n := c.Passivate(); n != len(tt.want) {
				t.Fatalf("passivated %d entries, want %d (%v)", n, len(tt.want), tt.want)
			}
			var warm []string
			for _, fn := range []string{"chat", "counter", "shop"} {
				for _, id := range c.WarmIDs(fn) {
					warm = append(warm, fn+"/"+id)
				}
			}
			if tracked := tt.cacheIdle > 0 || len(tt.own) > 0; !tracked {
				return // nothing tracks use, so nothing is warm either
			}
			for _, k := range keys {
				passivated, stillWarm := slices.Contains(tt.want, k.String()), slices.Contains(warm, k.String())
				if passivated == stillWarm {
					t.Fatalf("%s: warm actors %v, want %v passivated", k, warm, tt.want)
				}
			}
		})
	}
}

func TestMemoryIsBoundedAndDirtyWritesSurviveEviction(t *testing.T) {
	store := openDir(t)
	c := newCache(t, store, statecache.Config{Mode: statecache.WriteBehind, MaxBytes: 1 << 20, FlushInterval: time.Hour})
	value := func(i int) string { return fmt.Sprintf("%01024d", i) }
	const n = 2000 // ~2 MiB of state in a 1 MiB cache
	for i := range n {
		mustPut(t, c, statecache.Key{Function: "big", ID: strconv.Itoa(i)}, value(i), "")
	}
	for i := range n {
		k := statecache.Key{Function: "big", ID: strconv.Itoa(i)}
		if e := mustGet(t, c, k); string(e.Value) != value(i) {
			t.Fatalf("%s: dirty value lost under memory pressure: got %q (exists %v)", k, e.Value[:min(10, len(e.Value))], e.Exists)
		}
	}
	if err := c.Flush(bg); err != nil {
		t.Fatal(err)
	}
	if st := c.Stats(); st.Flushed != n || st.Dirty != 0 {
		t.Fatalf("stats = %+v, want %d flushed", st, n)
	}
}

// increments runs goroutines that each add 1 to one counter `each` times through caches,
// retrying on conflicts, and returns the final count as the store has it.
func increments(t *testing.T, store statecache.Store, caches []*statecache.Cache, goroutines, each int) int {
	t.Helper()
	k := statecache.Key{Function: "counter", ID: "shared"}
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := range goroutines {
		c := caches[g%len(caches)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for done := 0; done < each; {
				e, err := c.Get(bg, k)
				if err != nil {
					errs <- err
					return
				}
				n, _ := strconv.Atoi(string(e.Value))
				_, err = c.Put(bg, k, []byte(strconv.Itoa(n+1)), e.Version, statecache.NoCommit)
				switch {
				case errors.Is(err, statecache.ErrConflict):
				case err != nil:
					errs <- err
					return
				default:
					done++
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(storeValue(t, store, k))
	return n
}

func TestConcurrentIncrementsThroughTwoCachesOnMinIO(t *testing.T) {
	srv := miniotest.Start(t)
	store, err := statecache.OpenS3Store(bg, s3Config(srv, "inc/"))
	if err != nil {
		t.Fatal(err)
	}
	caches := []*statecache.Cache{newCache(t, store, statecache.Config{}), newCache(t, store, statecache.Config{})}
	if got := increments(t, store, caches, 8, 200); got != 1600 {
		t.Fatalf("8 goroutines × 200 increments through two caches ended at %d, want 1600", got)
	}
}

// Two caches on one bucket: without revalidation the second may answer from a value the first
// has since replaced; with it, a read after an acknowledged write always sees that write, and a
// current entry costs a conditional GET that sends no value.
func TestRevalidatedReadsThroughTwoCachesOnMinIO(t *testing.T) {
	srv := miniotest.Start(t)
	store, err := statecache.OpenS3Store(bg, s3Config(srv, "revalidate/"))
	if err != nil {
		t.Fatal(err)
	}
	k := statecache.Key{Function: "counter", ID: "shared"}
	tests := []struct {
		name       string
		revalidate bool
		want       string // what b reads after a's write
	}{
		{"stale without revalidation", false, "1"},
		{"current with revalidation", true, "2"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k := k
			k.ID += strconv.Itoa(i)
			a := newCache(t, store, statecache.Config{Revalidate: tc.revalidate})
			b := newCache(t, store, statecache.Config{Revalidate: tc.revalidate})
			v1, err := a.Put(bg, k, []byte("1"), statecache.NoVersion, statecache.NoCommit)
			if err != nil {
				t.Fatal(err)
			}
			if e, err := b.Get(bg, k); err != nil || string(e.Value) != "1" {
				t.Fatalf("b's first read = %q, %v", e.Value, err)
			}
			if _, err := a.Put(bg, k, []byte("2"), v1, statecache.NoCommit); err != nil {
				t.Fatal(err)
			}
			e, err := b.Get(bg, k)
			if err != nil || string(e.Value) != tc.want {
				t.Fatalf("b's read after a's write = %q, %v; want %q", e.Value, err, tc.want)
			}
			if !tc.revalidate {
				return
			}
			before := b.Stats()
			if e, err := b.Get(bg, k); err != nil || string(e.Value) != "2" {
				t.Fatalf("b's unchanged read = %q, %v", e.Value, err)
			}
			if after := b.Stats(); after.Revalidated != before.Revalidated+1 {
				t.Errorf("an unchanged entry was not confirmed by a conditional read: stats %+v → %+v", before, after)
			}
			if _, err := a.Delete(bg, k, mustVersion(t, a, k), statecache.NoCommit); err != nil {
				t.Fatal(err)
			}
			if e, err := b.Get(bg, k); err != nil || e.Exists {
				t.Fatalf("b's read after a's delete = %+v, %v; want absent", e, err)
			}
		})
	}
}

func mustVersion(t *testing.T, c *statecache.Cache, k statecache.Key) statecache.Version {
	t.Helper()
	e, err := c.Get(bg, k)
	if err != nil {
		t.Fatal(err)
	}
	return e.Version
}

func TestConcurrentIncrementsThroughTwoCachesOnDir(t *testing.T) {
	store := openDir(t)
	caches := []*statecache.Cache{newCache(t, store, statecache.Config{}), newCache(t, store, statecache.Config{})}
	if got := increments(t, store, caches, 8, 200); got != 1600 {
		t.Fatalf("ended at %d, want 1600", got)
	}
}

func TestConfigValidation(t *testing.T) {
	tests := []struct {
		name string
		cfg  statecache.Config
	}{
		{"negative memory", statecache.Config{MaxBytes: -1}},
		{"unknown mode", statecache.Config{Mode: 7}},
		{"negative idle", statecache.Config{IdleAfter: -time.Second}},
		{"revalidating write-behind", statecache.Config{Mode: statecache.WriteBehind, Revalidate: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := statecache.NewCache(openDir(t), tt.cfg); err == nil {
				t.Fatal("NewCache accepted an invalid config")
			}
		})
	}
	for _, s := range []string{"write-through", "write-behind"} {
		m, err := statecache.ParseWriteMode(s)
		if err != nil || m.String() != s {
			t.Fatalf("ParseWriteMode(%q) = %v, %v", s, m, err)
		}
	}
	if _, err := statecache.ParseWriteMode("write-around"); err == nil {
		t.Fatal("ParseWriteMode accepted write-around")
	}
}

// TestWriteBehindFlushIsOneBatch checks what write-behind on the local store costs: one flush
// of any number of dirty actors is one batch, one log record and (about) one fsync.
func TestWriteBehindFlushIsOneBatch(t *testing.T) {
	store, err := statecache.OpenPebbleStore(t.TempDir(), statecache.PebbleOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	c := newCache(t, store, statecache.Config{Mode: statecache.WriteBehind, FlushInterval: time.Hour})
	const actors = 3000 // under DefaultFlushBatch
	for i := range actors {
		mustPut(t, c, statecache.Key{Function: "counter", ID: strconv.Itoa(i)}, strconv.Itoa(i), "")
	}
	before := store.Stats().Syncs
	if err := c.Flush(bg); err != nil {
		t.Fatal(err)
	}
	syncs := store.Stats().Syncs - before
	t.Logf("a flush of %d dirty actors: %d fsyncs", actors, syncs)
	if syncs > 2 { // one, and one more when the batch fills the young store's first memtable
		t.Fatalf("a flush of %d actors took %d fsyncs, want 1", actors, syncs)
	}
	for _, i := range []int{0, actors / 2, actors - 1} {
		k := statecache.Key{Function: "counter", ID: strconv.Itoa(i)}
		if got := storeValue(t, store, k); got != strconv.Itoa(i) {
			t.Fatalf("%s holds %q after the flush", k, got)
		}
	}
}

func TestCacheDueIndexContract(t *testing.T) {
	storetest.RunDueIndex(t, func(t *testing.T) statecache.DueIndex {
		return newCache(t, &statecache.MemStore{}, statecache.Config{})
	})
}

func TestCacheOverAStoreWithoutIndexHasNoDueIndex(t *testing.T) {
	c := newCache(t, openDir(t), statecache.Config{})
	d := statecache.Due{At: time.UnixMilli(1), Key: statecache.Key{Function: "timer", ID: "a"}}
	calls := []struct {
		name string
		call func() error
	}{
		{"AddDue", func() error { return c.AddDue(bg, d) }},
		{"RemoveDue", func() error { return c.RemoveDue(bg, d) }},
		{"ListDue", func() error { _, err := c.ListDue(bg, time.UnixMilli(2), statecache.Due{}, 10); return err }},
	}
	for _, tt := range calls {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); !errors.Is(err, statecache.ErrNoDueIndex) {
				t.Fatalf("err = %v, want ErrNoDueIndex", err)
			}
		})
	}
}

func TestCacheChannelIndexContract(t *testing.T) {
	for _, mode := range []statecache.WriteMode{statecache.WriteThrough, statecache.WriteBehind} {
		t.Run(mode.String(), func(t *testing.T) {
			storetest.RunChannelIndex(t, func(t *testing.T) statecache.ChannelIndex {
				return newCache(t, &statecache.MemStore{}, statecache.Config{Mode: mode, FlushInterval: time.Hour})
			})
		})
	}
}

func TestCacheOverAStoreWithoutIndexHasNoChannelIndex(t *testing.T) {
	for _, mode := range []statecache.WriteMode{statecache.WriteThrough, statecache.WriteBehind} {
		c := newCache(t, openDir(t), statecache.Config{Mode: mode, FlushInterval: time.Hour})
		k := statecache.Key{Function: "chat", ID: "a"}
		// A buffered change of the key must not make a Leave wait for a flush that cannot
		// apply it.
		mustPut(t, c, k, "1", "")
		calls := []struct {
			name string
			call func() error
		}{
			{"Join", func() error { return c.Join(bg, "room", k) }},
			{"Leave", func() error { return c.Leave(bg, "room", k) }},
			{"Members", func() error { _, err := c.Members(bg, "room", statecache.Key{}, 10); return err }},
		}
		for _, tt := range calls {
			t.Run(mode.String()+"/"+tt.name, func(t *testing.T) {
				if err := tt.call(); !errors.Is(err, statecache.ErrNoChannelIndex) {
					t.Fatalf("err = %v, want ErrNoChannelIndex", err)
				}
			})
		}
	}
}

// Write-behind does not acknowledge changes without end while the store is down (issue 16,
// point 5): once flushes have failed for MaxDirtyAge, or the changes waiting pass
// MaxDirtyBytes, a change is refused with ErrUnavailable and changes nothing; when the store
// is back, the waiting changes flush and changes are taken again.
func TestWriteBehindStopsAcknowledgingDuringAnOutage(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Unix(0, 0))
	spy := &spyStore{Store: &statecache.MemStore{}}
	c := newCache(t, spy, statecache.Config{Mode: statecache.WriteBehind, FlushInterval: time.Hour, Clock: clk,
		MaxDirtyAge: 30 * time.Second, MaxDirtyBytes: 1 << 10})
	ctx := context.Background()
	a := statecache.Key{Function: "f", ID: "a"}
	v, err := c.Put(ctx, a, []byte("1"), statecache.NoVersion, "c1")
	if err != nil {
		t.Fatal(err)
	}
	spy.failPuts.Store(1 << 30) // the store is down
	if err := c.Flush(ctx); !errors.Is(err, statecache.ErrUnavailable) {
		t.Fatalf("flush during the outage: %v", err)
	}
	clk.Step(29 * time.Second)
	if v, err = c.Put(ctx, a, []byte("2"), v, "c2"); err != nil {
		t.Fatalf("a change within MaxDirtyAge of the first failed flush: %v", err)
	}
	clk.Step(2 * time.Second)
	if _, err := c.Put(ctx, a, []byte("3"), v, "c3"); !errors.Is(err, statecache.ErrUnavailable) ||
		!strings.Contains(err.Error(), "failed for 31s") {
		t.Fatalf("a change past MaxDirtyAge of failing flushes: err = %v, want ErrUnavailable naming the time", err)
	}
	if e, _ := c.Get(ctx, a); string(e.Value) != "2" || e.Version != v {
		t.Fatalf("the refused change changed the cache: %q %s", e.Value, e.Version)
	}
	if st := c.Stats(); st.Dirty != 1 || st.DirtyBytes != 1 || st.FlushFailingFor != 31*time.Second {
		t.Fatalf("stats during the outage: %+v", st)
	}
	spy.failPuts.Store(0) // the store is back
	if err := c.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if e, _ := spy.Store.Get(ctx, a); string(e.Value) != "2" {
		t.Fatalf("the store holds %q after the outage, want the acknowledged 2", e.Value)
	}
	if _, err := c.Put(ctx, a, []byte("3"), v, "c3"); err != nil {
		t.Fatalf("a change after the store came back: %v", err)
	}

	// Too many bytes waiting: refused at once, whatever the time.
	b := statecache.Key{Function: "f", ID: "b"}
	if _, err := c.Put(ctx, b, bytes.Repeat([]byte("x"), 1<<10), statecache.NoVersion, "c4"); !errors.Is(err, statecache.ErrUnavailable) {
		t.Fatalf("a change past MaxDirtyBytes: err = %v, want ErrUnavailable", err)
	}
	if st := c.Stats(); st.DirtyBytes != 1 {
		t.Fatalf("dirty bytes after a refused change = %d, want 1", st.DirtyBytes)
	}
}
