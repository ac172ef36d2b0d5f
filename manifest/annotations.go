package manifest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"knative.dev/serving/pkg/apis/autoscaling"
	autoscalingv1alpha1 "knative.dev/serving/pkg/apis/autoscaling/v1alpha1"
	"knative.dev/serving/pkg/apis/config"
	servingv1 "knative.dev/serving/pkg/apis/serving/v1"
	asresources "knative.dev/serving/pkg/reconciler/autoscaling/resources"
)

// knactorAnnotation parses one knactor.dev/ annotation's value into fn. dir is the manifest's
// directory. Errors say what is wrong with the value; the caller names the field.
type knactorAnnotation func(v, dir string, fn *Function) error

var knactorParsers = map[string]knactorAnnotation{
	CommandAnnotation: func(v, _ string, fn *Function) error {
		words, err := SplitCommand(v)
		if err != nil {
			return fmt.Errorf("%q: %w", v, err)
		}
		fn.Command = words
		return nil
	},
	WorkDirAnnotation: func(v, dir string, fn *Function) error {
		if strings.TrimSpace(v) == "" {
			return errors.New("must not be empty")
		}
		if !filepath.IsAbs(v) && dir != "" {
			v = filepath.Join(dir, v)
		}
		fn.WorkingDir = filepath.Clean(v)
		return nil
	},
	WriteModeAnnotation: func(v, _ string, fn *Function) error {
		if v != WriteThrough && v != WriteBehind {
			return fmt.Errorf("%q is not %s or %s", v, WriteThrough, WriteBehind)
		}
		fn.WriteMode = v
		return nil
	},
	PassivateAfterAnnotation: func(v, _ string, fn *Function) error {
		d, err := ParsePassivateAfter(v)
		if err != nil {
			return err
		}
		fn.PassivateAfter, fn.PassivateAfterSet = d, true
		return nil
	},
	MaxStateBytesAnnotation: func(v, _ string, fn *Function) error {
		q, err := resource.ParseQuantity(v)
		if err != nil {
			return fmt.Errorf("%q is not a byte count (e.g. 262144, 512Ki, 4Mi)", v)
		}
		n, ok := q.AsInt64()
		switch {
		case !ok:
			return fmt.Errorf("%q is not a whole number of bytes", v)
		case n < 1:
			return fmt.Errorf("%q is less than 1 byte", v)
		case n > MaxStateBytesLimit:
			return fmt.Errorf("%q is more than 64Mi (%d bytes)", v, MaxStateBytesLimit)
		}
		fn.MaxStateBytes = int(n)
		return nil
	},
	StatelessAnnotation: func(v, _ string, fn *Function) error {
		switch v {
		case "true":
			fn.Stateless = true
		case "false":
			fn.Stateless = false
		default:
			return fmt.Errorf("%q is not true or false", v)
		}
		return nil
	},
	TargetActorsPerPodAnnotation: func(v, _ string, fn *Function) error {
		n, err := strconv.ParseInt(v, 10, 32)
		if err != nil || n < 0 {
			return fmt.Errorf("%q is not an integer in 0..%d (0 = no actor-count signal)", v, math.MaxInt32)
		}
		fn.Autoscaling.TargetActorsPerPod = int(n)
		return nil
	},
}

// knactorAnnotations applies knactor.dev/ annotations from the Service's metadata, then from the
// template's (which therefore wins), and refuses unknown knactor.dev/ keys, which are most
// likely typos.
func (p *docParser) knactorAnnotations(svc *servingv1.Service, fn *Function) {
	for _, src := range []struct {
		base string
		anns map[string]string
	}{
		{"metadata.annotations", svc.Annotations},
		{"spec.template.metadata.annotations", svc.Spec.Template.Annotations},
	} {
		for _, key := range slices.Sorted(maps.Keys(src.anns)) {
			if !strings.HasPrefix(key, AnnotationPrefix) {
				continue
			}
			parse, ok := knactorParsers[key]
			if !ok {
				p.fail(annotationField(src.base, key), "unknown knactor annotation (known: %s)",
					strings.Join(slices.Sorted(maps.Keys(knactorParsers)), ", "))
				continue
			}
			if err := parse(src.anns[key], p.dir, fn); err != nil {
				p.fail(annotationField(src.base, key), "%s", err)
			}
		}
	}
}

// resolveAutoscaling resolves the template's (already validated) autoscaling annotations with
// Knative's defaults, through the same PodAutoscaler accessors and resolution functions Knative's
// autoscaler uses.
func resolveAutoscaling(ctx context.Context, anns map[string]string, containerConcurrency int64, actorsPerPod int) Autoscaling {
	cfg := config.FromContextOrDefaults(ctx).Autoscaler
	pa := &autoscalingv1alpha1.PodAutoscaler{
		ObjectMeta: metav1.ObjectMeta{Annotations: maps.Clone(anns)},
		Spec:       autoscalingv1alpha1.PodAutoscalerSpec{ContainerConcurrency: containerConcurrency},
	}
	pa.SetDefaults(ctx) // class from config-autoscaler (kpa), metric per class
	if pa.Metric() == "" && pa.Class() == ActorClass {
		pa.Annotations[autoscaling.MetricAnnotationKey] = autoscaling.Concurrency // knactor's autoscaler is KPA-faithful
	}

	as := Autoscaling{Class: pa.Class(), Metric: pa.Metric(), TargetActorsPerPod: actorsPerPod}
	switch as.Metric {
	case autoscaling.Concurrency, autoscaling.RPS:
		_, as.Target = asresources.ResolveMetricTarget(pa, cfg)
		as.TargetUtilization = cfg.ContainerConcurrencyTargetFraction
		if as.Metric == autoscaling.RPS {
			as.TargetUtilization = cfg.TargetUtilization
		}
	default: // cpu, memory or a custom metric of the hpa class: Knative passes the target through
		as.Target, _ = pa.Target()
		as.TargetUtilization = cfg.TargetUtilization
	}
	if tu, ok := pa.TargetUtilization(); ok {
		as.TargetUtilization = tu
	}

	as.MinScale, as.MaxScale = pa.ScaleBounds(cfg)
	// As knative.dev/serving/pkg/reconciler/autoscaling/kpa/resources.GetInitialScale (not
	// imported: that package drags in the whole autoscaler).
	as.InitialScale = cfg.InitialScale
	if is, ok := pa.InitialScale(); ok && (is != 0 || cfg.AllowZeroInitialScale) {
		as.InitialScale = is
	}
	// Knative leaves an unset activation scale at 0 and only acts on values of 2 or more; 1 is
	// the same behaviour, spelled as the minimum non-zero scale it is.
	as.ActivationScale = 1
	if a, ok := pa.ActivationScale(); ok {
		as.ActivationScale = a
	}
	as.Window = asresources.StableWindow(pa, cfg)
	as.PanicWindowPercentage = cfg.PanicWindowPercentage
	if v, ok := pa.PanicWindowPercentage(); ok {
		as.PanicWindowPercentage = v
	}
	as.PanicThresholdPercentage = cfg.PanicThresholdPercentage
	if v, ok := pa.PanicThresholdPercentage(); ok {
		as.PanicThresholdPercentage = v
	}
	as.ScaleDownDelay = cfg.ScaleDownDelay
	if v, ok := pa.ScaleDownDelay(); ok {
		as.ScaleDownDelay = v
	}
	return as
}

func validateDNS1123Label(s string) []string {
	return validation.IsDNS1123Label(s)
}

// ParsePassivateAfter parses a knactor.dev/passivate-after value: a Go duration, at least 0
// (0 = never passivate).
func ParsePassivateAfter(v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration (e.g. 90s, 10m, 1h; 0 = never)", v)
	}
	if d < 0 {
		return 0, fmt.Errorf("%q is negative (0 = never passivate)", v)
	}
	return d, nil
}
