package kubetest_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"

	"github.com/knactor/knactor/test/kubetest"
)

// envServe makes the test binary a tiny HTTP server on the given address instead of running
// tests: the "real process on a pod IP" of TestControlPlane.
const envServe = "KUBETEST_SMOKE_SERVE"

func TestMain(m *testing.M) {
	if addr := os.Getenv(envServe); addr != "" {
		serve(addr)
		return
	}
	kubetest.ReexecInNetNS(m)
}

func serve(addr string) {
	name := os.Getenv("KUBETEST_SMOKE_POD")
	err := http.ListenAndServe(addr, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "hello from %s", name)
	}))
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}

// TestControlPlane starts the control plane, runs a 2-replica Deployment to two Running pods
// with loopback IPs, and serves HTTP from one pod's IP through a real process.
func TestControlPlane(t *testing.T) {
	begin := time.Now()
	c := kubetest.Start(t)
	t.Logf("start-up: %v", c.StartupTime.Round(time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	if v, err := c.Client.Discovery().ServerVersion(); err != nil {
		t.Fatalf("server version: %v", err)
	} else if v.Major != "1" || v.GitVersion == "" || v.GitVersion == "v0.0.0-master+$Format:%H$" {
		t.Fatalf("server version %+v: built without the version ldflags?", v)
	} else {
		t.Logf("server version %s", v.GitVersion)
	}

	labels := map[string]string{"app": "smoke"}
	replicas := int32(2)
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "smoke", Namespace: "default"},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name:  "app",
					Image: "registry.knactor.test/smoke:v1", // never pulled: kwok runs no containers
					Ports: []corev1.ContainerPort{{ContainerPort: 8080}},
				}}},
			},
		},
	}
	created := time.Now()
	if _, err := c.Client.AppsV1().Deployments("default").Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create deployment: %v", err)
	}

	cidr := netip.MustParsePrefix(kubetest.PodCIDR)
	var pods []corev1.Pod
	for {
		list, err := c.Client.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=smoke"})
		if err != nil {
			t.Fatalf("list pods: %v", err)
		}
		pods = pods[:0]
		for _, p := range list.Items {
			ip, err := netip.ParseAddr(p.Status.PodIP)
			if p.Status.Phase == corev1.PodRunning && err == nil && cidr.Contains(ip) && p.Spec.NodeName == c.Node {
				pods = append(pods, p)
			}
		}
		if len(pods) == 2 {
			break
		}
		select {
		case <-ctx.Done():
			out, _ := c.Kubectl("get", "deploy,rs,pods", "-o", "wide")
			t.Fatalf("2 Running pods in %s: %v\n%s", kubetest.PodCIDR, ctx.Err(), out)
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Logf("deployment to 2 Running pods (%s %s, %s %s) in %v", pods[0].Name, pods[0].Status.PodIP,
		pods[1].Name, pods[1].Status.PodIP, time.Since(created).Round(time.Millisecond))
	if pods[0].Status.PodIP == pods[1].Status.PodIP {
		t.Fatalf("both pods have IP %s", pods[0].Status.PodIP)
	}

	// The data plane: a real process serves on the first pod's IP; the second pod's IP has nobody.
	addr := net.JoinHostPort(pods[0].Status.PodIP, "8080")
	srv := exec.Command(os.Args[0])
	srv.Env = append(os.Environ(), envServe+"="+addr, "KUBETEST_SMOKE_POD="+pods[0].Name)
	srv.Stderr = os.Stderr
	srv.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Process.Kill(); _ = srv.Wait() })

	client := &http.Client{Timeout: time.Second}
	var body string
	for deadline := time.Now().Add(10 * time.Second); ; {
		resp, err := client.Get("http://" + addr + "/")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			body = string(b)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET http://%s/: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if want := "hello from " + pods[0].Name; body != want {
		t.Fatalf("GET http://%s/ = %q, want %q", addr, body, want)
	}
	if _, err := client.Get("http://" + net.JoinHostPort(pods[1].Status.PodIP, "8080") + "/"); err == nil {
		t.Fatalf("pod %s at %s answered with no process listening on its IP", pods[1].Name, pods[1].Status.PodIP)
	}
	t.Logf("pod %s at %s answered %q; total %v", pods[0].Name, addr, body, time.Since(begin).Round(time.Millisecond))
}

// TestShim runs one real server process per Running pod through the shim, follows a scale-up
// and a scale-down, and checks each pod's IP answers with its own pod's name.
func TestShim(t *testing.T) {
	c := kubetest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	shim := c.RunOnPods(t, "default", "app=shim", func(pod *corev1.Pod) *exec.Cmd {
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), envServe+"="+net.JoinHostPort(pod.Status.PodIP, "8080"),
			"KUBETEST_SMOKE_POD="+pod.Name)
		return cmd
	})
	labels := map[string]string{"app": "shim"}
	replicas := int32(1)
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "shim", Namespace: "default"},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: "app", Image: "registry.knactor.test/shim:v1",
				}}},
			},
		},
	}
	if _, err := c.Client.AppsV1().Deployments("default").Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Timeout: time.Second}
	// expect waits until exactly n processes run and each answers on its pod's IP with its pod's name.
	expect := func(n int) {
		t.Helper()
		var last string
		for {
			procs := shim.Processes()
			ok := len(procs) == n
			for _, p := range procs {
				resp, err := client.Get("http://" + net.JoinHostPort(p.IP, "8080") + "/")
				if err != nil {
					ok, last = false, err.Error()
					break
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if want := "hello from " + p.Pod[len("default/"):]; string(b) != want {
					ok, last = false, fmt.Sprintf("%s answered %q, want %q", p.IP, b, want)
					break
				}
			}
			if ok {
				t.Logf("%d pod processes answer: %v", n, procs)
				return
			}
			select {
			case <-ctx.Done():
				t.Fatalf("want %d answering pod processes, have %v (last: %s)", n, procs, last)
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	scale := func(n int32) {
		t.Helper()
		// The deployment controller writes status between our read and our write: a conflict
		// asks for a fresh read.
		deps := c.Client.AppsV1().Deployments("default")
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			s, err := deps.GetScale(ctx, "shim", metav1.GetOptions{})
			if err != nil {
				return err
			}
			s.Spec.Replicas = n
			_, err = deps.UpdateScale(ctx, "shim", s, metav1.UpdateOptions{})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	expect(1)
	scale(3)
	expect(3)
	scale(1)
	expect(1)
	scale(0)
	expect(0)
	scale(2) // IPs freed by the scale-down are handed out again
	expect(2)
}
