package statecache

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestDueNameRoundTrip(t *testing.T) {
	long := strings.Repeat("x", MaxIDBytes)
	tests := []struct {
		name     string
		due      Due
		wantName string
		wantAt   time.Time // what the name keeps of due.At
		hashed   bool      // the name holds the id's hash: only ParseDueName with the id recovers it
	}{
		{"plain", Due{At: time.UnixMilli(0x18f2a3b4c5d), Key: Key{Function: "counter", ID: "alice"}},
			"0000018f2a3b4c5d/counter/alice", time.UnixMilli(0x18f2a3b4c5d), false},
		{"below a millisecond is dropped", Due{At: time.UnixMilli(5).Add(999 * time.Microsecond), Key: Key{Function: "counter", ID: "alice"}},
			"0000000000000005/counter/alice", time.UnixMilli(5), false},
		{"escaped id", Due{At: time.UnixMilli(1), Key: Key{Function: "counter", ID: "a/b c"}},
			"0000000000000001/counter/a%2Fb%20c", time.UnixMilli(1), false},
		{"unicode id", Due{At: time.UnixMilli(1), Key: Key{Function: "counter", ID: "é"}},
			"0000000000000001/counter/%C3%A9", time.UnixMilli(1), false},
		{"before the epoch is kept at the epoch", Due{At: time.Unix(-3600, 0), Key: Key{Function: "counter", ID: "old"}},
			"0000000000000000/counter/old", time.UnixMilli(0), false},
		{"the zero time is kept at the epoch", Due{Key: Key{Function: "counter", ID: "zero"}},
			"0000000000000000/counter/zero", time.UnixMilli(0), false},
		{"hashed id", Due{At: time.UnixMilli(0xabc), Key: Key{Function: "counter", ID: long}},
			"0000000000000abc/counter/" + idSegment(long), time.UnixMilli(0xabc), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name, err := DueName(tt.due)
			if err != nil {
				t.Fatal(err)
			}
			if name != tt.wantName {
				t.Fatalf("DueName = %q, want %q", name, tt.wantName)
			}
			check := func(what string, got Due, err error) {
				t.Helper()
				if err != nil {
					t.Fatalf("%s: %v", what, err)
				}
				if got.Key != tt.due.Key || !got.At.Equal(tt.wantAt) {
					t.Fatalf("%s = %v %.40q, want %v %.40q", what, got.At, got.Key.String(), tt.wantAt, tt.due.Key.String())
				}
			}
			d, err := ParseDueName(name, tt.due.Key.ID)
			check("ParseDueName(name, id)", d, err)
			d, err = ParseDueName(name, "")
			if tt.hashed {
				if !errors.Is(err, ErrInvalidKey) {
					t.Fatalf("ParseDueName of a hashed name without its id: %v %v, want ErrInvalidKey", d, err)
				}
			} else {
				check(`ParseDueName(name, "")`, d, err)
			}
			if _, err := ParseDueName(name, tt.due.Key.ID+"-another"); !errors.Is(err, ErrInvalidKey) {
				t.Fatalf("ParseDueName with another id: err = %v, want ErrInvalidKey", err)
			}
		})
	}
}

func TestDueNamesSortByTime(t *testing.T) {
	ms := []int64{0, 1, 9, 10, 15, 16, 255, 256, 0xfff, 0x1000, 1 << 40, time.Now().UnixMilli(), 1<<62 + 3}
	var names []string
	for _, m := range ms {
		name, err := DueName(Due{At: time.UnixMilli(m), Key: Key{Function: "fn", ID: "a"}})
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, name)
	}
	if !slices.IsSorted(names) {
		t.Fatalf("names of increasing times do not sort: %q", names)
	}
	for i, m := range ms {
		at := time.UnixMilli(m)
		until := DueUntil(at)
		if until <= names[i] {
			t.Errorf("DueUntil(%d ms) = %q sorts before the name of an entry due then, %q", m, until, names[i])
		}
		next, _ := DueName(Due{At: at.Add(time.Millisecond), Key: Key{Function: "fn", ID: "a"}})
		if until > next {
			t.Errorf("DueUntil(%d ms) = %q sorts after the name of an entry due a millisecond later, %q", m, until, next)
		}
	}
}

func TestParseDueNameRejects(t *testing.T) {
	tests := []struct {
		name, due, id string
	}{
		{"empty", "", ""},
		{"time alone", "0000000000000001", ""},
		{"short time", "000000000000001/fn/a", ""},
		{"long time", "00000000000000001/fn/a", ""},
		{"not hexadecimal", "000000000000000g/fn/a", ""},
		{"signed", "+00000000000001/fn/a", ""},
		{"upper-case time", "000000000000000A/fn/a", ""},
		{"time past int64 milliseconds", "ffffffffffffffff/fn/a", ""},
		{"no id", "0000000000000001/fn", ""},
		{"bad function", "0000000000000001/Fn/a", ""},
		{"bad escape", "0000000000000001/fn/%zz", ""},
		{"escape not canonical", "0000000000000001/fn/a%2fb", ""},
		{"escaped without need", "0000000000000001/fn/%61", ""},
		{"empty id", "0000000000000001/fn/", ""},
		{"another actor's id", "0000000000000001/fn/a", "b"},
		{"id of another function", "0000000000000001/fn/a", "a/"},
		{"an id with the name of another function", "0000000000000001/fn/a/b", "b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if d, err := ParseDueName(tt.due, tt.id); !errors.Is(err, ErrInvalidKey) {
				t.Fatalf("ParseDueName(%q, %q) = %v, %v; want ErrInvalidKey", tt.due, tt.id, d, err)
			}
		})
	}
}

func TestDueNameRejectsInvalidKeys(t *testing.T) {
	for _, k := range []Key{{Function: "", ID: "a"}, {Function: "Fn", ID: "a"}, {Function: "fn", ID: ""}, {Function: "fn", ID: strings.Repeat("x", MaxIDBytes+1)}, {Function: "fn", ID: "\xff"}} {
		if _, err := DueName(Due{At: time.UnixMilli(1), Key: k}); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("DueName(%q): err = %v, want ErrInvalidKey", k, err)
		}
	}
}
