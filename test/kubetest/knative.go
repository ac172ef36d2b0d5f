package kubetest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// KnativeNamespace is where Knative Serving's ConfigMaps live and its controller runs.
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

// Knative is Knative Serving's controller running against a Cluster.
type Knative struct {
	// Dir holds Knative's CRDs and ConfigMaps as installed.
	Dir string
	// LogPath is the controller's log.
	LogPath string
	proc    *process
}

// StartKnative installs Knative Serving's CRDs (serving, networking, caching) and default
// ConfigMaps from the pinned knative.dev/serving module (hack/kube/install.sh collects them into
// bin/knative-yaml-VERSION) and runs Knative's own controller, built from the same module, as a
// process against c, until the test ends. Nothing of Knative is faked; the webhook is not run
// (the controller defaults what it creates, and objects the test creates are stored undefaulted).
func (c *Cluster) StartKnative(t testing.TB, opts KnativeOptions) *Knative {
	t.Helper()
	yamlDir, ok := c.bins["knative-yaml"]
	if !ok {
		t.Fatal("kubetest: knative-yaml is not installed (hack/kube/install.sh)")
	}
	k := &Knative{Dir: yamlDir, LogPath: filepath.Join(c.Dir, "logs", "knative-controller.log")}
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
	// containers), and dev.local images are not resolved to digests.
	patch := func(name, data string) {
		if _, err := c.Client.CoreV1().ConfigMaps(KnativeNamespace).Patch(ctx, name, "application/merge-patch+json",
			[]byte(`{"data":`+data+`}`), metav1.PatchOptions{}); err != nil {
			t.Fatalf("kubetest: patch %s: %v", name, err)
		}
	}
	patch("config-deployment", `{"queue-sidecar-image":"`+KnativeImagePrefix+`knative/queue","registries-skipping-tag-resolving":"kind.local,ko.local,dev.local"}`)
	if opts.IngressClass != "" {
		patch("config-network", fmt.Sprintf(`{"ingress-class":%q}`, opts.IngressClass))
	}

	env := append(os.Environ(), "SYSTEM_NAMESPACE="+KnativeNamespace, "POD_NAME=knative-controller",
		"METRICS_DOMAIN=knative.dev/serving", "KUBECONFIG="+c.Kubeconfig)
	p, err := startProcess("knative-controller", k.LogPath, c.bins["knative-controller"], env, "--kubeconfig="+c.Kubeconfig)
	if err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	k.proc = p
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("kubetest: last lines of knative-controller (%s):\n%s", p.logPath, p.tail(40))
		}
		if err := p.stop(stopGrace); err != nil {
			t.Errorf("kubetest: stop knative-controller: %v", err)
		}
	})
	// Ready once it has taken its leases (it reconciles nothing before).
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
	return k
}

// Tail returns the controller's last log lines.
func (k *Knative) Tail(lines int) string { return k.proc.tail(lines) }
