package kubetest_test

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/knactor/knactor/test/kubetest"
)

// Knative's own controller turns a Service into a Configuration, a Revision, the revision's
// Deployment (labelled as knactor's pod discovery expects) and a PodAutoscaler of the class the
// Service names — here knactor's, which nothing else reconciles.
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
	if _, err := dyn.Resource(services).Namespace("default").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
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
