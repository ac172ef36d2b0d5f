package autoscaler

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/knactor/knactor/manifest"
)

// manifestOf is a Service manifest of function fn with containerConcurrency cc (0: not set)
// and the template annotations given as name, value pairs.
func manifestOf(fn string, cc int, annotations ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  name: %s\nspec:\n  template:\n", fn)
	if len(annotations) > 0 {
		b.WriteString("    metadata:\n      annotations:\n")
		for i := 0; i+1 < len(annotations); i += 2 {
			fmt.Fprintf(&b, "        %s: %q\n", annotations[i], annotations[i+1])
		}
	}
	b.WriteString("    spec:\n")
	if cc > 0 {
		fmt.Fprintf(&b, "      containerConcurrency: %d\n", cc)
	}
	b.WriteString("      containers:\n        - image: example.com/fn\n")
	return b.String()
}

func TestSpecFromManifest(t *testing.T) {
	const grace = 7 * time.Second
	spec := func(edit func(s *Spec)) Spec {
		s := DefaultSpec()
		s.ScaleToZeroGracePeriod = grace
		edit(&s)
		return s
	}
	tests := []struct {
		name     string
		manifest string
		opts     manifest.Options
		want     Spec
	}{{
		name:     "Knative's defaults",
		manifest: manifestOf("fn", 0),
		want:     spec(func(s *Spec) { s.Target = 100 }),
	}, {
		name: "every setting",
		manifest: manifestOf("fn", 8,
			AnnotationMinScale, "2", AnnotationMaxScale, "9", AnnotationInitialScale, "3",
			AnnotationActivationScale, "2", AnnotationTarget, "5", AnnotationTargetUtilization, "50",
			AnnotationWindow, "120s", AnnotationPanicWindowPercentage, "20",
			AnnotationPanicThresholdPercentage, "300", AnnotationScaleDownDelay, "30s",
			AnnotationTargetActorsPerPod, "4"),
		want: spec(func(s *Spec) {
			s.MinScale, s.MaxScale, s.InitialScale, s.ActivationScale = 2, 9, 3, 2
			s.Target, s.TargetUtilization, s.ContainerConcurrency = 5, 0.5, 8
			s.StableWindow, s.PanicWindowPercentage, s.PanicThresholdPercentage = 2*time.Minute, 20, 300
			s.ScaleDownDelay, s.TargetActorsPerPod = 30*time.Second, 4
		}),
	}, {
		name:     "containerConcurrency is the target without one",
		manifest: manifestOf("fn", 10),
		want:     spec(func(s *Spec) { s.Target, s.ContainerConcurrency = 10, 10 }),
	}, {
		name:     "rps",
		manifest: manifestOf("fn", 0, AnnotationMetric, "rps"),
		want:     spec(func(s *Spec) { s.Metric, s.Target = MetricRPS, 200 }),
	}, {
		name:     "initial scale zero, where the manifest allows it",
		manifest: manifestOf("fn", 0, AnnotationInitialScale, "0"),
		opts:     manifest.Options{AllowZeroInitialScale: true},
		want:     spec(func(s *Spec) { s.Target, s.InitialScale, s.AllowZeroInitialScale = 100, 0, true }),
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fns, err := tt.opts.Parse([]byte(tt.manifest), "")
			if err != nil || len(fns) != 1 {
				t.Fatalf("Parse = %d functions, %v", len(fns), err)
			}
			got, err := SpecFromManifest(fns[0], grace)
			if err != nil {
				t.Fatalf("SpecFromManifest: %v", err)
			}
			if got != tt.want {
				t.Errorf("SpecFromManifest =\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}

func TestSpecFromManifestInvalid(t *testing.T) {
	fns, err := manifest.Parse([]byte(manifestOf("fn", 0)), "")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		edit  func(fn *manifest.Function)
		grace time.Duration
		field string
	}{
		{"stable window too short", func(fn *manifest.Function) { fn.Autoscaling.Window = time.Second }, time.Second, AnnotationWindow},
		{"min above max", func(fn *manifest.Function) { fn.Autoscaling.MinScale, fn.Autoscaling.MaxScale = 5, 2 }, time.Second, AnnotationMaxScale},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fn := fns[0]
			tt.edit(&fn)
			_, err := SpecFromManifest(fn, tt.grace)
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != tt.field || !strings.Contains(err.Error(), `function "fn"`) {
				t.Fatalf("SpecFromManifest = %v, want a FieldError on %s naming the function", err, tt.field)
			}
		})
	}
}
