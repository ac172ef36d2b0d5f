package router

import (
	"sync"
	"time"

	"github.com/knactor/knactor/router/placement"
)

// Function is what the router needs to know about one deployed function.
type Function struct {
	// Name is the function's name (the Knative Service name).
	Name string
	// Timeout is a call's deadline; zero means Config.CallTimeout (Knative's timeoutSeconds).
	Timeout time.Duration
	// MaxStateBytes caps one actor's state; zero means Config.MaxStateBytes.
	MaxStateBytes int
	// ContainerConcurrency caps the calls one pod gets at once (Knative's field); 0 = no cap.
	ContainerConcurrency int
	// Target names the pods that serve the calls, for Backends.Ready and Changed, the activator
	// and the statistics: in Kubernetes mode a revision of the function, each of which Knative
	// scales on its own. Empty means Name (one set of pods per function, as in local mode).
	Target string
}

// backend returns the name the function's pods go by in Backends.Ready and Changed.
func (f *Function) backend() string {
	if f.Target != "" {
		return f.Target
	}
	return f.Name
}

// targetNote names the target in an error message, when it is not the function itself.
func (f *Function) targetNote() string {
	if f.Target == "" || f.Target == f.Name {
		return ""
	}
	return " (revision " + f.Target + ")"
}

// Targets is implemented by Backends whose functions have several targets, each with its own
// settings and pods: Knative revisions (pods/kube.Watcher).
type Targets interface {
	// Target returns the function with the given target: its settings are the target's.
	// It reports false when the function has no such target.
	Target(function, target string) (Function, bool)
}

// Backends tells the router which functions exist and which of their pods are ready. The local
// runtime and the Kubernetes pod watcher implement it; Static serves a fixed list.
type Backends interface {
	// Function returns the named function, or false when no such function is deployed.
	Function(name string) (Function, bool)
	// Ready returns the ready pods of a function, or of a function's target (Function.Target),
	// now. It is called on every call: keep it cheap
	// (return a Set built when the pods changed) and never nil.
	Ready(function string) *placement.Set
	// Changed returns a channel that is closed the next time the ready pods of the function (or
	// target) change.
	// Take it before reading Ready, so no change between the two is missed.
	Changed(function string) <-chan struct{}
}

// Static is a Backends whose functions and pods change only when told. Safe for concurrent use.
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
func (s *Static) Changed(function string) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch, ok := s.changed[function]
	if !ok {
		ch = make(chan struct{})
		s.changed[function] = ch
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
func (s *Static) Ready(function string) *placement.Set {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if set, ok := s.ready[function]; ok {
		return set
	}
	return emptySet
}
