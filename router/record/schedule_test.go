package record

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

func TestScheduleRoundTrip(t *testing.T) {
	t0 := time.UnixMilli(1_800_000_000_123)
	tests := []struct {
		name  string
		build func(r *Record)
		want  func(t *testing.T, r Record)
	}{
		{"timers sorted by due time, replaced by name", func(r *Record) {
			r.SetTimer(Timer{Name: "late", Due: t0.Add(time.Hour), Action: "a"})
			r.SetTimer(Timer{Name: "tick", Due: t0.Add(time.Minute), Every: time.Second, Action: "tick", Payload: []byte(`{"n":1}`)})
			r.SetTimer(Timer{Name: "late", Due: t0, Action: "b"})
		}, func(t *testing.T, r Record) {
			ts := r.Timers()
			if len(ts) != 2 || ts[0].Name != "late" || ts[0].Action != "b" || ts[1].Name != "tick" {
				t.Fatalf("timers = %+v", ts)
			}
			if ts[1].Every != time.Second || string(ts[1].Payload) != `{"n":1}` || !ts[1].Due.Equal(t0.Add(time.Minute)) {
				t.Fatalf("tick = %+v", ts[1])
			}
			if at, ok := r.NextDue(); !ok || !at.Equal(t0) {
				t.Fatalf("NextDue = %v %v", at, ok)
			}
		}},
		{"outbox keeps order and fields", func(r *Record) {
			r.AddOutgoing(Outgoing{Key: "effect:c.1:0", Due: t0.Add(time.Second), Function: "f", Actor: "a b/c", Action: "x", CausedBy: "r1"},
				Outgoing{Key: "effect:c.1:1", Due: t0.Add(-time.Second), Attempts: 3, Function: "g", Actor: "é", Action: "y", Payload: []byte(`[1]`)})
		}, func(t *testing.T, r Record) {
			o := r.Outbox()
			if len(o) != 2 || o[0].Actor != "a b/c" || o[1].Attempts != 3 || string(o[1].Payload) != "[1]" || o[0].CausedBy != "r1" {
				t.Fatalf("outbox = %+v", o)
			}
			if at, _ := r.NextDue(); !at.Equal(t0.Add(-time.Second)) {
				t.Fatalf("NextDue = %v, want the earliest outgoing", at)
			}
		}},
		{"channels sorted, no repeats", func(r *Record) {
			r.Subscribe("b")
			r.Subscribe("a")
			r.Subscribe("b")
		}, func(t *testing.T, r Record) {
			if c := r.Channels(); len(c) != 2 || c[0] != "a" || c[1] != "b" {
				t.Fatalf("channels = %v", c)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, withKeys := range []bool{false, true} {
				r := Record{State: []byte(`{"v":1}`), HasState: true}
				if withKeys {
					r.Remember(Entry{Key: "k1", At: t0, Status: 200, Reply: []byte("1")}, Limits{Keys: 8, TTL: time.Hour, Bytes: 1 << 20})
				}
				tt.build(&r)
				v := r.Value()
				if !bytes.HasPrefix(v, magic) {
					t.Fatal("a record with a schedule must use the record form")
				}
				got, err := Decode(v, true)
				if err != nil {
					t.Fatal(err)
				}
				if string(got.State) != `{"v":1}` || (got.Keys() == 1) != withKeys {
					t.Fatalf("state %q keys %d", got.State, got.Keys())
				}
				tt.want(t, got)
				if again := got.Value(); !bytes.Equal(again, v) {
					t.Fatalf("re-encoding differs:\n%q\n%q", again, v)
				}
			}
		})
	}
}

func TestScheduleKeepsAnEmptyActor(t *testing.T) {
	var r Record
	r.SetTimer(Timer{Name: "t", Due: time.UnixMilli(5), Action: "a"})
	if r.Empty() {
		t.Fatal("an actor with a timer and no state is not empty")
	}
	got, err := Decode(r.Value(), true)
	if err != nil || got.HasState || len(got.Timers()) != 1 {
		t.Fatalf("decode: %+v %v", got, err)
	}
	if !got.CancelTimer("t") || got.CancelTimer("t") || !got.Empty() {
		t.Fatal("cancel: want removed once, then empty")
	}
	if _, ok := got.NextDue(); ok {
		t.Fatal("nothing is due once the timer is cancelled")
	}
}

func TestScheduleDoesNotAliasDecodedSlices(t *testing.T) {
	var r Record
	r.SetTimer(Timer{Name: "a", Due: time.UnixMilli(5), Action: "a"})
	r.SetTimer(Timer{Name: "b", Due: time.UnixMilli(6), Action: "a"})
	v := r.Value()
	one, _ := Decode(v, true)
	two, _ := Decode(v, true)
	one.CancelTimer("a")
	if len(two.Timers()) != 2 {
		t.Fatal("a change to one decoded record changed another")
	}
}

func TestCorruptSchedule(t *testing.T) {
	var r Record
	r.AddOutgoing(Outgoing{Key: "k", Function: "f", Actor: "a", Action: "x"})
	v := r.Value()
	for cut := len(v) - 1; cut > len(magic)+2; cut-- {
		if _, err := Decode(v[:cut], true); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("cut at %d: err = %v, want ErrCorrupt", cut, err)
		}
	}
	if _, err := Decode(append(v, 0), true); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("trailing byte: err = %v", err)
	}
}
