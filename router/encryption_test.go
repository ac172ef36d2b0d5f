package router

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

	"github.com/knactor/knactor/statecache"
)

// encryptedState returns an Options change that serves state from a cache over store sealed with
// the keys named (active first), each id's key from keys.
func encryptedState(t *testing.T, store statecache.Store, keys map[string]string, ids ...string) func(*Options) {
	t.Helper()
	var spec []string
	for _, id := range ids {
		spec = append(spec, id+":"+keys[id])
	}
	kr, err := statecache.ParseKeyring(strings.Join(spec, ","))
	if err != nil {
		t.Fatal(err)
	}
	cache, err := statecache.NewCache(store, statecache.Config{Keys: kr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cache.Close(context.Background()) })
	return func(o *Options) { o.State = cache }
}

// TestEncryptionKeyMissingAnswers503: a call on an actor whose stored state is sealed with a key
// the router lacks answers 503 encryption_key_missing naming the key, runs nothing and changes
// nothing; a value that does not decrypt answers 503 state_unreadable; with the key back the
// state is there as it was.
func TestEncryptionKeyMissingAnswers503(t *testing.T) {
	keys := map[string]string{}
	for _, id := range []string{"k1", "k2"} {
		b := make([]byte, 32)
		rand.Read(b)
		keys[id] = base64.StdEncoding.EncodeToString(b)
	}
	store := localStore(t)
	a, c := statecache.Key{Function: "counter", ID: "a"}, statecache.Key{Function: "counter", ID: "c"}

	h1 := newHarnessOn(t, Config{}, store, encryptedState(t, store, keys, "k1"))
	h1.deploy(counterFn, newTestActor())
	h1.do("POST", "/v1/actors/counter/a/add", `{"by":7}`).want(t, 200, `{"value":7}`)
	h1.shutdown()
	raw := func(k statecache.Key) []byte {
		e, err := store.Get(context.Background(), k)
		if err != nil || !e.Exists {
			t.Fatalf("raw read of %s: %v", k, err)
		}
		return e.Value
	}
	before := raw(a)
	if id, ok := statecache.SealedKeyID(before); !ok || id != "k1" {
		t.Fatalf("stored value of %s is not sealed with k1: %q", a, before)
	}
	// c gets a's sealed bytes: a valid seal, for another actor.
	if _, err := store.Put(context.Background(), c, before, statecache.NoVersion, statecache.NoCommit); err != nil {
		t.Fatal(err)
	}

	h2 := newHarnessOn(t, Config{}, store, encryptedState(t, store, keys, "k2"))
	actor := newTestActor()
	h2.deploy(counterFn, actor)
	for _, req := range []struct{ method, path, body string }{
		{"POST", "/v1/actors/counter/a/add", `{"by":1}`},
		{"POST", "/v1/actors/counter/a/add", `{"by":1}`}, // the failure cached nothing
		{"GET", "/v1/actors/counter/a", ""},
		{"DELETE", "/v1/actors/counter/a", ""},
	} {
		rp := h2.do(req.method, req.path, req.body)
		var body struct {
			Error struct{ Code, Message string }
		}
		_ = json.Unmarshal([]byte(rp.body), &body)
		if rp.status != 503 || body.Error.Code != CodeEncryptionKeyMissing || !strings.Contains(body.Error.Message, `"k1"`) ||
			rp.header.Get("Retry-After") == "" {
			t.Fatalf("%s %s: %d %s; want 503 %s naming key k1", req.method, req.path, rp.status, rp.body, CodeEncryptionKeyMissing)
		}
		if strings.Contains(rp.body, keys["k1"][:8]) || strings.Contains(rp.body, keys["k2"][:8]) {
			t.Fatalf("the answer shows key material: %s", rp.body)
		}
	}
	if n := actor.calls.Load(); n != 0 {
		t.Fatalf("the function ran %d times on state it could not be given", n)
	}
	if after := raw(a); !bytes.Equal(after, before) {
		t.Fatal("the stored state changed while its key was missing")
	}
	h2.shutdown()

	h3 := newHarnessOn(t, Config{}, store, encryptedState(t, store, keys, "k2", "k1"))
	h3.deploy(counterFn, newTestActor())
	rp := h3.do("POST", "/v1/actors/counter/c/add", `{"by":1}`)
	if rp.status != 503 || !strings.Contains(rp.body, `"code":"`+CodeStateUnreadable+`"`) {
		t.Fatalf("another actor's sealed state: %d %s; want 503 %s", rp.status, rp.body, CodeStateUnreadable)
	}
	h3.do("GET", "/v1/actors/counter/a", "").want(t, 200, `{"value":7}`)
	h3.do("POST", "/v1/actors/counter/a/add", `{"by":1}`).want(t, 200, `{"value":8}`)
	if id, _ := statecache.SealedKeyID(raw(a)); id != "k2" {
		t.Fatalf("rewritten with key %q, want k2", id)
	}
}
