// Package kube tests knactor's Kubernetes mode end to end on a real control plane (etcd,
// kube-apiserver, controller-manager, scheduler and kwok from test/kubetest), inside a private
// network namespace: `kubectl apply -f config/` installs knactor, the router and autoscaler
// Deployments' pods run the real knactor binary with their Deployments' arguments (the shim plays
// the kubelet), each as its own ServiceAccount, and a function's pods run the real counter.
package kube

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/knactor/knactor/test/kubetest"
	"github.com/knactor/knactor/test/miniotest"
)

// Binaries the tests run, built before the network namespace is entered (the build may need
// the module proxy) and found again inside through these variables.
const (
	envKnactorBin = "KNACTOR_TEST_KNACTOR_BIN"
	envCounterBin = "KNACTOR_TEST_COUNTER_BIN"
	envKnActorBin = "KNACTOR_TEST_KN_ACTOR_BIN"
	envHelloBin   = "KNACTOR_TEST_HELLO_BIN"
	envAuctionBin = "KNACTOR_TEST_AUCTION_BIN"
)

func TestMain(m *testing.M) {
	kubetest.ReexecInNetNS(m,
		func() error { _, err := miniotest.Binary(); return err },
		func() error { return build(envKnactorBin, "./cmd/knactor") },
		func() error { return build(envCounterBin, "./examples/counter") },
		func() error { return build(envKnActorBin, "./cmd/kn-actor") },
		func() error { return build(envHelloBin, "./examples/hello") },
		func() error { return build(envAuctionBin, "./examples/auction") },
	)
}

// build builds pkg into the git-ignored bin/test/ and exports its path in env.
func build(env, pkg string) error {
	if testing.Short() {
		return nil
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		return err
	}
	out := filepath.Join(root, "bin", "test", filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = root
	if msg, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %v\n%s", pkg, err, msg)
	}
	return os.Setenv(env, out)
}

const (
	system    = "knactor-system"
	namespace = "default"
	token     = "kube-e2e-token-0123456789"
	// teamToken may call the auction's actors only.
	teamToken = "kube-e2e-team-token-0123456789"
	bucket    = "knactor-kube"
	// counterLabels are the labels Knative puts on a revision's Deployment and pods.
	revision = "counter-00001"
)

// deployment is the counter as Knative would deploy its first revision, at zero replicas.
func counterDeployment() *appsv1.Deployment {
	return functionDeployment("counter", revision, "ko://github.com/knactor/knactor/examples/counter")
}

// functionDeployment is a function's first revision as Knative would deploy it, at zero
// replicas.
func functionDeployment(function, revision, image string) *appsv1.Deployment {
	labels := map[string]string{
		"serving.knative.dev/service":       function,
		"serving.knative.dev/configuration": function,
		"serving.knative.dev/revision":      revision,
	}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: revision + "-deployment", Namespace: namespace, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](0),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"serving.knative.dev/revision": revision}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: map[string]string{
					// Small numbers so the test sees a scale-up and a scale-down in seconds: one
					// call in flight per pod, at most three pods, Knative's shortest stable window.
					"autoscaling.knative.dev/target":    "1",
					"autoscaling.knative.dev/max-scale": "3",
					"autoscaling.knative.dev/window":    "6s",
				}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: "user-container", Image: image,
					Ports: []corev1.ContainerPort{{Name: "user-port", ContainerPort: 8080}},
				}}},
			},
		},
	}
}

// env is a running installation: the cluster, MinIO, knactor's pods and the counter's.
type env struct {
	t          *testing.T
	c          *kubetest.Cluster
	routers    []string // base URLs of the router pods
	autoscaler string   // base URL of the autoscaler pod
	counter    *kubetest.Shim
	function   string // the function post and call address ("counter" unless set)
	s3         string // the MinIO endpoint (host:port) of the ActorSystem
}

func TestKubernetesMode(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a real Kubernetes control plane, MinIO and built binaries; run without -short")
	}
	e := install(t, installOptions{})
	ctx := context.Background()

	t.Run("both routers stream stats to the autoscaler", func(t *testing.T) {
		e.eventually(t, 20*time.Second, "two routers connected to the autoscaler", func() (bool, string) {
			r := e.functions(t)
			return len(r.Routers) == 2, fmt.Sprintf("routers %v", r.Routers)
		})
	})

	t.Run("first call scales from zero through the API", func(t *testing.T) {
		start := time.Now()
		got := e.call(t, e.routers[0], "alice", "add", `{"by":1}`)
		if got != `{"value":1}` {
			t.Fatalf("first call replied %s, want {\"value\":1}", got)
		}
		t.Logf("cold start through the API (scale subresource, controller-manager, scheduler, kwok, shim, probe): %v", time.Since(start).Round(time.Millisecond))
		d, err := e.c.Client.AppsV1().Deployments(namespace).Get(ctx, revision+"-deployment", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if *d.Spec.Replicas < 1 {
			t.Errorf("deployment replicas = %d after a call, want ≥ 1", *d.Spec.Replicas)
		}
		if n := len(e.counter.Processes()); n < 1 {
			t.Errorf("the shim runs %d counter processes, want ≥ 1", n)
		}
	})

	t.Run("two routers, exact counts, scale-up under load", func(t *testing.T) {
		const (
			actors  = 8
			callers = 16
			perCall = 40 // calls per caller
		)
		var (
			wg      sync.WaitGroup
			sent    [actors]atomic.Int64
			failed  atomic.Int64
			maxRepl atomic.Int32
		)
		stop := make(chan struct{})
		go func() { // watch the deployment scale while the load runs
			for {
				select {
				case <-stop:
					return
				case <-time.After(200 * time.Millisecond):
				}
				d, err := e.c.Client.AppsV1().Deployments(namespace).Get(ctx, revision+"-deployment", metav1.GetOptions{})
				if err == nil && *d.Spec.Replicas > maxRepl.Load() {
					maxRepl.Store(*d.Spec.Replicas)
				}
			}
		}()
		for i := range callers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				router := e.routers[i%len(e.routers)]
				for j := range perCall {
					a := (i + j) % actors
					if _, err := e.post(router, fmt.Sprintf("load-%d", a), "add", `{"by":1}`); err != nil {
						failed.Add(1)
						t.Errorf("call %d of caller %d: %v", j, i, err)
						return
					}
					sent[a].Add(1)
				}
			}()
		}
		wg.Wait()
		// Keep some load until the autoscaler has seen it: the decision is made every 2 s.
		e.eventually(t, 30*time.Second, "the deployment scaled above one pod under load", func() (bool, string) {
			if maxRepl.Load() >= 2 {
				return true, ""
			}
			for a := range actors {
				if _, err := e.post(e.routers[a%2], fmt.Sprintf("warm-%d", a), "add", `{"by":1}`); err != nil {
					t.Errorf("warm call: %v", err)
				}
			}
			return false, fmt.Sprintf("max replicas %d", maxRepl.Load())
		})
		close(stop)
		if failed.Load() > 0 {
			t.Fatalf("%d callers failed", failed.Load())
		}
		for a := range actors {
			want := fmt.Sprintf(`{"value":%d}`, sent[a].Load())
			for _, r := range e.routers { // both routers read the same, current state
				if got := e.call(t, r, fmt.Sprintf("load-%d", a), "get", `{}`); got != want {
					t.Errorf("actor load-%d via %s = %s, want %s (a lost or doubled update)", a, r, got, want)
				}
			}
		}
		t.Logf("max replicas under load: %d", maxRepl.Load())
	})

	t.Run("each router's status page shows what the autoscaler knows", func(t *testing.T) {
		for _, r := range e.routers {
			e.eventually(t, 20*time.Second, "the status of "+r+" from the autoscaler", func() (bool, string) {
				st, err := e.status(r)
				if err != nil {
					return false, err.Error()
				}
				if st.Source != "autoscaler" {
					return false, fmt.Sprintf("source %q (%s)", st.Source, st.AutoscalerError)
				}
				for _, f := range st.Functions {
					if f.Function == cmp.Or(e.function, "counter") && f.Revision == revision && f.ReadyPods >= 1 && len(f.Timeline) > 0 {
						return true, ""
					}
				}
				return false, fmt.Sprintf("functions %+v", st.Functions)
			})
		}
	})

	t.Run("scales back to zero", func(t *testing.T) {
		e.eventually(t, 120*time.Second, "the deployment at zero replicas and no counter process", func() (bool, string) {
			d, err := e.c.Client.AppsV1().Deployments(namespace).Get(ctx, revision+"-deployment", metav1.GetOptions{})
			if err != nil {
				return false, err.Error()
			}
			n := len(e.counter.Processes())
			return *d.Spec.Replicas == 0 && n == 0, fmt.Sprintf("replicas %d, processes %d", *d.Spec.Replicas, n)
		})
		// State survives scale-to-zero: the next call starts a pod and continues the count.
		if got := e.call(t, e.routers[1], "alice", "add", `{"by":1}`); got != `{"value":2}` {
			t.Errorf("alice after scale-to-zero = %s, want {\"value\":2}", got)
		}
	})

	t.Run("an auction's result reaches channel sockets on both routers", func(t *testing.T) {
		socks := e.dialEachRouter(t, "/v1/channels/auction.bell/ws", token)
		if _, err := e.postTo(e.routers[0], "auction", "bell", "open", `{"item":"bell","duration_ms":1000}`); err != nil {
			t.Fatal(err)
		}
		for i, ws := range socks {
			_ = ws.SetReadDeadline(time.Now().Add(30 * time.Second))
			_, msg, err := ws.ReadMessage()
			if err != nil || !strings.Contains(string(msg), `"event":"broadcast"`) || !strings.Contains(string(msg), `"auction":"bell"`) {
				t.Fatalf("router %s's channel socket: %s, %v; want the auction's result", e.routers[i], msg, err)
			}
		}
	})

	t.Run("a state subscriber on either router gets every change, whichever router commits it", func(t *testing.T) {
		socks := e.dialEachRouter(t, "/v1/actors/counter/watched/ws?subscribe=1", token)
		const changes = 10
		for i := range changes { // through both routers: one of them forwards to the owner
			if _, err := e.post(e.routers[i%2], "watched", "add", `{"by":1}`); err != nil {
				t.Fatal(err)
			}
		}
		for i, ws := range socks {
			for v := 1; v <= changes; v++ {
				_ = ws.SetReadDeadline(time.Now().Add(30 * time.Second))
				_, msg, err := ws.ReadMessage()
				if err != nil || !strings.Contains(string(msg), `"event":"state"`) || !strings.Contains(string(msg), fmt.Sprintf(`"value":%d}`, v)) {
					t.Fatalf("router %s's subscriber, change %d: %s, %v; want the state {\"value\":%d}", e.routers[i], v, msg, err, v)
				}
			}
		}
	})

	t.Run("internal doors need the shared secret; team tokens reach their functions only", func(t *testing.T) {
		sec, err := e.c.Client.CoreV1().Secrets(system).Get(ctx, "knactor-internal", metav1.GetOptions{})
		if err != nil || len(sec.Data["token"]) < 32 {
			t.Fatalf("the knactor-internal Secret was not filled by the components: %v", err)
		}
		secret := string(sec.Data["token"])
		// Nor read what the autoscaler knows.
		for _, path := range []string{"/v1/functions", "/metrics"} {
			resp, err := http.Get(e.autoscaler + path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("autoscaler %s without the secret: %d, want 401", path, resp.StatusCode)
			}
		}
		// A pod without the secret cannot feed the autoscaler load.
		statsURL := "ws" + strings.TrimPrefix(e.autoscaler, "http") + "/stats"
		for _, h := range []http.Header{nil, {"Authorization": {"Bearer " + token}}} {
			if ws, resp, err := websocket.DefaultDialer.Dial(statsURL, h); err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
				if ws != nil {
					ws.Close()
				}
				t.Fatalf("stats WebSocket with header %v: %v, want 401", h, err)
			}
		}
		ws, _, err := websocket.DefaultDialer.Dial(statsURL, http.Header{"Authorization": {"Bearer " + secret}})
		if err != nil {
			t.Fatalf("stats WebSocket with the routers' secret: %v", err)
		}
		ws.Close()
		// Nor forge calls between routers: a wrong secret is refused, a forged forwarded mark
		// buys nothing (no channel push, no reserved keys).
		for _, tc := range []struct {
			path   string
			header map[string]string
			want   int
		}{
			{"/v1/channels/auction.bell/push", map[string]string{"X-Knactor-Peer-Token": strings.Repeat("x", 43)}, 401},
			{"/v1/channels/auction.bell/push", map[string]string{"X-Knactor-Forwarded": "1", "Authorization": "Bearer " + token}, 403},
			{"/v1/actors/counter/forged/add", map[string]string{"X-Knactor-Forwarded": "1", "Idempotency-Key": "effect:x:0", "Authorization": "Bearer " + token}, 400},
			{"/v1/actors/counter/forged/add", map[string]string{"Authorization": "Bearer " + teamToken}, 403},
			{"/v1/actors/auction/team-lot/status", map[string]string{"Authorization": "Bearer " + teamToken}, 200},
		} {
			req, err := http.NewRequest(http.MethodPost, e.routers[0]+tc.path, strings.NewReader(`{}`))
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tc.header {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("POST %s with %v: %d %s, want %d", tc.path, tc.header, resp.StatusCode, body, tc.want)
			}
		}
	})

	t.Run("a router that goes away is noticed; its actors' timers fire on the other", func(t *testing.T) {
		// Durable timers in S3's due-time index: about half of these auctions are owned by the
		// router deleted below, which dies before they close. Each announces its best bid every
		// 500 ms (a repeating timer) until it closes after 8 s.
		const lots = 20
		for i := range lots {
			if _, err := e.postTo(e.routers[i%2], "auction", fmt.Sprintf("lot-%d", i), "open", `{"item":"vase","duration_ms":8000,"announce_every_ms":500}`); err != nil {
				t.Fatal(err)
			}
		}
		pods, err := e.c.Client.CoreV1().Pods(system).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=knactor-router"})
		if err != nil || len(pods.Items) == 0 {
			t.Fatalf("router pods: %v (%d)", err, len(pods.Items))
		}
		gone := pods.Items[0].Name
		survivor := e.routers[1]
		if strings.Contains(e.routers[1], pods.Items[0].Status.PodIP+":") {
			survivor = e.routers[0]
		}
		defer func() {
			e.eventually(t, 60*time.Second, "every auction closed once, by its timer", func() (bool, string) {
				for i := range lots {
					got, err := e.postTo(survivor, "auction", fmt.Sprintf("lot-%d", i), "status", `{}`)
					if err != nil {
						return false, err.Error()
					}
					var a struct {
						Open          bool `json:"open"`
						Closings      int  `json:"closings"`
						Announcements int  `json:"announcements"`
					}
					if err := json.Unmarshal([]byte(got), &a); err != nil || a.Open || a.Closings != 1 {
						return false, fmt.Sprintf("lot-%d: %s", i, got)
					}
					// 16 periods in 8 s; the takeover may cost a few, never the rest.
					if a.Announcements < 10 {
						t.Errorf("lot-%d announced %d times in 8 s at 500 ms: its timer stopped with its router", i, a.Announcements)
					}
				}
				return true, ""
			})
		}()
		if err := e.c.Client.CoreV1().Pods(system).Delete(ctx, gone, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
			t.Fatal(err)
		}
		e.eventually(t, 30*time.Second, "the deleted router dropped from the autoscaler's routers", func() (bool, string) {
			r := e.functions(t)
			for _, rt := range r.Routers {
				if rt.Name == gone {
					return false, fmt.Sprintf("routers %v", r.Routers)
				}
			}
			return true, ""
		})
	})
}

// install starts the cluster and MinIO, applies config/, creates the ActorSystem, its Secrets
// and the counter's Deployment, and runs knactor's pods and the counter's through shims.
// installOptions vary install.
type installOptions struct {
	// knative runs Knative Serving (CRDs, controller, webhook) before knactor is installed,
	// with Knative's default ingress class (the test switches it). Knative's processes listen on
	// all interfaces (health probes on :8080, metrics on :9090), so knactor's pods then listen
	// on knactorPortWithKnative.
	knative bool
}

// knactorPortWithKnative is where knactor's pods listen when Knative's controller holds :8080 in
// the test's network namespace (on a cluster every pod has its own network namespace).
const knactorPortWithKnative = "9180"

func install(t *testing.T, opts installOptions) *env {
	knactorBin, counterBin := os.Getenv(envKnactorBin), os.Getenv(envCounterBin)
	if knactorBin == "" || counterBin == "" {
		t.Fatal("the knactor and counter binaries were not built: run through TestMain")
	}
	c := kubetest.Start(t)
	minio := miniotest.Start(t)
	e := &env{t: t, c: c, s3: minio.Endpoint}
	port := "8080"
	if opts.knative {
		// Knative's default ingress class: the test makes knactor's router Knative's ingress
		// with the command docs/kubernetes.md gives.
		c.StartKnative(t, kubetest.KnativeOptions{})
		port = knactorPortWithKnative
	}
	t.Cleanup(func() { // before the cluster stops: the shims' logs are in its directory
		if !t.Failed() {
			return
		}
		logs, _ := filepath.Glob(filepath.Join(c.Dir, "logs", "shim-*.log"))
		for _, l := range logs {
			data, _ := os.ReadFile(l)
			lines := strings.Split(strings.TrimSpace(string(data)), "\n")
			t.Logf("%s (last lines):\n%s", filepath.Base(l), strings.Join(lines[max(0, len(lines)-25):], "\n"))
		}
	})
	ctx := context.Background()

	// kubectl apply -f config/ creates every object the files hold.
	root, _ := filepath.Abs("../..")
	out, err := c.Kubectl("apply", "-f", filepath.Join(root, "config"), "-o", "name")
	if err != nil {
		t.Fatalf("kubectl apply -f config/: %v\n%s", err, out)
	}
	applied := strings.Fields(out)
	if want := countObjects(t, filepath.Join(root, "config")); len(applied) != want {
		t.Errorf("kubectl apply -f config/ applied %d objects, the files hold %d:\n%s", len(applied), want, out)
	}
	for _, name := range applied {
		if _, err := c.Kubectl("get", name, "-n", system); err != nil {
			t.Errorf("%s was applied but cannot be read back: %v", name, err)
		}
	}
	if out, err := c.Kubectl("wait", "--for=condition=Established", "--timeout=30s", "crd/actorsystems.knactor.dev"); err != nil {
		t.Fatalf("the ActorSystem CRD is not established: %v\n%s", err, out)
	}
	// The smallest settings Knative allows, so the test sees a scale to zero in seconds.
	if _, err := c.Client.CoreV1().ConfigMaps(system).Patch(ctx, "config-knactor", "application/merge-patch+json",
		[]byte(`{"data":{"scale-to-zero-grace-period":"6s","scrape-interval":"1s"}}`), metav1.PatchOptions{}); err != nil {
		t.Fatalf("patch config-knactor: %v", err)
	}

	// The ActorSystem: MinIO with its credentials in a Secret, and bearer tokens.
	for name, data := range map[string]map[string]string{
		"minio-credentials": {"accessKey": miniotest.AccessKey, "secretKey": miniotest.SecretKey},
		"knactor-tokens":    {"tokens": token + "\n" + teamToken + ":functions=auction"},
	} {
		sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace}, StringData: data}
		if _, err := c.Client.CoreV1().Secrets(namespace).Create(ctx, sec, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	as := fmt.Sprintf(`apiVersion: knactor.dev/v1alpha1
kind: ActorSystem
metadata:
  name: default
  namespace: %s
spec:
  store:
    s3:
      endpoint: %s
      bucket: %s
      prefix: actors/
      createBucket: true
      credentialsSecretRef: {name: minio-credentials}
  writeMode: write-through
  auth:
    tokensSecretRef: {name: knactor-tokens}
`, namespace, minio.Endpoint, bucket)
	asFile := filepath.Join(t.TempDir(), "actorsystem.yaml")
	if err := os.WriteFile(asFile, []byte(as), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := c.Kubectl("apply", "-f", asFile); err != nil {
		t.Fatalf("create the ActorSystem: %v\n%s", err, out)
	}
	if !opts.knative { // with Knative, the test deploys its functions as Knative Services
		if _, err := c.Client.AppsV1().Deployments(namespace).Create(ctx, counterDeployment(), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		// The counter's pods run the real counter on their pod IP.
		e.counter = e.runFunction(t, "counter", counterBin)
		auction := functionDeployment("auction", "auction-00001", "ko://github.com/knactor/knactor/examples/auction")
		if _, err := c.Client.AppsV1().Deployments(namespace).Create(ctx, auction, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		e.runFunction(t, "auction", os.Getenv(envAuctionBin))
	}

	// knactor's own pods: the autoscaler first, so the routers can be pointed at its pod IP (no
	// cluster DNS or Service routing here). Each runs its Deployment's arguments, as its
	// ServiceAccount.
	asPod := e.runningPod(t, system, "app.kubernetes.io/name=knactor-autoscaler")
	e.autoscaler = "http://" + asPod.Status.PodIP + ":" + port
	kubeconfigs := map[string]string{
		"knactor-autoscaler": c.ServiceAccountKubeconfig(t, system, "knactor-autoscaler"),
		"knactor-router":     c.ServiceAccountKubeconfig(t, system, "knactor-router"),
	}
	c.RunOnPods(t, system, "app.kubernetes.io/part-of=knactor", func(pod *corev1.Pod) *exec.Cmd {
		args := podArgs(t, pod)
		sa := pod.Spec.ServiceAccountName
		args = append(args, "--kubeconfig="+kubeconfigs[sa])
		if port != "8080" {
			args = append(args, "--listen="+pod.Status.PodIP+":"+port)
		}
		if sa == "knactor-router" {
			args = append(args, "--autoscaler-url=ws://"+asPod.Status.PodIP+":"+port+"/stats")
		}
		cmd := exec.Command(knactorBin, args...)
		cmd.Env = append(os.Environ(), "POD_NAME="+pod.Name, "POD_IP="+pod.Status.PodIP, "SYSTEM_NAMESPACE="+system)
		return cmd
	})
	e.waitHealthy(t, e.autoscaler)
	pods, err := c.Client.CoreV1().Pods(system).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=knactor-router"})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		for p.Status.PodIP == "" {
			p = *e.runningPod(t, system, "app.kubernetes.io/name=knactor-router")
		}
		url := "http://" + p.Status.PodIP + ":" + port
		e.waitHealthy(t, url)
		e.routers = append(e.routers, url)
	}
	sort.Strings(e.routers)
	if len(e.routers) != 2 {
		t.Fatalf("config/ runs %d routers, want 2", len(e.routers))
	}

	// The autoscaler keeps the ActorSystem's status true.
	e.eventually(t, 30*time.Second, "ActorSystem default Ready", func() (bool, string) {
		out, err := c.Kubectl("get", "actorsystem", "default", "-n", namespace, "-o", "jsonpath={.status.conditions}")
		return err == nil && strings.Contains(out, `"type":"Ready"`) && regexp.MustCompile(`"status":"True","type":"Ready"`).MatchString(out), out
	})
	return e
}

// runFunction runs the function's real binary on the pod IP and user port of every Running pod
// of the function, as the kubelet would run its user container.
func (e *env) runFunction(t *testing.T, function, bin string) *kubetest.Shim {
	return e.c.RunOnPods(t, namespace, "serving.knative.dev/service="+function, func(pod *corev1.Pod) *exec.Cmd {
		port := "8080" // Knative's default user port
		for _, c := range pod.Spec.Containers {
			if c.Name != "queue-proxy" && len(c.Ports) > 0 {
				port = strconv.Itoa(int(c.Ports[0].ContainerPort))
				break
			}
		}
		cmd := exec.Command(bin)
		cmd.Env = append(os.Environ(), "HOST="+pod.Status.PodIP, "PORT="+port)
		return cmd
	})
}

// podArgs returns the pod's first container's arguments with $(VAR) references expanded from
// the container's env (values and the downward API fields knactor's Deployments use), as the
// kubelet does.
func podArgs(t *testing.T, pod *corev1.Pod) []string {
	c := pod.Spec.Containers[0]
	vars := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			vars[e.Name] = e.Value
		case e.ValueFrom.FieldRef != nil:
			switch e.ValueFrom.FieldRef.FieldPath {
			case "status.podIP":
				vars[e.Name] = pod.Status.PodIP
			case "metadata.name":
				vars[e.Name] = pod.Name
			case "metadata.namespace":
				vars[e.Name] = pod.Namespace
			default:
				t.Errorf("pod %s: env %s: field %s is not known to the test's shim", pod.Name, e.Name, e.ValueFrom.FieldRef.FieldPath)
			}
		}
	}
	ref := regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)
	args := append(append([]string{}, c.Command...), c.Args...)
	if len(c.Command) > 0 {
		args = args[1:] // the image's entrypoint is the knactor binary itself
	}
	for i, a := range args {
		args[i] = ref.ReplaceAllStringFunc(a, func(m string) string {
			if v, ok := vars[m[2:len(m)-1]]; ok {
				return v
			}
			return m
		})
	}
	return args
}

// countObjects counts the YAML documents with a kind in dir's files.
func countObjects(t *testing.T, dir string) int {
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	kind := regexp.MustCompile(`(?m)^kind:\s*\S`)
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		n += len(kind.FindAll(data, -1))
	}
	return n
}

// runningPod waits for a Running pod with an IP that matches selector.
func (e *env) runningPod(t *testing.T, ns, selector string) *corev1.Pod {
	var pod *corev1.Pod
	e.eventually(t, 60*time.Second, "a Running pod "+selector, func() (bool, string) {
		pods, err := e.c.Client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			return false, err.Error()
		}
		for i := range pods.Items {
			p := &pods.Items[i]
			if p.Status.Phase == corev1.PodRunning && p.Status.PodIP != "" && p.DeletionTimestamp == nil {
				pod = p
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d pods", len(pods.Items))
	})
	return pod
}

func (e *env) waitHealthy(t *testing.T, base string) {
	e.eventually(t, 60*time.Second, base+"/healthz", func() (bool, string) {
		resp, err := http.Get(base + "/healthz")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == 200, resp.Status
	})
}

// autoscalerReport is the autoscaler's /v1/functions.
type autoscalerReport struct {
	Functions []struct {
		Function    string `json:"function"`
		DesiredPods int32  `json:"desiredPods"`
		ReadyPods   int    `json:"readyPods"`
	} `json:"functions"`
	Routers []struct {
		Name string `json:"name"`
	} `json:"routers"`
}

func (e *env) functions(t *testing.T) autoscalerReport {
	req, err := http.NewRequest(http.MethodGet, e.autoscaler+"/v1/functions", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+e.internalToken(t))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("autoscaler /v1/functions: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("autoscaler /v1/functions: %d %s", resp.StatusCode, b)
	}
	var r autoscalerReport
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatalf("autoscaler /v1/functions: %v", err)
	}
	return r
}

// internalToken is the components' shared secret, from the knactor-internal Secret they fill.
func (e *env) internalToken(t *testing.T) string {
	t.Helper()
	var token string
	e.eventually(t, 30*time.Second, "the knactor-internal Secret filled", func() (bool, string) {
		sec, err := e.c.Client.CoreV1().Secrets(system).Get(context.Background(), "knactor-internal", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		token = string(sec.Data["token"])
		return len(token) >= 32, fmt.Sprintf("token of %d bytes", len(token))
	})
	return token
}

// statusReport is the part of a router's GET /v1/status the tests read.
type statusReport struct {
	Source          string `json:"source"`
	AutoscalerError string `json:"autoscaler_error"`
	Functions       []struct {
		Function  string `json:"function"`
		Revision  string `json:"revision"`
		ReadyPods int    `json:"ready_pods"`
		Timeline  []struct {
			Ready int `json:"ready"`
		} `json:"timeline"`
	} `json:"functions"`
}

// status reads a router's status page data.
func (e *env) status(router string) (statusReport, error) {
	var st statusReport
	req, err := http.NewRequest(http.MethodGet, router+"/v1/status", nil)
	if err != nil {
		return st, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return st, fmt.Errorf("GET /v1/status: %d %s", resp.StatusCode, b)
	}
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// dialEachRouter opens a WebSocket on path at every router with the bearer token, closed when
// the test ends; the sockets are in e.routers' order.
func (e *env) dialEachRouter(t *testing.T, path, token string) []*websocket.Conn {
	t.Helper()
	var socks []*websocket.Conn
	for _, r := range e.routers {
		header := http.Header{"Authorization": {"Bearer " + token}}
		ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(r, "http")+path, header)
		if err != nil {
			t.Fatalf("WebSocket %s on %s: %v", path, r, err)
		}
		t.Cleanup(func() { ws.Close() })
		socks = append(socks, ws)
	}
	return socks
}

// post calls an actor through a router and returns the reply body.
func (e *env) post(router, actor, action, payload string) (string, error) {
	body, _, err := e.postVia(router, "", actor, action, payload)
	return body, err
}

// postVia calls an actor through a router, by host's route when host is set (a Knative
// Service's URL or a tag's), and returns the reply body and the pod that ran the turn.
func (e *env) postVia(router, host, actor, action, payload string) (body, pod string, err error) {
	return e.postFunction(router, host, cmp.Or(e.function, "counter"), actor, action, payload)
}

// postTo calls an actor of function through a router and returns the reply body.
func (e *env) postTo(router, function, actor, action, payload string) (string, error) {
	body, _, err := e.postFunction(router, "", function, actor, action, payload)
	return body, err
}

func (e *env) postFunction(router, host, function, actor, action, payload string) (body, pod string, err error) {
	req, err := http.NewRequest(http.MethodPost, router+"/v1/actors/"+function+"/"+actor+"/"+action, strings.NewReader(payload))
	if err != nil {
		return "", "", err
	}
	if host != "" {
		req.Host = host
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	client := &http.Client{Timeout: 60 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", "", fmt.Errorf("%s %s: %s %s", router, actor, resp.Status, b)
	}
	return string(bytes.TrimSpace(b)), resp.Header.Get("X-Knactor-Pod"), nil
}

func (e *env) call(t *testing.T, router, actor, action, payload string) string {
	t.Helper()
	got, err := e.post(router, actor, action, payload)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// eventually polls cond every 100 ms until it holds or timeout passes. This waits for other
// processes (the control plane, the shims), not for a schedule of the code under test.
func (e *env) eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for {
		ok, state := cond()
		if ok {
			return
		}
		last = state
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s (last: %s)", timeout, what, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
