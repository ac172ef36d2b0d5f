// Package routing holds the vocabulary the router shares with the runtimes (pods/local,
// pods/kube), the Knative ingress class (router/ingress), the activator, the autoscaler and
// cmd/knactor, so that none of them imports the router for a data type:
//
//   - Function, what the router knows of a deployed function, and Backends, which functions
//     exist and which of their pods are ready (Static is a fixed one);
//   - Route, Split and Traffic, how a function's calls divide between its targets;
//   - Peers, which router owns an actor when several serve one actor system;
//   - InFlight, the calls in flight per pod, which a runtime waits on to drain a pod.
//
// # Targets
//
// One word names "a function or one of its revisions" across knactor: a target is a set of pods
// scaled together, whose ready pods Backends.Ready returns, whose calls the activator holds and
// whose statistics the autoscaler reads. It is the function's own name in local mode (one set
// of pods per function) and a Knative revision's name in Kubernetes mode, where Knative scales
// each revision on its own and a Route's traffic targets name revisions. Function.Target returns
// a function's; a name that can only be a revision is called a revision.
//
// # Owner keys
//
// An actor's owner key is statecache.Key.String, "{function}/{id}": the key that Peers.Owner,
// Route.ForActor and placement.Set.Owner hash. statecache.ParseName reads one back.
package routing

import (
	"sync"
	"time"

	"github.com/knactor/knactor/router/placement"
)

// Function is what the router needs to know about one deployed function, as one of its targets
// serves it.
type Function struct {
	// Name is the function's name (the Knative Service name).
	Name string
	// Timeout is a call's deadline; zero means the router's Config.CallTimeout (Knative's
	// timeoutSeconds).
	Timeout time.Duration
	// MaxStateBytes caps one actor's state; zero means the router's Config.MaxStateBytes.
	MaxStateBytes int
	// ContainerConcurrency caps the calls one pod gets at once (Knative's field); 0 = no cap.
	ContainerConcurrency int
	// Revision is the Knative revision whose pods serve the calls (Kubernetes mode), each of
	// which Knative scales on its own. Empty means the function has one set of pods of its own
	// (local mode). See Target.
	Revision string
}

// Target returns the name the function's pods go by in Backends.Ready and Changed, the
// activator and the statistics: Revision, or Name when it is empty.
func (f *Function) Target() string {
	if f.Revision != "" {
		return f.Revision
	}
	return f.Name
}

// Targets is implemented by Backends whose functions have several targets, each with its own
// settings and pods: Knative revisions (pods/kube.Watcher).
type Targets interface {
	// Target returns the function as the given target (a revision) serves it: its settings
	// are the target's and its Revision is target. It reports false when the function has no
	// such target.
	Target(function, target string) (Function, bool)
}

// Backends tells the router which functions exist and which of their pods are ready. The local
// runtime and the Kubernetes pod watcher implement it; Static serves a fixed list.
type Backends interface {
	// Function returns the named function, or false when no such function is deployed.
	Function(name string) (Function, bool)
	// Ready returns the ready pods of a target (Function.Target; a function's name stands for
	// its newest revision), now. It is called on every call: keep it cheap (return a Set built
	// when the pods changed) and never nil.
	Ready(target string) *placement.Set
	// Changed returns a channel that is closed the next time the ready pods of the target
	// change. Take it before reading Ready, so no change between the two is missed.
	Changed(target string) <-chan struct{}
}

// Static is a Backends whose functions and pods change only when told: each function is its
// own target. Safe for concurrent use.
type Static struct {
	mu        sync.RWMutex
	functions map[string]Function
	ready     map[string]*placement.Set
	changed   map[string]chan struct{}
}

var _ Backends = (*Static)(nil)

var emptySet = placement.NewSet(nil)

// NewStatic returns a Static with no functions.
func NewStatic() *Static {
	return &Static{functions: make(map[string]Function), ready: make(map[string]*placement.Set), changed: make(map[string]chan struct{})}
}

// Set deploys (or updates) fn with the given ready pods.
func (s *Static) Set(fn Function, pods ...placement.Pod) {
	set := placement.NewSet(pods)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.functions[fn.Name] = fn
	s.ready[fn.Name] = set
	s.notifyLocked(fn.Name)
}

func (s *Static) notifyLocked(name string) {
	if ch, ok := s.changed[name]; ok {
		close(ch)
		delete(s.changed, name)
	}
}

// Remove undeploys the named function.
func (s *Static) Remove(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.functions, name)
	delete(s.ready, name)
	s.notifyLocked(name)
}

// Changed implements Backends.
func (s *Static) Changed(target string) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch, ok := s.changed[target]
	if !ok {
		ch = make(chan struct{})
		s.changed[target] = ch
	}
	return ch
}

// Function implements Backends.
func (s *Static) Function(name string) (Function, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	fn, ok := s.functions[name]
	return fn, ok
}

// Ready implements Backends.
func (s *Static) Ready(target string) *placement.Set {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if set, ok := s.ready[target]; ok {
		return set
	}
	return emptySet
}
