package kubetest_test

import (
	"context"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/knactor/knactor/test/kubetest"
)

// Knative's own webhook defaults a Service on create (Knative's defaults in the stored object,
// the creator annotation from the request's user) and refuses an invalid one with Knative's
// message; Knative's own controller turns the Service into a Configuration, a Revision, the
// revision's Deployment (labelled as knactor's pod discovery expects) and a PodAutoscaler of the
// class the Service names — here knactor's, which nothing else reconciles.
func TestKnativeController(t *testing.T) {
	c := kubetest.Start(t)
	c.StartKnative(t, kubetest.KnativeOptions{IngressClass: "knactor.ingress.networking.knactor.dev"})
	dyn := dynamic.NewForConfigOrDie(c.Config)
	ctx := context.Background()
	svc := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "serving.knative.dev/v1", "kind": "Service",
		"metadata": map[string]any{"name": "counter", "namespace": "default"},
		"spec": map[string]any{"template": map[string]any{
			"metadata": map[string]any{"annotations": map[string]any{
				"autoscaling.knative.dev/class": "actor.autoscaling.knactor.dev",
			}},
			"spec": map[string]any{"containers": []any{map[string]any{"image": kubetest.KnativeImagePrefix + "knactor/counter"}}},
		}},
	}}
	services := schema.GroupVersionResource{Group: "serving.knative.dev", Version: "v1", Resource: "services"}
	created, err := dyn.Resource(services).Namespace("default").Create(ctx, svc, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Knative's defaults (config-defaults: revision-timeout-seconds 300, container-concurrency
	// 0) and the user who created it, all filled in by the defaulting webhook.
	for _, f := range []struct {
		path []string
		want int64
	}{
		{[]string{"spec", "template", "spec", "timeoutSeconds"}, 300},
		{[]string{"spec", "template", "spec", "containerConcurrency"}, 0},
	} {
		got, found, err := unstructured.NestedInt64(created.Object, f.path...)
		if err != nil || !found || got != f.want {
			t.Errorf("created Service %s = %v (found %v, %v), want Knative's default %d", strings.Join(f.path, "."), got, found, err, f.want)
		}
	}
	if got := created.GetAnnotations()["serving.knative.dev/creator"]; got != "admin" {
		t.Errorf("created Service's creator annotation = %q, want admin (the webhook records the request's user)", got)
	}

	// Negative min-scale: refused by Knative's validating webhook, with Knative's message.
	bad := svc.DeepCopy()
	bad.SetName("counter-invalid")
	if err := unstructured.SetNestedField(bad.Object, "-1", "spec", "template", "metadata", "annotations", "autoscaling.knative.dev/min-scale"); err != nil {
		t.Fatal(err)
	}
	_, err = dyn.Resource(services).Namespace("default").Create(ctx, bad, metav1.CreateOptions{})
	if err == nil || !strings.Contains(err.Error(), `admission webhook "validation.webhook.serving.knative.dev" denied the request`) ||
		!strings.Contains(err.Error(), "expected 0 <= -1 <= 2147483647: spec.template.metadata.annotations.autoscaling.knative.dev/min-scale") {
		t.Errorf("creating a Service with min-scale -1: err = %v, want Knative's validating webhook to refuse it", err)
	}
	pas := schema.GroupVersionResource{Group: "autoscaling.internal.knative.dev", Version: "v1alpha1", Resource: "podautoscalers"}
	deadline := time.Now().Add(60 * time.Second)
	for {
		pa, err := dyn.Resource(pas).Namespace("default").Get(ctx, "counter-00001", metav1.GetOptions{})
		dep, derr := c.Client.AppsV1().Deployments("default").Get(ctx, "counter-00001-deployment", metav1.GetOptions{})
		if err == nil && derr == nil {
			if got := pa.GetAnnotations()["autoscaling.knative.dev/class"]; got != "actor.autoscaling.knactor.dev" {
				t.Errorf("PodAutoscaler class = %q, want knactor's", got)
			}
			if got := dep.Spec.Template.Labels["serving.knative.dev/service"]; got != "counter" {
				t.Errorf("the revision's pods are labelled service=%q, want counter", got)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no PodAutoscaler and Deployment for the Service's revision after 60 s: %v / %v", err, derr)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
