// Package kube is knactor's Kubernetes runtime: a function's pods are the pods of a Knative
// revision, and knactor learns them from the API server instead of starting them itself.
//
// A Watcher follows one namespace with client-go shared informers: one for Pods and one for
// Deployments, both selected by the label Knative puts on every revision's objects
// (RevisionLabel), whatever the number of functions. A function is the value of ServiceLabel:
// it exists while a Deployment carries that label, so a function scaled to zero is still known
// and its calls wait in the activator. Its ready pods are those of its newest revision whose
// Ready condition is true, that have an IP and are not being deleted — the facts the
// EndpointSlice controller uses; EndpointSlices themselves are not read, because they refuse the
// loopback pod IPs of the test harness — and that the Watcher's own TCP probe has reached once,
// as Knative's activator probes a pod before it sends it traffic. The Watcher implements
// routing.Backends, like the local runtime.
//
// A Scaler carries out the autoscaler's decisions through the Deployment's scale subresource,
// as Knative's own autoscaler does, so the same Decider drives both runtimes.
//
// knactor needs "get", "list" and "watch" on pods and deployments and "get" and "update" on
// deployments/scale in the namespace it serves; config/ grants them.
package kube

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"time"

	"k8s.io/utils/clock"
)

// The labels Knative's revision reconciler puts on a revision's Deployment and on every pod of it
// (knative.dev/serving/pkg/apis/serving: ServiceLabelKey, RevisionLabelKey,
// ConfigurationLabelKey).
const (
	// ServiceLabel names the Knative Service, which is the knactor function.
	ServiceLabel = "serving.knative.dev/service"
	// RevisionLabel names the revision. Every object knactor watches carries it, so it is the
	// informers' label selector: knactor never caches the namespace's other pods.
	RevisionLabel = "serving.knative.dev/revision"
	// ConfigurationLabel names the revision's Configuration.
	ConfigurationLabel = "serving.knative.dev/configuration"
)

// Defaults of Config.
const (
	// DefaultProbeTimeout bounds one TCP probe of a pod: a pod on the cluster network answers a
	// SYN in well under a millisecond, so a second means it is not listening (or unreachable).
	DefaultProbeTimeout = time.Second
	// DefaultSyncTimeout bounds Start's wait for the informers' first list. A namespace of a few
	// thousand pods lists in a second or two; thirty seconds leaves room for a slow API server
	// without hiding one that never answers.
	DefaultSyncTimeout = 30 * time.Second
	// DefaultUserPort is the port of a pod whose user container declares none: Knative's
	// default user port ($PORT = 8080).
	DefaultUserPort = 8080
)

// Knative's queue-proxy sidecar: the container knactor does not send calls to, and the
// environment through which Knative passes it the revision's settings
// (knative.dev/serving/pkg/reconciler/revision/resources/queue.go).
const (
	// QueueProxyContainer is the name of Knative's sidecar container.
	QueueProxyContainer = "queue-proxy"
	// envTimeoutSeconds is the revision's timeoutSeconds.
	envTimeoutSeconds = "REVISION_TIMEOUT_SECONDS"
	// envContainerConcurrency is the revision's containerConcurrency (0 = unlimited).
	envContainerConcurrency = "CONTAINER_CONCURRENCY"
)

// ErrNoDeployment is the error (wrapped) of Scale for a function that has no Deployment.
var ErrNoDeployment = errors.New("no deployment")

// Config configures a Watcher.
type Config struct {
	// Namespace is the namespace whose functions are served. Required.
	Namespace string
	// Clock paces the probes of pods; nil is the real clock.
	Clock clock.WithTicker
	// ProbeTimeout bounds one probe of a pod; zero is DefaultProbeTimeout.
	ProbeTimeout time.Duration
	// SyncTimeout bounds Start's wait for the informers' caches; zero is DefaultSyncTimeout.
	SyncTimeout time.Duration
	// Prober checks that a pod accepts connections at addr (host:port) before it receives
	// calls; ctx carries ProbeTimeout. nil opens and closes a TCP connection (DialProbe).
	Prober func(ctx context.Context, addr string) error
	// Logger receives the Watcher's logs; nil is slog.Default().
	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	if c.Clock == nil {
		c.Clock = clock.RealClock{}
	}
	if c.ProbeTimeout <= 0 {
		c.ProbeTimeout = DefaultProbeTimeout
	}
	if c.SyncTimeout <= 0 {
		c.SyncTimeout = DefaultSyncTimeout
	}
	if c.Prober == nil {
		c.Prober = DialProbe
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// DialProbe reports whether something accepts TCP connections at addr, by opening a connection
// and closing it at once. It is the default Config.Prober.
func DialProbe(ctx context.Context, addr string) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	return conn.Close()
}
