// Package placement chooses the pod that owns an actor: the one warm pod, among a function's
// ready pods, that receives all of that actor's turns.
//
// The choice is rendezvous (highest random weight) hashing. Every pod draws a pseudo-random
// weight for the actor's key and the pod with the highest weight owns it. Nothing is stored: any
// router that knows the same ready pods computes the same owner without talking to the others.
// When a pod joins, it takes over exactly the keys for which its weight beats the current
// owner's, about 1/(n+1) of them with n+1 pods; when a pod leaves, only its own keys move.
package placement

import (
	"cmp"
	"slices"

	"github.com/cespare/xxhash/v2"
)

// Pod is one ready pod of a function.
type Pod struct {
	// Name is the pod's stable identity (the Kubernetes pod name, or the local runtime's pod
	// name). It is the hash input: a pod's keys follow its name, whatever its address.
	Name string
	// Addr is the host:port to send calls to.
	Addr string
}

// member is a pod of a Set with the hash of its name computed once.
type member struct {
	pod  Pod
	hash uint64
}

// Set is an immutable set of ready pods with their hashes precomputed. The zero Set is empty.
// A Set is safe for concurrent use; a change of the ready pods makes a new Set.
type Set struct {
	members []member // sorted by pod name, names unique
}

// NewSet returns the Set of pods. It copies pods, and the order of pods does not matter. When
// several pods share a name, the last of them in pods is kept, as if each entry replaced the
// ones before it.
func NewSet(pods []Pod) *Set {
	members := make([]member, len(pods))
	for i, p := range pods {
		members[i] = member{pod: p, hash: xxhash.Sum64String(p.Name)}
	}
	// A stable sort keeps duplicates in their input order, so the last of each run of equal
	// names is the last one given.
	slices.SortStableFunc(members, func(a, b member) int { return cmp.Compare(a.pod.Name, b.pod.Name) })
	unique := members[:0]
	for i, m := range members {
		if i+1 < len(members) && members[i+1].pod.Name == m.pod.Name {
			continue
		}
		unique = append(unique, m)
	}
	return &Set{members: slices.Clip(unique)}
}

// Owner returns the pod that owns key: the pod with the highest weight for it. It reports false
// when the set is empty. Owner does not allocate.
//
// Two pods tie only if their names have the same 64-bit hash; the tie goes to the pod whose name
// sorts first, so the owner is still the same in every process.
func (s *Set) Owner(key string) (Pod, bool) {
	if len(s.members) == 0 {
		return Pod{}, false
	}
	k := xxhash.Sum64String(key)
	best, bestWeight := 0, weight(k, s.members[0].hash)
	for i := 1; i < len(s.members); i++ {
		if w := weight(k, s.members[i].hash); w > bestWeight {
			best, bestWeight = i, w
		}
	}
	return s.members[best].pod, true
}

// weight is the rendezvous weight of a pod for a key, given the xxhash of each.
//
// Both inputs are already uniform 64-bit hashes, but they cannot be compared as they stand:
// ranking pods by key^pod orders them by the highest bit in which their hashes differ, which
// splits the keys along a binary trie of the pod hashes. One pod could then own half of all
// keys, and the keys a new pod takes would all come from one neighbour. The xor must go through
// a mixer with full avalanche, so that every output bit depends on every bit of both hashes and
// the weights of one key behave as independent draws. splitmix64's finalizer (Stafford's
// "Mix13" constants, as in Java's SplittableRandom) is such a mixer, is a bijection (distinct pod
// hashes never tie for a key), and costs two multiplies, which keeps Owner at a few nanoseconds
// per pod. Hashing key and name together would spend time proportional to their length for
// every pod instead.
//
// The function is part of knactor's compatibility contract: routers of different versions must
// pick the same owners (see the golden test).
func weight(key, pod uint64) uint64 {
	z := key ^ pod
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// Pods returns the pods of the set sorted by name, in a new slice.
func (s *Set) Pods() []Pod {
	pods := make([]Pod, len(s.members))
	for i, m := range s.members {
		pods[i] = m.pod
	}
	return pods
}

// Len returns the number of pods in the set.
func (s *Set) Len() int {
	return len(s.members)
}

// Contains reports whether the set has a pod named name.
func (s *Set) Contains(name string) bool {
	_, found := slices.BinarySearchFunc(s.members, name, func(m member, name string) int {
		return cmp.Compare(m.pod.Name, name)
	})
	return found
}
