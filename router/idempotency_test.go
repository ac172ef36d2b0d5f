package router

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/knactor/knactor/router/record"
	"github.com/knactor/knactor/statecache"
	"github.com/knactor/knactor/test/proctest"
)

func withKey(key string) []string { return []string{HeaderIdempotencyKey, key} }

func TestIdempotencyKeyReplaysTheCommittedCall(t *testing.T) {
	h := newHarness(t, Config{})
	a := newTestActor()
	h.deploy(counterFn, a)
	first := h.do("POST", "/v1/actors/counter/alice/add", `{"by":2}`, withKey("k-1")...)
	first.want(t, 200, `{"value":2}`)
	if first.header.Get(HeaderReplayed) != "" {
		t.Fatalf("a first call is marked replayed: %v", first.header)
	}
	again := h.do("POST", "/v1/actors/counter/alice/add", `{"by":2}`, withKey("k-1")...)
	again.want(t, 200, `{"value":2}`)
	if again.header.Get(HeaderReplayed) != "true" || again.header.Get("Content-Type") != "application/json" {
		t.Fatalf("replay headers: %v", again.header)
	}
	if n := a.calls.Load(); n != 1 {
		t.Fatalf("the function ran %d times for one key, want 1", n)
	}
	h.do("GET", "/v1/actors/counter/alice", "").want(t, 200, `{"value":2}`)

	tests := []struct {
		name   string
		path   string
		body   string
		key    string
		status int
		code   string
	}{
		{"same key, other payload", "/v1/actors/counter/alice/add", `{"by":3}`, "k-1", 422, CodeIdempotencyKeyReused},
		{"same key, other action", "/v1/actors/counter/alice/get", `{"by":2}`, "k-1", 422, CodeIdempotencyKeyReused},
		{"too long", "/v1/actors/counter/alice/add", `{"by":2}`, strings.Repeat("k", record.MaxKeyLen+1), 400, CodeBadRequest},
		{"not printable", "/v1/actors/counter/alice/add", `{"by":2}`, "k\tx", 400, CodeBadRequest},
		// Keys are per actor: the same key on another actor is another call.
		{"same key, other actor", "/v1/actors/counter/bob/add", `{"by":2}`, "k-1", 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rp := h.do("POST", tt.path, tt.body, withKey(tt.key)...)
			if rp.status != tt.status || (tt.code != "" && !strings.Contains(rp.body, `"code":"`+tt.code+`"`)) {
				t.Fatalf("got %d %s, want %d %s", rp.status, rp.body, tt.status, tt.code)
			}
		})
	}
	h.do("GET", "/v1/actors/counter/alice", "").want(t, 200, `{"value":2}`) // refused calls changed nothing
}

func TestIdempotencyKeyOnAReadOnlyCallIsRemembered(t *testing.T) {
	h := newHarness(t, Config{})
	h.deploy(counterFn, newTestActor())
	h.do("POST", "/v1/actors/counter/r/add", `{"by":1}`).want(t, 200, `{"value":1}`)
	h.do("POST", "/v1/actors/counter/r/get", ``, withKey("read-1")...).want(t, 200, `{"value":1}`)
	h.do("POST", "/v1/actors/counter/r/add", `{"by":1}`).want(t, 200, `{"value":2}`)
	// The repeat answers what the first call answered, not the current state.
	rp := h.do("POST", "/v1/actors/counter/r/get", ``, withKey("read-1")...)
	rp.want(t, 200, `{"value":1}`)
	if rp.header.Get(HeaderReplayed) != "true" {
		t.Fatal("repeat of a read-only call with a key was run again")
	}
	st := h.do("GET", "/v1/actors/counter/r", "")
	st.want(t, 200, `{"value":2}`)
	if st.header.Get(HeaderRememberedKeys) != "1" {
		t.Fatalf("GET state says %q keys remembered, want 1", st.header.Get(HeaderRememberedKeys))
	}
	// A function-side delete with a key keeps the key, not the state.
	h.do("POST", "/v1/actors/counter/r/del", ``, withKey("del-1")...).want(t, 200, `{"value":0}`)
	h.do("GET", "/v1/actors/counter/r", "").want(t, 404, "")
	h.do("POST", "/v1/actors/counter/r/del", ``, withKey("del-1")...).want(t, 200, `{"value":0}`)
	if rp := h.do("POST", "/v1/actors/counter/r/del", ``, withKey("del-1")...); rp.header.Get(HeaderReplayed) != "true" {
		t.Fatal("repeat of a delete with a key was run again")
	}
	// DELETE of the actor forgets its keys: the same key runs anew.
	h.do("DELETE", "/v1/actors/counter/r", "").want(t, 204, "")
	h.do("POST", "/v1/actors/counter/r/get", ``, withKey("read-1")...).want(t, 200, `{"value":0}`)
}

// Repeats that arrive while the first call runs wait for the actor's turn and get the replay.
func TestConcurrentRepeatsOfOneKeyRunOnce(t *testing.T) {
	h := newHarness(t, Config{})
	a := newTestActor()
	h.deploy(counterFn, a)
	const repeats = 16
	var (
		wg       sync.WaitGroup
		replayed atomic.Int64
	)
	for range repeats {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rp := h.do("POST", "/v1/actors/counter/c/slow-add", `{"by":1,"ms":20}`, withKey("once")...)
			rp.want(t, 200, `{"value":1}`)
			if rp.header.Get(HeaderReplayed) == "true" {
				replayed.Add(1)
			}
		}()
	}
	wg.Wait()
	if replayed.Load() != repeats-1 {
		t.Fatalf("%d of %d answers were replays, want %d", replayed.Load(), repeats, repeats-1)
	}
	h.do("GET", "/v1/actors/counter/c", "").want(t, 200, `{"value":1}`)
}

// Keys live in the store with the state: a new router (a restart, another owner) replays them.
func TestIdempotencyKeysSurviveARouterRestart(t *testing.T) {
	store := localStore(t)
	first := newHarnessOn(t, Config{}, store)
	first.deploy(counterFn, newTestActor())
	first.do("POST", "/v1/actors/counter/s/add", `{"by":5}`, withKey("restart")...).want(t, 200, `{"value":5}`)
	if err := first.shutdown(); err != nil {
		t.Fatal(err)
	}
	second := newHarnessOn(t, Config{}, store)
	a := newTestActor()
	second.deploy(counterFn, a)
	rp := second.do("POST", "/v1/actors/counter/s/add", `{"by":5}`, withKey("restart")...)
	rp.want(t, 200, `{"value":5}`)
	if rp.header.Get(HeaderReplayed) != "true" || a.calls.Load() != 0 {
		t.Fatalf("after a restart the key ran again (replayed %q, calls %d)", rp.header.Get(HeaderReplayed), a.calls.Load())
	}
}

// Past the window, a key is forgotten and its call runs again: documented, and tested so the
// bound is real.
func TestIdempotencyWindowIsBounded(t *testing.T) {
	h := newHarness(t, Config{IdempotencyKeys: 2})
	h.deploy(counterFn, newTestActor())
	for i := 1; i <= 3; i++ {
		h.do("POST", "/v1/actors/counter/w/add", `{"by":1}`, withKey(fmt.Sprint("w-", i))...).want(t, 200, fmt.Sprintf(`{"value":%d}`, i))
	}
	if got := h.do("GET", "/v1/actors/counter/w", "").header.Get(HeaderRememberedKeys); got != "2" {
		t.Fatalf("%s keys remembered, want 2", got)
	}
	h.do("POST", "/v1/actors/counter/w/add", `{"by":1}`, withKey("w-3")...).want(t, 200, `{"value":3}`) // still remembered
	h.do("POST", "/v1/actors/counter/w/add", `{"by":1}`, withKey("w-1")...).want(t, 200, `{"value":4}`) // forgotten: runs again
}

// lostAnswerStore lands a write and then reports it unavailable, as a store whose answer was
// lost on the way back (a timeout, a reset connection) does.
type lostAnswerStore struct {
	statecache.Store
	lose atomic.Int64 // writes still to lose the answer of
}

func (s *lostAnswerStore) Put(ctx context.Context, k statecache.Key, v []byte, expect statecache.Version, c statecache.Commit) (statecache.Version, error) {
	ver, err := s.Store.Put(ctx, k, v, expect, c)
	if err == nil && s.lose.Add(-1) >= 0 {
		return "", fmt.Errorf("test: answer lost: %w", statecache.ErrUnavailable)
	}
	return ver, err
}

// The ambiguous write: the store has the turn's write but the router was told it failed. The
// router writes again under the same commit, the store recognises it, and the turn is not run
// a second time, with or without an idempotency key.
func TestALandedWriteWhoseAnswerWasLostIsNotAppliedTwice(t *testing.T) {
	dir := localStore(t)
	store := &lostAnswerStore{Store: dir}
	h := newHarnessOn(t, Config{}, store)
	a := newTestActor()
	h.deploy(counterFn, a)
	h.do("POST", "/v1/actors/counter/amb/add", `{"by":1}`).want(t, 200, `{"value":1}`)
	store.lose.Store(1)
	h.do("POST", "/v1/actors/counter/amb/add", `{"by":1}`).want(t, 200, `{"value":2}`)
	store.lose.Store(1)
	h.do("POST", "/v1/actors/counter/amb/add", `{"by":1}`, withKey("amb")...).want(t, 200, `{"value":3}`)
	if n := a.calls.Load(); n != 3 {
		t.Fatalf("the function ran %d times for 3 calls", n)
	}
	e, err := dir.Get(context.Background(), statecache.Key{Function: "counter", ID: "amb"})
	if err != nil {
		t.Fatal(err)
	}
	rec, err := record.Decode(e.Value, e.Exists)
	if err != nil || string(rec.State) != `{"value":3}` {
		t.Fatalf("store holds %q (%v), want value 3", rec.State, err)
	}
}

// flakyStore fails every read and write until healed.
type flakyStore struct {
	statecache.Store
	down atomic.Bool
}

func (s *flakyStore) Get(ctx context.Context, k statecache.Key) (statecache.Entry, error) {
	if s.down.Load() {
		return statecache.Entry{}, fmt.Errorf("test: %w", statecache.ErrUnavailable)
	}
	return s.Store.Get(ctx, k)
}

func (s *flakyStore) Put(ctx context.Context, k statecache.Key, v []byte, expect statecache.Version, c statecache.Commit) (statecache.Version, error) {
	if s.down.Load() {
		return "", fmt.Errorf("test: %w", statecache.ErrUnavailable)
	}
	return s.Store.Put(ctx, k, v, expect, c)
}

// A store outage shorter than StoreTimeout only delays calls; a longer one answers 503 with
// Retry-After; once the store is back, calls succeed again without a restart.
func TestStoreOutageWaitsThenAnswers503ThenRecovers(t *testing.T) {
	dir := localStore(t)
	store := &flakyStore{Store: dir}
	h := newHarnessOn(t, Config{StoreTimeout: 2 * time.Second}, store)
	h.deploy(counterFn, newTestActor())

	store.down.Store(true)
	heal := time.AfterFunc(300*time.Millisecond, func() { store.down.Store(false) })
	defer heal.Stop()
	h.do("POST", "/v1/actors/counter/o/add", `{"by":1}`).want(t, 200, `{"value":1}`)

	h2 := newHarnessOn(t, Config{StoreTimeout: 200 * time.Millisecond, CallTimeout: 20 * time.Second}, store)
	h2.deploy(counterFn, newTestActor())
	store.down.Store(true)
	rp := h2.do("POST", "/v1/actors/counter/o2/add", `{"by":1}`)
	if rp.status != 503 || !strings.Contains(rp.body, CodeStoreUnavailable) || rp.header.Get("Retry-After") == "" {
		t.Fatalf("store down: %d %s %v", rp.status, rp.body, rp.header)
	}
	// Calls queued behind one that waits on the store wait no longer than it does: 503, not a
	// 504 at their 20 s deadline.
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if rp := h2.do("POST", "/v1/actors/counter/o2/slow-add", `{"by":1,"ms":0}`); rp.status != 503 || !strings.Contains(rp.body, CodeStoreUnavailable) {
				t.Errorf("queued call with the store down: %d %s", rp.status, rp.body)
			}
		}()
	}
	wg.Wait()
	store.down.Store(false)
	h2.do("POST", "/v1/actors/counter/o2/add", `{"by":1}`).want(t, 200, `{"value":1}`)
}

func TestWebSocketIdempotencyKey(t *testing.T) {
	h := newHarness(t, Config{})
	a := newTestActor()
	h.deploy(counterFn, a)
	for _, conn := range []int{1, 2} { // a repeat on a new connection is still a repeat
		c := dialWS(t, h, "/v1/actors/counter/ws/ws", nil)
		for range 2 {
			if err := c.WriteJSON(map[string]any{"id": conn, "action": "add", "payload": map[string]int{"by": 4}, "idempotency_key": "ws-1"}); err != nil {
				t.Fatal(err)
			}
			m := readJSON(t, c)
			if m["reply"].(map[string]any)["value"] != 4.0 {
				t.Fatalf("reply = %v", m)
			}
		}
		_ = c.WriteJSON(map[string]any{"id": "bad", "action": "add", "idempotency_key": strings.Repeat("k", 300)})
		if m := readJSON(t, c); m["error"].(map[string]any)["status"] != 400.0 {
			t.Fatalf("bad key answer = %v", m)
		}
	}
	c := dialWS(t, h, "/v1/actors/counter/ws/ws", nil)
	_ = c.WriteJSON(map[string]any{"id": 9, "action": "add", "payload": map[string]int{"by": 4}, "idempotency_key": "ws-1"})
	if m := readJSON(t, c); m["replayed"] != true {
		t.Fatalf("repeat over WebSocket = %v, want replayed", m)
	}
	if n := a.calls.Load(); n != 1 {
		t.Fatalf("the function ran %d times for one key", n)
	}
}

// Effects carry a key made from the committing turn's commit and their index: the target
// actor's record remembers it.
func TestEffectsCarryIdempotencyKeys(t *testing.T) {
	h := newHarness(t, Config{})
	h.deploy(counterFn, newTestActor())
	h.do("POST", "/v1/actors/counter/src/send", `{"to":"dst","by":5}`).want(t, 200, `{"value":1}`)
	proctest.Eventually(t, "the effect", func() bool {
		rp := h.do("GET", "/v1/actors/counter/dst", "")
		return rp.body == `{"value":5}` && rp.header.Get(HeaderRememberedKeys) == "1"
	})
	if k := effectKey("t1.1", 0); k != "effect:t1.1:0" || !record.ValidKey(k) {
		t.Fatalf("effect key %q", k)
	}
}

// hiddenLandingStore lands a write, lets another writer write on top of it, then reports the
// write unavailable: the retry finds someone else's commit, so the router cannot tell from the
// store whether its own write landed.
type hiddenLandingStore struct {
	statecache.Store
	hide  atomic.Int64 // writes still to hide
	other func()       // the other writer
}

func (s *hiddenLandingStore) Put(ctx context.Context, k statecache.Key, v []byte, expect statecache.Version, c statecache.Commit) (statecache.Version, error) {
	ver, err := s.Store.Put(ctx, k, v, expect, c)
	if err == nil && s.hide.Add(-1) >= 0 {
		s.other()
		return "", fmt.Errorf("test: answer lost: %w", statecache.ErrUnavailable)
	}
	return ver, err
}

// A write whose answer was lost and that another writer then wrote over: a keyless call cannot
// be re-run (it may have landed) and answers 503 saying so; a keyed call is re-run, finds its key
// in the record and replays. Either way each call is applied once.
func TestALandedWriteHiddenByAnotherWriterIsNotRunAgain(t *testing.T) {
	store := &hiddenLandingStore{Store: localStore(t)}
	a := newHarnessOn(t, Config{}, store)
	b := newHarnessOn(t, Config{}, store.Store)
	actor := newTestActor()
	a.deploy(counterFn, actor)
	b.deploy(counterFn, actor)
	store.other = func() { b.do("POST", "/v1/actors/counter/h/add", `{"by":10}`).want(t, 200, "") }

	store.hide.Store(1)
	rp := a.do("POST", "/v1/actors/counter/h/add", `{"by":1}`)
	if rp.status != 503 || !strings.Contains(rp.body, "outcome of the state write is unknown") {
		t.Fatalf("keyless call whose write was hidden: %d %s, want 503 outcome unknown", rp.status, rp.body)
	}
	b.do("GET", "/v1/actors/counter/h", "").want(t, 200, `{"value":11}`) // landed once, not re-run

	store.hide.Store(1)
	rp = a.do("POST", "/v1/actors/counter/h/add", `{"by":1}`, withKey("hidden")...)
	rp.want(t, 200, `{"value":12}`)
	if rp.header.Get(HeaderReplayed) != "true" {
		t.Fatalf("keyed call whose write was hidden was not answered from its record: %v", rp.header)
	}
	b.do("GET", "/v1/actors/counter/h", "").want(t, 200, `{"value":22}`)
}

func TestCallersCannotUseEffectKeys(t *testing.T) {
	h := newHarness(t, Config{})
	h.deploy(counterFn, newTestActor())
	rp := h.do("POST", "/v1/actors/counter/e/add", `{"by":1}`, withKey("effect:abc-1.1:0")...)
	if rp.status != 400 || !strings.Contains(rp.body, "the router's own") {
		t.Fatalf("a caller's effect key: %d %s, want 400", rp.status, rp.body)
	}
}

// storeCtx starts no timer until the store waits on it, and then bounds the wait by
// StoreTimeout or the call's own deadline, whichever comes first.
func TestStoreCtx(t *testing.T) {
	r := &Router{cfg: Config{StoreTimeout: 50 * time.Millisecond}}
	tests := []struct {
		name      string
		call      time.Duration // the call's own timeout (0: none)
		wantEarly bool          // the call's deadline comes first
	}{
		{"store timeout first", 0, false},
		{"call deadline first", 10 * time.Millisecond, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parent := context.Background()
			if tt.call > 0 {
				var cancel context.CancelFunc
				parent, cancel = context.WithTimeout(parent, tt.call)
				defer cancel()
			}
			sctx := r.newStoreCtx(parent)
			defer sctx.stop()
			d, ok := sctx.Deadline()
			pd, pok := parent.Deadline()
			if !ok || (tt.wantEarly && !d.Equal(pd)) || (!tt.wantEarly && pok && !d.Before(pd)) {
				t.Fatalf("deadline %v (%v), call's %v", d, ok, pd)
			}
			if sctx.cancel != nil {
				t.Fatal("a timer started before anything waited")
			}
			select {
			case <-sctx.Done():
			case <-time.After(5 * time.Second):
				t.Fatal("Done never closed")
			}
			if !errors.Is(sctx.Err(), context.DeadlineExceeded) {
				t.Fatalf("Err = %v", sctx.Err())
			}
		})
	}
	stopped := r.newStoreCtx(context.Background())
	stopped.stop()
	if stopped.cancel != nil || !errors.Is(stopped.Err(), context.Canceled) {
		t.Fatalf("after stop: timer started %v, Err %v", stopped.cancel != nil, stopped.Err())
	}
}
