package autoscaler

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"time"

	"k8s.io/utils/clock"

	"github.com/knactor/knactor/router/stats"
)

// StatsSource gives the statistics of a target (a function, or one of its revisions) since its
// previous snapshot: the router's stats.Recorder (its EndWindow). Each call ends the target's
// window, so the Autoscaler must be its only reader.
type StatsSource interface {
	Snapshot(target string) stats.Snapshot
}

// Scaler carries out decisions: the local-pod runtime or the Kubernetes scale subresource.
type Scaler interface {
	// Scale makes the target run desired pods. It should not wait for them to become ready.
	Scale(ctx context.Context, target string, desired int32) error
	// ReadyPods returns how many of the target's pods are ready.
	ReadyPods(target string) int
}

// Config is the Autoscaler's own settings; the per-function ones are in Spec.
type Config struct {
	// ScrapeInterval is how often each function's statistics are snapshotted (Knative's
	// scrapeTickInterval): once per 1 s bucket. Default 1 s.
	ScrapeInterval time.Duration
	// ScaleTimeout bounds one Scale call. Default 10 s.
	ScaleTimeout time.Duration
}

// Defaults of Config.
const (
	DefaultScrapeInterval = time.Second
	DefaultScaleTimeout   = 10 * time.Second
)

// Status is what the Autoscaler last decided for a function (for `kn actor list`).
type Status struct {
	Function string
	// Metric and TargetPerPod are the function's scaling metric and per-pod target.
	Metric       string
	TargetPerPod float64
	// DesiredPods is the latest decision; before the first one, the function's InitialScale.
	DesiredPods int32
	// AppliedPods is the latest decision the Scaler accepted; -1 before the first.
	AppliedPods int32
	// ReadyPods is the ready pods at the latest decision.
	ReadyPods int
	// Panicking reports panic mode at the latest decision.
	Panicking bool
	// LastDecision is when the latest decision was made; zero before the first.
	LastDecision time.Time
	// StableValue and PanicValue are the metric averaged over the stable and panic windows.
	StableValue, PanicValue float64
	// ActiveActors is the newest snapshot's number of active actors.
	ActiveActors int
	// ScaleError is the latest Scale call's error ("" when it succeeded); it is retried at the
	// next decision.
	ScaleError string
}

// Autoscaler drives a Decider per function: it snapshots each function's statistics every
// ScrapeInterval, decides every TickInterval (or at once on a poke), and has the Scaler apply
// the decision when it differs from the last one asked for.
//
// Goroutines and locks:
//   - Run's goroutine (the loop) is the only one that records and decides, and the only caller
//     of the StatsSource and of Scaler.ReadyPods. It never calls Scaler.Scale, so a slow Scale
//     delays no scrape, decision or poke.
//   - Each function has at most one applier goroutine, started by the loop when a decision is
//     to be applied and none is running. It calls Scaler.Scale with the function's latest
//     desired scale (a decision made while a Scale is in flight replaces any value still
//     waiting, so stale values are never applied), and returns when nothing is left to apply.
//     The Scale context ends with Run's; Run waits for every applier before it returns.
//   - mu guards functions, pokes and running. Add, Remove, Poke and Status take it briefly and
//     never call out while holding it.
//   - Each function's own mu guards its Decider, its Status fields and its apply slots; the loop
//     and the applier hold it briefly, never while calling the Scaler or the StatsSource, so
//     Status and Add do not wait on a slow Scale.
type Autoscaler struct {
	cfg    Config
	src    StatsSource
	scaler Scaler
	clk    clock.WithTicker
	log    *slog.Logger

	// pokeCh carries one token when pokes is not empty; Poke never blocks on it.
	pokeCh chan struct{}

	mu        sync.Mutex
	functions map[string]*function
	pokes     map[string]time.Time // poked functions and when, until the loop takes them
	running   bool

	// appliers counts the running applier goroutines; Run waits for them before it returns.
	appliers sync.WaitGroup

	// afterLoop, when set (by tests), is called by the loop after each scrape tick and each
	// round of pokes, with the time it handled.
	afterLoop func(now time.Time)
	// afterApply, when set (by tests), is called by an applier after each Scale call, with the
	// function, the scale it asked for and the call's error.
	afterApply func(function string, desired int32, err error)
}

// function is the Autoscaler's state for one function.
type function struct {
	name string

	mu sync.Mutex
	// decider is the function's Decider.
	decider *Decider
	// removed is set by Remove; the loop skips a removed function it still holds.
	removed bool
	// lastDecision is when the latest decision was made (zero before the first).
	lastDecision time.Time
	// status is the function's Status.
	status Status

	// pending is the latest decision waiting to be applied; hasPending reports one.
	pending    Decision
	hasPending bool
	// inflight is the scale of the Scale call in progress; hasInflight reports one.
	inflight    int32
	hasInflight bool
	// applying reports that the function's applier goroutine runs.
	applying bool
}

// New returns an Autoscaler; call Run to start it. A nil clk is the real clock, a nil log
// discards.
func New(cfg Config, src StatsSource, scaler Scaler, clk clock.WithTicker, log *slog.Logger) *Autoscaler {
	if cfg.ScrapeInterval <= 0 {
		cfg.ScrapeInterval = DefaultScrapeInterval
	}
	if cfg.ScaleTimeout <= 0 {
		cfg.ScaleTimeout = DefaultScaleTimeout
	}
	if clk == nil {
		clk = clock.RealClock{}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Autoscaler{
		cfg:       cfg,
		src:       src,
		scaler:    scaler,
		clk:       clk,
		log:       log,
		pokeCh:    make(chan struct{}, 1),
		functions: make(map[string]*function),
		pokes:     make(map[string]time.Time),
	}
}

// Add starts autoscaling function with spec, or changes the spec of a function already added
// (keeping its statistics and state). It returns spec's validation error.
func (a *Autoscaler) Add(name string, spec Spec) error {
	if err := spec.Validate(); err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if f, ok := a.functions[name]; ok {
		f.mu.Lock()
		defer f.mu.Unlock()
		err := f.decider.Update(spec)
		f.status.Metric, f.status.TargetPerPod = spec.Metric, spec.TargetPerPod()
		return err
	}
	d, err := NewDecider(spec)
	if err != nil {
		return err
	}
	a.functions[name] = &function{name: name, decider: d, status: Status{
		Function:     name,
		Metric:       spec.Metric,
		TargetPerPod: spec.TargetPerPod(),
		DesiredPods:  spec.InitialScale,
		AppliedPods:  -1,
	}}
	return nil
}

// Remove stops autoscaling function. Its pods are left as they are.
func (a *Autoscaler) Remove(name string) {
	a.mu.Lock()
	f, ok := a.functions[name]
	delete(a.functions, name)
	delete(a.pokes, name)
	a.mu.Unlock()
	if ok {
		f.mu.Lock()
		f.removed = true
		f.mu.Unlock()
	}
}

// Poke asks for an immediate decision for function, because a call arrived that may find no
// pod: the decision wants at least max(1, ActivationScale) pods. It never blocks; a function
// not added is ignored.
func (a *Autoscaler) Poke(name string) {
	a.mu.Lock()
	if _, ok := a.functions[name]; !ok {
		a.mu.Unlock()
		return
	}
	if _, pending := a.pokes[name]; !pending {
		a.pokes[name] = a.clk.Now()
	}
	a.mu.Unlock()
	select {
	case a.pokeCh <- struct{}{}:
	default: // a token is already waiting; the loop takes every pending poke with it
	}
}

// Status returns what the Autoscaler last decided for function.
func (a *Autoscaler) Status(name string) (Status, bool) {
	a.mu.Lock()
	f, ok := a.functions[name]
	a.mu.Unlock()
	if !ok {
		return Status{}, false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.status, true
}

// Functions returns the names of the functions being autoscaled, sorted.
func (a *Autoscaler) Functions() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	names := make([]string, 0, len(a.functions))
	for name := range a.functions {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// Run drives the autoscaler until ctx ends, then waits for the Scale calls in progress (their
// context ends with ctx) and returns nil. It may run only once at a time.
func (a *Autoscaler) Run(ctx context.Context) error {
	a.mu.Lock()
	if a.running {
		a.mu.Unlock()
		return errors.New("autoscaler: already running")
	}
	a.running = true
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		a.running = false
		a.mu.Unlock()
	}()

	ticker := a.clk.NewTicker(a.cfg.ScrapeInterval)
	defer ticker.Stop()
	defer a.appliers.Wait()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C():
			now := a.clk.Now()
			a.tick(ctx, now)
			a.done(now)
		case <-a.pokeCh:
			now := a.clk.Now()
			a.handlePokes(ctx, now)
			a.done(now)
		}
	}
}

func (a *Autoscaler) done(now time.Time) {
	if a.afterLoop != nil {
		a.afterLoop(now)
	}
}

// snapshot returns the functions being autoscaled, in name order.
func (a *Autoscaler) snapshot() []*function {
	a.mu.Lock()
	defer a.mu.Unlock()
	fs := make([]*function, 0, len(a.functions))
	for _, f := range a.functions {
		fs = append(fs, f)
	}
	slices.SortFunc(fs, func(x, y *function) int {
		switch {
		case x.name < y.name:
			return -1
		case x.name > y.name:
			return 1
		}
		return 0
	})
	return fs
}

// tick records a snapshot of every function, then decides for those whose TickInterval has
// passed since their last decision (less half a scrape, so a late tick does not skip one).
func (a *Autoscaler) tick(ctx context.Context, now time.Time) {
	fs := a.snapshot()
	for _, f := range fs {
		s := a.src.Snapshot(f.name)
		f.mu.Lock()
		if !f.removed {
			f.decider.Record(s)
		}
		f.mu.Unlock()
	}
	for _, f := range fs {
		f.mu.Lock()
		due := !f.removed && (f.lastDecision.IsZero() ||
			now.Sub(f.lastDecision) >= f.decider.Spec().TickInterval-a.cfg.ScrapeInterval/2)
		f.mu.Unlock()
		if due {
			a.decideAndScale(ctx, f, now, time.Time{})
		}
	}
}

// handlePokes decides at once for every poked function.
func (a *Autoscaler) handlePokes(ctx context.Context, now time.Time) {
	a.mu.Lock()
	pokes := a.pokes
	a.pokes = make(map[string]time.Time)
	fs := make([]*function, 0, len(pokes))
	for name := range pokes {
		if f, ok := a.functions[name]; ok {
			fs = append(fs, f)
		}
	}
	a.mu.Unlock()
	for _, f := range fs {
		a.decideAndScale(ctx, f, now, pokes[f.name])
	}
}

// decideAndScale makes one decision for f (after poking it at pokedAt, unless zero) and hands
// it to f's applier when it differs from the scale last asked for, or, with nothing in flight,
// when the last call failed or pods are wanted and none is ready.
func (a *Autoscaler) decideAndScale(ctx context.Context, f *function, now, pokedAt time.Time) {
	ready := a.scaler.ReadyPods(f.name)

	f.mu.Lock()
	if f.removed {
		f.mu.Unlock()
		return
	}
	if !pokedAt.IsZero() {
		f.decider.Poke(pokedAt)
	}
	dec := f.decider.Decide(now, ready)
	f.lastDecision = now
	prev := f.status
	f.status.DesiredPods = dec.DesiredPods
	f.status.ReadyPods = ready
	f.status.Panicking = dec.Panicking
	f.status.LastDecision = now
	f.status.StableValue, f.status.PanicValue = dec.StableValue, dec.PanicValue
	f.status.ActiveActors = dec.ActiveActors
	switch {
	case f.hasPending || f.hasInflight:
		// A Scale call is in progress or about to be made: the latest decision replaces the
		// one waiting, and nothing is asked twice.
		switch {
		case f.hasPending && dec.DesiredPods == f.pending.DesiredPods:
			f.pending = dec
		case f.hasInflight && dec.DesiredPods == f.inflight:
			f.hasPending = false
		default:
			f.pending, f.hasPending = dec, true
		}
	default:
		// Pods are wanted and none is ready: apply the decision even when it is the one
		// applied, at every decision until one is, since something else may have scaled the
		// target down behind this decider (Knative retiring a revision no route sent traffic
		// to, kubectl scale). Scalers make an unchanged Scale cheap: the local runtime counts
		// starting pods, the Kubernetes one reads the scale and writes nothing.
		reapply := ready == 0 && dec.DesiredPods > 0
		if dec.DesiredPods != prev.AppliedPods || prev.ScaleError != "" || reapply {
			f.pending, f.hasPending = dec, true
		}
	}
	start := f.hasPending && !f.applying
	if start {
		f.applying = true
		a.appliers.Add(1)
	}
	f.mu.Unlock()

	if dec.Panicking != prev.Panicking {
		log := a.log.With("function", f.name)
		if dec.Panicking {
			log.Info("autoscaler: panicking", "panic_value", dec.PanicValue, "ready", ready)
		} else {
			log.Info("autoscaler: panic over", "stable_value", dec.StableValue, "ready", ready)
		}
	}
	if start {
		go a.apply(ctx, f)
	}
}

// apply is f's applier: it calls the Scaler with f's pending decision until none is left, f is
// removed, or ctx ends. A failed call is recorded in f's Status and retried at the next
// decision.
func (a *Autoscaler) apply(ctx context.Context, f *function) {
	defer a.appliers.Done()
	log := a.log.With("function", f.name)
	for {
		f.mu.Lock()
		if !f.hasPending || f.removed || ctx.Err() != nil {
			f.hasPending = false
			f.applying = false
			f.mu.Unlock()
			return
		}
		dec := f.pending
		f.hasPending = false
		f.inflight, f.hasInflight = dec.DesiredPods, true
		f.mu.Unlock()

		sctx, cancel := context.WithTimeout(ctx, a.cfg.ScaleTimeout)
		err := a.scaler.Scale(sctx, f.name, dec.DesiredPods)
		cancel()

		f.mu.Lock()
		f.hasInflight = false
		prevApplied := f.status.AppliedPods
		if err != nil {
			f.status.ScaleError = err.Error()
		} else {
			f.status.ScaleError = ""
			f.status.AppliedPods = dec.DesiredPods
		}
		f.mu.Unlock()

		switch {
		case err != nil:
			if ctx.Err() == nil {
				log.Warn("autoscaler: scale failed; retrying at the next decision",
					"desired", dec.DesiredPods, "error", err)
			}
		case dec.DesiredPods == prevApplied:
			log.Debug("autoscaler: scale applied again: no pod is ready yet", "desired", dec.DesiredPods)
		default:
			log.Info("autoscaler: scaled", "from", prevApplied, "to", dec.DesiredPods, "ready", dec.ReadyPods,
				"stable_value", dec.StableValue, "panic_value", dec.PanicValue, "active_actors", dec.ActiveActors,
				"panicking", dec.Panicking, "poked", dec.Poked)
		}
		if a.afterApply != nil {
			a.afterApply(f.name, dec.DesiredPods, err)
		}
	}
}
