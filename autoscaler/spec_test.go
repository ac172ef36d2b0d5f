package autoscaler

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"knative.dev/serving/pkg/apis/autoscaling"
	asconfig "knative.dev/serving/pkg/autoscaler/config"
)

func TestDefaultSpecIsKnatives(t *testing.T) {
	k, err := asconfig.NewConfigFromMap(map[string]string{})
	if err != nil {
		t.Fatal(err)
	}
	s := DefaultSpec()
	if err := s.Validate(); err != nil {
		t.Fatalf("DefaultSpec().Validate() = %v", err)
	}
	for _, c := range []struct {
		name      string
		got, want any
	}{
		{"min-scale", s.MinScale, k.MinScale},
		{"max-scale", s.MaxScale, k.MaxScale},
		{"initial-scale", s.InitialScale, k.InitialScale},
		{"allow-zero-initial-scale", s.AllowZeroInitialScale, k.AllowZeroInitialScale},
		{"target concurrency", s.MetricTarget(), k.ContainerConcurrencyTargetDefault},
		{"target rps", withSpec(func(s *Spec) { s.Metric = MetricRPS }).MetricTarget(), k.RPSTargetDefault},
		{"target utilization", s.TargetUtilization, k.ContainerConcurrencyTargetFraction},
		{"rps target utilization", s.TargetUtilization, k.TargetUtilization},
		{"stable-window", s.StableWindow, k.StableWindow},
		{"panic-window-percentage", s.PanicWindowPercentage, k.PanicWindowPercentage},
		{"panic-threshold-percentage", s.PanicThresholdPercentage, k.PanicThresholdPercentage},
		{"scale-down-delay", s.ScaleDownDelay, k.ScaleDownDelay},
		{"max-scale-up-rate", s.MaxScaleUpRate, k.MaxScaleUpRate},
		{"max-scale-down-rate", s.MaxScaleDownRate, k.MaxScaleDownRate},
		{"scale-to-zero-grace-period", s.ScaleToZeroGracePeriod, k.ScaleToZeroGracePeriod},
		{"window min", MinStableWindow, autoscaling.WindowMin},
		{"window max", MaxStableWindow, autoscaling.WindowMax},
		{"target min", MinTarget, autoscaling.TargetMin},
		{"panic window min", MinPanicWindowPercentage, autoscaling.PanicWindowPercentageMin},
		{"panic window max", MaxPanicWindowPercentage, autoscaling.PanicWindowPercentageMax},
		{"panic threshold min", MinPanicThresholdPercentage, autoscaling.PanicThresholdPercentageMin},
		{"panic threshold max", MaxPanicThresholdPercentage, autoscaling.PanicThresholdPercentageMax},
		{"bucket size", BucketSize, asconfig.BucketSize},
		{"tick interval", s.TickInterval, 2 * time.Second},
		{"activation scale", s.ActivationScale, int32(1)},
		{"metric", s.Metric, autoscaling.Concurrency},
		{"rps", MetricRPS, autoscaling.RPS},
	} {
		if c.got != c.want {
			t.Errorf("%s: knactor %v, Knative %v", c.name, c.got, c.want)
		}
	}
}

func TestAnnotationNamesAreKnatives(t *testing.T) {
	for ours, theirs := range map[string]string{
		AnnotationMinScale:                 autoscaling.MinScaleAnnotationKey,
		AnnotationMaxScale:                 autoscaling.MaxScaleAnnotationKey,
		AnnotationInitialScale:             autoscaling.InitialScaleAnnotationKey,
		AnnotationActivationScale:          autoscaling.ActivationScaleKey,
		AnnotationMetric:                   autoscaling.MetricAnnotationKey,
		AnnotationTarget:                   autoscaling.TargetAnnotationKey,
		AnnotationTargetUtilization:        autoscaling.TargetUtilizationPercentageKey,
		AnnotationWindow:                   autoscaling.WindowAnnotationKey,
		AnnotationPanicWindowPercentage:    autoscaling.PanicWindowPercentageAnnotationKey,
		AnnotationPanicThresholdPercentage: autoscaling.PanicThresholdPercentageAnnotationKey,
		AnnotationScaleDownDelay:           autoscaling.ScaleDownDelayAnnotationKey,
	} {
		if ours != theirs {
			t.Errorf("knactor uses %q, Knative %q", ours, theirs)
		}
	}
}

func TestMetricTarget(t *testing.T) {
	tests := []struct {
		name         string
		metric       string
		target       float64
		cc           int
		utilization  float64
		want, perPod float64
	}{
		{"concurrency default", MetricConcurrency, 0, 0, 0.7, 100, 70},
		{"containerConcurrency is the target when none is set", MetricConcurrency, 0, 10, 0.7, 10, 7},
		{"containerConcurrency above the default still wins", MetricConcurrency, 0, 500, 0.7, 500, 350},
		{"target below containerConcurrency", MetricConcurrency, 5, 10, 1, 5, 5},
		{"target above containerConcurrency is lowered", MetricConcurrency, 50, 10, 1, 10, 10},
		{"target alone", MetricConcurrency, 50, 0, 0.5, 50, 25},
		{"rps default", MetricRPS, 0, 0, 0.7, 200, 140},
		{"rps ignores containerConcurrency", MetricRPS, 0, 10, 0.7, 200, 140},
		{"rps target", MetricRPS, 50, 10, 1, 50, 50},
		{"tiny per-pod target floors at 0.01", MetricConcurrency, 0.01, 0, 0.01, 0.01, 0.01},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := withSpec(func(s *Spec) {
				s.Metric, s.Target, s.ContainerConcurrency, s.TargetUtilization = tc.metric, tc.target, tc.cc, tc.utilization
			})
			if got := s.MetricTarget(); got != tc.want {
				t.Errorf("MetricTarget() = %v, want %v", got, tc.want)
			}
			if got := s.TargetPerPod(); math.Abs(got-tc.perPod) > 1e-9 {
				t.Errorf("TargetPerPod() = %v, want %v", got, tc.perPod)
			}
		})
	}
}

func TestPanicWindow(t *testing.T) {
	tests := []struct {
		stable  time.Duration
		percent float64
		want    time.Duration
	}{
		{60 * time.Second, 10, 6 * time.Second},
		{60 * time.Second, 100, 60 * time.Second},
		{6 * time.Second, 10, time.Second}, // 0.6 s rounds to one bucket
		{6 * time.Second, 1, time.Second},  // 0.06 s: at least one bucket
		{100 * time.Second, 25, 25 * time.Second},
		{7 * time.Second, 50, 4 * time.Second}, // 3.5 s rounds half away from zero
	}
	for _, tc := range tests {
		s := withSpec(func(s *Spec) { s.StableWindow, s.PanicWindowPercentage = tc.stable, tc.percent })
		if got := s.PanicWindow(); got != tc.want {
			t.Errorf("PanicWindow(%v × %v%%) = %v, want %v", tc.stable, tc.percent, got, tc.want)
		}
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(*Spec)
		field string // "" for valid
	}{
		{"defaults", func(*Spec) {}, ""},
		{"negative min-scale", func(s *Spec) { s.MinScale = -1 }, AnnotationMinScale},
		{"negative max-scale", func(s *Spec) { s.MaxScale = -1 }, AnnotationMaxScale},
		{"max below min", func(s *Spec) { s.MinScale, s.MaxScale = 3, 2 }, AnnotationMaxScale},
		{"min with unbounded max", func(s *Spec) { s.MinScale = 3 }, ""},
		{"negative initial-scale", func(s *Spec) { s.InitialScale = -1 }, AnnotationInitialScale},
		{"zero initial-scale not allowed", func(s *Spec) { s.InitialScale = 0 }, AnnotationInitialScale},
		{"zero initial-scale allowed", func(s *Spec) { s.InitialScale, s.AllowZeroInitialScale = 0, true }, ""},
		{"zero activation-scale", func(s *Spec) { s.ActivationScale = 0 }, AnnotationActivationScale},
		{"activation below min", func(s *Spec) { s.MinScale, s.ActivationScale = 3, 2 }, AnnotationActivationScale},
		{"default activation with a min", func(s *Spec) { s.MinScale = 3 }, ""},
		{"activation above max", func(s *Spec) { s.MaxScale, s.ActivationScale = 2, 3 }, AnnotationActivationScale},
		{"unknown metric", func(s *Spec) { s.Metric = "cpu" }, AnnotationMetric},
		{"empty metric", func(s *Spec) { s.Metric = "" }, AnnotationMetric},
		{"tiny target", func(s *Spec) { s.Target = 0.001 }, AnnotationTarget},
		{"negative target", func(s *Spec) { s.Target = -1 }, AnnotationTarget},
		{"NaN target", func(s *Spec) { s.Target = math.NaN() }, AnnotationTarget},
		{"zero utilization", func(s *Spec) { s.TargetUtilization = 0 }, AnnotationTargetUtilization},
		{"utilization over 100%", func(s *Spec) { s.TargetUtilization = 1.5 }, AnnotationTargetUtilization},
		{"negative containerConcurrency", func(s *Spec) { s.ContainerConcurrency = -1 }, FieldContainerConcurrency},
		{"short window", func(s *Spec) { s.StableWindow = 5 * time.Second }, AnnotationWindow},
		{"long window", func(s *Spec) { s.StableWindow = 61 * time.Minute }, AnnotationWindow},
		{"fractional window", func(s *Spec) { s.StableWindow = 6500 * time.Millisecond }, AnnotationWindow},
		{"panic window 0%", func(s *Spec) { s.PanicWindowPercentage = 0 }, AnnotationPanicWindowPercentage},
		{"panic window 101%", func(s *Spec) { s.PanicWindowPercentage = 101 }, AnnotationPanicWindowPercentage},
		{"panic threshold 100%", func(s *Spec) { s.PanicThresholdPercentage = 100 }, AnnotationPanicThresholdPercentage},
		{"panic threshold 1001%", func(s *Spec) { s.PanicThresholdPercentage = 1001 }, AnnotationPanicThresholdPercentage},
		{"negative scale-down delay", func(s *Spec) { s.ScaleDownDelay = -time.Second }, AnnotationScaleDownDelay},
		{"long scale-down delay", func(s *Spec) { s.ScaleDownDelay = 2 * time.Hour }, AnnotationScaleDownDelay},
		{"fractional scale-down delay", func(s *Spec) { s.ScaleDownDelay = 1500 * time.Millisecond }, AnnotationScaleDownDelay},
		{"scale-up rate 1", func(s *Spec) { s.MaxScaleUpRate = 1 }, FieldMaxScaleUpRate},
		{"scale-down rate 1", func(s *Spec) { s.MaxScaleDownRate = 1 }, FieldMaxScaleDownRate},
		{"infinite scale-down rate", func(s *Spec) { s.MaxScaleDownRate = math.Inf(1) }, FieldMaxScaleDownRate},
		{"zero grace period", func(s *Spec) { s.ScaleToZeroGracePeriod = 0 }, FieldScaleToZeroGracePeriod},
		{"sub-second tick", func(s *Spec) { s.TickInterval = 500 * time.Millisecond }, FieldTickInterval},
		{"negative actors per pod", func(s *Spec) { s.TargetActorsPerPod = -1 }, AnnotationTargetActorsPerPod},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := withSpec(tc.edit)
			err := s.Validate()
			if tc.field == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != tc.field {
				t.Fatalf("Validate() = %v, want a FieldError for %s", err, tc.field)
			}
			if !strings.HasPrefix(err.Error(), tc.field+": ") {
				t.Fatalf("Validate() = %q, want it to start with the field", err)
			}
		})
	}
}

func TestValidateReportsEveryField(t *testing.T) {
	s := Spec{} // nothing set
	err := s.Validate()
	for _, field := range []string{AnnotationInitialScale, AnnotationActivationScale, AnnotationMetric,
		AnnotationTargetUtilization, AnnotationWindow, AnnotationPanicWindowPercentage,
		AnnotationPanicThresholdPercentage, FieldMaxScaleUpRate, FieldMaxScaleDownRate,
		FieldScaleToZeroGracePeriod, FieldTickInterval} {
		if err == nil || !strings.Contains(err.Error(), field+": ") {
			t.Errorf("Validate() of a zero Spec = %v; want it to name %s", err, field)
		}
	}
	if _, err := NewDecider(s); err == nil {
		t.Error("NewDecider accepted a zero Spec")
	}
}
