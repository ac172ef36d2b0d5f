package kube

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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
	ingresses  = schema.GroupVersionResource{Group: "networking.internal.knative.dev", Version: "v1alpha1", Resource: "ingresses"}
	podScalers = schema.GroupVersionResource{Group: "autoscaling.internal.knative.dev", Version: "v1alpha1", Resource: "podautoscalers"}
)

// knactor as a Knative PodAutoscaler class and ingress class, with Knative Serving's own
// controller: a Knative Service of class actor.autoscaling.knactor.dev becomes a Revision that
// Knative marks Ready because knactor keeps its PodAutoscaler's status true; the Service is READY
// with a URL because knactor's routers serve its Ingress; the routers serve its actors with exact
// counts; it scales to zero and back through knactor's autoscaler, which reads the revision's
// settings from the PodAutoscaler.
func TestKnativeIntegration(t *testing.T) {
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

	t.Run("the Service is READY with a URL served by knactor's ingress class", func(t *testing.T) {
		e.eventually(t, 60*time.Second, "Knative Service kcounter Ready", func() (bool, string) {
			ready := condition(ksvcs, "kcounter", "Ready")
			return ready == "True", "Service Ready " + ready + ", Ingress Ready " + condition(ingresses, "kcounter", "Ready")
		})
		u, err := dyn.Resource(ksvcs).Namespace(namespace).Get(ctx, "kcounter", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		url, _, _ := unstructured.NestedString(u.Object, "status", "url")
		host := strings.TrimPrefix(url, "http://")
		if host == "" || host == url {
			t.Fatalf("Service URL %q", url)
		}
		// A request for the URL's host reaches the function's pod through the router (the
		// counter serves only the function contract, so its answer to GET / is its own 404).
		req, _ := http.NewRequest(http.MethodGet, e.routers[0]+"/", nil)
		req.Host = host
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(body), `"code":"not_found"`) || strings.Contains(string(body), "unknown_function") {
			t.Errorf("GET %s/ with Host %s answered by the router itself: %d %s", e.routers[0], host, resp.StatusCode, body)
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

	t.Run("kn-actor deploys a manifest as a Knative Service of knactor's class and lists it", func(t *testing.T) {
		root, _ := filepath.Abs("../..")
		knActor := func(args ...string) string {
			cmd := exec.Command(os.Getenv(envKnActorBin), append(args, "--cluster", "--kubeconfig", e.c.Kubeconfig)...)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("kn-actor %s: %v\n%s", strings.Join(args, " "), err, out)
			}
			return string(out)
		}
		// The same file `knactor up` runs locally; the image is what ko would have resolved.
		out := knActor("deploy", "-f", filepath.Join(root, "examples", "counter", "service.yaml"),
			"--image", kubetest.KnativeImagePrefix+"knactor/counter")
		if !strings.Contains(out, `function "counter" created`) {
			t.Errorf("kn-actor deploy printed %q", out)
		}
		e.eventually(t, 60*time.Second, "revision counter-00001 created by Knative", func() (bool, string) {
			_, err := dyn.Resource(podScalers).Namespace(namespace).Get(ctx, "counter-00001", metav1.GetOptions{})
			return err == nil, fmt.Sprint(err)
		})
		u, err := dyn.Resource(ksvcs).Namespace(namespace).Get(ctx, "counter", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if class, _, _ := unstructured.NestedString(u.Object, "spec", "template", "metadata", "annotations", "autoscaling.knative.dev/class"); class != "actor.autoscaling.knactor.dev" {
			t.Errorf("deployed Service's class = %q, want knactor's", class)
		}
		var list struct {
			Functions []struct {
				Function, Ready, URL string
			} `json:"functions"`
		}
		if err := json.Unmarshal([]byte(knActor("list", "-o", "json")), &list); err != nil {
			t.Fatal(err)
		}
		found := false
		for _, f := range list.Functions {
			if f.Function == "kcounter" {
				found = f.Ready == "True" && strings.HasPrefix(f.URL, "http://kcounter.")
			}
		}
		if !found {
			t.Errorf("kn-actor list --cluster = %+v, want kcounter Ready with its URL", list.Functions)
		}
	})

	acked := int64(10) // alice's count so far
	t.Run("a second revision rolls out with no acknowledged write lost", func(t *testing.T) {
		stop, done := make(chan struct{}), make(chan error, 1)
		go func() { // one caller, adding while the rollout happens
			for {
				select {
				case <-stop:
					done <- nil
					return
				default:
				}
				if _, err := e.post(e.routers[int(acked)%2], "alice", "add", `{"by":1}`); err != nil {
					done <- err
					return
				}
				acked++
			}
		}()
		patch := `{"spec":{"template":{"spec":{"containers":[{"image":"` + kubetest.KnativeImagePrefix + `knactor/counter","ports":[{"containerPort":9080}],"env":[{"name":"ROLLOUT","value":"2"}]}]}}}}`
		if _, err := dyn.Resource(ksvcs).Namespace(namespace).Patch(ctx, "kcounter", "application/merge-patch+json", []byte(patch), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		e.eventually(t, 90*time.Second, "revision 00002 serving and 00001 retired", func() (bool, string) {
			u, err := dyn.Resource(ksvcs).Namespace(namespace).Get(ctx, "kcounter", metav1.GetOptions{})
			if err != nil {
				return false, err.Error()
			}
			latest, _, _ := unstructured.NestedString(u.Object, "status", "latestReadyRevisionName")
			old, err := e.c.Client.AppsV1().Deployments(namespace).Get(ctx, "kcounter-00001-deployment", metav1.GetOptions{})
			if err != nil {
				return false, err.Error()
			}
			return latest == "kcounter-00002" && *old.Spec.Replicas == 0 && condition(ksvcs, "kcounter", "Ready") == "True",
				fmt.Sprintf("latest ready %s, 00001 replicas %d", latest, *old.Spec.Replicas)
		})
		close(stop)
		if err := <-done; err != nil {
			t.Fatalf("a call failed during the rollout: %v", err)
		}
		if got, want := e.call(t, e.routers[1], "alice", "get", `{}`), fmt.Sprintf(`{"value":%d}`, acked); got != want {
			t.Fatalf("after the rollout alice = %s, want %s (every acknowledged add)", got, want)
		}
		t.Logf("%d adds acknowledged across the rollout", acked-10)
	})

	t.Run("scales to zero and back, the PodAutoscaler following", func(t *testing.T) {
		e.eventually(t, 120*time.Second, "kcounter at zero", func() (bool, string) {
			d, err := e.c.Client.AppsV1().Deployments(namespace).Get(ctx, "kcounter-00002-deployment", metav1.GetOptions{})
			if err != nil {
				return false, err.Error()
			}
			active := condition(podScalers, "kcounter-00002", "Active")
			return *d.Spec.Replicas == 0 && active == "False", fmt.Sprintf("replicas %d, PodAutoscaler Active %s", *d.Spec.Replicas, active)
		})
		if rev := condition(revisions, "kcounter-00002", "Ready"); rev != "True" {
			t.Errorf("revision Ready = %s at zero, want True (scaled to zero is not a failure)", rev)
		}
		if got, want := e.call(t, e.routers[0], "alice", "add", `{"by":1}`), fmt.Sprintf(`{"value":%d}`, acked+1); got != want {
			t.Errorf("after scale-to-zero: %s, want %s", got, want)
		}
	})
}
