package statecache_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/knactor/knactor/statecache"
)

// With write-behind, a membership that the actor's newest record no longer needs goes only once
// that record is in the store: a crash before the flush brings back the stored record, which may
// still subscribe. A membership needed again before the flush stays. Leaves wait exactly as
// due-index removals do (TestWriteBehindDefersIndexRemovalsToTheFlush), on the same path.
func TestWriteBehindDefersLeaveToTheFlush(t *testing.T) {
	ctx := context.Background()
	key := statecache.Key{Function: "chat", ID: "u1"}
	other := statecache.Key{Function: "chat", ID: "u2"}
	at := time.UnixMilli(1_800_000_000_000)
	listed := func(t *testing.T, store *statecache.MemStore, channel string) []statecache.Key {
		t.Helper()
		list, err := store.Members(ctx, channel, statecache.Key{}, 10)
		if err != nil {
			t.Fatal(err)
		}
		return list
	}
	want := func(t *testing.T, what string, got []statecache.Key, keys ...statecache.Key) {
		t.Helper()
		if !slices.Equal(got, keys) {
			t.Fatalf("%s: members %v, want %v", what, got, keys)
		}
	}
	tests := []struct {
		name string
		mode statecache.WriteMode
		run  func(t *testing.T, c *statecache.Cache, store *statecache.MemStore)
	}{
		{"write-through leaves at once", statecache.WriteThrough, func(t *testing.T, c *statecache.Cache, store *statecache.MemStore) {
			mustNil(t, c.Join(ctx, "room", key))
			_, err := c.Put(ctx, key, []byte("v1"), statecache.NoVersion, "c1")
			mustNil(t, err)
			mustNil(t, c.Leave(ctx, "room", key))
			want(t, "after the leave", listed(t, store, "room"))
		}},
		{"write-behind waits for the flush", statecache.WriteBehind, func(t *testing.T, c *statecache.Cache, store *statecache.MemStore) {
			mustNil(t, c.Join(ctx, "room", key))
			mustNil(t, c.Join(ctx, "hall", key))
			v, err := c.Put(ctx, key, []byte("v1"), statecache.NoVersion, "c1")
			mustNil(t, err)
			_, err = c.Put(ctx, key, []byte("v2"), v, "c2")
			mustNil(t, err)
			mustNil(t, c.Leave(ctx, "room", key))
			want(t, "before the flush", listed(t, store, "room"), key)
			mustNil(t, c.Flush(ctx))
			want(t, "after the flush", listed(t, store, "room"))
			want(t, "the channel it did not leave", listed(t, store, "hall"), key)
		}},
		{"a membership needed again is kept", statecache.WriteBehind, func(t *testing.T, c *statecache.Cache, store *statecache.MemStore) {
			mustNil(t, c.Join(ctx, "room", key))
			v, err := c.Put(ctx, key, []byte("v1"), statecache.NoVersion, "c1")
			mustNil(t, err)
			mustNil(t, c.Leave(ctx, "room", key)) // the next record does not subscribe...
			mustNil(t, c.Join(ctx, "room", key))  // ...and the one after does again
			_, err = c.Put(ctx, key, []byte("v2"), v, "c2")
			mustNil(t, err)
			mustNil(t, c.Flush(ctx))
			want(t, "after the flush", listed(t, store, "room"), key)
		}},
		{"joining another channel cancels nothing", statecache.WriteBehind, func(t *testing.T, c *statecache.Cache, store *statecache.MemStore) {
			mustNil(t, c.Join(ctx, "room", key))
			_, err := c.Put(ctx, key, []byte("v1"), statecache.NoVersion, "c1")
			mustNil(t, err)
			mustNil(t, c.Leave(ctx, "room", key))
			mustNil(t, c.Join(ctx, "room-2", key))
			mustNil(t, c.Join(ctx, "room", other)) // another actor joining is its own membership
			mustNil(t, c.Flush(ctx))
			want(t, "after the flush", listed(t, store, "room"), other)
			want(t, "the other channel", listed(t, store, "room-2"), key)
		}},
		{"a clean key leaves at once", statecache.WriteBehind, func(t *testing.T, c *statecache.Cache, store *statecache.MemStore) {
			mustNil(t, c.Join(ctx, "room", key))
			_, err := c.Put(ctx, key, []byte("v1"), statecache.NoVersion, "c1")
			mustNil(t, err)
			mustNil(t, c.Flush(ctx))
			mustNil(t, c.Leave(ctx, "room", key))
			want(t, "after the leave", listed(t, store, "room"))
		}},
		{"leaves and due removals wait together", statecache.WriteBehind, func(t *testing.T, c *statecache.Cache, store *statecache.MemStore) {
			d := statecache.Due{At: at, Key: key}
			mustNil(t, c.Join(ctx, "room", key))
			mustNil(t, c.AddDue(ctx, d))
			_, err := c.Put(ctx, key, []byte("v1"), statecache.NoVersion, "c1")
			mustNil(t, err)
			mustNil(t, c.Leave(ctx, "room", key))
			mustNil(t, c.RemoveDue(ctx, d))
			mustNil(t, c.AddDue(ctx, d)) // needs the due entry again, not the membership
			mustNil(t, c.Flush(ctx))
			want(t, "after the flush", listed(t, store, "room"))
			due, err := store.ListDue(ctx, at.Add(time.Hour), statecache.Due{}, 10)
			mustNil(t, err)
			if len(due) != 1 || due[0].Key != key {
				t.Fatalf("due entries after the flush: %v, want %v", due, d)
			}
		}},
		{"an invalid channel is refused even while the key is dirty", statecache.WriteBehind, func(t *testing.T, c *statecache.Cache, store *statecache.MemStore) {
			_, err := c.Put(ctx, key, []byte("v1"), statecache.NoVersion, "c1")
			mustNil(t, err)
			if err := c.Leave(ctx, "a/b", key); !errors.Is(err, statecache.ErrInvalidKey) {
				t.Fatalf("Leave of an invalid channel: err = %v, want ErrInvalidKey", err)
			}
			mustNil(t, c.Flush(ctx))
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
