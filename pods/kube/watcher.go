package kube

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/knactor/knactor/manifest"
	"github.com/knactor/knactor/router"
	"github.com/knactor/knactor/router/placement"
)

// functionIndex indexes both informers' caches by function (the ServiceLabel value), so
// recomputing one function reads only its own objects.
const functionIndex = "function"

// Watcher learns the functions of one namespace and their ready pods from the API server. It
// implements router.Backends and tells the autoscaler which functions exist.
//
// Every revision of a function is a target (router.Targets): a Deployment labelled with the
// function's and the revision's names, its own settings and its own ready pods, scaled on its
// own (Targets, Deployment, Annotations and ReadyPods take a revision's name). The function's
// own name stands for its newest revision (by the Deployment's creation time, the greater name
// breaking a tie: Knative numbers revisions upwards), which takes the calls no traffic split
// (router.Traffic) sends elsewhere. Deployments being deleted are no revision's. Function and
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
	info        router.Function // Name is the function's, Target the revision's
	deployment  string
	source      *appsv1.Deployment // the cached object info and annotations come from; read only
	annotations map[string]string
	ready       *placement.Set
}

// probe is the TCP probe of one pod at one address.
type probe struct {
	uid    types.UID
	addr   string
	cancel context.CancelFunc
	ok     atomic.Bool // set once the pod has answered
}

var (
	_ router.Backends = (*Watcher)(nil)
	_ router.Targets  = (*Watcher)(nil)
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
			t.info.Target = rev
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

// podAddr returns where a pod takes calls, and whether the API reports it ready to: not being
// deleted, running, with an IP and its Ready condition true.
func podAddr(pod *corev1.Pod) (string, bool) {
	if pod.DeletionTimestamp != nil || pod.Status.Phase != corev1.PodRunning || pod.Status.PodIP == "" {
		return "", false
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			if c.Status != corev1.ConditionTrue {
				return "", false
			}
			return net.JoinHostPort(pod.Status.PodIP, strconv.Itoa(int(userPort(pod.Spec.Containers)))), true
		}
	}
	return "", false
}

// userPort is the port of the container that serves calls: the first container other than
// Knative's queue-proxy that declares a port (Knative allows only one to), its first port; or
// DefaultUserPort.
func userPort(containers []corev1.Container) int32 {
	for _, c := range containers {
		if c.Name != QueueProxyContainer && len(c.Ports) > 0 && c.Ports[0].ContainerPort > 0 {
			return c.Ports[0].ContainerPort
		}
	}
	return DefaultUserPort
}

// functionInfo reads what the router needs to know about a function from its Deployment: the
// timeout and container concurrency Knative hands the queue-proxy, and knactor's state size cap
// from the pod template's annotations. A value it cannot read is left zero (the router's
// default) and logged.
func (w *Watcher) functionInfo(name string, dep *appsv1.Deployment) router.Function {
	info := router.Function{Name: name}
	bad := func(field, value string, err error) {
		w.cfg.Logger.Warn("kube: ignoring an unreadable setting", "function", name, "deployment", dep.Name,
			"field", field, "value", value, "err", err)
	}
	for _, c := range dep.Spec.Template.Spec.Containers {
		if c.Name != QueueProxyContainer {
			continue
		}
		for _, e := range c.Env {
			switch e.Name {
			case envTimeoutSeconds:
				if s, err := strconv.ParseInt(e.Value, 10, 32); err != nil || s < 0 {
					bad(e.Name, e.Value, err)
				} else {
					info.Timeout = time.Duration(s) * time.Second
				}
			case envContainerConcurrency:
				if n, err := strconv.ParseInt(e.Value, 10, 32); err != nil || n < 0 {
					bad(e.Name, e.Value, err)
				} else {
					info.ContainerConcurrency = int(n)
				}
			}
		}
	}
	if v, ok := dep.Spec.Template.Annotations[manifest.MaxStateBytesAnnotation]; ok {
		q, err := resource.ParseQuantity(v)
		n, whole := q.AsInt64()
		if err != nil || !whole || n < 1 || n > manifest.MaxStateBytesLimit {
			bad(manifest.MaxStateBytesAnnotation, v, err)
		} else {
			info.MaxStateBytes = int(n)
		}
	}
	return info
}

// probeOf returns the probe of a pod at addr, starting it when the pod has none yet, or had one
// for another address or another pod of the same name (which it cancels).
func (w *Watcher) probeOf(ctx context.Context, function string, pod *corev1.Pod, addr string) *probe {
	ps := w.probes[function]
	if ps == nil {
		ps = make(map[string]*probe)
		w.probes[function] = ps
	}
	if p, ok := ps[pod.Name]; ok {
		if p.uid == pod.UID && p.addr == addr {
			return p
		}
		p.cancel()
	}
	pctx, cancel := context.WithCancel(ctx)
	p := &probe{uid: pod.UID, addr: addr, cancel: cancel}
	ps[pod.Name] = p
	w.wg.Add(1)
	go w.probe(pctx, function, pod.Name, p)
	return p
}

// keepProbes cancels the function's probes of pods not in keep (all of them when keep is nil).
func (w *Watcher) keepProbes(function string, keep map[string]bool) {
	ps := w.probes[function]
	for name, p := range ps {
		if !keep[name] {
			p.cancel()
			delete(ps, name)
		}
	}
	if len(ps) == 0 {
		delete(w.probes, function)
	}
}

// probe dials a pod until it answers (then queues its function) or ctx ends: every
// probeInterval for probeFastFor, every probeSlowInterval after.
func (w *Watcher) probe(ctx context.Context, function, pod string, p *probe) {
	defer w.wg.Done()
	clk := w.cfg.Clock
	start := clk.Now()
	interval := probeInterval
	for {
		pctx, cancel := context.WithTimeout(ctx, w.cfg.ProbeTimeout)
		err := w.cfg.Prober(pctx, p.addr)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			p.ok.Store(true)
			w.enqueue(function)
			return
		}
		if interval == probeInterval && clk.Since(start) >= probeFastFor {
			w.cfg.Logger.Warn("kube: pod is Ready but does not accept connections; probing it less often",
				"function", function, "pod", pod, "addr", p.addr, "err", err)
			interval = probeSlowInterval
		}
		t := clk.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		}
	}
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
		w.cfg.Logger.Info("kube: function found", "function", name, "revision", next.newest.info.Target,
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
	if old != nil && old.newest.info.Target != next.newest.info.Target {
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

// Function returns the named function (router.Backends) as its newest revision: it exists while
// a Deployment carries its ServiceLabel, even with no pods. Timeout and ContainerConcurrency are
// the revision's, as Knative passes them to its queue-proxy; MaxStateBytes is the pod template's
// knactor.dev/max-state-bytes; Target is the revision.
func (w *Watcher) Function(name string) (router.Function, bool) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if fn, ok := w.fns[name]; ok {
		return fn.newest.info, true
	}
	return router.Function{}, false
}

// Target returns the function as one of its revisions, with that revision's settings
// (router.Targets).
func (w *Watcher) Target(function, revision string) (router.Function, bool) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if t := w.fns[function].target(revision); t != nil {
		return t.info, true
	}
	return router.Function{}, false
}

// Ready returns the ready pods of a revision, or of a function's newest revision, sorted by
// name (router.Backends). It is never nil.
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
// appears or goes (router.Backends).
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
