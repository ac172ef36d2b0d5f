package activator

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"k8s.io/utils/clock"

	"github.com/knactor/knactor/internal/fifo"
	"github.com/knactor/knactor/router/placement"
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
)

// Pods is where the activator learns about a function's ready pods (the local runtime or the
// Kubernetes pod watcher, through the router's backends).
type Pods interface {
	Ready(function string) *placement.Set
	Changed(function string) <-chan struct{}
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
}

// Activator holds calls for functions that have no ready pod and bounds the calls each pod gets
// at once. Safe for concurrent use.
//
// mu guards waiting and breakers. Held calls wait on their function's Changed channel; each one
// that waited records its cold start when it is released.
type Activator struct {
	cfg       Config
	pods      Pods
	poker     Poker
	coldStart *prometheus.HistogramVec
	cold      coldStarts // the newest hold durations, for ColdStarts (coldstarts.go)

	mu       sync.Mutex
	waiting  map[string]int      // function → calls held for it
	breakers map[string]*breaker // pod name → its capacity
}

// New returns an Activator over pods that pokes poker when a call finds a function at zero.
func New(cfg Config, pods Pods, poker Poker) *Activator {
	if cfg.QueueDepth <= 0 {
		cfg.QueueDepth = DefaultQueueDepth
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	a := &Activator{
		cfg: cfg, pods: pods, poker: poker,
		waiting:  make(map[string]int),
		breakers: make(map[string]*breaker),
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

// AwaitReady returns function's ready pods, holding the call until there is at least one. The
// first wait pokes the autoscaler; held calls are released together when a pod turns ready,
// in arrival order of their wake-ups. It fails with ErrQueueFull, or ErrNoPod when ctx ends.
func (a *Activator) AwaitReady(ctx context.Context, function string) (_ *placement.Set, err error) {
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
	a.poker.Poke(function)
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
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.waiting[function]
}

// Acquire takes one of capacity slots on pod (Knative's containerConcurrency), waiting in
// arrival order for a free one; capacity 0 means unlimited. Call release when the call ends.
func (a *Activator) Acquire(ctx context.Context, pod placement.Pod, capacity int) (release func(), err error) {
	if capacity <= 0 {
		return func() {}, nil
	}
	a.mu.Lock()
	b, ok := a.breakers[pod.Name]
	if !ok || b.capacity != capacity {
		b = newBreaker(capacity)
		a.breakers[pod.Name] = b
	}
	a.mu.Unlock()
	return b.acquire(ctx)
}

// Forget drops the capacity state of pods that are gone.
func (a *Activator) Forget(pod string) {
	a.mu.Lock()
	delete(a.breakers, pod)
	a.mu.Unlock()
}

// breaker is a pod's capacity: a FIFO semaphore (internal/fifo) of capacity slots, whose
// waiters are served in arrival order and may line up without bound (the call's deadline
// bounds each wait). mu guards sem.
type breaker struct {
	capacity int
	mu       sync.Mutex
	sem      fifo.Sem
}

func newBreaker(capacity int) *breaker {
	b := &breaker{capacity: capacity}
	b.sem.Init(capacity, -1)
	return b
}

func (b *breaker) acquire(ctx context.Context) (func(), error) {
	b.mu.Lock()
	if b.sem.TryAcquire() {
		b.mu.Unlock()
		return b.releaser(), nil
	}
	span := startSpan(ctx, spanSlot, attribute.Int("knactor.activator.capacity", b.capacity))
	err := b.sem.Wait(ctx, &b.mu)
	b.mu.Unlock()
	endSpan(span, err)
	if err != nil {
		return nil, err
	}
	return b.releaser(), nil
}

// releaser returns the function that gives the slot back, once however often it is called.
func (b *breaker) releaser() func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			b.mu.Lock()
			defer b.mu.Unlock()
			b.sem.Release() // the slot passes straight to the next waiter, if any
		})
	}
}
