package record

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)

func entry(key string, at time.Time, reply string) Entry {
	return Entry{Key: key, Digest: DigestOf("add", []byte(key)), At: at, Status: 200, Reply: []byte(reply)}
}

var roomy = Limits{Keys: 1000, TTL: 1000 * time.Hour, Bytes: 1 << 30}

// withKeys returns a record with state (when hasState) and the entries remembered in order.
func withKeys(state string, hasState bool, entries ...Entry) *Record {
	r := &Record{HasState: hasState}
	if hasState {
		r.State = []byte(state)
	}
	for _, e := range entries {
		r.Remember(e, roomy)
	}
	return r
}

func roundTrip(t *testing.T, r Record) Record {
	t.Helper()
	b := r.Append(nil)
	got, err := Decode(b, true)
	if err != nil {
		t.Fatalf("Decode(Append(%+v)): %v", r, err)
	}
	return got
}

func TestBareStateStaysBare(t *testing.T) {
	tests := []struct {
		name  string
		state []byte
		bare  bool
	}{
		{"json", []byte(`{"value":1}`), true},
		{"empty", []byte{}, true},
		{"binary", []byte{1, 2, 3, 0}, true},
		{"starts like a record", append(append([]byte{}, magic...), 1, 1, 0, 0), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Record{State: tt.state, HasState: true}
			b := r.Append(nil)
			if got := bytes.Equal(b, tt.state); got != tt.bare {
				t.Fatalf("stored as bare state: %v, want %v (%q)", got, tt.bare, b)
			}
			got := roundTrip(t, r)
			if !got.HasState || !bytes.Equal(got.State, tt.state) || got.Keys() != 0 {
				t.Fatalf("round trip = %+v, want state %q and no keys", got, tt.state)
			}
		})
	}
}

func TestDecodeOfWhatStoresHold(t *testing.T) {
	tests := []struct {
		name     string
		value    []byte
		exists   bool
		hasState bool
		state    string
	}{
		{"absent key", nil, false, false, ""},
		{"state written before records", []byte(`{"value":7}`), true, true, `{"value":7}`},
		{"keys but no state", withKeys("", false, entry("k", t0, "1")).Append(nil), true, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := Decode(tt.value, tt.exists)
			if err != nil {
				t.Fatal(err)
			}
			if r.HasState != tt.hasState || string(r.State) != tt.state {
				t.Fatalf("got state %q (has %v), want %q (has %v)", r.State, r.HasState, tt.state, tt.hasState)
			}
		})
	}
}

func TestKeysRoundTripAndFind(t *testing.T) {
	lim := Limits{Keys: 10, TTL: time.Hour, Bytes: 1 << 20}
	r := Record{State: []byte(`{"value":2}`), HasState: true}
	r.Remember(entry("a", t0, `{"value":1}`), lim)
	raw := entry("b", t0.Add(time.Minute), "\x00\xff")
	raw.RawReply, raw.Status = true, 200
	r.Remember(raw, lim)
	got := roundTrip(t, r)
	if string(got.State) != `{"value":2}` || got.Keys() != 2 {
		t.Fatalf("round trip: state %q keys %d", got.State, got.Keys())
	}
	tests := []struct {
		name  string
		key   string
		now   time.Time
		found bool
		reply string
		raw   bool
	}{
		{"remembered", "a", t0.Add(time.Minute), true, `{"value":1}`, false},
		{"raw reply", "b", t0.Add(time.Minute), true, "\x00\xff", true},
		{"unknown", "c", t0, false, "", false},
		{"expired", "a", t0.Add(time.Hour), false, "", false},
		{"just before expiry", "a", t0.Add(time.Hour - time.Nanosecond), true, `{"value":1}`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, ok := got.Find(tt.key, tt.now, lim.TTL)
			if ok != tt.found {
				t.Fatalf("found %v, want %v", ok, tt.found)
			}
			if !ok {
				return
			}
			if string(e.Reply) != tt.reply || e.RawReply != tt.raw || e.Status != 200 ||
				e.Digest != DigestOf("add", []byte(tt.key)) || !e.At.Equal(map[string]time.Time{"a": t0, "b": t0.Add(time.Minute)}[tt.key]) {
				t.Fatalf("entry = %+v", e)
			}
		})
	}
}

func TestPrune(t *testing.T) {
	tests := []struct {
		name string
		lim  Limits
		add  int           // entries added a second apart, key "0", "1", ...
		size int           // reply bytes of each
		now  time.Duration // after t0, for the final Prune
		want []string      // keys left, oldest first
	}{
		{"under every limit", Limits{Keys: 5, TTL: time.Hour, Bytes: 1 << 20}, 3, 1, 0, []string{"0", "1", "2"}},
		{"count keeps the newest", Limits{Keys: 2, TTL: time.Hour, Bytes: 1 << 20}, 5, 1, 0, []string{"3", "4"}},
		{"age drops the old", Limits{Keys: 10, TTL: 3 * time.Second, Bytes: 1 << 20}, 5, 1, 5 * time.Second, []string{"3", "4"}},
		{"bytes keep what fits", Limits{Keys: 10, TTL: time.Hour, Bytes: 250}, 5, 60, 0, []string{"3", "4"}},
		{"the newest stays however large", Limits{Keys: 10, TTL: time.Hour, Bytes: 10}, 3, 100, 0, []string{"2"}},
		{"everything expired", Limits{Keys: 10, TTL: time.Second, Bytes: 1 << 20}, 3, 1, time.Hour, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r Record
			for i := range tt.add {
				r.Remember(entry(strconv.Itoa(i), t0.Add(time.Duration(i)*time.Second), strings.Repeat("x", tt.size)), tt.lim)
			}
			r.Prune(t0.Add(tt.now), tt.lim)
			var keys []string
			got := roundTrip(t, r)
			for _, e := range got.Entries() {
				keys = append(keys, e.Key)
			}
			if strings.Join(keys, ",") != strings.Join(tt.want, ",") {
				t.Fatalf("keys %v, want %v", keys, tt.want)
			}
			if len(tt.want) == 0 && !r.Empty() {
				t.Fatalf("a record without state or keys is not Empty")
			}
		})
	}
}

func TestRememberReplacesAnExpiredKey(t *testing.T) {
	lim := Limits{Keys: 10, TTL: time.Minute, Bytes: 1 << 20}
	var r Record
	r.Remember(entry("k", t0, "old"), lim)
	r.Remember(entry("k", t0.Add(2*time.Minute), "new"), lim)
	if r.Keys() != 1 {
		t.Fatalf("%d entries for one key", r.Keys())
	}
	if e, ok := r.Find("k", t0.Add(2*time.Minute), lim.TTL); !ok || string(e.Reply) != "new" {
		t.Fatalf("Find = %+v %v, want the new entry", e, ok)
	}
}

func TestCorruptRecords(t *testing.T) {
	good := withKeys("s", true, entry("k", t0, "r")).Append(nil)
	tests := map[string][]byte{
		"unknown format":    append(append([]byte{}, magic...), 9),
		"header only":       magic,
		"truncated state":   append(append([]byte{}, magic...), 1, 1, 10, 'a'),
		"too many entries":  append(append([]byte{}, magic...), 1, 0, 0, 200),
		"trailing bytes":    append(append([]byte{}, good...), 0),
		"truncated entries": good[:len(good)-3],
	}
	for name, b := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := Decode(b, true); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Decode: err = %v, want ErrCorrupt", err)
			}
		})
	}
}

func TestValidKey(t *testing.T) {
	tests := []struct {
		key  string
		want bool
	}{
		{"", false},
		{"a", true},
		{"8e03978e-40d5-43e8-bc93-6894a57f9324", true},
		{"with space and ~!@#", true},
		{strings.Repeat("k", MaxKeyLen), true},
		{strings.Repeat("k", MaxKeyLen+1), false},
		{"tab\there", false},
		{"ünicode", false},
		{"del\x7f", false},
	}
	for _, tt := range tests {
		if got := ValidKey(tt.key); got != tt.want {
			t.Errorf("ValidKey(%q) = %v, want %v", tt.key, got, tt.want)
		}
	}
}

func TestDigestSeparatesActionFromPayload(t *testing.T) {
	if DigestOf("ab", []byte("c")) == DigestOf("a", []byte("bc")) {
		t.Fatal("action and payload run together in the digest")
	}
	if DigestOf("add", []byte(`{"by":1}`)) != DigestOf("add", []byte(`{"by":1}`)) {
		t.Fatal("digest is not deterministic")
	}
}

// FuzzDecode: no input makes Decode panic, and whatever decodes encodes to a value that decodes
// the same.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"value":1}`))
	f.Add(withKeys("s", true, entry("k", t0, "r"), entry("k2", t0, "r2")).Append(nil))
	f.Add(append(append([]byte{}, magic...), 1, 0, 0, 1))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := Decode(b, true)
		if err != nil {
			return
		}
		again, err := Decode(r.Append(nil), true)
		if err != nil {
			t.Fatalf("re-encoded record does not decode: %v", err)
		}
		if again.HasState != r.HasState || !bytes.Equal(again.State, r.State) || again.Keys() != r.Keys() ||
			len(again.Entries()) != len(r.Entries()) {
			t.Fatalf("round trip changed the record: %+v → %+v", r, again)
		}
	})
}

// BenchmarkKeyedTurn is what a keyed call costs the router's record handling on an actor that
// remembers DefaultKeys keys: decode, look the key up (a miss), remember it, encode.
func BenchmarkKeyedTurn(b *testing.B) {
	lim := Limits{Keys: DefaultKeys, TTL: DefaultTTL, Bytes: DefaultKeyBytes}
	r := Record{State: []byte(`{"value":1}`), HasState: true}
	for i := range DefaultKeys {
		r.Remember(entry("8e03978e-40d5-43e8-bc93-"+strconv.Itoa(100000+i), t0, `{"value":1}`), lim)
	}
	value := r.Append(nil)
	b.ReportAllocs()
	b.SetBytes(int64(len(value)))
	for i := 0; b.Loop(); i++ {
		rec, err := Decode(value, true)
		if err != nil {
			b.Fatal(err)
		}
		key := "8e03978e-40d5-43e8-bc93-" + strconv.Itoa(200000+i)
		if _, ok := rec.Find(key, t0, lim.TTL); ok {
			b.Fatal("found a new key")
		}
		rec.Remember(entry(key, t0, `{"value":2}`), lim)
		value = rec.Append(value[:0:0])
	}
}
