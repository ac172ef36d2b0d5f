// Package autoscaler decides how many pods each function needs, the way Knative's KPA does:
// time-weighted concurrency in 1 s buckets averaged over a stable and a panic window, rate limits
// on scaling up and down, a grace period before scaling to zero, and an immediate decision when a
// call arrives for a function at zero. An actor-aware signal (active actors per pod) can ask for
// more pods than concurrency alone. Decisions are pure functions of the statistics and an
// injected clock; a Scaler interface carries them out (local processes or the Kubernetes API).
package autoscaler
