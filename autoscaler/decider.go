package autoscaler

import (
	"math"
	"time"

	"github.com/knactor/knactor/router/stats"
)

// Decision is one autoscaling decision for a function.
type Decision struct {
	// Time is when the decision was made.
	Time time.Time
	// DesiredPods is how many pods the function should run.
	DesiredPods int32
	// Valid is false when the stable window holds no statistics and no poke is pending: Knative
	// makes no decision then, and DesiredPods is the decider's current value — its previous
	// decision, or before the first one, max(InitialScale, ready pods) within [MinScale,
	// MaxScale].
	Valid bool
	// ReadyPods is the number of ready pods the decision was made for.
	ReadyPods int
	// Panicking reports panic mode: a burst seen in the panic window, during which the function
	// is never scaled down.
	Panicking bool
	// StableValue and PanicValue are the observed metric of the whole function (concurrency, or
	// requests per second) averaged over the stable and the panic window.
	StableValue, PanicValue float64
	// StablePods and PanicPods are ceil(value / TargetPerPod) for the two windows, before the
	// actor signal, rate limits and bounds.
	StablePods, PanicPods int32
	// ActiveActors is the newest snapshot's number of active actors; ActorPods is
	// ceil(ActiveActors / TargetActorsPerPod), 0 when the signal is off.
	ActiveActors int
	ActorPods    int32
	// Poked reports that a poke since the previous decision raised DesiredPods to at least
	// max(1, ActivationScale).
	Poked bool
	// ScaleToZeroPending reports that the decision would be 0 but the function keeps one pod
	// until its stable window has shown no activity and then ScaleToZeroGracePeriod has passed.
	ScaleToZeroPending bool
}

// Decider makes the KPA's decisions for one function, as a pure function of the statistics
// recorded into it, the pokes, the ready pods and the times it is given; it reads no clock.
// It follows knative.dev/serving/pkg/autoscaler/scaling/autoscaler.go (the decision) and
// pkg/reconciler/autoscaling/kpa/scaler.go (bounds, initial scale, scale to zero); see Decide.
//
// A Decider is not safe for concurrent use.
type Decider struct {
	spec        Spec
	target      float64       // spec.TargetPerPod()
	panicWindow time.Duration // spec.PanicWindow()

	// stats holds the observations of the last stable window.
	stats *buckets
	// newest is the time of the newest snapshot recorded, activeActors its ActiveActors.
	newest       time.Time
	activeActors int
	// lastActivity is the latest of: a snapshot that saw any request, a poke, and the first
	// decision of a function that starts with pods.
	lastActivity time.Time
	// poked is set by Poke and cleared by the next decision.
	poked bool

	// started is set by the first decision.
	started bool
	// desired is the latest decision.
	desired int32
	// initialized is set once max(MinScale, InitialScale) pods have been ready; until then
	// InitialScale is a lower bound.
	initialized bool
	// panicTime is the latest decision over the panic threshold while panicking; zero when not
	// panicking. maxPanicPods is the most pods wanted during the panic.
	panicTime    time.Time
	maxPanicPods int32
	// delay keeps the most pods wanted over the scale-down delay; nil when there is none.
	delay *maxWindow
	// zeroSince is when the decision first became 0 with the stable window idle; zero when the
	// decision is not 0.
	zeroSince time.Time
}

// NewDecider returns a Decider for spec, or spec's validation error.
func NewDecider(spec Spec) (*Decider, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	d := &Decider{stats: newBuckets(spec.StableWindow)}
	d.setSpec(spec)
	return d, nil
}

// Spec returns the decider's settings.
func (d *Decider) Spec() Spec { return d.spec }

// Update changes the decider's settings, keeping its statistics and state (the statistics that
// fit a new stable window; a changed scale-down delay starts empty).
func (d *Decider) Update(spec Spec) error {
	if err := spec.Validate(); err != nil {
		return err
	}
	d.stats.resize(spec.StableWindow)
	d.setSpec(spec)
	return nil
}

func (d *Decider) setSpec(spec Spec) {
	if d.delay == nil || spec.ScaleDownDelay != d.spec.ScaleDownDelay {
		d.delay = nil
		if spec.ScaleDownDelay > 0 {
			d.delay = &maxWindow{length: spec.ScaleDownDelay}
		}
	}
	d.spec = spec
	d.target = spec.TargetPerPod()
	d.panicWindow = spec.PanicWindow()
}

// Record adds one snapshot of the function's statistics, in the 1 s bucket of s.Time. It
// counts for the time it covers, s.Window (at most the stable window); a snapshot with no
// window (a function the router has not seen) counts as one second at its InFlight.
func (d *Decider) Record(s stats.Snapshot) {
	weight := s.Window.Seconds()
	if weight <= 0 {
		weight = BucketSize.Seconds()
	}
	weight = min(weight, d.spec.StableWindow.Seconds())
	concurrency := s.AverageConcurrency
	if !(concurrency >= 0) || math.IsInf(concurrency, 0) {
		concurrency = 0
	}
	if s.Window <= 0 {
		concurrency = float64(max(s.InFlight, 0))
	}
	d.stats.record(s.Time, weight, concurrency, float64(s.Requests))
	if !s.Time.Before(d.newest) {
		d.newest, d.activeActors = s.Time, s.ActiveActors
	}
	if concurrency > 0 || s.Requests > 0 || s.InFlight > 0 || s.ActiveActors > 0 {
		d.lastActivity = later(d.lastActivity, s.Time)
	}
}

// Poke tells the decider that a call arrived at now for a function that may have no pod
// (Knative's activator sends the autoscaler a stat for it). The next decision wants at least
// max(1, ActivationScale) pods even without statistics, and the poke counts as activity, so
// the function is not scaled back to zero before a stable window and a grace period pass.
func (d *Decider) Poke(now time.Time) {
	d.poked = true
	d.lastActivity = later(d.lastActivity, now)
}

// Decide returns the number of pods the function should run at now, given its ready pods.
// Call it every TickInterval; each call is one step of the rate limits. The steps:
//
//  1. Observe: the metric (concurrency or rps) averaged over the stable window and over the
//     panic window. With nothing in the stable window and no poke, there is no decision
//     (Valid false, DesiredPods unchanged), as in Knative.
//  2. StablePods = ceil(stable / TargetPerPod), PanicPods likewise; the actor signal raises
//     the stable want to ActorPods = ceil(active actors / TargetActorsPerPod).
//  3. Rate limits, per decision, from r = max(1, ready): each want is kept within
//     [floor(r / MaxScaleDownRate), ceil(r × MaxScaleUpRate)]. ActivationScale > 1 then raises
//     a nonzero want to ActivationScale.
//  4. Panic: entered when ready > 0 and PanicPods / ready ≥ PanicThresholdPercentage / 100,
//     extended by every decision over the threshold, left at the first decision more than a
//     stable window after the last one over it. While panicking the decision is the most
//     pods wanted since the panic began (the larger of the two wants), so it never goes down.
//     A decider whose first decision sees more than one ready pod starts panicking, keeping
//     those pods until it has seen a stable window of load (Knative's guard for a restarted
//     autoscaler).
//  5. Scale-down delay: the most pods decided over the last ScaleDownDelay.
//  6. Poke: a pending poke raises the decision to max(1, ActivationScale).
//  7. Bounds: [MinScale, MaxScale]; until max(MinScale, InitialScale) pods have been ready,
//     an InitialScale above 1 is a lower bound too.
//  8. Scale to zero: a decision of 0 is kept at 1 until (a) the last activity (a request seen
//     in a snapshot, a poke, or the first decision when the function starts with pods) is a
//     full stable window old, and then (b) ScaleToZeroGracePeriod has passed since the first
//     decision of 0 that found (a) true. So the last pod goes StableWindow +
//     ScaleToZeroGracePeriod after the last request, plus up to a tick (90 s by default). A
//     function already at zero (previous decision 0, no ready pod) stays there at once.
func (d *Decider) Decide(now time.Time, readyPods int) Decision {
	spec := d.spec
	readyPods = max(readyPods, 0)
	if !d.started {
		d.started = true
		if spec.InitialScale > 0 || readyPods > 0 {
			d.lastActivity = later(d.lastActivity, now)
		}
		d.desired = d.bound(max(spec.InitialScale, clampPods(float64(readyPods))))
		if readyPods > 1 {
			d.panicTime, d.maxPanicPods = now, int32(min(readyPods, math.MaxInt32))
		}
	}
	if readyPods >= int(max(spec.MinScale, spec.InitialScale)) {
		d.initialized = true
	}

	dec := Decision{Time: now, ReadyPods: readyPods}
	stableC, stableRPS, ok := d.stats.average(now, spec.StableWindow)
	panicC, panicRPS, _ := d.stats.average(now, d.panicWindow)
	dec.StableValue, dec.PanicValue = stableC, panicC
	if spec.Metric == MetricRPS {
		dec.StableValue, dec.PanicValue = stableRPS, panicRPS
	}
	if ok {
		dec.ActiveActors = d.activeActors
	}
	if !ok && !d.poked {
		dec.DesiredPods, dec.Panicking = d.desired, !d.panicTime.IsZero()
		return dec
	}
	dec.Valid = true

	// 2. What the load asks for.
	stableWant := math.Ceil(dec.StableValue / d.target)
	panicWant := math.Ceil(dec.PanicValue / d.target)
	dec.StablePods, dec.PanicPods = clampPods(stableWant), clampPods(panicWant)
	if spec.TargetActorsPerPod > 0 {
		actorWant := math.Ceil(float64(dec.ActiveActors) / float64(spec.TargetActorsPerPod))
		dec.ActorPods = clampPods(actorWant)
		stableWant = math.Max(stableWant, actorWant)
	}

	// 3. Rate limits.
	r := math.Max(1, float64(readyPods))
	maxUp := math.Ceil(spec.MaxScaleUpRate * r)
	maxDown := math.Floor(r / spec.MaxScaleDownRate)
	stablePods := clampPods(math.Min(math.Max(stableWant, maxDown), maxUp))
	panicPods := clampPods(math.Min(math.Max(panicWant, maxDown), maxUp))
	if a := spec.ActivationScale; a > 1 {
		if stableWant > 0 && a > stablePods {
			stablePods = a
		}
		if panicWant > 0 && a > panicPods {
			panicPods = a
		}
	}

	// 4. Panic.
	over := readyPods > 0 && panicWant/float64(readyPods) >= spec.PanicThresholdPercentage/100
	switch {
	case over:
		d.panicTime = now
	case !d.panicTime.IsZero() && d.panicTime.Add(spec.StableWindow).Before(now):
		d.panicTime, d.maxPanicPods = time.Time{}, 0
	}
	desired := stablePods
	if dec.Panicking = !d.panicTime.IsZero(); dec.Panicking {
		d.maxPanicPods = max(d.maxPanicPods, desired, panicPods)
		desired = d.maxPanicPods
	}

	// 5. Scale-down delay.
	if d.delay != nil {
		desired = d.delay.record(now, desired)
	}

	// 6. Poke.
	if d.poked {
		d.poked, dec.Poked = false, true
		desired = max(desired, 1, spec.ActivationScale)
	}

	// 7. Bounds.
	desired = d.bound(desired)

	// 8. Scale to zero.
	if desired == 0 {
		switch {
		case now.Sub(d.lastActivity) < spec.StableWindow:
			d.zeroSince = time.Time{}
			desired, dec.ScaleToZeroPending = 1, true
		case d.desired == 0 && readyPods == 0:
			// Already at zero.
		default:
			if d.zeroSince.IsZero() {
				d.zeroSince = now
			}
			if now.Sub(d.zeroSince) < spec.ScaleToZeroGracePeriod {
				desired, dec.ScaleToZeroPending = 1, true
			}
		}
	} else {
		d.zeroSince = time.Time{}
	}

	d.desired = desired
	dec.DesiredPods = desired
	return dec
}

// bound applies MinScale and MaxScale, and InitialScale as a lower bound until the function
// has been initialized (Knative applies it only when above 1).
func (d *Decider) bound(n int32) int32 {
	lo := d.spec.MinScale
	if !d.initialized && d.spec.InitialScale > 1 {
		lo = max(lo, d.spec.InitialScale)
	}
	n = max(n, lo)
	if d.spec.MaxScale > 0 {
		n = min(n, d.spec.MaxScale)
	}
	return n
}

// clampPods converts a want to a pod count within [0, MaxInt32].
func clampPods(f float64) int32 {
	switch {
	case !(f > 0):
		return 0
	case f >= math.MaxInt32:
		return math.MaxInt32
	default:
		return int32(f)
	}
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
