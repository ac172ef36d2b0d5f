package kube

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	ktesting "k8s.io/client-go/testing"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/knactor/knactor/router/placement"
)

// ns is the namespace the tests' functions live in.
const ns = "functions"

// waitTimeout bounds every wait of a test for something the Watcher does on its own.
const waitTimeout = 10 * time.Second

// epoch is the fake clock's start and the base of creation timestamps.
var epoch = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// harness is a started Watcher on a fake clientset, with a fake clock and a fake prober.
type harness struct {
	t      *testing.T
	client *fake.Clientset
	clock  *clocktesting.FakeClock
	w      *Watcher
	ctx    context.Context

	mu    sync.Mutex
	probe func(ctx context.Context, addr string) error // nil: every probe succeeds
	calls chan string                                  // addresses probed, as probed
}

// newClient returns a fake clientset holding objs whose Watch reactor tells on watching when
// a watch of a resource has started: the fake does not replay what happened between an
// informer's list and its watch, so a test changes objects only once both watches run.
func newClient(objs ...runtime.Object) (*fake.Clientset, chan string) {
	c := fake.NewClientset(objs...)
	watching := make(chan string, 16)
	c.PrependWatchReactor("*", func(a ktesting.Action) (bool, watch.Interface, error) {
		opts := a.(ktesting.WatchActionImpl).ListOptions
		wi, err := c.Tracker().Watch(a.GetResource(), a.GetNamespace(), opts)
		if err != nil {
			return false, nil, err
		}
		watching <- a.GetResource().Resource
		return true, wi, nil
	})
	return c, watching
}

// start starts a Watcher on a fresh fake clientset holding objs and waits until it watches.
func start(t *testing.T, objs ...runtime.Object) *harness {
	t.Helper()
	c, watching := newClient(objs...)
	h := newHarness(t, c)
	if err := h.w.Start(h.ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	seen := map[string]bool{}
	for !seen["pods"] || !seen["deployments"] {
		select {
		case r := <-watching:
			seen[r] = true
		case <-time.After(waitTimeout):
			t.Fatalf("informers watch only %v", seen)
		}
	}
	return h
}

// newHarness returns a harness with a Watcher on c, not started; it is stopped (every
// goroutine ended) when the test ends.
func newHarness(t *testing.T, c *fake.Clientset) *harness {
	t.Helper()
	h := &harness{t: t, client: c, clock: clocktesting.NewFakeClock(epoch), calls: make(chan string, 1000)}
	w, err := NewWatcher(c, Config{
		Namespace: ns,
		Clock:     h.clock,
		Prober:    h.prober,
		Logger:    slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	h.w = w
	ctx, cancel := context.WithCancel(context.Background())
	h.ctx = ctx
	t.Cleanup(func() {
		cancel()
		done := make(chan struct{})
		go func() { w.wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(waitTimeout):
			t.Error("the watcher's goroutines did not stop")
		}
	})
	return h
}

func (h *harness) prober(ctx context.Context, addr string) error {
	h.mu.Lock()
	probe := h.probe
	h.mu.Unlock()
	select {
	case h.calls <- addr:
	default:
	}
	if probe == nil {
		return nil
	}
	return probe(ctx, addr)
}

// setProbe makes every probe from now on answer with probe.
func (h *harness) setProbe(probe func(ctx context.Context, addr string) error) {
	h.mu.Lock()
	h.probe = probe
	h.mu.Unlock()
}

// waitFor waits until cond holds, re-checking at every change of function's ready pods.
func (h *harness) waitFor(function, what string, cond func() bool) {
	h.t.Helper()
	deadline := time.After(waitTimeout)
	for {
		changed := h.w.Changed(function)
		if cond() {
			return
		}
		select {
		case <-changed:
		case <-deadline:
			h.t.Fatalf("%s: timed out waiting for %s; ready pods %v", function, what, h.w.Ready(function).Pods())
		}
	}
}

// waitReady waits until function's ready pods are want.
func (h *harness) waitReady(function string, want ...placement.Pod) {
	h.t.Helper()
	h.waitFor(function, "ready pods "+podsString(want), func() bool {
		return slices.Equal(h.w.Ready(function).Pods(), want)
	})
}

// waitKnown waits until function exists (or, with known false, is gone).
func (h *harness) waitKnown(function string, known bool) {
	h.t.Helper()
	h.waitFor(function, "the function to exist or go", func() bool {
		_, ok := h.w.Function(function)
		return ok == known
	})
}

func podsString(pods []placement.Pod) string {
	if len(pods) == 0 {
		return "none"
	}
	s := ""
	for i, p := range pods {
		if i > 0 {
			s += ", "
		}
		s += p.Name + "@" + p.Addr
	}
	return s
}

func (h *harness) createPod(p *corev1.Pod) {
	h.t.Helper()
	if _, err := h.client.CoreV1().Pods(ns).Create(h.ctx, p, metav1.CreateOptions{}); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) updatePod(p *corev1.Pod) {
	h.t.Helper()
	if _, err := h.client.CoreV1().Pods(ns).Update(h.ctx, p, metav1.UpdateOptions{}); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) deletePod(name string) {
	h.t.Helper()
	if err := h.client.CoreV1().Pods(ns).Delete(h.ctx, name, metav1.DeleteOptions{}); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) createDeployment(d *appsv1.Deployment) {
	h.t.Helper()
	if _, err := h.client.AppsV1().Deployments(ns).Create(h.ctx, d, metav1.CreateOptions{}); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) updateDeployment(d *appsv1.Deployment) {
	h.t.Helper()
	if _, err := h.client.AppsV1().Deployments(ns).Update(h.ctx, d, metav1.UpdateOptions{}); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) deleteDeployment(name string) {
	h.t.Helper()
	if err := h.client.AppsV1().Deployments(ns).Delete(h.ctx, name, metav1.DeleteOptions{}); err != nil {
		h.t.Fatal(err)
	}
}

// knativeLabels are the labels Knative puts on revision rev of function fn.
func knativeLabels(fn, rev string) map[string]string {
	return map[string]string{ServiceLabel: fn, ConfigurationLabel: fn, RevisionLabel: rev, "app": rev}
}

// deployment returns revision rev's Deployment of function fn, shaped like Knative's, created
// age seconds after epoch.
func deployment(fn, rev string, age int) *appsv1.Deployment {
	replicas := int32(1)
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{
			Name:              rev + "-deployment",
			Namespace:         ns,
			Labels:            knativeLabels(fn, rev),
			CreationTimestamp: metav1.NewTime(epoch.Add(time.Duration(age) * time.Second)),
		},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{RevisionLabel: rev}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: knativeLabels(fn, rev)},
				Spec: corev1.PodSpec{Containers: []corev1.Container{
					{Name: "user-container", Image: "example/" + fn, Ports: []corev1.ContainerPort{{Name: "user-port", ContainerPort: 8080}}},
					{Name: QueueProxyContainer, Image: "queue", Ports: []corev1.ContainerPort{{Name: "http-queueadm", ContainerPort: 8022}}},
				}},
			},
		},
	}
}

// pod returns a Running, Ready pod of revision rev of function fn at ip.
func pod(fn, rev, name, ip string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:      name,
			Namespace: ns,
			UID:       types.UID("uid-" + name),
			Labels:    knativeLabels(fn, rev),
		},
		Spec: corev1.PodSpec{Containers: []corev1.Container{
			{Name: QueueProxyContainer, Ports: []corev1.ContainerPort{{ContainerPort: 8012}}},
			{Name: "user-container", Ports: []corev1.ContainerPort{{ContainerPort: 8080}}},
		}},
		Status: corev1.PodStatus{
			Phase: corev1.PodRunning,
			PodIP: ip,
			Conditions: []corev1.PodCondition{
				{Type: corev1.PodScheduled, Status: corev1.ConditionTrue},
				{Type: corev1.PodReady, Status: corev1.ConditionTrue},
			},
		},
	}
}

// setReady sets the pod's Ready condition.
func setReady(p *corev1.Pod, ready bool) *corev1.Pod {
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	for i := range p.Status.Conditions {
		if p.Status.Conditions[i].Type == corev1.PodReady {
			p.Status.Conditions[i].Status = status
		}
	}
	return p
}

// at is the ready pod name at ip:8080.
func at(name, ip string) placement.Pod {
	return placement.Pod{Name: name, Addr: ip + ":8080"}
}
