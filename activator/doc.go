// Package activator holds calls for a function that has no ready pod, pokes the autoscaler to
// scale it from zero, probes the new pod's /healthz until it answers, and then releases the held
// calls in arrival order. It also enforces per-pod capacity (containerConcurrency) so no pod is
// sent more calls than it accepts at once.
package activator
