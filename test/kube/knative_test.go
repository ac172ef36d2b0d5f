package kube

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/knactor/knactor/test/kubetest"
)

var (
	ksvcs      = schema.GroupVersionResource{Group: "serving.knative.dev", Version: "v1", Resource: "services"}
	revisions  = schema.GroupVersionResource{Group: "serving.knative.dev", Version: "v1", Resource: "revisions"}
	podScalers = schema.GroupVersionResource{Group: "autoscaling.internal.knative.dev", Version: "v1alpha1", Resource: "podautoscalers"}
)

// knactor as a Knative PodAutoscaler class, with Knative Serving's own controller: a Knative
// Service of class actor.autoscaling.knactor.dev becomes a Revision that Knative marks Ready
// because knactor keeps its PodAutoscaler's status true; knactor's routers serve its actors with
// exact counts; it scales to zero and back through knactor's autoscaler, which reads the
// revision's settings from the PodAutoscaler.
func TestKnativePodAutoscalerClass(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a real Kubernetes control plane, Knative, MinIO and built binaries; run without -short")
	}
	e := install(t, installOptions{knative: true})
	ctx := context.Background()
	dyn := dynamic.NewForConfigOrDie(e.c.Config)
	svc := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "serving.knative.dev/v1", "kind": "Service",
		"metadata": map[string]any{"name": "kcounter", "namespace": namespace},
		"spec": map[string]any{"template": map[string]any{
			"metadata": map[string]any{"annotations": map[string]any{
				"autoscaling.knative.dev/class":  "actor.autoscaling.knactor.dev",
				"autoscaling.knative.dev/window": "6s",
			}},
			"spec": map[string]any{"containers": []any{map[string]any{
				"image": kubetest.KnativeImagePrefix + "knactor/counter",
				"ports": []any{map[string]any{"containerPort": int64(9080)}},
			}}},
		}},
	}}
	if _, err := dyn.Resource(ksvcs).Namespace(namespace).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.counter = e.runCounter(t, "kcounter", os.Getenv(envCounterBin))
	e.function = "kcounter"

	condition := func(gvr schema.GroupVersionResource, name, typ string) string {
		u, err := dyn.Resource(gvr).Namespace(namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err.Error()
		}
		conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
		for _, c := range conds {
			m, _ := c.(map[string]any)
			if m["type"] == typ {
				return fmt.Sprint(m["status"])
			}
		}
		return "absent"
	}

	t.Run("Knative marks the revision Ready through knactor's PodAutoscaler status", func(t *testing.T) {
		e.eventually(t, 60*time.Second, "revision kcounter-00001 Ready", func() (bool, string) {
			rev, pa := condition(revisions, "kcounter-00001", "Ready"), condition(podScalers, "kcounter-00001", "Ready")
			return rev == "True", "revision Ready " + rev + ", podautoscaler Ready " + pa
		})
		if got := condition(podScalers, "kcounter-00001", "ScaleTargetInitialized"); got != "True" {
			t.Errorf("PodAutoscaler ScaleTargetInitialized = %s, want True", got)
		}
	})

	t.Run("actor calls through knactor's routers", func(t *testing.T) {
		for i := 1; i <= 10; i++ {
			got, err := e.post(e.routers[i%2], "alice", "add", `{"by":1}`)
			if err != nil {
				t.Fatal(err)
			}
			if want := fmt.Sprintf(`{"value":%d}`, i); got != want {
				t.Fatalf("call %d = %s, want %s", i, got, want)
			}
		}
	})

	t.Run("scales to zero and back, the PodAutoscaler following", func(t *testing.T) {
		e.eventually(t, 120*time.Second, "kcounter at zero", func() (bool, string) {
			d, err := e.c.Client.AppsV1().Deployments(namespace).Get(ctx, "kcounter-00001-deployment", metav1.GetOptions{})
			if err != nil {
				return false, err.Error()
			}
			active := condition(podScalers, "kcounter-00001", "Active")
			return *d.Spec.Replicas == 0 && active == "False", fmt.Sprintf("replicas %d, PodAutoscaler Active %s", *d.Spec.Replicas, active)
		})
		if rev := condition(revisions, "kcounter-00001", "Ready"); rev != "True" {
			t.Errorf("revision Ready = %s at zero, want True (scaled to zero is not a failure)", rev)
		}
		if got := e.call(t, e.routers[0], "alice", "add", `{"by":1}`); got != `{"value":11}` {
			t.Errorf("after scale-to-zero: %s, want {\"value\":11}", got)
		}
	})
}
