package schedule

import (
	"testing"
	"time"
)

func TestQueue(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	tests := []struct {
		name string
		run  func(t *testing.T, q *Queue)
	}{
		{"pops in time order, only what is due", func(t *testing.T, q *Queue) {
			q.Push(Item{Actor: "b", At: at(2)})
			q.Push(Item{Actor: "a", At: at(1)})
			q.Push(Item{Actor: "c", At: at(3)})
			if _, ok := q.Pop(at(0)); ok {
				t.Fatal("popped before anything was due")
			}
			for _, want := range []string{"a", "b"} {
				it, ok := q.Pop(at(2))
				if !ok || it.Actor != want {
					t.Fatalf("pop = %v %v, want %s", it, ok, want)
				}
			}
			if next, _ := q.Next(); !next.Equal(at(3)) || q.Len() != 1 || q.Active() != 2 {
				t.Fatalf("next %v len %d active %d", next, q.Len(), q.Active())
			}
		}},
		{"one item per actor, the earliest", func(t *testing.T, q *Queue) {
			q.Push(Item{Actor: "a", At: at(5)})
			if !q.Push(Item{Actor: "a", At: at(1)}) {
				t.Fatal("an earlier time should become the earliest")
			}
			q.Push(Item{Actor: "a", At: at(9)})
			if q.Len() != 1 {
				t.Fatalf("len = %d", q.Len())
			}
			if it, _ := q.Pop(at(1)); !it.At.Equal(at(1)) {
				t.Fatalf("pop = %v", it)
			}
		}},
		{"listed sticks to an equal time", func(t *testing.T, q *Queue) {
			q.Push(Item{Actor: "a", At: at(1)})
			q.Push(Item{Actor: "a", At: at(1), Listed: true})
			if it, _ := q.Pop(at(1)); !it.Listed {
				t.Fatal("the index's entry at the same time must be removed once handled")
			}
		}},
		{"pushed while handled: queued again at Done", func(t *testing.T, q *Queue) {
			q.Push(Item{Actor: "a", At: at(1)})
			q.Pop(at(1))
			if q.Push(Item{Actor: "a", At: at(0)}) || q.Len() != 0 || !q.Has("a") {
				t.Fatal("an actor being handled must not be queued twice")
			}
			q.Push(Item{Actor: "a", At: at(3)})
			q.Done("a")
			it, ok := q.Pop(at(0))
			if !ok || it.Actor != "a" {
				t.Fatalf("after Done: %v %v", it, ok)
			}
			q.Done("a")
			if q.Has("a") || q.Len() != 0 {
				t.Fatal("done twice: nothing left")
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.run(t, &Queue{}) })
	}
}
