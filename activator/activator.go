package activator

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"k8s.io/utils/clock"

	"github.com/knactor/knactor/internal/fifo"
	"github.com/knactor/knactor/router/placement"
	"github.com/knactor/knactor/router/routing"
)

// DefaultQueueDepth bounds the calls held per function while it has no ready pod. 10000 held
// calls of ~1 KiB is ~10 MiB: enough to absorb a burst against a cold function, small enough
// that a function that never starts cannot exhaust the router.
const DefaultQueueDepth = 10000

var (
	// ErrQueueFull reports that the function already holds DefaultQueueDepth calls.
	ErrQueueFull = errors.New("too many calls are waiting for this function to start")
	// ErrNoPod reports that no pod became ready before the call's deadline.
	ErrNoPod = errors.New("no pod of this function became ready in time")
	// ErrNoReadyPod reports a target without a ready pod to an activator that holds no calls
	// (Config.NoHold).
	ErrNoReadyPod = errors.New("no ready pod")
)

// SlotError reports that no capacity slot of the chosen pod came free before the deadline.
type SlotError struct {
	Pod      string // the chosen pod's name
	Capacity int    // its capacity (containerConcurrency)
	Err      error  // the context's error
}

func (e *SlotError) Error() string {
	return fmt.Sprintf("no free slot on pod %s (capacity %d): %v", e.Pod, e.Capacity, e.Err)
}

func (e *SlotError) Unwrap() error { return e.Err }

// Pods is where the activator learns about a function's ready pods (the local runtime or the
// Kubernetes pod watcher, through the router's backends).
type Pods interface {
	// Ready returns the target's ready pods: the same Set until they change.
	Ready(target string) *placement.Set
	// Changed returns a channel closed at the next change of the target's ready pods.
	Changed(target string) <-chan struct{}
}

// Poker asks the autoscaler for an immediate decision about a function.
type Poker interface {
	Poke(function string)
}

// Config configures an Activator.
type Config struct {
	// QueueDepth bounds held calls per function. Default DefaultQueueDepth.
	QueueDepth int
	// Clock times cold starts. Default the real clock.
	Clock clock.PassiveClock
	// Registerer receives the cold-start histogram (nil: not registered).
	Registerer prometheus.Registerer
	// NoHold fails a call for a target without a ready pod at once, with ErrNoReadyPod, rather
	// than holding it and poking the autoscaler: a router without scale from zero.
	NoHold bool
	// InFlight, when set, also counts every claimed call per pod address, for a runtime that
	// drains a pod before it stops it (routing.InFlight.Drain) and is built before the
	// activator (whose pods it serves).
	InFlight *routing.InFlight
}

// Target is where a call goes: a set of pods (a function, or a revision of one) and how many
// calls one of its pods takes at once.
type Target struct {
	// Name is the target's name in Pods.Ready and Changed.
	Name string
	// Capacity is how many calls one pod takes at once (Knative's containerConcurrency);
	// 0 means no limit.
	Capacity int
}

// Choice says how Try chooses among a target's ready pods: the owner of a key (an actor's
// calls go to one pod, placement.Set.Owner), or the less loaded of two pods drawn at random
// (the zero Choice). It is a value, so choosing allocates nothing.
type Choice struct {
	key   string
	owner bool
}

// OwnerOf chooses key's owner among the ready pods (rendezvous hashing, placement.Set.Owner).
func OwnerOf(key string) Choice { return Choice{key: key, owner: true} }

// LeastLoaded chooses the pod with fewer calls in flight of two drawn at random (the "power of
// two choices": near-best balance without a global view). It is the zero Choice.
func LeastLoaded() Choice { return Choice{} }

// choose picks a pod of v's set.
func (c Choice) choose(v *podView) (placement.Pod, bool) {
	if c.owner {
		return v.set.Owner(c.key)
	}
	pods := v.list
	switch len(pods) {
	case 0:
		return placement.Pod{}, false
	case 1:
		return pods[0], true
	}
	i := rand.IntN(len(pods))
	j := rand.IntN(len(pods) - 1)
	if j >= i {
		j++
	}
	if v.pods[pods[j].Name].inflight.Load() < v.pods[pods[i].Name].inflight.Load() {
		return pods[j], true
	}
	return pods[i], true
}

// Activator is the one way a call reaches a pod (Try): it holds calls for a target that has no
// ready pod and pokes the autoscaler, chooses among the ready pods, counts each pod's calls in
// flight, and bounds the calls one pod gets at once. Safe for concurrent use.
//
// Goroutines: the activator has none of its own. Each call runs Try on the caller's goroutine,
// which waits there (for a ready pod on Pods.Changed, for a capacity slot in the pod's FIFO
// line) and ends the call with Claim.Release.
//
// Locks: mu guards waiting, targets and byName, and the building of every podView. A podView is
// immutable once published in its target's view, so the hot path (a warm pod) reads it without
// a lock; a pod's inflight is atomic; its podState.mu guards its sem and limit. mu is taken
// before a podState.mu, never after; the fifo line's waits hold neither.
//
// Per-pod state lives while its pod is in a ready set Try has seen, and after that until its
// last call ends: when a call finds its target's ready set changed, the activator rebuilds that
// target's view and looks over every target it knows, forgetting the pods that left (pod
// names are unique on Kubernetes, so anything kept would only grow) and the targets left
// without pods.
type Activator struct {
	cfg       Config
	pods      Pods
	poker     Poker
	coldStart *prometheus.HistogramVec
	cold      coldStarts // the newest hold durations, for ColdStarts (coldstarts.go)

	mu      sync.RWMutex
	waiting map[string]int          // target → calls held for it
	targets map[string]*targetState // target → its pods, for the targets Try has seen
	byName  map[string]*podState    // pod name → its state: one per pod, whichever target lists it
}

// targetState is a target's pods as Try last saw them.
type targetState struct {
	name string
	view atomic.Pointer[podView] // built under Activator.mu; never nil once published
}

// podView is a target's ready set and the state of each of its pods: immutable once built.
type podView struct {
	set  *placement.Set
	list []placement.Pod      // set's pods, sorted by name (Set.Pods copies them on each call)
	pods map[string]*podState // pod name → state, for every pod of set
}

// podState is one pod's calls in flight and its capacity.
type podState struct {
	name     string
	inflight atomic.Int64  // calls claimed on the pod (waiting for a slot or running)
	drain    *atomic.Int64 // the pod's count in Config.InFlight, counted with inflight; nil: none
	gone     atomic.Bool   // left every ready set: forgotten when inflight reaches 0 (set under Activator.mu)

	mu    sync.Mutex
	limit int      // the capacity sem enforces; 0: none (guarded by mu)
	sem   fifo.Sem // capacity slots, waiters in arrival order (guarded by mu)
	// limited mirrors limit != 0, so a call without a capacity skips mu when the pod has none.
	limited atomic.Bool
}

// New returns an Activator over pods that pokes poker when a call finds a function at zero
// (poker may be nil with Config.NoHold).
func New(cfg Config, pods Pods, poker Poker) *Activator {
	if cfg.QueueDepth <= 0 {
		cfg.QueueDepth = DefaultQueueDepth
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	a := &Activator{
		cfg: cfg, pods: pods, poker: poker,
		waiting: make(map[string]int),
		targets: make(map[string]*targetState),
		byName:  make(map[string]*podState),
		coldStart: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "knactor_activator_cold_start_seconds",
			Help: "Time from a call arriving for a function with no ready pod to a pod being ready for it.",
			// 10 ms (a warm restart) to ~80 s (an image pull on a cluster).
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 14),
		}, []string{"function"}),
	}
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(a.coldStart)
	}
	return a
}

// Claim is one call counted against a pod by Try, until Release.
type Claim struct {
	// Pod is the pod the call goes to.
	Pod  placement.Pod
	a    *Activator
	p    *podState
	slot bool // holds one of p's capacity slots
}

// Release ends the claim: it gives back the pod's capacity slot, if it took one (the next
// caller in line gets it), and counts the call out of the pod's calls in flight. Call it once.
func (c Claim) Release() {
	if c.p == nil {
		return
	}
	if c.slot {
		c.p.mu.Lock()
		c.p.sem.Release()
		c.p.mu.Unlock()
	}
	c.a.countOut(c.p)
}

// Try claims a pod of target for one call. While target has no ready pod it holds the call,
// poking the autoscaler (scale from zero), in arrival order and up to Config.QueueDepth calls;
// then choice picks one of the ready pods, the call is counted in the pod's calls in flight,
// and it waits, in arrival order, for one of the pod's target.Capacity slots. The call holds
// the pod until Claim.Release.
//
// Waiting ends at ctx's end or at deadline (zero: ctx alone). Try fails with ErrQueueFull or an
// error wrapping ErrNoPod while it holds the call for a ready pod, with ErrNoReadyPod at once
// under Config.NoHold, and with a *SlotError when no slot came free. A warm pod without a
// capacity, or with a free slot, is the hot path: Try neither waits nor allocates there.
//
// A pod that leaves the ready set does so before its runtime drains it (InFlight), and Try
// counts a call before it checks the set again, so every call the drain does not wait for
// sees the pod gone and chooses again.
func (a *Activator) Try(ctx context.Context, deadline time.Time, target Target, choice Choice) (Claim, error) {
	wait := lazyDeadline{parent: ctx, deadline: deadline}
	defer wait.stop()
	for {
		set := a.pods.Ready(target.Name)
		if set.Len() == 0 {
			if a.cfg.NoHold {
				return Claim{}, ErrNoReadyPod
			}
			var err error
			if set, err = a.awaitReady(wait.ctx(), target.Name); err != nil {
				return Claim{}, err
			}
		}
		v := a.view(target.Name, set)
		pod, ok := choice.choose(v)
		if !ok {
			continue
		}
		p := v.pods[pod.Name]
		p.countIn()
		if !a.pods.Ready(target.Name).Contains(pod.Name) {
			a.countOut(p) // left the ready set meanwhile: choose again
			continue
		}
		slot, err := p.acquire(&wait, target.Capacity)
		if err != nil {
			a.countOut(p)
			return Claim{}, &SlotError{Pod: pod.Name, Capacity: target.Capacity, Err: err}
		}
		return Claim{Pod: pod, a: a, p: p, slot: slot}, nil
	}
}

// InFlight returns how many calls are claimed on the named pod now (0 for a pod the activator
// does not know). A runtime that stops a pod takes it out of the ready set first and then
// waits for this to reach 0 (the router's Drain).
func (a *Activator) InFlight(pod string) int64 {
	a.mu.RLock()
	p := a.byName[pod]
	a.mu.RUnlock()
	if p == nil {
		return 0
	}
	return p.inflight.Load()
}

// countIn counts a call in p's calls in flight (and in Config.InFlight).
func (p *podState) countIn() {
	if p.drain != nil {
		p.drain.Add(1)
	}
	p.inflight.Add(1)
}

// countOut counts a call out of p's calls in flight, and forgets p after its last call once it
// has left every ready set.
func (a *Activator) countOut(p *podState) {
	if p.drain != nil {
		p.drain.Add(-1)
	}
	if p.inflight.Add(-1) != 0 || !p.gone.Load() {
		return
	}
	a.mu.Lock()
	a.forgetLocked(p)
	a.mu.Unlock()
}

// forgetLocked drops p, gone from every ready set, if no call is claimed on it.
func (a *Activator) forgetLocked(p *podState) {
	if p.gone.Load() && p.inflight.Load() == 0 && a.byName[p.name] == p {
		delete(a.byName, p.name)
	}
}

// view returns the podView of target for set, its ready set now: the published one while the
// set has not changed (the hot path, without a lock), else a new one.
func (a *Activator) view(target string, set *placement.Set) *podView {
	a.mu.RLock()
	t := a.targets[target]
	a.mu.RUnlock()
	if t != nil {
		if v := t.view.Load(); v.set == set {
			return v
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if t = a.targets[target]; t == nil {
		t = &targetState{name: target}
		a.targets[target] = t
	}
	v := a.rebuildLocked(t, set)
	a.sweepLocked(t)
	return v
}

// rebuildLocked publishes t's view of set (unless it is the one published), marking the pods
// that left it gone and forgetting those without calls.
func (a *Activator) rebuildLocked(t *targetState, set *placement.Set) *podView {
	old := t.view.Load()
	if old != nil && old.set == set {
		return old
	}
	v := &podView{set: set, list: set.Pods(), pods: make(map[string]*podState, set.Len())}
	for _, pod := range v.list {
		p := a.byName[pod.Name]
		if p == nil {
			p = &podState{name: pod.Name}
			if a.cfg.InFlight != nil {
				p.drain = a.cfg.InFlight.Counter(pod.Addr)
			}
			p.sem.Init(math.MaxInt, -1)
			a.byName[pod.Name] = p
		}
		p.gone.Store(false)
		v.pods[pod.Name] = p
	}
	t.view.Store(v)
	if old != nil {
		for name, p := range old.pods {
			if _, ok := v.pods[name]; !ok {
				p.gone.Store(true)
				a.forgetLocked(p)
			}
		}
	}
	return v
}

// sweepLocked brings every target but current up to date with its ready set, and forgets the
// targets left without pods (a revision that was replaced, a function scaled to zero): it runs
// whenever a call sees a ready set change, so what the activator keeps follows the pods.
func (a *Activator) sweepLocked(current *targetState) {
	for name, t := range a.targets {
		if t == current {
			continue
		}
		if v := a.rebuildLocked(t, a.pods.Ready(name)); v.set.Len() == 0 {
			delete(a.targets, name)
		}
	}
}

// acquire takes one of p's capacity slots for a call of a target whose pods take capacity
// calls at once (0: unlimited), waiting in line until wait's deadline; it reports whether it
// took one. A changed capacity resizes the pod's slots in place, so the calls that hold slots
// keep counting against the new capacity.
func (p *podState) acquire(wait *lazyDeadline, capacity int) (bool, error) {
	if capacity <= 0 && !p.limited.Load() {
		return false, nil // the hot path without a capacity: no lock
	}
	p.mu.Lock()
	if capacity != p.limit {
		p.limit = max(capacity, 0)
		p.limited.Store(p.limit != 0)
		if p.limit == 0 {
			p.sem.Resize(math.MaxInt) // unlimited: every waiter in line goes
		} else {
			p.sem.Resize(p.limit)
		}
	}
	if p.limit == 0 {
		p.mu.Unlock()
		return false, nil
	}
	if p.sem.TryAcquire() {
		p.mu.Unlock()
		return true, nil
	}
	ctx := wait.ctx()
	span := startSpan(ctx, spanSlot, attribute.Int("knactor.activator.capacity", capacity))
	err := p.sem.Wait(ctx, &p.mu)
	p.mu.Unlock()
	endSpan(span, err)
	return err == nil, err
}

// lazyDeadline is the context that bounds Try's waits: made only when there is something to
// wait for, since a warm pod with a free slot is the hot path.
type lazyDeadline struct {
	parent   context.Context
	deadline time.Time // zero: parent alone
	made     context.Context
	cancel   context.CancelFunc
}

func (l *lazyDeadline) ctx() context.Context {
	if l.made == nil {
		if l.deadline.IsZero() {
			l.made, l.cancel = l.parent, func() {}
		} else {
			l.made, l.cancel = context.WithDeadline(l.parent, l.deadline)
		}
	}
	return l.made
}

func (l *lazyDeadline) stop() {
	if l.cancel != nil {
		l.cancel()
	}
}

// awaitReady returns target's ready pods, holding the call until there is at least one. The
// first wait pokes the autoscaler; held calls are released together when a pod turns ready,
// in arrival order of their wake-ups. It fails with ErrQueueFull, or ErrNoPod when ctx ends.
func (a *Activator) awaitReady(ctx context.Context, function string) (_ *placement.Set, err error) {
	changed := a.pods.Changed(function)
	if set := a.pods.Ready(function); set.Len() > 0 {
		return set, nil
	}
	a.mu.Lock()
	if a.waiting[function] >= a.cfg.QueueDepth {
		a.mu.Unlock()
		return nil, ErrQueueFull
	}
	a.waiting[function]++
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		if a.waiting[function]--; a.waiting[function] == 0 {
			delete(a.waiting, function)
		}
		a.mu.Unlock()
	}()
	start := a.cfg.Clock.Now()
	hold := startSpan(ctx, spanHold, attribute.String("knactor.function", function))
	defer func() { endSpan(hold, err) }()
	if a.poker != nil {
		a.poker.Poke(function)
	}
	for {
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, fmt.Errorf("%w (waited %v)", ErrNoPod, a.cfg.Clock.Since(start).Round(time.Millisecond))
		}
		changed = a.pods.Changed(function)
		if set := a.pods.Ready(function); set.Len() > 0 {
			a.coldStart.WithLabelValues(function).Observe(a.cfg.Clock.Since(start).Seconds())
			a.cold.record(function, a.cfg.Clock.Since(start))
			return set, nil
		}
	}
}

// Collector returns the activator's metrics (the cold-start histogram) for a registry.
func (a *Activator) Collector() prometheus.Collector { return a.coldStart }

// Waiting returns how many calls are held for function.
func (a *Activator) Waiting(function string) int {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.waiting[function]
}
