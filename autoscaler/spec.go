package autoscaler

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// The annotations a function's manifest sets its autoscaling with: Knative's own names (see
// knative.dev/serving/pkg/apis/autoscaling), and knactor's under knactor.dev/. Validate names
// the offending field by these keys, so an error points at the line of the manifest to fix.
const (
	AnnotationMinScale                 = "autoscaling.knative.dev/min-scale"
	AnnotationMaxScale                 = "autoscaling.knative.dev/max-scale"
	AnnotationInitialScale             = "autoscaling.knative.dev/initial-scale"
	AnnotationActivationScale          = "autoscaling.knative.dev/activation-scale"
	AnnotationMetric                   = "autoscaling.knative.dev/metric"
	AnnotationTarget                   = "autoscaling.knative.dev/target"
	AnnotationTargetUtilization        = "autoscaling.knative.dev/target-utilization-percentage"
	AnnotationWindow                   = "autoscaling.knative.dev/window"
	AnnotationPanicWindowPercentage    = "autoscaling.knative.dev/panic-window-percentage"
	AnnotationPanicThresholdPercentage = "autoscaling.knative.dev/panic-threshold-percentage"
	AnnotationScaleDownDelay           = "autoscaling.knative.dev/scale-down-delay"
	AnnotationTargetActorsPerPod       = "knactor.dev/target-actors-per-pod"
)

// Names of the settings that have no per-function annotation: the first five are keys of
// Knative's cluster-wide config-autoscaler ConfigMap; tick-interval is a constant in Knative
// (pkg/autoscaler/scaling/multiscaler.go) that knactor makes a setting.
const (
	FieldContainerConcurrency   = "containerConcurrency"
	FieldMaxScaleUpRate         = "max-scale-up-rate"
	FieldMaxScaleDownRate       = "max-scale-down-rate"
	FieldScaleToZeroGracePeriod = "scale-to-zero-grace-period"
	FieldAllowZeroInitialScale  = "allow-zero-initial-scale"
	FieldTickInterval           = "tick-interval"
)

// The scaling metrics (autoscaling.knative.dev/metric) the KPA supports.
const (
	// MetricConcurrency scales on the time-weighted average number of requests in flight.
	MetricConcurrency = "concurrency"
	// MetricRPS scales on requests per second.
	MetricRPS = "rps"
)

// Knative's defaults (knative.dev/serving/pkg/autoscaler/config/config.go) and limits
// (pkg/apis/autoscaling/register.go). knactor keeps them so that a manifest scales the same
// here as on a Knative cluster.
const (
	// DefaultTargetConcurrency is the requests in flight per pod aimed at when neither a target
	// nor containerConcurrency is set (container-concurrency-target-default). High enough that a
	// pod doing I/O-bound work is kept busy; containerConcurrency lowers it for pods that cannot
	// take that many.
	DefaultTargetConcurrency = 100.0
	// DefaultTargetRPS is the requests per second per pod aimed at under the rps metric
	// (requests-per-second-target-default).
	DefaultTargetRPS = 200.0
	// DefaultTargetUtilization is the fraction of the target a pod is planned to run at
	// (container-concurrency-target-percentage 70%): the 30% headroom absorbs growth in the time
	// a new pod takes to start, so a rising load is met before pods saturate.
	DefaultTargetUtilization = 0.7
	// DefaultStableWindow is the window the stable decision averages over: long enough that
	// short dips do not scale a function down, short enough to follow a real change in a minute.
	DefaultStableWindow = 60 * time.Second
	// DefaultPanicWindowPercentage makes the panic window 10% of the stable window (6 s), quick
	// enough to see a burst within a few ticks.
	DefaultPanicWindowPercentage = 10.0
	// DefaultPanicThresholdPercentage enters panic mode when the panic window needs twice the
	// ready pods: a burst the stable window would take most of a minute to notice.
	DefaultPanicThresholdPercentage = 200.0
	// DefaultMaxScaleUpRate lets one tick grow a function to 1000× its ready pods: in effect
	// unlimited, so a burst gets all the pods it needs at once.
	DefaultMaxScaleUpRate = 1000.0
	// DefaultMaxScaleDownRate lets one tick at most halve the pods, so a drop in load sheds
	// capacity over a few ticks rather than all at once.
	DefaultMaxScaleDownRate = 2.0
	// DefaultScaleToZeroGracePeriod is how long the last pod is kept after the stable window has
	// shown no traffic (Knative: the time the activator must have been in the path before the
	// last pod goes), so a call arriving just then still finds a warm pod.
	DefaultScaleToZeroGracePeriod = 30 * time.Second
	// DefaultTickInterval is how often a decision is made (Knative's tickInterval): each tick is
	// one step of the rate limits.
	DefaultTickInterval = 2 * time.Second
	// DefaultInitialScale is how many pods a new function starts with, so that it is proven to
	// start before any call needs it.
	DefaultInitialScale = 1
	// DefaultActivationScale is the fewest pods a function scales to from zero.
	DefaultActivationScale = 1

	// MinTarget is the smallest per-pod target Knative accepts (autoscaling.TargetMin).
	MinTarget = 0.01
	// MinStableWindow and MaxStableWindow bound the stable window (autoscaling.WindowMin/Max):
	// under 6 s there are too few 1 s buckets for an average; over an hour decisions lag badly.
	MinStableWindow = 6 * time.Second
	MaxStableWindow = time.Hour
	// MinPanicWindowPercentage and MaxPanicWindowPercentage bound the panic window percentage.
	MinPanicWindowPercentage = 1.0
	MaxPanicWindowPercentage = 100.0
	// MinPanicThresholdPercentage and MaxPanicThresholdPercentage bound the panic threshold:
	// below 110% every noise would be a panic.
	MinPanicThresholdPercentage = 110.0
	MaxPanicThresholdPercentage = 1000.0
	// MaxScaleDownDelay bounds the scale-down delay, like the stable window.
	MaxScaleDownDelay = time.Hour
	// BucketSize is the granularity of the statistics (Knative's config.BucketSize).
	BucketSize = time.Second
)

// Spec is one function's autoscaling settings. Start from DefaultSpec and override what the
// manifest sets; a zero Spec is not valid.
type Spec struct {
	// MinScale is the fewest pods the function runs (autoscaling.knative.dev/min-scale); 0
	// allows scaling to zero.
	MinScale int32
	// MaxScale is the most pods (autoscaling.knative.dev/max-scale); 0 is unbounded.
	MaxScale int32
	// InitialScale is how many pods a new function starts with, kept until that many have been
	// ready (autoscaling.knative.dev/initial-scale). 0 needs AllowZeroInitialScale.
	InitialScale int32
	// AllowZeroInitialScale permits InitialScale 0 (Knative's cluster-wide
	// allow-zero-initial-scale, default false); the manifest parser copies it from the cluster
	// settings.
	AllowZeroInitialScale bool
	// ActivationScale is the fewest pods the function scales to from zero
	// (autoscaling.knative.dev/activation-scale); 1 changes nothing.
	ActivationScale int32
	// Metric is MetricConcurrency or MetricRPS (autoscaling.knative.dev/metric).
	Metric string
	// Target is the metric's value per pod (autoscaling.knative.dev/target) before
	// TargetUtilization; 0 means the default, see MetricTarget.
	Target float64
	// TargetUtilization is the fraction of Target aimed at, in (0, 1]; the annotation
	// autoscaling.knative.dev/target-utilization-percentage is this × 100.
	TargetUtilization float64
	// ContainerConcurrency is the most requests one pod takes at once (the revision's
	// containerConcurrency); 0 is unlimited.
	ContainerConcurrency int
	// StableWindow is the window the stable decision averages over
	// (autoscaling.knative.dev/window), whole seconds in [6s, 1h].
	StableWindow time.Duration
	// PanicWindowPercentage is the panic window as a percentage of StableWindow, in [1, 100].
	PanicWindowPercentage float64
	// PanicThresholdPercentage enters panic mode when the panic window needs this percentage of
	// the ready pods, in [110, 1000].
	PanicThresholdPercentage float64
	// ScaleDownDelay keeps the most pods wanted over this long before scaling down, whole
	// seconds in [0, 1h].
	ScaleDownDelay time.Duration
	// MaxScaleUpRate bounds one tick's growth to this multiple of the ready pods (> 1).
	MaxScaleUpRate float64
	// MaxScaleDownRate bounds one tick's shrinking to the ready pods divided by this (> 1).
	MaxScaleDownRate float64
	// ScaleToZeroGracePeriod is how long the last pod stays after the stable window has shown
	// no activity (> 0).
	ScaleToZeroGracePeriod time.Duration
	// TickInterval is how often the function is decided on (≥ 1 s, the bucket size).
	TickInterval time.Duration
	// TargetActorsPerPod asks for ceil(active actors / TargetActorsPerPod) pods at least
	// (knactor.dev/target-actors-per-pod); 0 turns the signal off.
	TargetActorsPerPod int
}

// DefaultSpec returns Knative's default autoscaling settings.
func DefaultSpec() Spec {
	return Spec{
		MinScale:                 0,
		MaxScale:                 0,
		InitialScale:             DefaultInitialScale,
		ActivationScale:          DefaultActivationScale,
		Metric:                   MetricConcurrency,
		Target:                   0,
		TargetUtilization:        DefaultTargetUtilization,
		ContainerConcurrency:     0,
		StableWindow:             DefaultStableWindow,
		PanicWindowPercentage:    DefaultPanicWindowPercentage,
		PanicThresholdPercentage: DefaultPanicThresholdPercentage,
		ScaleDownDelay:           0,
		MaxScaleUpRate:           DefaultMaxScaleUpRate,
		MaxScaleDownRate:         DefaultMaxScaleDownRate,
		ScaleToZeroGracePeriod:   DefaultScaleToZeroGracePeriod,
		TickInterval:             DefaultTickInterval,
		TargetActorsPerPod:       0,
	}
}

// MetricTarget is the metric's value one pod is sized for, before TargetUtilization, resolved
// the way Knative does (pkg/reconciler/autoscaling/resources/target.go ResolveMetricTarget):
//   - rps: Target, or DefaultTargetRPS when Target is 0;
//   - concurrency with Target set: Target, lowered to ContainerConcurrency when that is set, so
//     the autoscaler never aims above what a pod accepts;
//   - concurrency without Target: ContainerConcurrency when set, else DefaultTargetConcurrency.
func (s Spec) MetricTarget() float64 {
	if s.Metric == MetricRPS {
		if s.Target > 0 {
			return s.Target
		}
		return DefaultTargetRPS
	}
	cc := float64(s.ContainerConcurrency)
	switch {
	case s.Target > 0 && cc > 0:
		return math.Min(s.Target, cc)
	case s.Target > 0:
		return s.Target
	case cc > 0:
		return cc
	default:
		return DefaultTargetConcurrency
	}
}

// TargetPerPod is the metric's value each pod is planned to carry: MetricTarget ×
// TargetUtilization, at least MinTarget. The desired pods are ceil(observed / TargetPerPod).
func (s Spec) TargetPerPod() float64 {
	return math.Max(MinTarget, s.MetricTarget()*s.TargetUtilization)
}

// PanicWindow is StableWindow × PanicWindowPercentage / 100 rounded to the second, at least one
// bucket (Knative's MakeMetric in pkg/reconciler/autoscaling/resources/metric.go).
func (s Spec) PanicWindow() time.Duration {
	w := time.Duration(float64(s.StableWindow) * s.PanicWindowPercentage / 100).Round(time.Second)
	return max(w, BucketSize)
}

// FieldError is one invalid setting of a Spec. Field is the annotation (or setting name) that
// carries it in a manifest.
type FieldError struct {
	Field   string
	Message string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Message }

// Validate reports every invalid setting, each as a *FieldError (joined with errors.Join), or
// nil. The bounds are Knative's (pkg/apis/autoscaling/annotation_validation.go and
// pkg/autoscaler/config/config.go).
func (s Spec) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Message: fmt.Sprintf(format, args...)})
	}
	wholeSeconds := func(d time.Duration) bool { return d.Truncate(time.Second) == d }

	if s.MinScale < 0 {
		bad(AnnotationMinScale, "%d must be at least 0", s.MinScale)
	}
	if s.MaxScale < 0 {
		bad(AnnotationMaxScale, "%d must be at least 0 (0 is unbounded)", s.MaxScale)
	}
	if s.MaxScale > 0 && s.MaxScale < s.MinScale {
		bad(AnnotationMaxScale, "max-scale=%d is less than min-scale=%d", s.MaxScale, s.MinScale)
	}
	switch {
	case s.InitialScale < 0:
		bad(AnnotationInitialScale, "%d must be at least 0", s.InitialScale)
	case s.InitialScale == 0 && !s.AllowZeroInitialScale:
		bad(AnnotationInitialScale, "initial-scale=0 is not allowed (%s is false)", FieldAllowZeroInitialScale)
	}
	switch {
	case s.ActivationScale < 1:
		bad(AnnotationActivationScale, "%d must be at least 1", s.ActivationScale)
	case s.ActivationScale > 1 && s.MinScale > s.ActivationScale:
		bad(AnnotationActivationScale, "min-scale=%d is greater than activation-scale=%d", s.MinScale, s.ActivationScale)
	case s.ActivationScale > 1 && s.MaxScale > 0 && s.MaxScale < s.ActivationScale:
		bad(AnnotationActivationScale, "max-scale=%d is less than activation-scale=%d", s.MaxScale, s.ActivationScale)
	}
	if s.Metric != MetricConcurrency && s.Metric != MetricRPS {
		bad(AnnotationMetric, "%q must be %q or %q", s.Metric, MetricConcurrency, MetricRPS)
	}
	if s.Target != 0 && !(s.Target >= MinTarget) { // also catches NaN
		bad(AnnotationTarget, "%v must be at least %v (or 0 for the default)", s.Target, MinTarget)
	}
	if !(s.TargetUtilization >= 0.01 && s.TargetUtilization <= 1) {
		bad(AnnotationTargetUtilization, "%v%% must be in [1, 100]", s.TargetUtilization*100)
	}
	if s.ContainerConcurrency < 0 {
		bad(FieldContainerConcurrency, "%d must be at least 0 (0 is unlimited)", s.ContainerConcurrency)
	}
	switch {
	case s.StableWindow < MinStableWindow || s.StableWindow > MaxStableWindow:
		bad(AnnotationWindow, "%v must be in [%v, %v]", s.StableWindow, MinStableWindow, MaxStableWindow)
	case !wholeSeconds(s.StableWindow):
		bad(AnnotationWindow, "%v must be whole seconds", s.StableWindow)
	}
	if !(s.PanicWindowPercentage >= MinPanicWindowPercentage && s.PanicWindowPercentage <= MaxPanicWindowPercentage) {
		bad(AnnotationPanicWindowPercentage, "%v must be in [%v, %v]", s.PanicWindowPercentage,
			MinPanicWindowPercentage, MaxPanicWindowPercentage)
	}
	if !(s.PanicThresholdPercentage >= MinPanicThresholdPercentage && s.PanicThresholdPercentage <= MaxPanicThresholdPercentage) {
		bad(AnnotationPanicThresholdPercentage, "%v must be in [%v, %v]", s.PanicThresholdPercentage,
			MinPanicThresholdPercentage, MaxPanicThresholdPercentage)
	}
	switch {
	case s.ScaleDownDelay < 0 || s.ScaleDownDelay > MaxScaleDownDelay:
		bad(AnnotationScaleDownDelay, "%v must be in [0s, %v]", s.ScaleDownDelay, MaxScaleDownDelay)
	case !wholeSeconds(s.ScaleDownDelay):
		bad(AnnotationScaleDownDelay, "%v must be whole seconds", s.ScaleDownDelay)
	}
	if !(s.MaxScaleUpRate > 1) || math.IsInf(s.MaxScaleUpRate, 0) {
		bad(FieldMaxScaleUpRate, "%v must be greater than 1", s.MaxScaleUpRate)
	}
	if !(s.MaxScaleDownRate > 1) || math.IsInf(s.MaxScaleDownRate, 0) {
		bad(FieldMaxScaleDownRate, "%v must be greater than 1", s.MaxScaleDownRate)
	}
	if s.ScaleToZeroGracePeriod <= 0 {
		bad(FieldScaleToZeroGracePeriod, "%v must be positive", s.ScaleToZeroGracePeriod)
	}
	if s.TickInterval < BucketSize {
		bad(FieldTickInterval, "%v must be at least %v", s.TickInterval, BucketSize)
	}
	if s.TargetActorsPerPod < 0 {
		bad(AnnotationTargetActorsPerPod, "%d must be at least 0 (0 is off)", s.TargetActorsPerPod)
	}
	return errors.Join(errs...)
}
