package paclass

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"knative.dev/pkg/apis"
	autoscalingv1alpha1 "knative.dev/serving/pkg/apis/autoscaling/v1alpha1"
	servingfake "knative.dev/serving/pkg/client/clientset/versioned/fake"

	"github.com/knactor/knactor/autoscaler"
)

func TestComputeStatus(t *testing.T) {
	tests := []struct {
		name          string
		deployment    bool
		decision      autoscaler.Status
		decided       bool
		ready         int
		ready_, initd corev1.ConditionStatus
		active        corev1.ConditionStatus
		desired       int32
	}{
		{name: "no deployment yet", ready_: "Unknown", initd: "Unknown", active: "Unknown"},
		{name: "scaled to zero", deployment: true, decided: true, decision: autoscaler.Status{DesiredPods: 0, AppliedPods: 0},
			ready_: "False", initd: "True", active: "False", desired: 0},
		{name: "scaling up", deployment: true, decided: true, decision: autoscaler.Status{DesiredPods: 2, AppliedPods: 2},
			ready_: "Unknown", initd: "True", active: "Unknown", desired: 2},
		{name: "serving", deployment: true, decided: true, decision: autoscaler.Status{DesiredPods: 3, AppliedPods: 3}, ready: 3,
			ready_: "True", initd: "True", active: "True", desired: 3},
		{name: "before the first decision", deployment: true, ready: 1, decision: autoscaler.Status{AppliedPods: -1},
			ready_: "True", initd: "True", active: "True", desired: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var s autoscalingv1alpha1.PodAutoscalerStatus
			ComputeStatus(&s, "counter-00001-deployment", tc.deployment, tc.decision, tc.decided, tc.ready, 4)
			for typ, want := range map[string]corev1.ConditionStatus{"Ready": tc.ready_, "ScaleTargetInitialized": tc.initd, "Active": tc.active, "SKSReady": "True"} {
				c := s.GetCondition(apis.ConditionType(typ))
				if c == nil || c.Status != want {
					t.Errorf("condition %s = %v, want %s", typ, c, want)
				}
			}
			if s.ServiceName != "counter-00001-deployment" || s.ObservedGeneration != 4 {
				t.Errorf("service name %q, observed generation %d", s.ServiceName, s.ObservedGeneration)
			}
			if tc.deployment && (s.DesiredScale == nil || *s.DesiredScale != tc.desired || *s.ActualScale != int32(tc.ready)) {
				t.Errorf("desired %v actual %v, want %d and %d", s.DesiredScale, s.ActualScale, tc.desired, tc.ready)
			}
		})
	}
}

// startReconciler runs a Reconciler of namespace default over client until the test ends, its
// informer synced.
func startReconciler(t *testing.T, client *servingfake.Clientset, d Decisions, retire func(context.Context, string, string) error) (*Reconciler, context.Context) {
	t.Helper()
	r := &Reconciler{Client: client, Namespace: "default", Decisions: d, Retire: retire}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return r, ctx
}

type decisions struct {
	ready int
	bad   error
}

func (d decisions) SettingsError(string) error { return d.bad }

func (d decisions) Status(string) (autoscaler.Status, bool) {
	return autoscaler.Status{DesiredPods: 1, AppliedPods: 1}, true
}
func (d decisions) ReadyPods(string) int             { return d.ready }
func (d decisions) Deployment(string) (string, bool) { return "counter-00001-deployment", true }

// Only knactor's class is touched; another class's PodAutoscaler keeps its status.
func TestReconcileOnlyOurClass(t *testing.T) {
	pa := func(name, class string) *autoscalingv1alpha1.PodAutoscaler {
		return &autoscalingv1alpha1.PodAutoscaler{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Generation: 1,
				Labels:      map[string]string{"serving.knative.dev/service": "counter"},
				Annotations: map[string]string{"autoscaling.knative.dev/class": class, "autoscaling.knative.dev/target": "5"}},
			Spec: autoscalingv1alpha1.PodAutoscalerSpec{ContainerConcurrency: 7},
		}
	}
	client := servingfake.NewSimpleClientset(pa("counter-00001", Class), pa("other-00001", "kpa.autoscaling.knative.dev"))
	r, ctx := startReconciler(t, client, decisions{ready: 1}, nil)
	r.ReconcileAll(ctx)
	ours, _ := client.AutoscalingV1alpha1().PodAutoscalers("default").Get(ctx, "counter-00001", metav1.GetOptions{})
	if !ours.IsReady() || ours.Status.DesiredScale == nil || *ours.Status.DesiredScale != 1 {
		t.Errorf("our PodAutoscaler's status = %+v, want Ready with desired scale 1", ours.Status)
	}
	other, _ := client.AutoscalingV1alpha1().PodAutoscalers("default").Get(ctx, "other-00001", metav1.GetOptions{})
	if len(other.Status.Conditions) != 0 {
		t.Errorf("another class's PodAutoscaler was touched: %+v", other.Status)
	}
	anns, cc, ok := r.Annotations("counter-00001")
	if !ok || anns["autoscaling.knative.dev/target"] != "5" || cc != 7 {
		t.Errorf("Annotations = %v, %d, %v", anns, cc, ok)
	}
	if _, _, ok := r.Annotations("other-00001"); ok {
		t.Error("Annotations answered for another class")
	}
}

// A revision no route sends traffic to is retired, whatever its decisions; a reachable one, or
// one whose reachability Knative has not settled yet, is left to the autoscaler.
func TestUnreachableRevisionsAreRetired(t *testing.T) {
	tests := []struct {
		reach   autoscalingv1alpha1.ReachabilityType
		retired bool
	}{
		{autoscalingv1alpha1.ReachabilityUnreachable, true},
		{autoscalingv1alpha1.ReachabilityReachable, false},
		{autoscalingv1alpha1.ReachabilityUnknown, false},
	}
	for _, tc := range tests {
		t.Run(string(tc.reach)+"_", func(t *testing.T) {
			pa := &autoscalingv1alpha1.PodAutoscaler{
				ObjectMeta: metav1.ObjectMeta{Name: "counter-00001", Namespace: "default", Generation: 1,
					Annotations: map[string]string{"autoscaling.knative.dev/class": Class}},
				Spec: autoscalingv1alpha1.PodAutoscalerSpec{Reachability: tc.reach,
					ScaleTargetRef: corev1.ObjectReference{Name: "counter-00001-deployment"}},
			}
			client := servingfake.NewSimpleClientset(pa)
			var retired []string
			r, ctx := startReconciler(t, client, decisions{ready: 1},
				func(_ context.Context, rev, dep string) error { retired = append(retired, rev+" "+dep); return nil })
			r.ReconcileAll(ctx)
			if got := len(retired) > 0; got != tc.retired || r.Unreachable("counter-00001") != tc.retired {
				t.Fatalf("retired %v (Unreachable %v), want %v", retired, r.Unreachable("counter-00001"), tc.retired)
			}
			if tc.retired && retired[0] != "counter-00001 counter-00001-deployment" {
				t.Errorf("Retire(%q), want the revision and its Deployment", retired[0])
			}
			got, _ := client.AutoscalingV1alpha1().PodAutoscalers("default").Get(ctx, "counter-00001", metav1.GetOptions{})
			want := corev1.ConditionTrue
			if tc.retired {
				want = corev1.ConditionFalse
			}
			if c := got.Status.GetCondition("Active"); c == nil || c.Status != want {
				t.Errorf("Active = %v, want %s", c, want)
			}
		})
	}
}

// A revision whose settings knactor refuses is not Ready, and its status says why.
func TestInvalidSettingsAreReported(t *testing.T) {
	pa := &autoscalingv1alpha1.PodAutoscaler{
		ObjectMeta: metav1.ObjectMeta{Name: "counter-00001", Namespace: "default", Generation: 1,
			Annotations: map[string]string{"autoscaling.knative.dev/class": Class}},
		Spec: autoscalingv1alpha1.PodAutoscalerSpec{ScaleTargetRef: corev1.ObjectReference{Name: "counter-00001-deployment"}},
	}
	client := servingfake.NewSimpleClientset(pa)
	r, ctx := startReconciler(t, client, decisions{ready: 1, bad: errors.New(`"cpu" is not concurrency or rps`)}, nil)
	r.ReconcileAll(ctx)
	got, _ := client.AutoscalingV1alpha1().PodAutoscalers("default").Get(ctx, "counter-00001", metav1.GetOptions{})
	c := got.Status.GetCondition(autoscalingv1alpha1.PodAutoscalerConditionScaleTargetInitialized)
	if got.IsReady() || c == nil || c.Status != corev1.ConditionFalse || c.Reason != "InvalidSettings" || !strings.Contains(c.Message, `"cpu" is not concurrency or rps`) {
		t.Errorf("status %+v: want not Ready, ScaleTargetInitialized False (InvalidSettings) with the error", got.Status)
	}
	// The same error again writes nothing (no status churn at every resync).
	if err := wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 5*time.Second, true, func(context.Context) (bool, error) {
		obj, ok, _ := r.inf.GetStore().GetByKey("default/counter-00001")
		if !ok {
			return false, nil
		}
		c := obj.(*autoscalingv1alpha1.PodAutoscaler).Status.GetCondition("ScaleTargetInitialized")
		return c != nil && c.Status == corev1.ConditionFalse, nil
	}); err != nil {
		t.Fatal("the informer never saw the status")
	}
	before := len(client.Actions())
	r.ReconcileAll(ctx)
	if n := len(client.Actions()) - before; n != 0 {
		t.Errorf("a second reconcile of an unchanged error made %d API calls: %v", n, client.Actions()[before:])
	}
}
