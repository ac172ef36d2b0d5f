package kube

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/knactor/knactor/test/kubetest"
	"github.com/knactor/knactor/test/miniotest"
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
	// docs/kubernetes.md's commands, run as a user runs them: its install steps again over what
	// install did (they must agree: the re-apply changes nothing), then deploy, invoke, observe.
	doc := newDocWalk(t, "docs/kubernetes.md",
		"KUBECONFIG="+e.c.Kubeconfig,
		"PATH="+userPath(t, map[string]string{"kubectl": e.c.Bin("kubectl"), "kn-actor": os.Getenv(envKnActorBin)})+":"+os.Getenv("PATH"),
		"S3_ENDPOINT="+e.s3, "S3_BUCKET="+bucket, "S3_ACCESS_KEY="+miniotest.AccessKey, "S3_SECRET_KEY="+miniotest.SecretKey,
		"KNACTOR_TOKEN="+token, "KNACTOR_URL="+e.routers[0], "IMAGE="+kubetest.KnativeImagePrefix+"knactor/counter",
		"HELLO_IMAGE="+kubetest.KnativeImagePrefix+"knactor/hello")
	t.Run("docs: knactor becomes Knative's ingress and is installed", func(t *testing.T) {
		doc.run(t, "knative-ingress")
		doc.run(t, "install")
		doc.run(t, "actor-system")
		doc.run(t, "ready")
	})
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
	e.counter = e.runFunction(t, "kcounter", os.Getenv(envCounterBin))
	e.function = "kcounter"

	// conditionOf returns the condition typ of an object's status, or a note of why there is none.
	conditionOf := func(gvr schema.GroupVersionResource, name, typ string) (map[string]any, string) {
		u, err := dyn.Resource(gvr).Namespace(namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, err.Error()
		}
		conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
		for _, c := range conds {
			if m, _ := c.(map[string]any); m["type"] == typ {
				return m, ""
			}
		}
		return nil, "absent"
	}
	condition := func(gvr schema.GroupVersionResource, name, typ string) string {
		c, missing := conditionOf(gvr, name, typ)
		if c == nil {
			return missing
		}
		return fmt.Sprint(c["status"])
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
		req, err := http.NewRequest(http.MethodGet, e.routers[0]+"/", nil)
		if err != nil {
			t.Fatal(err)
		}
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

	t.Run("docs: kn-actor deploys the counter example as a Knative Service of knactor's class; invoke, observe", func(t *testing.T) {
		// The counter's pods run the real counter, as the kubelet would run the image.
		e.runFunction(t, "counter", os.Getenv(envCounterBin))
		// The same file `knactor up` runs locally; the image is what ko would have resolved.
		doc.run(t, "deploy")
		u, err := dyn.Resource(ksvcs).Namespace(namespace).Get(ctx, "counter", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if class, _, _ := unstructured.NestedString(u.Object, "spec", "template", "metadata", "annotations", "autoscaling.knative.dev/class"); class != "actor.autoscaling.knactor.dev" {
			t.Errorf("deployed Service's class = %q, want knactor's", class)
		}
		doc.run(t, "invoke")
		doc.run(t, "observe")

		cmd := exec.Command(os.Getenv(envKnActorBin), "list", "-o", "json", "--cluster", "--kubeconfig", e.c.Kubeconfig)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("kn-actor list: %v\n%s", err, out)
		}
		var list struct {
			Functions []struct {
				Function, Ready, URL string
			} `json:"functions"`
		}
		if err := json.Unmarshal(out, &list); err != nil {
			t.Fatal(err)
		}
		ready := map[string]bool{}
		for _, f := range list.Functions {
			ready[f.Function] = f.Ready == "True" && strings.HasPrefix(f.URL, "http://"+f.Function+".")
		}
		if !ready["kcounter"] || !ready["counter"] {
			t.Errorf("kn-actor list --cluster = %+v, want kcounter and counter Ready with their URLs", list.Functions)
		}
	})

	t.Run("docs: with knactor as the default class, kubectl apply of a stateless example serves its URL", func(t *testing.T) {
		e.runFunction(t, "hello", os.Getenv(envHelloBin))
		doc.run(t, "default-class")
		doc.run(t, "stateless")
		doc.done(t)
		u, err := dyn.Resource(podScalers).Namespace(namespace).Get(ctx, "hello-00001", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if class := u.GetAnnotations()["autoscaling.knative.dev/class"]; class != "actor.autoscaling.knactor.dev" {
			t.Errorf("hello's PodAutoscaler has class %q, want knactor's (config-autoscaler's default)", class)
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

	t.Run("traffic splits between revisions and tags, each actor on one revision", func(t *testing.T) {
		// Half the traffic back to the first revision, tagged v1: Knative's Route controller
		// writes the split and the tag's host into the Ingress; knactor's routers follow it and
		// knactor's autoscaler brings the first revision back from zero.
		patch := `{"spec":{"traffic":[{"revisionName":"kcounter-00001","percent":50,"tag":"v1"},{"latestRevision":true,"percent":50}]}}`
		if _, err := dyn.Resource(ksvcs).Namespace(namespace).Patch(ctx, "kcounter", "application/merge-patch+json", []byte(patch), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		tagHost := ""
		e.eventually(t, 60*time.Second, "the split and the v1 tag ready", func() (bool, string) {
			u, err := dyn.Resource(ksvcs).Namespace(namespace).Get(ctx, "kcounter", metav1.GetOptions{})
			if err != nil {
				return false, err.Error()
			}
			traffic, _, _ := unstructured.NestedSlice(u.Object, "status", "traffic")
			for _, tr := range traffic {
				if m, _ := tr.(map[string]any); m["tag"] == "v1" {
					tagHost = strings.TrimPrefix(fmt.Sprint(m["url"]), "http://")
				}
			}
			return len(traffic) == 2 && tagHost != "" && condition(ksvcs, "kcounter", "Ready") == "True",
				fmt.Sprintf("status.traffic %v, Ready %s", traffic, condition(ksvcs, "kcounter", "Ready"))
		})
		revisionOf := func(pod string) string { // kwok pods are named {revision}-deployment-…
			rev, _, _ := strings.Cut(pod, "-deployment-")
			return rev
		}
		const actors = 24
		on := map[string]int{}
		for i := range actors {
			actor := fmt.Sprintf("split-%d", i)
			first := ""
			for call := 1; call <= 3; call++ {
				got, pod, err := e.postVia(e.routers[call%2], "", actor, "add", `{"by":1}`)
				if err != nil {
					t.Fatal(err)
				}
				if want := fmt.Sprintf(`{"value":%d}`, call); got != want {
					t.Fatalf("%s call %d = %s, want %s", actor, call, got, want)
				}
				if call == 1 {
					first = revisionOf(pod)
					on[first]++
				} else if rev := revisionOf(pod); rev != first {
					t.Fatalf("%s ran on %s, then on %s: an actor stays on the revision the split picks for it", actor, first, rev)
				}
			}
		}
		if on["kcounter-00001"] < 4 || on["kcounter-00002"] < 4 {
			t.Errorf("actors per revision %v, want both revisions to take about half", on)
		}
		for i := range 6 {
			actor := fmt.Sprintf("split-%d", i)
			got, pod, err := e.postVia(e.routers[i%2], tagHost, actor, "add", `{"by":1}`)
			if err != nil {
				t.Fatal(err)
			}
			if got != `{"value":4}` || revisionOf(pod) != "kcounter-00001" {
				t.Fatalf("by the v1 tag's host %s: %s on %s, want {\"value\":4} on kcounter-00001", tagHost, got, pod)
			}
		}
		t.Logf("actors per revision at 50/50: %v; the v1 tag's host %s runs kcounter-00001", on, tagHost)

		// Back to the latest revision: the first is unreachable again and retired.
		patch = `{"spec":{"traffic":[{"latestRevision":true,"percent":100}]}}`
		if _, err := dyn.Resource(ksvcs).Namespace(namespace).Patch(ctx, "kcounter", "application/merge-patch+json", []byte(patch), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		e.eventually(t, 60*time.Second, "kcounter-00001 retired", func() (bool, string) {
			old, err := e.c.Client.AppsV1().Deployments(namespace).Get(ctx, "kcounter-00001-deployment", metav1.GetOptions{})
			if err != nil {
				return false, err.Error()
			}
			return *old.Spec.Replicas == 0, fmt.Sprintf("00001 replicas %d", *old.Spec.Replicas)
		})
		for i := range actors {
			want := 3
			if i < 6 {
				want = 4
			}
			got, pod, err := e.postVia(e.routers[0], "", fmt.Sprintf("split-%d", i), "get", `{}`)
			if err != nil {
				t.Fatal(err)
			}
			if got != fmt.Sprintf(`{"value":%d}`, want) || revisionOf(pod) != "kcounter-00002" {
				t.Fatalf("split-%d after the split ended: %s on %s, want {\"value\":%d} on kcounter-00002", i, got, pod, want)
			}
		}
	})

	t.Run("a revision knactor will not scale is not Ready; its PodAutoscaler says why", func(t *testing.T) {
		bad := svc.DeepCopy()
		bad.SetName("badmetric")
		bad.SetResourceVersion("")
		if err := unstructured.SetNestedField(bad.Object, "cpu", "spec", "template", "metadata", "annotations", "autoscaling.knative.dev/metric"); err != nil {
			t.Fatal(err)
		}
		if _, err := dyn.Resource(ksvcs).Namespace(namespace).Create(ctx, bad, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		message := func(gvr schema.GroupVersionResource, name, typ string) string {
			c, missing := conditionOf(gvr, name, typ)
			if c == nil {
				return missing
			}
			return fmt.Sprint(c["status"], " ", c["reason"], ": ", c["message"])
		}
		e.eventually(t, 60*time.Second, "the revision not Ready, saying why", func() (bool, string) {
			pa := message(podScalers, "badmetric-00001", "ScaleTargetInitialized")
			rev := message(revisions, "badmetric-00001", "Ready")
			return strings.HasPrefix(pa, "False InvalidSettings") && strings.Contains(pa, `"cpu" is not concurrency or rps`) &&
				strings.HasPrefix(rev, "False"), "PodAutoscaler " + pa + "; Revision " + rev
		})
		t.Logf("Revision badmetric-00001 Ready: %s", message(revisions, "badmetric-00001", "Ready"))
		if err := dyn.Resource(ksvcs).Namespace(namespace).Delete(ctx, "badmetric", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
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
