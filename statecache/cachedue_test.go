package statecache_test

import (
	"context"
	"testing"
	"time"

	"github.com/knactor/knactor/statecache"
)

// With write-behind, an index entry that the actor's newest record no longer needs goes only
// once that record is in the store: a crash before the flush brings back the stored record,
// which may still need it. An entry needed again before the flush stays.
func TestWriteBehindDefersIndexRemovalsToTheFlush(t *testing.T) {
	ctx := context.Background()
	key := statecache.Key{Function: "alarm", ID: "a1"}
	t0 := time.UnixMilli(1_800_000_000_000)
	e1, e2 := statecache.Due{At: t0, Key: key}, statecache.Due{At: t0.Add(time.Second), Key: key}
	listed := func(t *testing.T, store *statecache.MemStore) []statecache.Due {
		t.Helper()
		list, err := store.ListDue(ctx, t0.Add(time.Hour), statecache.Due{}, 10)
		if err != nil {
			t.Fatal(err)
		}
		return list
	}
	tests := []struct {
		name string
		mode statecache.WriteMode
		run  func(t *testing.T, c *statecache.Cache, store *statecache.MemStore)
	}{
		{"write-through removes at once", statecache.WriteThrough, func(t *testing.T, c *statecache.Cache, store *statecache.MemStore) {
			mustNil(t, c.AddDue(ctx, e1))
			mustNil(t, c.RemoveDue(ctx, e1))
			if got := listed(t, store); len(got) != 0 {
				t.Fatalf("listed %v", got)
			}
		}},
		{"write-behind waits for the flush", statecache.WriteBehind, func(t *testing.T, c *statecache.Cache, store *statecache.MemStore) {
			mustNil(t, c.AddDue(ctx, e1))
			v, err := c.Put(ctx, key, []byte("v1"), statecache.NoVersion, "c1")
			mustNil(t, err)
			mustNil(t, c.AddDue(ctx, e2))
			_, err = c.Put(ctx, key, []byte("v2"), v, "c2")
			mustNil(t, err)
			mustNil(t, c.RemoveDue(ctx, e1))
			if got := listed(t, store); len(got) != 2 {
				t.Fatalf("before the flush: listed %v, want both entries", got)
			}
			mustNil(t, c.Flush(ctx))
			if got := listed(t, store); len(got) != 1 || !got[0].At.Equal(e2.At) {
				t.Fatalf("after the flush: listed %v, want only %v", got, e2)
			}
		}},
		{"an entry needed again is kept", statecache.WriteBehind, func(t *testing.T, c *statecache.Cache, store *statecache.MemStore) {
			mustNil(t, c.AddDue(ctx, e1))
			v, err := c.Put(ctx, key, []byte("v1"), statecache.NoVersion, "c1")
			mustNil(t, err)
			mustNil(t, c.RemoveDue(ctx, e1)) // the next record has nothing due...
			mustNil(t, c.AddDue(ctx, e1))    // ...and the one after needs e1 again
			_, err = c.Put(ctx, key, []byte("v2"), v, "c2")
			mustNil(t, err)
			mustNil(t, c.Flush(ctx))
			if got := listed(t, store); len(got) != 1 || !got[0].At.Equal(e1.At) {
				t.Fatalf("after the flush: listed %v, want %v", got, e1)
			}
		}},
		{"a clean key removes at once", statecache.WriteBehind, func(t *testing.T, c *statecache.Cache, store *statecache.MemStore) {
			mustNil(t, c.AddDue(ctx, e1))
			_, err := c.Put(ctx, key, []byte("v1"), statecache.NoVersion, "c1")
			mustNil(t, err)
			mustNil(t, c.Flush(ctx))
			mustNil(t, c.RemoveDue(ctx, e1))
			if got := listed(t, store); len(got) != 0 {
				t.Fatalf("listed %v", got)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store := &statecache.MemStore{}
			c := newCache(t, store, statecache.Config{Mode: tt.mode, FlushInterval: time.Hour})
			tt.run(t, c, store)
		})
	}
}

func mustNil(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
