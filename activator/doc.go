// Package activator holds calls for a function that has no ready pod, pokes the autoscaler to
// scale it from zero, and releases the held calls once the function's pod source reports a ready
// pod (the local runtime probes a new pod's /healthz, the Kubernetes watcher its readiness and a
// TCP probe; the activator itself probes nothing, it waits on Pods.Changed). It also enforces
// per-pod capacity (containerConcurrency): a FIFO semaphore per pod (internal/fifo), so no pod is
// sent more calls than it accepts at once and calls waiting for a slot are served in arrival
// order.
package activator
