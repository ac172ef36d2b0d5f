// Package manifest reads knactor function manifests.
//
// A function is a Knative serving.knative.dev/v1 Service, so the same file deploys locally
// (knactor up, kn actor deploy -f) and to a cluster (kubectl apply, kn service create). This
// package decodes it into Knative Serving's own Go type, strictly (an unknown or duplicated field
// is an error that names the field path, as the Kubernetes API server reports it), runs Knative's
// own defaulting and validation on it with Knative's default configuration (what the serving
// webhook does on create), checks knactor's own knactor.dev/* annotations, and resolves
// everything knactor needs into a Function: the image and local command, the environment,
// timeout and containerConcurrency, and the autoscaling settings with Knative's defaults applied
// exactly as Knative's autoscaler resolves them.
//
// Every error names the file (when known), the document within it and the field, e.g.
//
//	counter.yaml: document 1 (line 3): metadata.annotations[knactor.dev/write-mode]: "fast" is not write-through or write-behind
//
// docs/annotations.md lists every annotation knactor reads.
//
// # What is not validated here
//
// Knative's webhook also dry-runs the pod spec against the Kubernetes API server, but only for
// requests made with dry-run=server (knative.dev/serving/pkg/webhook.ValidateService); that
// needs a cluster and is skipped. Resolving image tags to digests is the Knative controller's
// work after admission, not validation, and is not done either. Everything else the serving
// webhook checks on create is checked here, with Knative's default config-defaults,
// config-features and config-autoscaler: a cluster whose ConfigMaps differ (for example a
// larger max-revision-timeout-seconds, a max-scale-limit, allow-zero-initial-scale, or enabled
// pod-spec features) may accept or refuse a few manifests differently.
package manifest
