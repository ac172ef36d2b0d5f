package kube

import (
	"maps"
	"slices"

	"github.com/knactor/knactor/router/placement"
	"github.com/knactor/knactor/router/routing"
)

// lookupLocked returns the target a name stands for: a revision, else a function's newest
// revision; nil for neither. Hold mu.
func (w *Watcher) lookupLocked(name string) *target {
	if t, ok := w.targets[name]; ok {
		return t
	}
	if fn, ok := w.fns[name]; ok {
		return fn.newest
	}
	return nil
}

// Function returns the named function (routing.Backends) as its newest revision: it exists while
// a Deployment carries its ServiceLabel, even with no pods. Timeout and ContainerConcurrency are
// the revision's, as Knative passes them to its queue-proxy; MaxStateBytes is the pod template's
// knactor.dev/max-state-bytes; Target is the revision.
func (w *Watcher) Function(name string) (routing.Function, bool) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if fn, ok := w.fns[name]; ok {
		return fn.newest.info, true
	}
	return routing.Function{}, false
}

// Target returns the function as one of its revisions, with that revision's settings
// (routing.Targets).
func (w *Watcher) Target(function, revision string) (routing.Function, bool) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if t := w.fns[function].target(revision); t != nil {
		return t.info, true
	}
	return routing.Function{}, false
}

// Ready returns the ready pods of a revision, or of a function's newest revision, sorted by
// name (routing.Backends). It is never nil.
func (w *Watcher) Ready(name string) *placement.Set {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if t := w.lookupLocked(name); t != nil {
		return t.ready
	}
	return emptySet
}

// Changed returns a channel closed at the next change of a revision's ready pods (for a
// function's name: of its newest revision's, or of which revision is newest), or when it
// appears or goes (routing.Backends).
func (w *Watcher) Changed(name string) <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	ch, ok := w.changed[name]
	if !ok {
		ch = make(chan struct{})
		w.changed[name] = ch
	}
	return ch
}

// ReadyPods returns how many pods of a revision (or a function's newest) are ready.
func (w *Watcher) ReadyPods(name string) int { return w.Ready(name).Len() }

// Functions returns the names of the functions, sorted.
func (w *Watcher) Functions() []string {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return slices.Sorted(maps.Keys(w.fns))
}

// Targets returns the names of every function's revisions, sorted: what the autoscaler scales.
func (w *Watcher) Targets() []string {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return slices.Sorted(maps.Keys(w.targets))
}

// FunctionOf returns the function a revision belongs to.
func (w *Watcher) FunctionOf(revision string) (string, bool) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if t, ok := w.targets[revision]; ok {
		return t.info.Name, true
	}
	return "", false
}

// Deployment returns the name of a revision's (or a function's newest revision's) Deployment,
// or false when there is none.
func (w *Watcher) Deployment(name string) (deployment string, ok bool) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if t := w.lookupLocked(name); t != nil {
		return t.deployment, true
	}
	return "", false
}

// Annotations returns a copy of the annotations of a revision's (or a function's newest
// revision's) pod template, nil when there is none. Knative copies a revision's annotations
// there, except its autoscaling.knative.dev/ ones, which it keeps on the Revision and the
// PodAutoscaler.
func (w *Watcher) Annotations(name string) map[string]string {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if t := w.lookupLocked(name); t != nil {
		return maps.Clone(t.annotations)
	}
	return nil
}

// OnFunctionsChanged registers fn to be called when a function or a revision appears or goes,
// or a revision's Deployment, settings or annotations change; fn then reads Functions, Targets
// and Annotations. Calls come from the Watcher's
// worker goroutine, one at a time and holding none of its locks; several changes may make one
// call. Register before Start to hear of the functions Start finds.
func (w *Watcher) OnFunctionsChanged(fn func()) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.onChange = append(w.onChange, fn)
}
