package statecache_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/knactor/knactor/router/record"
	"github.com/knactor/knactor/statecache"
	"github.com/knactor/knactor/test/miniotest"
)

// testKey is the base64 of a 32-byte key derived from seed: distinct per seed, stable per run.
func testKey(seed string) string {
	sum := sha256.Sum256([]byte("knactor test key " + seed))
	return base64.StdEncoding.EncodeToString(sum[:])
}

// keyring parses "id:key" entries for the ids given, each with testKey(id).
func keyring(t testing.TB, ids ...string) *statecache.Keyring {
	t.Helper()
	var entries []string
	for _, id := range ids {
		entries = append(entries, id+":"+testKey(id))
	}
	kr, err := statecache.ParseKeyring(strings.Join(entries, ","))
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

func TestParseKeyring(t *testing.T) {
	k1, k2 := testKey("k1"), testKey("k2")
	raw, err := base64.StdEncoding.DecodeString(k1)
	if err != nil {
		t.Fatal(err)
	}
	short := base64.StdEncoding.EncodeToString(raw[:16])
	tests := []struct {
		name    string
		spec    string
		ids     []string // want, active first
		wantErr string   // a substring of the error; "" for success
		secret  string   // key material the error must not show
	}{
		{name: "one", spec: "k1:" + k1, ids: []string{"k1"}},
		{name: "comma separated", spec: "k2:" + k2 + ",k1:" + k1, ids: []string{"k2", "k1"}},
		{name: "newlines and blanks", spec: "\n  k2:" + k2 + "\n\tk1:" + k1 + " ,\n", ids: []string{"k2", "k1"}},
		{name: "unpadded", spec: "k1:" + strings.TrimRight(k1, "="), ids: []string{"k1"}},
		{name: "URL alphabet", spec: "k1:" + base64.URLEncoding.EncodeToString(raw), ids: []string{"k1"}},
		{name: "id characters", spec: "Prod_2026-01.a:" + k1, ids: []string{"Prod_2026-01.a"}},
		{name: "empty", spec: "", wantErr: "none given"},
		{name: "only separators", spec: " , \n", wantErr: "none given"},
		{name: "no id", spec: k1, wantErr: "entry #1 has no ':'", secret: k1},
		{name: "empty id", spec: ":" + k1, wantErr: "entry #1: key id must be 1 to 32 characters", secret: k1},
		{name: "long id", spec: strings.Repeat("a", 33) + ":" + k1, wantErr: "entry #1: key id must be 1 to 32", secret: k1},
		{name: "bad id", spec: "k1:" + k1 + ",k/2:" + k2, wantErr: "entry #2: key id holds a character", secret: k2},
		{name: "key pasted as id", spec: k1 + ":" + k2, wantErr: "entry #1: key id", secret: k1},
		{name: "duplicate id", spec: "k1:" + k1 + ",k2:" + k2 + ",k1:" + k2, wantErr: `entry #3: key id "k1" repeats entry #1`, secret: k2},
		{name: "bad base64", spec: "k1:" + k1 + ",k2:" + k2[:20] + "!!" + k2[22:], wantErr: `entry #2 (key "k2"): the key is not base64`, secret: k2[:20]},
		{name: "16-byte key", spec: "k1:" + short, wantErr: `entry #1 (key "k1"): the key is 16 bytes, want 32`, secret: short},
		{name: "64-byte key", spec: "k1:" + k1 + k1, wantErr: `the key is`, secret: k1},
		{name: "empty key", spec: "k1:", wantErr: `the key is 0 bytes`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kr, err := statecache.ParseKeyring(tt.spec)
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("ParseKeyring succeeded (%v), want an error with %q", kr, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %q, want it to contain %q", err, tt.wantErr)
				}
				for _, secret := range []string{tt.secret, k1[:8], k2[:8]} {
					if secret != "" && strings.Contains(err.Error(), secret) {
						t.Fatalf("error %q shows key material %q", err, secret)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := kr.IDs(); !equalStrings(got, tt.ids) || kr.Active() != tt.ids[0] {
				t.Fatalf("ids %v active %q, want %v", got, kr.Active(), tt.ids)
			}
			for _, s := range []string{fmt.Sprint(kr), fmt.Sprintf("%+v", kr), fmt.Sprintf("%#v", kr)} {
				if strings.Contains(s, k1[:8]) || strings.Contains(s, k2[:8]) || !strings.Contains(s, tt.ids[0]) {
					t.Fatalf("keyring formats as %q: want its ids, never its keys", s)
				}
			}
		})
	}
}

func equalStrings(a, b []string) bool { return strings.Join(a, "\x00") == strings.Join(b, "\x00") }

func TestSealOpen(t *testing.T) {
	a := statecache.Key{Function: "counter", ID: "a"}
	k1, k21, k2 := keyring(t, "k1"), keyring(t, "k2", "k1"), keyring(t, "k2")
	state := []byte(`{"value":42,"note":"plaintext marker"}`)
	sealedK1 := k1.Seal(a, state)
	flip := func(b []byte, i int) []byte {
		b = bytes.Clone(b)
		b[i] ^= 1
		return b
	}
	tests := []struct {
		name    string
		kr      *statecache.Keyring
		key     statecache.Key
		stored  []byte
		want    []byte
		wantErr error  // errors.Is
		missing string // the key id a *KeyMissingError names
	}{
		{name: "round trip", kr: k1, key: a, stored: sealedK1, want: state},
		{name: "empty state", kr: k1, key: a, stored: k1.Seal(a, []byte{}), want: []byte{}},
		{name: "older key after rotation", kr: k21, key: a, stored: sealedK1, want: state},
		{name: "new active key", kr: k21, key: a, stored: k21.Seal(a, state), want: state},
		{name: "another actor's value", kr: k1, key: statecache.Key{Function: "counter", ID: "b"}, stored: sealedK1, wantErr: statecache.ErrSealBroken},
		{name: "another function's value", kr: k1, key: statecache.Key{Function: "counters", ID: "a"}, stored: sealedK1, wantErr: statecache.ErrSealBroken},
		{name: "id boundary moved", kr: k1, key: statecache.Key{Function: "counter", ID: "a"}, stored: k1.Seal(statecache.Key{Function: "counter", ID: "a/"}, state), wantErr: statecache.ErrSealBroken},
		{name: "ciphertext flipped", kr: k1, key: a, stored: flip(sealedK1, len(sealedK1)-20), wantErr: statecache.ErrSealBroken},
		{name: "tag flipped", kr: k1, key: a, stored: flip(sealedK1, len(sealedK1)-1), wantErr: statecache.ErrSealBroken},
		{name: "nonce flipped", kr: k1, key: a, stored: flip(sealedK1, 9), wantErr: statecache.ErrSealBroken},
		{name: "truncated", kr: k1, key: a, stored: sealedK1[:len(sealedK1)-1], wantErr: statecache.ErrSealBroken},
		{name: "header only", kr: k1, key: a, stored: sealedK1[:8], wantErr: statecache.ErrSealBroken},
		{name: "magic only", kr: k1, key: a, stored: sealedK1[:5], wantErr: statecache.ErrSealBroken},
		{name: "retired key", kr: k2, key: a, stored: sealedK1, wantErr: statecache.ErrKeyMissing, missing: "k1"},
		{name: "no keyring", kr: nil, key: a, stored: sealedK1, wantErr: statecache.ErrKeyMissing, missing: "k1"},
		{name: "legacy plaintext", kr: k1, key: a, stored: state, want: state},
		{name: "legacy record form", kr: k1, key: a, stored: []byte("\x00KNR\x02\x01\x00\x00"), want: []byte("\x00KNR\x02\x01\x00\x00")},
		{name: "plaintext without keyring", kr: nil, key: a, stored: state, want: state},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.kr.Open(tt.key, tt.stored)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, tt.want) || got == nil {
					t.Fatalf("opened %q, want %q", got, tt.want)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) || got != nil {
				t.Fatalf("Open = %q, %v; want %v", got, err, tt.wantErr)
			}
			var km *statecache.KeyMissingError
			if tt.missing != "" {
				if !errors.As(err, &km) || km.KeyID != tt.missing || km.Key != tt.key ||
					!strings.Contains(err.Error(), `"`+tt.missing+`"`) || !strings.Contains(err.Error(), "counter/a") {
					t.Fatalf("error %v (%#v), want a KeyMissingError naming key %q and the actor", err, km, tt.missing)
				}
			} else if errors.As(err, &km) {
				t.Fatalf("a broken seal reported as a missing key: %v", err)
			}
		})
	}

	t.Run("sealing hides the state and varies", func(t *testing.T) {
		s1, s2 := k1.Seal(a, state), k1.Seal(a, state)
		if bytes.Contains(s1, []byte("plaintext marker")) || bytes.Equal(s1, s2) {
			t.Fatalf("sealed %q and %q: want no plaintext and a fresh nonce per seal", s1, s2)
		}
		if id, ok := statecache.SealedKeyID(s1); !ok || id != "k1" {
			t.Fatalf("SealedKeyID = %q, %v", id, ok)
		}
		if id, ok := statecache.SealedKeyID(k21.Seal(a, state)); !ok || id != "k2" {
			t.Fatalf("the active key after rotation: SealedKeyID = %q, %v", id, ok)
		}
		if _, ok := statecache.SealedKeyID(state); ok {
			t.Fatal("plaintext reported as sealed")
		}
		var none *statecache.Keyring
		if got := none.Seal(a, state); !bytes.Equal(got, state) {
			t.Fatalf("a nil keyring sealed: %q", got)
		}
	})
}

// TestSealedNeverMistakenForRecords: no value the router stores in plaintext (a bare state or a
// record, router/record) starts like a sealed value, and a sealed value handed to the record
// decoder is refused rather than read as a state.
func TestSealedNeverMistakenForRecords(t *testing.T) {
	a := statecache.Key{Function: "counter", ID: "a"}
	sealed := keyring(t, "k1").Seal(a, []byte(`{"v":1}`))
	for _, state := range [][]byte{[]byte(`{"v":1}`), sealed, sealed[:5], []byte("\x00KNR"), []byte("\x00KNR\x01")} {
		r := record.Record{State: state, HasState: true}
		if _, ok := statecache.SealedKeyID(r.Value()); ok {
			t.Fatalf("the record of state %q is stored as %q, which reads as sealed", state, r.Value())
		}
		if plain, err := (*statecache.Keyring)(nil).Open(a, r.Value()); err != nil || !bytes.Equal(plain, r.Value()) {
			t.Fatalf("the record of state %q does not pass through Open: %q, %v", state, plain, err)
		}
	}
	if rec, err := record.Decode(sealed, true); !errors.Is(err, record.ErrCorrupt) {
		t.Fatalf("record.Decode read a sealed value as %+v, %v; want ErrCorrupt", rec, err)
	}
}

// storeUnderTest is a real store the encryption tests write through and then read raw.
type storeUnderTest struct {
	statecache.Store
	dir     string             // where its bytes are on disk
	restart func(t *testing.T) // closes and reopens the store (a router restart)
}

// sealStore opens a store of its own for one test.
type sealStore struct {
	name string
	open func(t *testing.T) *storeUnderTest
}

// sealStores are the stores of the encryption tests: the local store (Pebble) and S3 (MinIO,
// started on first use and shared by the subtests of t, each under a prefix of its own).
func sealStores(t *testing.T) []sealStore {
	var srv *miniotest.Server
	var n int
	return []sealStore{
		{"local", func(t *testing.T) *storeUnderTest {
			dir := t.TempDir()
			u := &storeUnderTest{dir: dir}
			var cur *statecache.PebbleStore
			open := func(t *testing.T) {
				s, err := statecache.OpenPebbleStore(dir, statecache.PebbleOptions{})
				if err != nil {
					t.Fatal(err)
				}
				cur, u.Store = s, s
			}
			open(t)
			t.Cleanup(func() { cur.Close() })
			u.restart = func(t *testing.T) {
				if err := cur.Close(); err != nil {
					t.Fatal(err)
				}
				open(t)
			}
			return u
		}},
		{"minio", func(st *testing.T) *storeUnderTest {
			if testing.Short() {
				// Skip the subtest itself: miniotest.Start skipping the parent from here would
				// end the subtest's goroutine with the parent's FailNow.
				st.Skip("needs a real MinIO server; run without -short")
			}
			if srv == nil {
				srv = miniotest.Start(t) // the parent's: it outlives each subtest
			}
			n++
			cfg := s3Config(srv, fmt.Sprintf("seal%d/", n))
			u := &storeUnderTest{dir: srv.DataDir}
			u.restart = func(t *testing.T) {
				s, err := statecache.OpenS3Store(context.Background(), cfg)
				if err != nil {
					t.Fatal(err)
				}
				u.Store = s
			}
			u.restart(t)
			return u
		}},
	}
}

// onDisk returns the files under dir that hold marker.
func onDisk(t *testing.T, dir, marker string) []string {
	t.Helper()
	var found []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) { // removed while walking (a compaction, a temp file)
			return nil
		}
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if bytes.Contains(b, []byte(marker)) {
			found = append(found, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

func newSealCache(t *testing.T, store statecache.Store, mode statecache.WriteMode, keys *statecache.Keyring) *statecache.Cache {
	t.Helper()
	c, err := statecache.NewCache(store, statecache.Config{Mode: mode, Keys: keys, FlushInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func closeCache(t *testing.T, c *statecache.Cache) {
	t.Helper()
	if err := c.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// put writes value as key's next version through c.
func put(t *testing.T, c *statecache.Cache, key statecache.Key, value string) {
	t.Helper()
	ctx := context.Background()
	cur, err := c.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Put(ctx, key, []byte(value), cur.Version, statecache.NoCommit); err != nil {
		t.Fatal(err)
	}
}

func wantState(t *testing.T, c *statecache.Cache, key statecache.Key, want string) {
	t.Helper()
	e, err := c.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("read %s: %v", key, err)
	}
	if !e.Exists || string(e.Value) != want {
		t.Fatalf("read %s: %q (exists %v), want %q", key, e.Value, e.Exists, want)
	}
}

// rawValue is key's value as the store holds it.
func rawValue(t *testing.T, s statecache.Store, key statecache.Key) []byte {
	t.Helper()
	e, err := s.Get(context.Background(), key)
	if err != nil || !e.Exists {
		t.Fatalf("raw read of %s: %v (exists %v)", key, err, e.Exists)
	}
	return e.Value
}

// rawKeyID returns the id of the key that seals key's stored value ("" if not sealed).
func rawKeyID(t *testing.T, s statecache.Store, key statecache.Key) string {
	t.Helper()
	id, _ := statecache.SealedKeyID(rawValue(t, s, key))
	return id
}

var writeModes = []statecache.WriteMode{statecache.WriteThrough, statecache.WriteBehind}

// TestEncryptedAtRest writes state with a distinctive marker through a Cache with keys, on the
// local store and on MinIO, in both write modes, and finds the marker neither in the values the
// store returns nor anywhere in its files, while the cache reads the state back, also after a
// restart. A value written without keys beside it is found on disk: the scan sees what is
// stored.
func TestEncryptedAtRest(t *testing.T) {
	keys := keyring(t, "k1")
	for _, st := range sealStores(t) {
		for _, mode := range writeModes {
			t.Run(st.name+"/"+mode.String(), func(t *testing.T) {
				s := st.open(t)
				secret := fmt.Sprintf("SECRET-%s-%s-q7Zx3", st.name, mode)
				control := fmt.Sprintf("CONTROL-%s-%s-p2Wv8", st.name, mode)
				state := func(i int) string { return fmt.Sprintf(`{"n":%d,"note":"%s","again":true}`, i, secret) }

				plain := newSealCache(t, s, mode, nil)
				put(t, plain, statecache.Key{Function: "control", ID: "c"}, `{"note":"`+control+`"}`)
				closeCache(t, plain)

				c := newSealCache(t, s, mode, keys)
				var actors []statecache.Key
				for i := range 20 {
					k := statecache.Key{Function: "counter", ID: fmt.Sprintf("actor-%d", i)}
					actors = append(actors, k)
					put(t, c, k, fmt.Sprintf(`{"n":%d,"note":"%s"}`, i, secret))
					if mode == statecache.WriteBehind && i%2 == 0 {
						if err := c.Flush(context.Background()); err != nil { // a flushed, then rewritten value
							t.Fatal(err)
						}
					}
					put(t, c, k, state(i))
				}
				for i, k := range actors {
					wantState(t, c, k, state(i))
				}
				closeCache(t, c) // flushes write-behind

				for _, k := range actors {
					v := rawValue(t, s, k)
					if bytes.Contains(v, []byte(secret)) || bytes.Contains(v, []byte(`"note"`)) {
						t.Fatalf("the store returns %s's plaintext: %q", k, v)
					}
					if id, ok := statecache.SealedKeyID(v); !ok || id != "k1" {
						t.Fatalf("%s stored sealed with %q (%v), want k1", k, id, ok)
					}
				}
				s.restart(t) // the local store's files are complete once it is closed
				if found := onDisk(t, s.dir, control); len(found) == 0 {
					t.Fatalf("the plaintext control value is in no file under %s: the scan cannot see stored values", s.dir)
				}
				if found := onDisk(t, s.dir, secret); len(found) > 0 {
					t.Fatalf("the plaintext of sealed state is on disk in %v", found)
				}

				c = newSealCache(t, s, mode, keys)
				defer closeCache(t, c)
				for i, k := range actors {
					wantState(t, c, k, state(i))
				}
				if got := c.Stats(); got.Misses != uint64(len(actors)) || got.PlaintextReads != 0 {
					t.Fatalf("stats %+v: want every read from the store and none in plaintext", got)
				}
			})
		}
	}
}

// TestEncryptionKeyRotation rotates keys over restarts, on both stores and in both write modes:
// k1 alone; then k2 (active) and k1, which reads k1's values and seals new writes with k2; then
// k2 alone, which refuses a value still sealed with k1 with a KeyMissingError naming k1 (the
// other values still read, nothing is cached for the refused one, and with k1 back it reads).
func TestEncryptionKeyRotation(t *testing.T) {
	ctx := context.Background()
	kr1, kr21, kr2 := keyring(t, "k1"), keyring(t, "k2", "k1"), keyring(t, "k2")
	a := statecache.Key{Function: "counter", ID: "a"}     // written with k1, rewritten with k2
	b := statecache.Key{Function: "counter", ID: "b"}     // written with k1 only
	c := statecache.Key{Function: "counter", ID: "c"}     // created with k2
	old := statecache.Key{Function: "counter", ID: "old"} // written before encryption
	for _, st := range sealStores(t) {
		for _, mode := range writeModes {
			t.Run(st.name+"/"+mode.String(), func(t *testing.T) {
				s := st.open(t)
				restart := func(cache *statecache.Cache, keys *statecache.Keyring) *statecache.Cache {
					closeCache(t, cache)
					s.restart(t)
					return newSealCache(t, s, mode, keys)
				}

				cache := newSealCache(t, s, mode, nil)
				put(t, cache, old, `{"v":"legacy"}`)

				cache = restart(cache, kr1)
				put(t, cache, a, `{"v":"a1"}`)
				put(t, cache, b, `{"v":"b1"}`)
				wantState(t, cache, old, `{"v":"legacy"}`)
				if n := cache.Stats().PlaintextReads; n != 1 {
					t.Fatalf("%d plaintext reads counted, want 1", n)
				}

				cache = restart(cache, kr21)
				for k, id := range map[statecache.Key]string{a: "k1", b: "k1", old: ""} {
					if got := rawKeyID(t, s, k); got != id {
						t.Fatalf("%s is sealed with %q, want %q", k, got, id)
					}
				}
				wantState(t, cache, a, `{"v":"a1"}`)
				wantState(t, cache, b, `{"v":"b1"}`)
				put(t, cache, a, `{"v":"a2"}`)
				put(t, cache, c, `{"v":"c2"}`)
				put(t, cache, old, `{"v":"no longer legacy"}`)

				cache = restart(cache, kr2)
				for k, id := range map[statecache.Key]string{a: "k2", b: "k1", c: "k2", old: "k2"} {
					if got := rawKeyID(t, s, k); got != id {
						t.Fatalf("%s is sealed with %q, want %q", k, got, id)
					}
				}
				wantState(t, cache, a, `{"v":"a2"}`)
				wantState(t, cache, c, `{"v":"c2"}`)
				wantState(t, cache, old, `{"v":"no longer legacy"}`)
				before := rawValue(t, s, b)
				for range 2 { // the failed read cached nothing: the second fails the same way
					e, err := cache.Get(ctx, b)
					var km *statecache.KeyMissingError
					if !errors.As(err, &km) || !errors.Is(err, statecache.ErrKeyMissing) || km.KeyID != "k1" || km.Key != b ||
						!strings.Contains(err.Error(), `encryption key "k1"`) {
						t.Fatalf("read of %s sealed with a retired key: %+v, %v; want a KeyMissingError naming k1", b, e, err)
					}
					if e.Exists || e.Value != nil {
						t.Fatalf("a failed read returned state %+v", e)
					}
				}
				// A write needs the current version, which it cannot get without the key.
				if _, err := cache.Put(ctx, b, []byte(`{"v":"lost"}`), statecache.NoVersion, statecache.NoCommit); err == nil && mode == statecache.WriteBehind {
					t.Fatal("write-behind buffered a write over a value it cannot read")
				}
				if err := cache.Flush(ctx); err != nil {
					t.Fatal(err)
				}
				if after := rawValue(t, s, b); !bytes.Equal(after, before) {
					t.Fatalf("%s changed while its key was missing", b)
				}

				// Without any keys a sealed value is refused too, never returned as state.
				cache = restart(cache, nil)
				if _, err := cache.Get(ctx, a); !errors.Is(err, statecache.ErrKeyMissing) || !strings.Contains(err.Error(), `"k2"`) {
					t.Fatalf("read of a sealed value without keys: %v; want a KeyMissingError naming k2", err)
				}

				// With k1 configured again, b reads as it was.
				cache = restart(cache, kr21)
				defer closeCache(t, cache)
				wantState(t, cache, b, `{"v":"b1"}`)
			})
		}
	}
}

// TestRevalidatedReadsOpen: a revalidating cache (several routers on one bucket) opens what it
// reads when another writer changed the key, and forgets its stale entry when that does not open.
func TestRevalidatedReadsOpen(t *testing.T) {
	srv := miniotest.Start(t)
	store, err := statecache.OpenS3Store(context.Background(), s3Config(srv, "revalidate-seal/"))
	if err != nil {
		t.Fatal(err)
	}
	k := statecache.Key{Function: "counter", ID: "a"}
	newCache := func(keys *statecache.Keyring) *statecache.Cache {
		c, err := statecache.NewCache(store, statecache.Config{Revalidate: true, Keys: keys})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { closeCache(t, c) })
		return c
	}
	reader, writer, rotated := newCache(keyring(t, "k1")), newCache(keyring(t, "k1")), newCache(keyring(t, "k9", "k1"))
	put(t, writer, k, `{"v":1}`)
	wantState(t, reader, k, `{"v":1}`)
	put(t, writer, k, `{"v":2}`)
	wantState(t, reader, k, `{"v":2}`) // changed under it: read again, and opened
	if st := reader.Stats(); st.Misses != 2 {
		t.Fatalf("reader stats %+v: want both reads from the store", st)
	}
	put(t, rotated, k, `{"v":3}`)
	if got := rawKeyID(t, store, k); got != "k9" {
		t.Fatalf("stored with %q, want k9", got)
	}
	// The reader lacks k9: its revalidation finds a value it cannot open, and neither that
	// nor its stale entry is returned, now or at the next read.
	for range 2 {
		if e, err := reader.Get(context.Background(), k); !errors.Is(err, statecache.ErrKeyMissing) || e.Value != nil {
			t.Fatalf("revalidated read without k9: %q, %v; want ErrKeyMissing", e.Value, err)
		}
	}
}

// BenchmarkSeal and BenchmarkOpen measure what encryption at rest adds to one store write and
// one store read (docs/storage.md).
func BenchmarkSeal(b *testing.B) {
	kr := keyring(b, "k1")
	key := statecache.Key{Function: "counter", ID: "user-12345"}
	for _, size := range []int{100, 4 << 10} {
		state := bytes.Repeat([]byte("x"), size)
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				kr.Seal(key, state)
			}
		})
	}
}

func BenchmarkOpen(b *testing.B) {
	kr := keyring(b, "k1")
	key := statecache.Key{Function: "counter", ID: "user-12345"}
	for _, size := range []int{100, 4 << 10} {
		sealed := kr.Seal(key, bytes.Repeat([]byte("x"), size))
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := kr.Open(key, sealed); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
