// Package autoscaler decides how many pods each function needs, the way Knative's KPA does:
// time-weighted concurrency in 1 s buckets averaged over a stable and a panic window, rate limits
// on scaling up and down, a grace period before scaling to zero, and an immediate decision when a
// call arrives for a function at zero. An actor-aware signal (active actors per pod) can ask for
// more pods than concurrency alone. Decisions are pure functions of the statistics and an
// injected clock; a Scaler interface carries them out (local processes or the Kubernetes API).
//
// The "function" it scales is a target in the sense of router/routing: a function's one set of
// pods in local mode, one Knative revision of it in Kubernetes mode, which Knative scales on
// its own. Its interfaces take the target's name.
//
// # Pieces
//
//   - Spec: one function's settings, with Knative's defaults (DefaultSpec) and bounds
//     (Validate names the annotation at fault); SpecFromManifest reads them from a function's
//     manifest.
//   - Decider: the decision for one function. Record puts router snapshots (stats.Snapshot) in
//     1 s buckets; Decide(now, readyPods) returns a Decision; Poke marks a call that found no
//     pod. It reads no clock and starts no goroutine.
//   - Autoscaler: the loop. Every second it snapshots each function from a StatsSource and
//     records it; every TickInterval (or at once after a poke) it decides and, when the
//     decision differs from the last one applied, has the function's own applier goroutine
//     call Scaler.Scale with its latest decision, so a slow Scale delays no other function's
//     decision (a failed call is retried at the next decision). Status reports the latest
//     decision.
//
// # The decision
//
// Decider.Decide documents the steps. In short, with the defaults: a pod is sized for
// 100 × 0.7 = 70 requests in flight; desired = ceil(observed / 70) over the 60 s stable window;
// when the 6 s panic window needs at least twice the ready pods the function panics and is not
// scaled down until a stable window has passed without that; one decision may grow the pods
// 1000× or shrink them by half; the last pod goes 60 s + 30 s after the last request.
//
// # Where knactor differs from Knative
//
// The sources followed are knative.dev/serving's pkg/autoscaler/scaling/autoscaler.go and
// multiscaler.go, pkg/autoscaler/aggregation (bucketing.go, max/), pkg/autoscaler/metrics
// (collector.go), pkg/autoscaler/config/config.go, pkg/apis/autoscaling, and
// pkg/reconciler/autoscaling (kpa/scaler.go, kpa/kpa.go, resources/).
//
//   - Averages are time-weighted over the time the snapshots cover (Σ concurrency × seconds /
//     Σ seconds) instead of Knative's mean of per-second buckets with missing seconds counted
//     as zero; the router's snapshots tile time, so this differs only when scrapes are late,
//     and then it is the exact average. Only the linear algorithm exists (no
//     weighted-exponential).
//   - Panic needs at least one ready pod (Knative counts zero ready pods as one).
//   - Scale to zero is decided here rather than by a separate reconciler: a decision of 0 is
//     held at 1 pod until the last activity (a request in a snapshot, a poke, or a new
//     function's first decision) is a stable window old, then for ScaleToZeroGracePeriod more.
//     Knative gets about the same timing from its PodAutoscaler being active for a stable window
//     and then backed by the activator for the grace period; knactor's activator is always in
//     the path, so there is no probe to wait for and no pod-retention period.
//   - The actor signal (knactor.dev/target-actors-per-pod) is knactor's: it raises the stable
//     want before rate limits, bounds and the panic logic; it never triggers a panic.
//   - No target-burst-capacity / excess-burst-capacity: the activator stays in the path.
//   - TickInterval is a per-function setting (Knative's is a 2 s constant).
//   - Without data, Knative keeps the deployment's replicas; knactor cannot see replicas, so a
//     Decider's first answer without data is max(InitialScale, ready pods).
package autoscaler
