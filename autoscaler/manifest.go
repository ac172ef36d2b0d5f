package autoscaler

import (
	"fmt"
	"time"

	"github.com/knactor/knactor/manifest"
)

// SpecFromManifest turns a function manifest's Knative autoscaling settings (and its
// containerConcurrency) into the function's Spec, with grace as its ScaleToZeroGracePeriod. It
// returns the Spec's validation error, naming the function. Both runtimes use it: knactor up for
// the manifests it deploys, the Kubernetes autoscaler for each revision's pod template.
func SpecFromManifest(fn manifest.Function, grace time.Duration) (Spec, error) {
	a := fn.Autoscaling
	s := DefaultSpec()
	s.MinScale, s.MaxScale, s.InitialScale, s.ActivationScale = a.MinScale, a.MaxScale, a.InitialScale, a.ActivationScale
	s.Metric, s.Target, s.TargetUtilization = a.Metric, a.Target, a.TargetUtilization
	s.ContainerConcurrency = int(fn.ContainerConcurrency)
	s.StableWindow, s.ScaleDownDelay = a.Window, a.ScaleDownDelay
	s.PanicWindowPercentage, s.PanicThresholdPercentage = a.PanicWindowPercentage, a.PanicThresholdPercentage
	s.TargetActorsPerPod = a.TargetActorsPerPod
	s.ScaleToZeroGracePeriod = grace
	s.AllowZeroInitialScale = a.InitialScale == 0 // the manifest parser already applied the setting
	if err := s.Validate(); err != nil {
		return s, fmt.Errorf("function %q: %w", fn.Name, err)
	}
	return s, nil
}
