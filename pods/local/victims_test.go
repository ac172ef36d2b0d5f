package local

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/knactor/knactor/router/placement"
)

// warmIDs is a WarmActors with fixed warm actors per function; asked counts the calls.
type warmIDs struct {
	ids   map[string][]string
	asked int
}

func (w *warmIDs) WarmIDs(function string) []string {
	w.asked++
	return w.ids[function]
}

// ownedBy returns, for each of the ready pods named in owned, as many actor IDs as owned says
// that the router places on that pod among all of serving.
func ownedBy(t *testing.T, serving []*pod, owned map[string]int) []string {
	t.Helper()
	set := placement.NewSet(podsOf(serving))
	left := maps.Clone(owned)
	maps.DeleteFunc(left, func(_ string, n int) bool { return n == 0 })
	var ids []string
	for i := 0; i < 100000 && len(left) > 0; i++ {
		id := fmt.Sprintf("actor-%d", i)
		o, _ := set.Owner("f/" + id)
		if left[o.Name] > 0 {
			ids = append(ids, id)
			if left[o.Name]--; left[o.Name] == 0 {
				delete(left, o.Name)
			}
		}
	}
	if len(left) > 0 {
		t.Fatalf("found no actor IDs for %v", left)
	}
	return ids
}

func TestVictims(t *testing.T) {
	tests := []struct {
		name string
		pods string         // oldest first: s = starting, r = ready; named <state><n>
		warm map[string]int // warm actors owned per ready pod; nil: no WarmActors
		k    int
		want []string
		// asked reports whether the warm actors are asked for (only when ready pods go).
		asked bool
	}{
		{name: "starting pods first, newest first", pods: "s1 s2 r1", warm: map[string]int{}, k: 1, want: []string{"s2"}},
		{name: "all starting, then ready", pods: "r1 s1 s2", warm: map[string]int{}, k: 3, want: []string{"s2", "s1", "r1"}, asked: true},
		{name: "no warm actors: the newest ready pod", pods: "r1 r2 r3", k: 2, want: []string{"r3", "r2"}},
		{name: "the ready pod owning the fewest warm actors", pods: "r1 r2 r3", warm: map[string]int{"r1": 3, "r2": 1, "r3": 2}, k: 1, want: []string{"r2"}, asked: true},
		{name: "fewest again among those that remain", pods: "r1 r2 r3", warm: map[string]int{"r1": 3, "r3": 1}, k: 2, want: []string{"r2", "r3"}, asked: true},
		{name: "a tie goes to the newest", pods: "r1 r2 r3", warm: map[string]int{"r1": 1, "r2": 1, "r3": 1}, k: 1, want: []string{"r3"}, asked: true},
		{name: "a starting pod, then the ready pod with the fewest", pods: "r1 s1 r2", warm: map[string]int{"r1": 0, "r2": 2}, k: 2, want: []string{"s1", "r1"}, asked: true},
		{name: "more asked than there are", pods: "r1 s1", k: 3, want: []string{"s1", "r1"}},
		{name: "none", pods: "r1 r2", warm: map[string]int{"r1": 1}, k: 0, want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fn := &function{spec: Function{Name: "f"}}
			var serving []*pod
			for i, name := range strings.Fields(tt.pods) {
				p := &pod{name: name, addr: fmt.Sprintf("127.0.0.1:%d", 10000+i), state: starting}
				if name[0] == 'r' {
					p.state = ready
					serving = append(serving, p)
				}
				fn.pods = append(fn.pods, p)
			}
			r := &Runtime{}
			var w *warmIDs
			if tt.warm != nil {
				w = &warmIDs{ids: map[string][]string{"f": ownedBy(t, serving, tt.warm)}}
				r.cfg.WarmActors = w
			}
			var got []string
			for _, p := range r.victimsLocked(fn, tt.k) {
				got = append(got, p.name)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("victims = %q, want %q", got, tt.want)
			}
			if w != nil && (w.asked > 0) != tt.asked {
				t.Errorf("warm actors asked %d times, want asked = %v", w.asked, tt.asked)
			}
		})
	}
}
