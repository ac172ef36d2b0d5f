package kubetest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/knactor/knactor/test/proctest"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
)

// KnativeNamespace is where Knative Serving's ConfigMaps live and its controller and webhook run.
const KnativeNamespace = "knative-serving"

// KnativeImagePrefix is an image registry Knative does not resolve to digests (it is in
// config-deployment's registries-skipping-tag-resolving): there is no registry here, and kwok runs
// no images. Name a test Service's image under it, e.g. "dev.local/knactor/counter".
const KnativeImagePrefix = "dev.local/"

// KnativeOptions configures StartKnative.
type KnativeOptions struct {
	// IngressClass is config-network's ingress-class: the class of the Ingress objects Knative's
	// Route creates. Empty keeps Knative's default (Istio, which nothing here implements).
	IngressClass string
}

// Knative is Knative Serving's controller and webhook running against a Cluster.
type Knative struct {
	// Dir holds Knative's CRDs, ConfigMaps and webhook configurations as installed.
	Dir string
	// LogPath is the controller's log.
	LogPath string
	// WebhookLogPath is the webhook's log.
	WebhookLogPath string
	// WebhookStartup is how long the webhook took from its start to admitting requests.
	WebhookStartup time.Duration

	proc, webhook *process
}

// Knative's webhook as its manifests name it: the Service of config/core/deployments/webhook.yaml
// (created by StartKnative; the Deployment beside it is not applied, the webhook runs as a
// process) and the webhook configurations of config/core/webhooks/*.yaml that name the Service
// (applied from there, with the Secret webhook-certs that Knative's certificate controller fills).
const (
	knativeWebhookService    = "webhook"
	knativeDefaultingWebhook = "webhook.serving.knative.dev"
)

var knativeValidatingWebhooks = []string{"validation.webhook.serving.knative.dev", "config.webhook.serving.knative.dev"}

// StartKnative installs Knative Serving's CRDs (serving, networking, caching), default
// ConfigMaps and webhook configurations from the pinned knative.dev/serving module
// (hack/kube/install.sh collects them into bin/knative-yaml-VERSION.layoutN) and runs Knative's own
// controller and webhook, built from the same module, as processes against c until the test
// ends. Nothing of Knative is faked: objects of serving.knative.dev and Knative's internal groups
// are defaulted and validated by Knative's webhook on create and update (failurePolicy Fail, as
// shipped), and Knative's ConfigMaps are validated. It returns once the webhook admits requests
// (a dry-run Service comes back defaulted, an invalid config-autoscaler is refused) and the
// controller holds its leases.
//
// How the webhook is reached without a Pod network: Knative's webhook reconcilers require the
// webhook configurations to name a Service (they set the path and the CA bundle of their
// self-signed certificate, whose names are webhook.knative-serving.svc etc., and refuse a URL), so
// the API server dials the Service's ClusterIP at the Service's port, verifying the name
// webhook.knative-serving.svc. ClusterIPs here are loopback addresses (ServiceCIDR), so the
// webhook, which listens on all addresses, receives that connection when it listens on the
// Service's port. StartKnative creates the Service with a free port and points the webhook
// (WEBHOOK_PORT) and the three configurations (clientConfig.service.port) at it; in a cluster
// the Service would map 443 to the pod's 8443 instead.
func (c *Cluster) StartKnative(t testing.TB, opts KnativeOptions) *Knative {
	t.Helper()
	yamlDir, ok := c.bins["knative-yaml"]
	if !ok {
		t.Fatal("kubetest: knative-yaml is not installed (hack/kube/install.sh)")
	}
	if _, err := os.Stat(filepath.Join(yamlDir, "webhooks")); err != nil {
		t.Fatalf("kubetest: %s has no webhook configurations; rerun hack/kube/install.sh: %v", yamlDir, err)
	}
	k := &Knative{
		Dir:            yamlDir,
		LogPath:        filepath.Join(c.Dir, "logs", "knative-controller.log"),
		WebhookLogPath: filepath.Join(c.Dir, "logs", "knative-webhook.log"),
	}
	begin := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()

	if _, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: KnativeNamespace}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("kubetest: namespace %s: %v", KnativeNamespace, err)
	}
	if out, err := c.Kubectl("apply", "-f", filepath.Join(yamlDir, "crds")); err != nil {
		t.Fatalf("kubetest: Knative CRDs: %v\n%s", err, out)
	}
	if out, err := c.Kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all"); err != nil {
		t.Fatalf("kubetest: Knative CRDs not established: %v\n%s", err, out)
	}
	if out, err := c.Kubectl("apply", "-f", filepath.Join(yamlDir, "configmaps")); err != nil {
		t.Fatalf("kubetest: Knative ConfigMaps: %v\n%s", err, out)
	}
	// There is no image registry: the queue-proxy image is never pulled (kwok runs no
	// containers), and dev.local images are not resolved to digests. (Patched before the webhook
	// configurations exist, so nothing waits for the webhook yet.)
	patch := func(name, data string) {
		if _, err := c.Client.CoreV1().ConfigMaps(KnativeNamespace).Patch(ctx, name, types.MergePatchType,
			[]byte(`{"data":`+data+`}`), metav1.PatchOptions{}); err != nil {
			t.Fatalf("kubetest: patch %s: %v", name, err)
		}
	}
	patch("config-deployment", `{"queue-sidecar-image":"`+KnativeImagePrefix+`knative/queue","registries-skipping-tag-resolving":"kind.local,ko.local,dev.local"}`)
	if opts.IngressClass != "" {
		patch("config-network", fmt.Sprintf(`{"ingress-class":%q}`, opts.IngressClass))
	}

	// Knative's controller binds :8008 (profiling) and :8080 (health probes) on all addresses of
	// the shared network namespace. Of two processes binding :8008 the later one silently runs
	// without its profiling server (sharedmain waits for its controllers, not for that error), so
	// the webhook gets free ports for its admission and profiling servers. (Both would bind :9090
	// for metrics, but config-observability's default metrics-protocol is none; the webhook's
	// main disables its :8080 health probes.)
	ports, err := proctest.FreePorts(2)
	if err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	webhookPort, profilingPort := ports[0], ports[1]
	webhookIP := c.applyKnativeWebhookConfig(ctx, t, yamlDir, int32(webhookPort))

	base := append(os.Environ(), "SYSTEM_NAMESPACE="+KnativeNamespace, "METRICS_DOMAIN=knative.dev/serving",
		"KUBECONFIG="+c.Kubeconfig)
	// The webhook's environment is its Deployment's (config/core/deployments/webhook.yaml), with
	// the port of the Service above and a profiling port of its own.
	webhookEnv := append(slices.Clone(base), "POD_NAME=knative-webhook",
		"CONFIG_LOGGING_NAME=config-logging", "CONFIG_OBSERVABILITY_NAME=config-observability",
		"WEBHOOK_NAME="+knativeWebhookService, fmt.Sprintf("WEBHOOK_PORT=%d", webhookPort),
		fmt.Sprintf("PROFILING_PORT=%d", profilingPort))
	webhookStart := time.Now()
	wp, err := startProcess("knative-webhook", k.WebhookLogPath, c.bins["knative-webhook"], webhookEnv, "--kubeconfig="+c.Kubeconfig)
	if err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	k.webhook = wp
	p, err := startProcess("knative-controller", k.LogPath, c.bins["knative-controller"],
		append(slices.Clone(base), "POD_NAME=knative-controller"), "--kubeconfig="+c.Kubeconfig)
	if err != nil {
		_ = wp.kill()
		t.Fatalf("kubetest: %v", err)
	}
	k.proc = p
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("kubetest: last lines of knative-controller (%s):\n%s", p.logPath, p.tail(40))
			t.Logf("kubetest: last lines of knative-webhook (%s):\n%s", wp.logPath, wp.tail(40))
		}
		// The controller first: it is a client of the webhook.
		if err := p.stop(stopGrace); err != nil {
			t.Errorf("kubetest: stop knative-controller: %v", err)
		}
		// On SIGTERM the webhook keeps serving for network.DefaultDrainTimeout (45 s) after
		// its last request, for load balancers to notice; nothing here needs that.
		if err := wp.kill(); err != nil {
			t.Errorf("kubetest: stop knative-webhook: %v", err)
		}
	})

	if err := c.waitKnativeWebhook(ctx, wp); err != nil {
		t.Fatalf("kubetest: Knative's webhook (Service %s:%d) does not admit requests: %v", webhookIP, webhookPort, err)
	}
	k.WebhookStartup = time.Since(webhookStart)

	// The controller is ready once it has taken its leases (it reconciles nothing before).
	err = poll(ctx, func() (bool, error) {
		if p.exited() {
			return false, fmt.Errorf("knative-controller exited:\n%s", p.tail(30))
		}
		leases, err := c.Client.CoordinationV1().Leases(KnativeNamespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		for _, l := range leases.Items {
			if strings.Contains(l.Name, "serving.knative.dev.service") || strings.Contains(l.Name, "service.reconciler") {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("kubetest: Knative's controller did not start: %v", err)
	}
	// Both processes start together; the controller is timed from the webhook's start too.
	t.Logf("kubetest: Knative up in %v [objects %v, webhook admitting %v after its start (Service %s:%d), controller leased %v after it] (logs in %s)",
		time.Since(begin).Round(time.Millisecond), webhookStart.Sub(begin).Round(time.Millisecond),
		k.WebhookStartup.Round(time.Millisecond), webhookIP, webhookPort,
		time.Since(webhookStart).Round(time.Millisecond), filepath.Dir(k.LogPath))
	return k
}

// applyKnativeWebhookConfig creates the webhook's Service with port (no selector: there is no
// webhook pod, and EndpointSlices could not hold a loopback address anyway) and applies Knative's
// webhook configurations and Secret with clientConfig.service.port set to port. It returns the
// Service's ClusterIP.
func (c *Cluster) applyKnativeWebhookConfig(ctx context.Context, t testing.TB, yamlDir string, port int32) string {
	t.Helper()
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: knativeWebhookService, Namespace: KnativeNamespace, Labels: map[string]string{
			"app": "webhook", "role": "webhook",
			"app.kubernetes.io/component": "webhook", "app.kubernetes.io/name": "knative-serving",
		}},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{
			Name: "https-webhook", Port: port, TargetPort: intstr.FromInt32(port),
		}}},
	}
	svc, err := c.Client.CoreV1().Services(KnativeNamespace).Create(ctx, svc, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("kubetest: Knative's webhook Service: %v", err)
	}
	if out, err := c.Kubectl("apply", "-f", filepath.Join(yamlDir, "webhooks")); err != nil {
		t.Fatalf("kubetest: Knative's webhook configurations: %v\n%s", err, out)
	}
	// Each configuration has one webhook; a JSON patch "add" replaces the port Knative leaves to
	// the default (443). Knative's reconcilers later set only the path and the CA bundle.
	portPatch := []byte(fmt.Sprintf(`[{"op":"add","path":"/webhooks/0/clientConfig/service/port","value":%d}]`, port))
	adm := c.Client.AdmissionregistrationV1()
	if _, err := adm.MutatingWebhookConfigurations().Patch(ctx, knativeDefaultingWebhook, types.JSONPatchType, portPatch, metav1.PatchOptions{}); err != nil {
		t.Fatalf("kubetest: point %s at port %d: %v", knativeDefaultingWebhook, port, err)
	}
	for _, name := range knativeValidatingWebhooks {
		if _, err := adm.ValidatingWebhookConfigurations().Patch(ctx, name, types.JSONPatchType, portPatch, metav1.PatchOptions{}); err != nil {
			t.Fatalf("kubetest: point %s at port %d: %v", name, port, err)
		}
	}
	return svc.Spec.ClusterIP
}

// waitKnativeWebhook waits until the API server gets answers from all three of Knative's
// admission webhooks: a dry-run create of a Service (nothing is stored) passes the defaulting and
// the validating webhook (failurePolicy Fail: an unreachable or untrusted webhook refuses it) and
// comes back with Knative's defaults, and a dry-run patch that breaks config-autoscaler is refused
// by the ConfigMap webhook. Until Knative's certificate controller has filled the webhook-certs
// Secret and the reconcilers have put its CA into the configurations, the API server's calls
// fail (connection refused, then an unknown certificate authority).
func (c *Cluster) waitKnativeWebhook(ctx context.Context, p *process) error {
	// Knative's webhook warns about the probe's default securityContext; keep that out of the
	// test's output.
	cfg := rest.CopyConfig(c.Config)
	cfg.WarningHandler = rest.NoWarnings{}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return err
	}
	services := dyn.Resource(schema.GroupVersionResource{Group: "serving.knative.dev", Version: "v1", Resource: "services"}).Namespace(KnativeNamespace)
	probe := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "serving.knative.dev/v1", "kind": "Service",
		"metadata": map[string]any{"name": "kubetest-webhook-probe"},
		"spec": map[string]any{"template": map[string]any{"spec": map[string]any{
			"containers": []any{map[string]any{"image": KnativeImagePrefix + "kubetest/probe"}},
		}}},
	}}
	dryRun := []string{metav1.DryRunAll}
	var last error
	err = poll(ctx, func() (bool, error) {
		if p.exited() {
			return false, fmt.Errorf("knative-webhook exited:\n%s", p.tail(30))
		}
		got, err := services.Create(ctx, probe, metav1.CreateOptions{DryRun: dryRun})
		if err != nil {
			last = err
			return false, nil
		}
		if _, found, _ := unstructured.NestedInt64(got.Object, "spec", "template", "spec", "timeoutSeconds"); !found {
			return false, fmt.Errorf("a dry-run Service passed admission without Knative's defaults: %v", got.Object["spec"])
		}
		_, err = c.Client.CoreV1().ConfigMaps(KnativeNamespace).Patch(ctx, "config-autoscaler", types.MergePatchType,
			[]byte(`{"data":{"max-scale-up-rate":"0"}}`), metav1.PatchOptions{DryRun: dryRun})
		switch {
		case err == nil:
			last = errors.New("an invalid config-autoscaler passed admission")
			return false, nil
		case strings.Contains(err.Error(), "max-scale-up-rate = 0, must be greater than 1.0"):
			return true, nil
		default:
			last = err
			return false, nil
		}
	})
	if err != nil && last != nil {
		return fmt.Errorf("%w (last: %v); webhook log:\n%s", err, last, p.tail(30))
	}
	return err
}

// Tail returns the controller's last log lines.
func (k *Knative) Tail(lines int) string { return k.proc.tail(lines) }

// WebhookTail returns the webhook's last log lines.
func (k *Knative) WebhookTail(lines int) string { return k.webhook.tail(lines) }
