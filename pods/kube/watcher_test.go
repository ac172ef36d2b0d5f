package kube

import (
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	ktesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"

	"github.com/knactor/knactor/router/placement"
	"github.com/knactor/knactor/router/routing"
)

func TestPodChanges(t *testing.T) {
	const fn, rev, name, ip = "counter", "counter-00001", "counter-00001-deployment-abcde", "127.1.0.1"
	tests := []struct {
		name   string
		change func(h *harness, p *corev1.Pod)
		want   []placement.Pod
	}{{
		name:   "ready condition false",
		change: func(h *harness, p *corev1.Pod) { h.updatePod(setReady(p, false)) },
	}, {
		name: "ready condition gone",
		change: func(h *harness, p *corev1.Pod) {
			p.Status.Conditions = p.Status.Conditions[:1]
			h.updatePod(p)
		},
	}, {
		name: "being deleted",
		change: func(h *harness, p *corev1.Pod) {
			now := metav1.NewTime(epoch)
			p.DeletionTimestamp = &now
			h.updatePod(p)
		},
	}, {
		name:   "deleted",
		change: func(h *harness, p *corev1.Pod) { h.deletePod(p.Name) },
	}, {
		name: "not running",
		change: func(h *harness, p *corev1.Pod) {
			p.Status.Phase = corev1.PodFailed
			h.updatePod(p)
		},
	}, {
		name: "no IP",
		change: func(h *harness, p *corev1.Pod) {
			p.Status.PodIP = ""
			h.updatePod(p)
		},
	}, {
		name: "IP changed",
		change: func(h *harness, p *corev1.Pod) {
			p.Status.PodIP = "127.1.0.9"
			h.updatePod(p)
		},
		want: []placement.Pod{at(name, "127.1.0.9")},
	}, {
		name: "another revision",
		change: func(h *harness, p *corev1.Pod) {
			p.Labels[RevisionLabel] = "counter-00002"
			h.updatePod(p)
		},
	}, {
		name: "another function",
		change: func(h *harness, p *corev1.Pod) {
			p.Labels[ServiceLabel] = "other"
			h.updatePod(p)
		},
	}, {
		name: "service label gone",
		change: func(h *harness, p *corev1.Pod) {
			delete(p.Labels, ServiceLabel)
			h.updatePod(p)
		},
	}, {
		name: "second pod ready",
		change: func(h *harness, _ *corev1.Pod) {
			h.createPod(pod(fn, rev, "counter-00001-deployment-fghij", "127.1.0.2"))
		},
		want: []placement.Pod{at(name, ip), at("counter-00001-deployment-fghij", "127.1.0.2")},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := start(t, deployment(fn, rev, 0), pod(fn, rev, name, ip))
			h.waitReady(fn, at(name, ip))
			tt.change(h, pod(fn, rev, name, ip))
			h.waitReady(fn, tt.want...)
		})
	}
}

func TestPodTurnsReady(t *testing.T) {
	const fn, rev = "counter", "counter-00001"
	h := start(t, deployment(fn, rev, 0))
	if _, ok := h.w.Function(fn); !ok {
		t.Fatal("a function with a Deployment and no pods is unknown after Start")
	}
	p := setReady(pod(fn, rev, "p1", "127.1.0.1"), false)
	p.Spec.Containers[1].Ports[0].ContainerPort = 9090
	h.createPod(p)
	h.updatePod(setReady(p.DeepCopy(), true))
	want := placement.Pod{Name: "p1", Addr: "127.1.0.1:9090"}
	h.waitReady(fn, want)
	if got := <-h.calls; got != want.Addr {
		t.Errorf("probed %s, want %s", got, want.Addr)
	}
	if got := h.w.ReadyPods(fn); got != 1 {
		t.Errorf("ReadyPods = %d, want 1", got)
	}

	h.updatePod(setReady(p.DeepCopy(), false))
	h.waitReady(fn)
	h.updatePod(setReady(p.DeepCopy(), true))
	h.waitReady(fn, want)
	if got := <-h.calls; got != want.Addr {
		t.Errorf("probed %s, want %s again (a pod ready again is probed again)", got, want.Addr)
	}

	// A change that leaves the pod ready at the same address does not probe it again; the
	// second pod's event comes after it, so once that pod is ready the change has been seen.
	unrelated := setReady(p.DeepCopy(), true)
	unrelated.Annotations = map[string]string{"touched": "yes"}
	h.updatePod(unrelated)
	h.createPod(pod(fn, rev, "p2", "127.1.0.2"))
	h.waitReady(fn, want, at("p2", "127.1.0.2"))
	if got := <-h.calls; got != "127.1.0.2:8080" {
		t.Errorf("probed %s, want only the new pod", got)
	}
	if n := len(h.calls); n != 0 {
		t.Errorf("%d more probes, want none", n)
	}
}

func TestTombstone(t *testing.T) {
	const fn, rev = "counter", "counter-00001"
	tests := []struct {
		name string
		obj  func(p *corev1.Pod) any
	}{
		{"with the pod", func(p *corev1.Pod) any { return p }},
		{"without an object", func(*corev1.Pod) any { return nil }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := start(t, deployment(fn, rev, 0), pod(fn, rev, "p1", "127.1.0.1"))
			h.waitReady(fn, at("p1", "127.1.0.1"))
			// As if the watch had missed the deletion and a relist had found the pod gone.
			obj, ok, err := h.w.pods.GetIndexer().GetByKey(ns + "/p1")
			if err != nil || !ok {
				t.Fatalf("pod not cached: %v", err)
			}
			if err := h.w.pods.GetIndexer().Delete(obj); err != nil {
				t.Fatal(err)
			}
			h.w.handler().OnDelete(cache.DeletedFinalStateUnknown{Key: ns + "/p1", Obj: tt.obj(obj.(*corev1.Pod))})
			h.waitReady(fn)
		})
	}
}

func TestIgnoresOtherObjects(t *testing.T) {
	const fn, rev = "counter", "counter-00001"
	noService := deployment("x", "x-00001", 0)
	delete(noService.Labels, ServiceLabel)
	noRevision := deployment("y", "y-00001", 0)
	delete(noRevision.Labels, RevisionLabel)
	podNoService := pod(fn, rev, "no-service", "127.1.0.2")
	delete(podNoService.Labels, ServiceLabel)
	podNoRevision := pod(fn, rev, "no-revision", "127.1.0.3")
	delete(podNoRevision.Labels, RevisionLabel)
	h := start(t,
		noService, noRevision, deployment(fn, rev, 0),
		podNoService, podNoRevision,
		pod(fn, "counter-00000", "old-revision", "127.1.0.4"),
		pod("other", rev, "other-function", "127.1.0.5"),
		pod(fn, rev, "good", "127.1.0.1"))
	// Start has computed every function from the objects above, so only probes are pending.
	h.waitReady(fn, at("good", "127.1.0.1"))
	if got, want := h.w.Functions(), []string{fn}; !slices.Equal(got, want) {
		t.Errorf("Functions() = %v, want %v", got, want)
	}
	if got := h.w.Ready("other").Len(); got != 0 {
		t.Errorf("function without a Deployment has %d ready pods", got)
	}
	close(h.calls)
	for addr := range h.calls {
		if addr != "127.1.0.1:8080" {
			t.Errorf("probed %s, which is not a ready pod of a function", addr)
		}
	}
}

func TestOneInformerForAllFunctions(t *testing.T) {
	h := start(t,
		deployment("a", "a-00001", 0), deployment("b", "b-00001", 0), deployment("c", "c-00001", 0),
		pod("a", "a-00001", "a1", "127.1.0.1"),
		pod("b", "b-00001", "b1", "127.1.0.2"), pod("b", "b-00001", "b2", "127.1.0.3"))
	h.waitReady("a", at("a1", "127.1.0.1"))
	h.waitReady("b", at("b1", "127.1.0.2"), at("b2", "127.1.0.3"))
	h.waitReady("c")
	if got, want := h.w.Functions(), []string{"a", "b", "c"}; !slices.Equal(got, want) {
		t.Errorf("Functions() = %v, want %v", got, want)
	}
	count := map[string]int{}
	for _, a := range h.client.Actions() {
		if a.GetVerb() == "watch" || a.GetVerb() == "list" {
			count[a.GetVerb()+" "+a.GetResource().Resource]++
			if opts, ok := a.(ktesting.ListActionImpl); ok && opts.ListOptions.LabelSelector != RevisionLabel {
				t.Errorf("%s %s selects %q, want %q", a.GetVerb(), a.GetResource().Resource,
					opts.ListOptions.LabelSelector, RevisionLabel)
			}
		}
	}
	// One list each is Start's preflight.
	want := map[string]int{"list pods": 2, "watch pods": 1, "list deployments": 2, "watch deployments": 1}
	if !maps.Equal(count, want) {
		t.Errorf("API calls %v, want %v", count, want)
	}
}

func TestNewestDeployment(t *testing.T) {
	const fn = "counter"
	tests := []struct {
		name  string
		deps  []*appsv1.Deployment
		want  string
		after string // the Deployment chosen once want is deleted
	}{{
		name:  "newest created",
		deps:  []*appsv1.Deployment{deployment(fn, "counter-00002", 10), deployment(fn, "counter-00001", 0)},
		want:  "counter-00002",
		after: "counter-00001",
	}, {
		name:  "created later wins over name",
		deps:  []*appsv1.Deployment{deployment(fn, "counter-00002", 0), deployment(fn, "counter-00001", 10)},
		want:  "counter-00001",
		after: "counter-00002",
	}, {
		name:  "same time: greater name",
		deps:  []*appsv1.Deployment{deployment(fn, "counter-00003", 5), deployment(fn, "counter-00004", 5)},
		want:  "counter-00004",
		after: "counter-00003",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var objs []runtime.Object
			for i, d := range tt.deps {
				rev := d.Labels[RevisionLabel]
				objs = append(objs, d, pod(fn, rev, rev+"-pod", "127.1.0."+string(rune('1'+i))))
			}
			h := start(t, objs...)
			ip := func(rev string) string {
				for i, d := range tt.deps {
					if d.Labels[RevisionLabel] == rev {
						return "127.1.0." + string(rune('1'+i))
					}
				}
				return ""
			}
			h.waitReady(fn, at(tt.want+"-pod", ip(tt.want)))
			if got, _ := h.w.Deployment(fn); got != tt.want+"-deployment" {
				t.Errorf("Deployment = %q, want %q", got, tt.want+"-deployment")
			}
			h.deleteDeployment(tt.want + "-deployment")
			h.waitReady(fn, at(tt.after+"-pod", ip(tt.after)))
			if got, _ := h.w.Deployment(fn); got != tt.after+"-deployment" {
				t.Errorf("after deleting the newest, Deployment = %q, want %q", got, tt.after+"-deployment")
			}
		})
	}
}

// TestRevisionsAreTargets checks every revision of a function is a target with its own
// settings and ready pods, which the router reaches by the revision's name (a traffic split),
// while the function's name stands for its newest revision.
func TestRevisionsAreTargets(t *testing.T) {
	const fn = "counter"
	old, cur := deployment(fn, "counter-00001", 0), deployment(fn, "counter-00002", 10)
	old.Spec.Template.Spec.Containers[1].Env = []corev1.EnvVar{{Name: envTimeoutSeconds, Value: "30"}}
	cur.Spec.Template.Spec.Containers[1].Env = []corev1.EnvVar{{Name: envTimeoutSeconds, Value: "90"}}
	h := start(t, old, cur, pod(fn, "counter-00001", "old-pod", "127.1.0.1"), pod(fn, "counter-00002", "cur-pod", "127.1.0.2"))
	h.waitReady("counter-00001", at("old-pod", "127.1.0.1"))
	h.waitReady("counter-00002", at("cur-pod", "127.1.0.2"))
	h.waitReady(fn, at("cur-pod", "127.1.0.2"))

	tests := []struct {
		name string
		get  func() (routing.Function, bool)
		want routing.Function
	}{
		{"the function is its newest revision", func() (routing.Function, bool) { return h.w.Function(fn) },
			routing.Function{Name: fn, Revision: "counter-00002", Timeout: 90 * time.Second}},
		{"an older revision keeps its settings", func() (routing.Function, bool) { return h.w.Target(fn, "counter-00001") },
			routing.Function{Name: fn, Revision: "counter-00001", Timeout: 30 * time.Second}},
		{"the newest by name", func() (routing.Function, bool) { return h.w.Target(fn, "counter-00002") },
			routing.Function{Name: fn, Revision: "counter-00002", Timeout: 90 * time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, ok := tt.get(); !ok || got != tt.want {
				t.Errorf("got %+v, %v; want %+v", got, ok, tt.want)
			}
		})
	}
	if _, ok := h.w.Target(fn, "other-00001"); ok {
		t.Error("Target answered for a revision the function does not have")
	}
	if _, ok := h.w.Target("other", "counter-00001"); ok {
		t.Error("Target answered for a revision of another function")
	}
	if got, want := h.w.Targets(), []string{"counter-00001", "counter-00002"}; !slices.Equal(got, want) {
		t.Errorf("Targets() = %v, want %v", got, want)
	}
	if got, ok := h.w.Deployment("counter-00001"); !ok || got != old.Name {
		t.Errorf("Deployment(counter-00001) = %q, %v", got, ok)
	}
	if got, ok := h.w.FunctionOf("counter-00001"); !ok || got != fn {
		t.Errorf("FunctionOf(counter-00001) = %q, %v", got, ok)
	}

	// The older revision goes (Knative deleted it): its waiters wake and it is no target.
	gone := h.w.Changed("counter-00001")
	h.deleteDeployment(old.Name)
	select {
	case <-gone:
	case <-time.After(waitTimeout):
		t.Fatal("no change signalled for a deleted revision")
	}
	if got, want := h.w.Targets(), []string{"counter-00002"}; !slices.Equal(got, want) {
		t.Errorf("after the deletion Targets() = %v, want %v", got, want)
	}
	if n := h.w.ReadyPods("counter-00001"); n != 0 {
		t.Errorf("a deleted revision has %d ready pods", n)
	}
}

func TestFunctionLifecycle(t *testing.T) {
	const fn, rev = "counter", "counter-00001"
	h := start(t)
	notified := make(chan struct{}, 10)
	h.w.OnFunctionsChanged(func() { notified <- struct{}{} })
	awaitNotified := func(what string) {
		t.Helper()
		select {
		case <-notified:
		case <-time.After(waitTimeout):
			t.Fatalf("OnFunctionsChanged not called when %s", what)
		}
	}

	d := deployment(fn, rev, 0)
	d.Spec.Template.Annotations = map[string]string{"autoscaling.knative.dev/min-scale": "1"}
	h.createDeployment(d)
	h.waitKnown(fn, true)
	awaitNotified("the function appeared")
	if got := h.w.Ready(fn); got == nil || got.Len() != 0 {
		t.Errorf("Ready of a function at zero = %v, want empty", got)
	}
	if got, ok := h.w.Deployment(fn); !ok || got != d.Name {
		t.Errorf("Deployment = %q, %v; want %q", got, ok, d.Name)
	}
	if got, want := h.w.Functions(), []string{fn}; !slices.Equal(got, want) {
		t.Errorf("Functions() = %v, want %v", got, want)
	}

	anns := h.w.Annotations(fn)
	if !maps.Equal(anns, d.Spec.Template.Annotations) {
		t.Errorf("Annotations = %v, want %v", anns, d.Spec.Template.Annotations)
	}
	anns["changed"] = "by the caller"
	if got := h.w.Annotations(fn); maps.Equal(got, anns) {
		t.Error("Annotations returned the Watcher's own map")
	}
	d.Spec.Template.Annotations = map[string]string{"autoscaling.knative.dev/min-scale": "2"}
	h.updateDeployment(d)
	awaitNotified("the annotations changed")
	if got := h.w.Annotations(fn); !maps.Equal(got, d.Spec.Template.Annotations) {
		t.Errorf("Annotations after the update = %v, want %v", got, d.Spec.Template.Annotations)
	}

	h.createPod(pod(fn, rev, "p1", "127.1.0.1"))
	h.waitReady(fn, at("p1", "127.1.0.1"))

	changed := h.w.Changed(fn)
	h.deleteDeployment(d.Name)
	select {
	case <-changed:
	case <-time.After(waitTimeout):
		t.Fatal("Changed not closed when the function went")
	}
	awaitNotified("the function went")
	if _, ok := h.w.Function(fn); ok {
		t.Error("Function found after its Deployment was deleted")
	}
	if got := h.w.Ready(fn).Len(); got != 0 {
		t.Errorf("%d ready pods after the Deployment was deleted", got)
	}
	if _, ok := h.w.Deployment(fn); ok {
		t.Error("Deployment found after it was deleted")
	}
	if got := h.w.Annotations(fn); got != nil {
		t.Errorf("Annotations of a gone function = %v, want nil", got)
	}
	if got := h.w.Functions(); len(got) != 0 {
		t.Errorf("Functions() = %v, want none", got)
	}
}

func TestDeploymentBeingDeleted(t *testing.T) {
	const fn = "counter"
	h := start(t, deployment(fn, "counter-00001", 0), deployment(fn, "counter-00002", 10),
		pod(fn, "counter-00001", "old", "127.1.0.1"), pod(fn, "counter-00002", "new", "127.1.0.2"))
	h.waitReady(fn, at("new", "127.1.0.2"))
	notified := make(chan struct{}, 10)
	h.w.OnFunctionsChanged(func() { notified <- struct{}{} })
	d := deployment(fn, "counter-00002", 10)
	now := metav1.NewTime(epoch)
	d.DeletionTimestamp = &now
	d.Finalizers = []string{"foregroundDeletion"}
	h.updateDeployment(d)
	h.waitReady(fn, at("old", "127.1.0.1"))
	if got, _ := h.w.Deployment(fn); got != "counter-00001-deployment" {
		t.Errorf("Deployment = %q, want the older one", got)
	}
	select {
	case <-notified:
	case <-time.After(waitTimeout):
		t.Error("OnFunctionsChanged not called when the function's Deployment changed")
	}
}

func TestFunctionInfoPublished(t *testing.T) {
	d := deployment("counter", "counter-00001", 0)
	d.Spec.Template.Spec.Containers[1].Env = []corev1.EnvVar{
		{Name: envContainerConcurrency, Value: "2"}, {Name: envTimeoutSeconds, Value: "60"}}
	h := start(t, d)
	got, ok := h.w.Function("counter")
	if want := (routing.Function{Name: "counter", Timeout: time.Minute, ContainerConcurrency: 2, Revision: "counter-00001"}); !ok || got != want {
		t.Errorf("Function = %+v, %v; want %+v", got, ok, want)
	}
}

func TestStartForbidden(t *testing.T) {
	forbid := func(resource string) error {
		return apierrors.NewForbidden(schema.GroupResource{Resource: resource}, "",
			errors.New(`User "system:serviceaccount:knactor:router" cannot list resource`))
	}
	tests := []struct {
		name     string
		resource string
		react    func(c *fake.Clientset)
	}{{
		name:     "pods, preflight",
		resource: "pods",
		react: func(c *fake.Clientset) {
			c.PrependReactor("list", "pods", func(ktesting.Action) (bool, runtime.Object, error) {
				return true, nil, forbid("pods")
			})
		},
	}, {
		name:     "deployments, preflight",
		resource: "deployments",
		react: func(c *fake.Clientset) {
			c.PrependReactor("list", "deployments", func(ktesting.Action) (bool, runtime.Object, error) {
				return true, nil, forbid("deployments")
			})
		},
	}, {
		name:     "deployments, informer",
		resource: "deployments",
		react: func(c *fake.Clientset) {
			lists := 0 // the reactor runs under the fake's lock
			c.PrependReactor("list", "deployments", func(ktesting.Action) (bool, runtime.Object, error) {
				if lists++; lists == 1 {
					return false, nil, nil // the preflight passes
				}
				return true, nil, forbid("deployments")
			})
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := newClient()
			tt.react(c)
			h := newHarness(t, c)
			err := h.w.Start(h.ctx)
			if err == nil {
				t.Fatal("Start succeeded without permission")
			}
			if !apierrors.IsForbidden(err) {
				t.Errorf("error %v does not wrap the Forbidden answer", err)
			}
			for _, want := range []string{`"list" and "watch"`, " " + tt.resource + " ", `namespace "functions"`, "config/ RBAC"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %s", err, want)
				}
			}
		})
	}
}

func TestStartTimeout(t *testing.T) {
	c, _ := newClient()
	c.PrependReactor("list", "pods", func(ktesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewServiceUnavailable("etcd is down")
	})
	h := newHarness(t, c)
	h.w.cfg.SyncTimeout = 50 * time.Millisecond
	err := h.w.Start(h.ctx)
	if err == nil || !strings.Contains(err.Error(), "not listed within") {
		t.Errorf("Start = %v, want a sync timeout", err)
	}
}

func TestStartTwice(t *testing.T) {
	h := start(t)
	if err := h.w.Start(h.ctx); err == nil {
		t.Error("second Start succeeded")
	}
}

func TestNewWatcherNeedsNamespace(t *testing.T) {
	if _, err := NewWatcher(fake.NewClientset(), Config{}); err == nil {
		t.Error("NewWatcher without a namespace succeeded")
	}
}

func TestUnknownFunction(t *testing.T) {
	h := start(t)
	if set := h.w.Ready("nope"); set == nil || set.Len() != 0 {
		t.Errorf("Ready of an unknown function = %v, want an empty set", set)
	}
	if _, ok := h.w.Function("nope"); ok {
		t.Error("unknown function found")
	}
	changed := h.w.Changed("nope")
	h.createDeployment(deployment("nope", "nope-00001", 0))
	select {
	case <-changed:
	case <-time.After(waitTimeout):
		t.Fatal("Changed not closed when the function appeared")
	}
}
