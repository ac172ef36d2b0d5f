package kube

import (
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/client-go/tools/cache"
)

// functionOf returns the function of a pod or Deployment (or of a deleted one's tombstone), or
// false when it lacks the labels of a Knative Service's revision.
func functionOf(obj any) (string, bool) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	m, err := meta.Accessor(obj)
	if err != nil {
		return "", false
	}
	labels := m.GetLabels()
	name := labels[ServiceLabel]
	if name == "" || labels[RevisionLabel] == "" {
		return "", false
	}
	return name, true
}

// handler queues the functions an informer event concerns. Both informers share it.
func (w *Watcher) handler() cache.ResourceEventHandlerFuncs {
	return cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if name, ok := functionOf(obj); ok {
				w.enqueue(name)
			}
		},
		UpdateFunc: func(oldObj, newObj any) {
			oldName, oldOK := functionOf(oldObj)
			newName, newOK := functionOf(newObj)
			if oldOK {
				w.enqueue(oldName)
			}
			if newOK && (!oldOK || newName != oldName) {
				w.enqueue(newName)
			}
		},
		DeleteFunc: func(obj any) {
			if name, ok := functionOf(obj); ok {
				w.enqueue(name)
				return
			}
			if _, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				// A tombstone without a usable object: which function lost it is unknown.
				w.enqueueAll(nil)
			}
		},
	}
}

// enqueue asks the worker to recompute function.
func (w *Watcher) enqueue(function string) {
	w.qmu.Lock()
	w.dirty[function] = struct{}{}
	w.qmu.Unlock()
	w.wake()
}

// enqueueAll asks the worker to recompute every function, and to close done (if not nil) once
// it has.
func (w *Watcher) enqueueAll(done chan struct{}) {
	w.qmu.Lock()
	w.all = true
	if done != nil {
		w.waiters = append(w.waiters, done)
	}
	w.qmu.Unlock()
	w.wake()
}

func (w *Watcher) wake() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}
