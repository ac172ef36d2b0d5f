// Package activator is the one way a call reaches a function's pod: Activator.Try. It holds
// calls for a function (or revision) that has no ready pod, pokes the autoscaler to scale it
// from zero, and releases the held calls once the function's pod source reports a ready pod
// (the local runtime probes a new pod's /healthz, the Kubernetes watcher its readiness and a
// TCP probe; the activator itself probes nothing, it waits on Pods.Changed). It then chooses
// among the ready pods as the caller asks (an actor's owner, or the less loaded of two), counts
// the call in the pod's calls in flight (which a pod's drain waits on), and enforces per-pod
// capacity (containerConcurrency): a FIFO semaphore per pod (internal/fifo), so no pod is sent
// more calls than it accepts at once and calls waiting for a slot are served in arrival order.
// Its per-pod state follows the ready sets: a pod that leaves them is forgotten after its last
// call, so pod churn does not grow it.
package activator
