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
}

// Backends tells the router which functions exist and which of their pods are ready. The local
// runtime and the Kubernetes pod watcher implement it; Static serves a fixed list.
type Backends interface {
	// Function returns the named function, or false when no such function is deployed.
	Function(name string) (Function, bool)
	// Ready returns the function's ready pods now. It is called on every call: keep it cheap
	// (return a Set built when the pods changed) and never nil.
	Ready(function string) *placement.Set
	// Changed returns a channel that is closed the next time the function's ready pods change.
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
