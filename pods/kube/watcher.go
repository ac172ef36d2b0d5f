package kube

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/knactor/knactor/router/placement"
	"github.com/knactor/knactor/router/routing"
)

// functionIndex indexes both informers' caches by function (the ServiceLabel value), so
// recomputing one function reads only its own objects.
const functionIndex = "function"

// Watcher learns the functions of one namespace and their ready pods from the API server. It
// implements routing.Backends and tells the autoscaler which functions exist.
//
// Every revision of a function is a target (routing.Targets): a Deployment labelled with the
// function's and the revision's names, its own settings and its own ready pods, scaled on its
// own (Targets, Deployment, Annotations and ReadyPods take a revision's name). The function's
// own name stands for its newest revision (by the Deployment's creation time, the greater name
// breaking a tie: Knative numbers revisions upwards), which takes the calls no traffic split
// (routing.Traffic) sends elsewhere. Deployments being deleted are no revision's. Function and
// revision names share one namespace, as they do in Knative, where both name Kubernetes
// Services; a revision's name is looked up first.
//
// Goroutines and locks:
//   - The informers' goroutines (client-go's) only run the event handlers, which add the
//     function named by the object's labels to the queue (qmu guards dirty, all and waiters)
//     and wake the worker through kick.
//   - The worker goroutine (run) is the only one that reads the informer caches, decides which
//     pods are ready, starts and cancels probes and publishes; probes is its own and needs no
//     lock. It calls the OnFunctionsChanged callbacks, holding no lock.
//   - One goroutine per probed pod dials it until it answers, then sets its probe's ok and
//     queues its function; the worker cancels it when the pod changes or goes.
//   - mu guards fns and targets (the published state: each *function and *target is immutable
//     once published, so readers use it after unlocking), changed and onChange; it is held only
//     briefly and never while calling out.
//   - Every goroutine, client-go's included, ends when Start's context ends; wg counts knactor's.
type Watcher struct {
	client  kubernetes.Interface
	cfg     Config
	factory informers.SharedInformerFactory
	pods    cache.SharedIndexInformer
	deps    cache.SharedIndexInformer

	// kick holds a token when the queue has work; enqueue never blocks on it.
	kick    chan struct{}
	qmu     sync.Mutex
	dirty   map[string]struct{} // functions to recompute
	all     bool                // recompute every function (a tombstone without labels, Start)
	waiters []chan struct{}     // closed once the work queued before them is done

	// probes is the worker's: function → pod name → the pod's current probe.
	probes map[string]map[string]*probe

	forbidOnce sync.Once
	forbidden  chan struct{} // closed when an informer is refused by RBAC; forbidErr says why
	forbidErr  error

	mu       sync.RWMutex
	fns      map[string]*function
	targets  map[string]*target       // revision → its target, of every function in fns
	changed  map[string]chan struct{} // created by Changed, closed and removed at a change
	onChange []func()
	started  bool

	wg sync.WaitGroup
}

// function is the published state of one function: its revisions. It is never modified once
// published.
type function struct {
	newest  *target            // the revision of the newest Deployment
	targets map[string]*target // revision → target
}

// target is the published state of one revision of a function. It is never modified once
// published.
type target struct {
	info        routing.Function // Name is the function's, Target the revision's
	deployment  string
	source      *appsv1.Deployment // the cached object info and annotations come from; read only
	annotations map[string]string
	ready       *placement.Set
}

var (
	_ routing.Backends = (*Watcher)(nil)
	_ routing.Targets  = (*Watcher)(nil)
	// emptySet is the ready set of a function without ready pods.
	emptySet = placement.NewSet(nil)
)

// NewWatcher returns a Watcher of cfg.Namespace; call Start to start it.
func NewWatcher(client kubernetes.Interface, cfg Config) (*Watcher, error) {
	cfg.setDefaults()
	if cfg.Namespace == "" {
		return nil, errors.New("kube: Config.Namespace is required")
	}
	w := &Watcher{
		client: client,
		cfg:    cfg,
		factory: informers.NewSharedInformerFactoryWithOptions(client, 0,
			informers.WithNamespace(cfg.Namespace),
			informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = RevisionLabel }),
			informers.WithTransform(stripManagedFields)),
		kick:      make(chan struct{}, 1),
		dirty:     make(map[string]struct{}),
		probes:    make(map[string]map[string]*probe),
		forbidden: make(chan struct{}),
		fns:       make(map[string]*function),
		targets:   make(map[string]*target),
		changed:   make(map[string]chan struct{}),
	}
	w.pods = w.factory.Core().V1().Pods().Informer()
	w.deps = w.factory.Apps().V1().Deployments().Informer()
	for _, inf := range []struct {
		informer cache.SharedIndexInformer
		resource string
	}{{w.pods, "pods"}, {w.deps, "deployments"}} {
		if err := inf.informer.AddIndexers(cache.Indexers{functionIndex: indexByFunction}); err != nil {
			return nil, fmt.Errorf("kube: indexing %s: %w", inf.resource, err)
		}
		if _, err := inf.informer.AddEventHandler(w.handler()); err != nil {
			return nil, fmt.Errorf("kube: watching %s: %w", inf.resource, err)
		}
		resource := inf.resource
		err := inf.informer.SetWatchErrorHandlerWithContext(func(ctx context.Context, r *cache.Reflector, err error) {
			if apierrors.IsForbidden(err) {
				w.refused(resource, err) // logs it, with what to do about it
				return
			}
			cache.DefaultWatchErrorHandler(ctx, r, err)
		})
		if err != nil {
			return nil, fmt.Errorf("kube: watching %s: %w", inf.resource, err)
		}
	}
	return w, nil
}

// stripManagedFields drops what knactor never reads from the cached objects, to keep the
// caches small.
func stripManagedFields(obj any) (any, error) {
	if m, err := meta.Accessor(obj); err == nil {
		m.SetManagedFields(nil)
	}
	return obj, nil
}

// indexByFunction indexes an object that carries both Knative labels by its function.
func indexByFunction(obj any) ([]string, error) {
	if name, ok := functionOf(obj); ok {
		return []string{name}, nil
	}
	return nil, nil
}

// refused records that RBAC refused an informer's list or watch, which ends Start's wait.
func (w *Watcher) refused(resource string, err error) {
	err = fmt.Errorf("kube: %w", forbiddenError(`"list" and "watch"`, resource, w.cfg.Namespace, err))
	w.cfg.Logger.Error("kube: informer refused", "err", err)
	w.forbidOnce.Do(func() {
		w.forbidErr = err
		close(w.forbidden)
	})
}

// forbiddenError explains a Forbidden answer: which permission knactor lacks, and where it comes
// from.
func forbiddenError(verbs, resource, namespace string, err error) error {
	return fmt.Errorf("knactor needs %s on %s in namespace %q (apply config/ RBAC): %w",
		verbs, resource, namespace, err)
}

// Start checks that knactor may list pods and Deployments, starts the informers, waits until
// their caches are filled (at most Config.SyncTimeout) and every function's state is computed
// from them. Pods found ready are probed from then on, so Ready may still be empty when Start
// returns. When RBAC refuses the informers, the error names the permission missing. Everything
// Start starts stops when ctx ends; a Watcher is started once.
func (w *Watcher) Start(ctx context.Context) error {
	w.mu.Lock()
	if w.started {
		w.mu.Unlock()
		return errors.New("kube: watcher already started")
	}
	w.started = true
	w.mu.Unlock()

	// A preflight list says at once what the informers would otherwise only log while retrying.
	preflight := []struct {
		resource string
		list     func() error
	}{
		{"pods", func() error {
			_, err := w.client.CoreV1().Pods(w.cfg.Namespace).List(ctx, metav1.ListOptions{LabelSelector: RevisionLabel, Limit: 1})
			return err
		}},
		{"deployments", func() error {
			_, err := w.client.AppsV1().Deployments(w.cfg.Namespace).List(ctx, metav1.ListOptions{LabelSelector: RevisionLabel, Limit: 1})
			return err
		}},
	}
	for _, p := range preflight {
		err := p.list()
		switch {
		case apierrors.IsForbidden(err):
			return fmt.Errorf("kube: %w", forbiddenError(`"list" and "watch"`, p.resource, w.cfg.Namespace, err))
		case err != nil:
			// Perhaps a passing failure: the informers retry until SyncTimeout.
			w.cfg.Logger.Warn("kube: cannot list yet; retrying", "resource", p.resource, "namespace", w.cfg.Namespace, "err", err)
		}
	}

	// cancel stops what Start started if Start fails; otherwise the end of the caller's ctx does.
	ctx, cancel := context.WithCancel(ctx)
	w.factory.Start(ctx.Done())
	w.wg.Add(2)
	go func() {
		defer w.wg.Done()
		defer cancel()
		<-ctx.Done()
		w.factory.Shutdown() // waits for the informers' goroutines
	}()
	go w.run(ctx)

	syncCtx, stopSync := context.WithTimeout(ctx, w.cfg.SyncTimeout)
	defer stopSync()
	stop := make(chan struct{})
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		select {
		case <-syncCtx.Done():
		case <-w.forbidden:
		}
		close(stop)
	}()
	if !cache.WaitForCacheSync(stop, w.pods.HasSynced, w.deps.HasSynced) {
		var err error
		select {
		case <-w.forbidden:
			err = w.forbidErr
		default:
			if err = ctx.Err(); err == nil {
				err = fmt.Errorf("kube: pods and deployments of namespace %q not listed within %v", w.cfg.Namespace, w.cfg.SyncTimeout)
			}
		}
		cancel()
		w.wg.Wait()
		return err
	}
	done := make(chan struct{})
	w.enqueueAll(done)
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// wait waits for every goroutine of the Watcher to end (after Start's context has ended).
func (w *Watcher) wait() { w.wg.Wait() }

// run is the worker: it recomputes the queued functions until ctx ends.
func (w *Watcher) run(ctx context.Context) {
	defer w.wg.Done()
	defer func() {
		for _, ps := range w.probes {
			for _, p := range ps {
				p.cancel()
			}
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.kick:
		}
		w.qmu.Lock()
		dirty, all, waiters := w.dirty, w.all, w.waiters
		w.dirty, w.all, w.waiters = make(map[string]struct{}), false, nil
		w.qmu.Unlock()
		if all {
			w.mu.RLock()
			for name := range w.fns {
				dirty[name] = struct{}{}
			}
			w.mu.RUnlock()
			for _, name := range w.deps.GetIndexer().ListIndexFuncValues(functionIndex) {
				dirty[name] = struct{}{}
			}
		}
		notify := false
		for _, name := range slices.Sorted(maps.Keys(dirty)) {
			if w.sync(ctx, name) {
				notify = true
			}
		}
		if notify {
			w.mu.RLock()
			callbacks := slices.Clone(w.onChange)
			w.mu.RUnlock()
			for _, fn := range callbacks {
				fn()
			}
		}
		for _, ch := range waiters {
			close(ch)
		}
	}
}

// sync recomputes one function's revisions from the caches and publishes them. It reports
// whether the set of functions or revisions, or a revision's Deployment, settings or
// annotations, changed.
func (w *Watcher) sync(ctx context.Context, name string) bool {
	deps := w.deployments(name)
	if len(deps) == 0 {
		w.keepProbes(name, nil)
		return w.publish(name, nil)
	}
	w.mu.RLock()
	old := w.fns[name]
	w.mu.RUnlock()
	podsOf := map[string][]*corev1.Pod{} // revision → its pods
	objs, _ := w.pods.GetIndexer().ByIndex(functionIndex, name)
	for _, obj := range objs {
		if pod, ok := obj.(*corev1.Pod); ok {
			podsOf[pod.Labels[RevisionLabel]] = append(podsOf[pod.Labels[RevisionLabel]], pod)
		}
	}
	next := &function{targets: make(map[string]*target, len(deps))}
	candidates := make(map[string]bool)
	for _, dep := range deps {
		rev := dep.Labels[RevisionLabel]
		if _, dup := next.targets[rev]; dup {
			continue // two Deployments claim one revision: the newer serves it
		}
		t := &target{deployment: dep.Name, source: dep}
		// The informer replaces a cached object when it changes, so the same object means the
		// same settings (and their parse errors are logged once).
		if o := old.target(rev); o != nil && o.source == dep {
			t.info, t.annotations = o.info, o.annotations
		} else {
			t.info = w.functionInfo(name, dep)
			t.info.Revision = rev
			t.annotations = maps.Clone(dep.Spec.Template.Annotations)
		}
		var ready []placement.Pod
		for _, pod := range podsOf[rev] {
			addr, ok := podAddr(pod)
			if !ok {
				continue
			}
			candidates[pod.Name] = true
			if w.probeOf(ctx, name, pod, addr).ok.Load() {
				ready = append(ready, placement.Pod{Name: pod.Name, Addr: addr})
			}
		}
		t.ready = placement.NewSet(ready)
		next.targets[rev] = t
		if next.newest == nil {
			next.newest = t
		}
	}
	w.keepProbes(name, candidates)
	return w.publish(name, next)
}

// target returns the function's target of revision, nil when f is nil or has no such revision.
func (f *function) target(revision string) *target {
	if f == nil {
		return nil
	}
	return f.targets[revision]
}

// deployments returns the function's Deployments that are not being deleted, newest first.
func (w *Watcher) deployments(name string) []*appsv1.Deployment {
	objs, _ := w.deps.GetIndexer().ByIndex(functionIndex, name)
	deps := make([]*appsv1.Deployment, 0, len(objs))
	for _, obj := range objs {
		if d, ok := obj.(*appsv1.Deployment); ok && d.DeletionTimestamp == nil {
			deps = append(deps, d)
		}
	}
	slices.SortFunc(deps, func(a, b *appsv1.Deployment) int {
		if c := b.CreationTimestamp.Compare(a.CreationTimestamp.Time); c != 0 {
			return c
		}
		return strings.Compare(b.Name, a.Name)
	})
	return deps
}

// publish makes next the function's state (nil: the function is gone) and wakes the waiters of
// a change of its revisions' ready pods (a waiter on the function's name waits on its newest
// revision). It reports whether the set of functions or revisions, or a revision's Deployment,
// settings or annotations, changed.
func (w *Watcher) publish(name string, next *function) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	old := w.fns[name]
	if old == nil && next == nil {
		return false
	}
	changed := false
	if old != nil {
		for rev := range old.targets {
			if next.target(rev) == nil {
				delete(w.targets, rev)
				w.notifyLocked(rev)
				changed = true
			}
		}
	}
	if next == nil {
		delete(w.fns, name)
		w.notifyLocked(name)
		w.cfg.Logger.Info("kube: function gone", "function", name)
		return true
	}
	if old == nil {
		w.cfg.Logger.Info("kube: function found", "function", name, "revision", next.newest.info.Revision,
			"deployment", next.newest.deployment, "ready", next.newest.ready.Len())
		changed = true
	}
	for rev, t := range next.targets {
		o := old.target(rev)
		if o != nil && slices.Equal(o.ready.Pods(), t.ready.Pods()) {
			t.ready = o.ready
		} else {
			w.notifyLocked(rev)
			if t == next.newest {
				w.notifyLocked(name)
			}
			w.cfg.Logger.Debug("kube: ready pods changed", "function", name, "revision", rev, "ready", t.ready.Len())
		}
		if o == nil || o.deployment != t.deployment || o.info != t.info || !maps.Equal(o.annotations, t.annotations) {
			changed = true
		}
		w.targets[rev] = t
	}
	if old != nil && old.newest.info.Revision != next.newest.info.Revision {
		w.notifyLocked(name)
		changed = true
	}
	w.fns[name] = next
	return changed
}

func (w *Watcher) notifyLocked(name string) {
	if ch, ok := w.changed[name]; ok {
		close(ch)
		delete(w.changed, name)
	}
}
