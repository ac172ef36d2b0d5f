package placement_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/knactor/knactor/router/placement"
)

// podNames returns n pod names shaped like a Knative revision's, drawn from r.
func podNames(r *rand.Rand, n int) []string {
	const alphabet = "bcdfghjklmnpqrstvwxz2456789" // Kubernetes' generateName alphabet
	names := make([]string, n)
	for i := range names {
		suffix := make([]byte, 5)
		for j := range suffix {
			suffix[j] = alphabet[r.IntN(len(alphabet))]
		}
		names[i] = "counter-00001-deployment-5d8f7c9b6-" + string(suffix)
	}
	return names
}

// pod returns the pod name at addr.
func pod(name, addr string) placement.Pod {
	return placement.Pod{Name: name, Addr: addr}
}

// podsNamed returns a pod for each name, with distinct addresses.
func podsNamed(names []string) []placement.Pod {
	pods := make([]placement.Pod, len(names))
	for i, name := range names {
		pods[i] = placement.Pod{Name: name, Addr: fmt.Sprintf("10.0.0.%d:8080", i+1)}
	}
	return pods
}

// actorKeys returns n distinct actor keys of one function.
func actorKeys(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("counter/user-%d", i)
	}
	return keys
}

// owners returns the name of each key's owner in s.
func owners(t *testing.T, s *placement.Set, keys []string) []string {
	t.Helper()
	names := make([]string, len(keys))
	for i, k := range keys {
		p, ok := s.Owner(k)
		if !ok {
			t.Fatalf("Owner(%q) found no pod in a set of %d", k, s.Len())
		}
		names[i] = p.Name
	}
	return names
}

func TestNewSet(t *testing.T) {
	tests := []struct {
		name string
		pods []placement.Pod
		want []placement.Pod
	}{{
		name: "empty",
		want: []placement.Pod{},
	}, {
		name: "sorted by name",
		pods: []placement.Pod{pod("c", "3"), pod("a", "1"), pod("b", "2")},
		want: []placement.Pod{pod("a", "1"), pod("b", "2"), pod("c", "3")},
	}, {
		name: "last duplicate wins",
		pods: []placement.Pod{pod("b", "old"), pod("a", "1"), pod("b", "mid"), pod("c", "3"), pod("b", "new")},
		want: []placement.Pod{pod("a", "1"), pod("b", "new"), pod("c", "3")},
	}, {
		name: "duplicates only",
		pods: []placement.Pod{pod("a", "1"), pod("a", "2")},
		want: []placement.Pod{pod("a", "2")},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := slices.Clone(tt.pods)
			s := placement.NewSet(in)
			if got := s.Pods(); !slices.Equal(got, tt.want) {
				t.Errorf("Pods() = %v, want %v", got, tt.want)
			}
			if got := s.Len(); got != len(tt.want) {
				t.Errorf("Len() = %d, want %d", got, len(tt.want))
			}
			for _, p := range tt.want {
				if !s.Contains(p.Name) {
					t.Errorf("Contains(%q) = false, want true", p.Name)
				}
			}
			if s.Contains("absent") {
				t.Error(`Contains("absent") = true, want false`)
			}
			if !slices.Equal(in, tt.pods) {
				t.Errorf("NewSet changed its argument to %v", in)
			}
		})
	}
}

func TestSetIsACopy(t *testing.T) {
	pods := []placement.Pod{pod("a", "1"), pod("b", "2")}
	s := placement.NewSet(pods)
	pods[0].Addr = "changed"
	s.Pods()[1].Addr = "changed"
	if got, want := s.Pods(), []placement.Pod{pod("a", "1"), pod("b", "2")}; !slices.Equal(got, want) {
		t.Errorf("Pods() = %v after changing the caller's slices, want %v", got, want)
	}
}

func TestOwnerEmpty(t *testing.T) {
	for _, s := range []*placement.Set{placement.NewSet(nil), new(placement.Set)} {
		if p, ok := s.Owner("counter/a"); ok {
			t.Errorf("Owner of an empty set = %v, true; want false", p)
		}
	}
}

// TestOwnerGolden pins the owners of a few keys. Several routers choose owners independently
// and must agree, including routers of different versions during a rolling upgrade, and a
// router restarted mid-flight must send an actor to the pod that already holds it warm. Any
// change of the hash, the mixer or the tie-break moves actors between pods across versions, so
// it must be a deliberate decision; this test makes it a visible one. The owners below follow
// from the documented algorithm (XXH64, seed 0, of the key and of each name; xor; splitmix64's
// finalizer; highest wins) and were checked against an independent implementation of it.
func TestOwnerGolden(t *testing.T) {
	s := placement.NewSet(podsNamed([]string{
		"counter-00001-deployment-5d8f7c9b6-2xk4q",
		"counter-00001-deployment-5d8f7c9b6-7hjtn",
		"counter-00001-deployment-5d8f7c9b6-bm9zd",
		"counter-00001-deployment-5d8f7c9b6-qfr5w",
		"counter-00001-deployment-5d8f7c9b6-wl8cp",
	}))
	tests := []struct {
		key  string
		want string
	}{
		{"counter/alice", "counter-00001-deployment-5d8f7c9b6-qfr5w"},
		{"counter/bob", "counter-00001-deployment-5d8f7c9b6-7hjtn"},
		{"counter/carol", "counter-00001-deployment-5d8f7c9b6-wl8cp"},
		{"counter/dave", "counter-00001-deployment-5d8f7c9b6-wl8cp"},
		{"counter/user-1", "counter-00001-deployment-5d8f7c9b6-2xk4q"},
		{"counter/user-8", "counter-00001-deployment-5d8f7c9b6-bm9zd"},
		{"chat/room-42", "counter-00001-deployment-5d8f7c9b6-wl8cp"},
		{"", "counter-00001-deployment-5d8f7c9b6-2xk4q"},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			p, _ := s.Owner(tt.key)
			if p.Name != tt.want {
				t.Errorf("Owner(%q) = %s, want %s", tt.key, p.Name, tt.want)
			}
		})
	}
}

func TestOwnerIndependentOfOrder(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	keys := actorKeys(2000)
	for n := 1; n <= 12; n++ {
		pods := podsNamed(podNames(r, n))
		want := owners(t, placement.NewSet(pods), keys)
		for range 10 {
			r.Shuffle(len(pods), func(i, j int) { pods[i], pods[j] = pods[j], pods[i] })
			if got := owners(t, placement.NewSet(pods), keys); !slices.Equal(got, want) {
				t.Fatalf("%d pods: owners changed with the order of the pods", n)
			}
		}
	}
}

// TestOwnerScaleUp checks rendezvous hashing's promise: going from n to n+1 pods moves about
// 1/(n+1) of the keys, all of them to the new pod.
func TestOwnerScaleUp(t *testing.T) {
	// The fraction moved is a binomial proportion; with 20k keys its standard deviation is at
	// most 0.35 percentage points, and at n=10 a 10% relative tolerance is over four of them.
	const tolerance = 0.10
	r := rand.New(rand.NewPCG(3, 4))
	keys := actorKeys(20000)
	names := podNames(r, 11)
	for n := 1; n <= 10; n++ {
		t.Run(fmt.Sprintf("%d to %d", n, n+1), func(t *testing.T) {
			before := owners(t, placement.NewSet(podsNamed(names[:n])), keys)
			after := owners(t, placement.NewSet(podsNamed(names[:n+1])), keys)
			moved := 0
			for i := range keys {
				if before[i] == after[i] {
					continue
				}
				moved++
				if after[i] != names[n] {
					t.Fatalf("key %q moved from %s to %s, not to the new pod", keys[i], before[i], after[i])
				}
			}
			got, want := float64(moved)/float64(len(keys)), 1/float64(n+1)
			if got < want*(1-tolerance) || got > want*(1+tolerance) {
				t.Errorf("moved %.4f of the keys, want %.4f ± %.0f%%", got, want, tolerance*100)
			}
		})
	}
}

// TestOwnerScaleDown checks that removing a pod moves that pod's keys and no others.
func TestOwnerScaleDown(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	keys := actorKeys(20000)
	names := podNames(r, 8)
	before := owners(t, placement.NewSet(podsNamed(names)), keys)
	for i, gone := range names {
		t.Run(gone, func(t *testing.T) {
			after := owners(t, placement.NewSet(podsNamed(slices.Delete(slices.Clone(names), i, i+1))), keys)
			for j, k := range keys {
				if before[j] != gone && after[j] != before[j] {
					t.Fatalf("key %q moved from %s to %s although %s stayed", k, before[j], after[j], before[j])
				}
			}
		})
	}
}

// TestOwnerBalance checks that every pod owns its share of the keys, for several pod sets.
func TestOwnerBalance(t *testing.T) {
	// With 100k keys over 5 pods a pod's count has a standard deviation of 0.6% of the mean, so
	// ±15% fails only for a biased hash, not by chance.
	const (
		pods      = 5
		tolerance = 0.15
	)
	r := rand.New(rand.NewPCG(7, 8))
	keys := actorKeys(100000)
	for range 5 {
		names := podNames(r, pods)
		counts := map[string]int{}
		for _, o := range owners(t, placement.NewSet(podsNamed(names)), keys) {
			counts[o]++
		}
		mean := float64(len(keys)) / pods
		for _, name := range names {
			if c := float64(counts[name]); c < mean*(1-tolerance) || c > mean*(1+tolerance) {
				t.Errorf("pods %v: %s owns %.0f keys, want %.0f ± %.0f%%", names, name, c, mean, tolerance*100)
			}
		}
	}
}

func TestOwnerDoesNotAllocate(t *testing.T) {
	s := placement.NewSet(podsNamed(podNames(rand.New(rand.NewPCG(9, 10)), 10)))
	if allocs := testing.AllocsPerRun(100, func() { s.Owner("counter/alice") }); allocs != 0 {
		t.Errorf("Owner allocates %v times per call, want 0", allocs)
	}
}

func BenchmarkOwner(b *testing.B) {
	keys := actorKeys(1024)
	for _, n := range []int{1, 3, 10, 100} {
		s := placement.NewSet(podsNamed(podNames(rand.New(rand.NewPCG(11, 12)), n)))
		b.Run(fmt.Sprintf("pods=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				s.Owner(keys[i%len(keys)])
				i++
			}
		})
	}
}
