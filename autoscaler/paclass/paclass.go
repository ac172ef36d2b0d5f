// Package paclass makes knactor's autoscaler a Knative PodAutoscaler class.
//
// Knative's revision reconciler creates a PodAutoscaler (autoscaling.internal.knative.dev) for
// every revision, annotated with the revision's autoscaling.knative.dev/class. The class's
// autoscaler owns it: it scales the revision's Deployment and reports, in the PodAutoscaler's
// status, what Knative waits for before it marks the revision Ready. knactor's class is Class.
// A Reconciler keeps the status of every PodAutoscaler of that class in its namespace true —
// ScaleTargetInitialized once the Deployment exists, Active while pods are wanted or running
// (Inactive at zero, as Knative's KPA reports a revision scaled to zero), SKSReady (knactor
// routes to pods itself; there is no ServerlessService), the service name, and the desired and
// actual scale — and leaves every other class alone. Scaling itself is the autoscaler's, one
// decider per revision as for every other function (cmd/knactor wires the two); the
// PodAutoscaler's annotations are where Knative keeps a revision's autoscaling settings (it
// strips them from the Deployment), so Annotations hands them to it. A revision no route sends
// traffic to (spec.reachability Unreachable, which Knative sets from the Route) is retired:
// scaled to zero whatever its min-scale, as Knative's KPA does.
package paclass

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"
	"knative.dev/pkg/apis"
	autoscalingv1alpha1 "knative.dev/serving/pkg/apis/autoscaling/v1alpha1"
	servingclient "knative.dev/serving/pkg/client/clientset/versioned"
	servinginformers "knative.dev/serving/pkg/client/informers/externalversions"

	"github.com/knactor/knactor/autoscaler"
)

// Class is knactor's autoscaling.knative.dev/class.
const Class = "actor.autoscaling.knactor.dev"

// DefaultResync is how often every PodAutoscaler's status is recomputed even without an event:
// desired and actual scale move with the autoscaler's decisions (every 2 s) and pods, which the
// PodAutoscaler informer does not see.
const DefaultResync = 2 * time.Second

// Decisions is what the Reconciler reads from the autoscaler and the pod watcher, by revision
// (Knative names a revision's PodAutoscaler after it).
type Decisions interface {
	// Status is the autoscaler's latest decision for a revision.
	Status(revision string) (autoscaler.Status, bool)
	// ReadyPods is the revision's ready pods.
	ReadyPods(revision string) int
	// Deployment names the revision's Deployment, when it has one.
	Deployment(revision string) (string, bool)
	// SettingsError says why knactor does not scale the revision (its autoscaling settings are
	// not ones knactor's autoscaler takes); nil when it does.
	SettingsError(revision string) error
}

// Reconciler keeps knactor-class PodAutoscalers' status true. Run's goroutine does every status
// write; the informer's goroutine only wakes it. mu guards nothing but the annotations snapshot
// Annotations returns (read from the informer's cache).
type Reconciler struct {
	Client    servingclient.Interface
	Namespace string
	Decisions Decisions
	Clock     clock.WithTicker
	Resync    time.Duration
	Logger    *slog.Logger
	// Retire stops scaling a revision no route sends traffic to and scales its Deployment to
	// zero.
	Retire func(ctx context.Context, revision, deployment string) error
	// OnChange, when set, is called from Run's goroutine after a PodAutoscaler changed, before
	// the statuses are recomputed: the autoscaler re-reads the functions' settings
	// (Annotations).
	OnChange func()

	once    sync.Once
	factory servinginformers.SharedInformerFactory
	inf     cache.SharedIndexInformer
	wake    chan struct{}
}

func (r *Reconciler) init() {
	r.once.Do(func() {
		if r.Clock == nil {
			r.Clock = clock.RealClock{}
		}
		if r.Resync <= 0 {
			r.Resync = DefaultResync
		}
		if r.Logger == nil {
			r.Logger = slog.Default()
		}
		r.wake = make(chan struct{}, 1)
		r.factory = servinginformers.NewSharedInformerFactoryWithOptions(r.Client, 0, servinginformers.WithNamespace(r.Namespace))
		r.inf = r.factory.Autoscaling().V1alpha1().PodAutoscalers().Informer()
		poke := func(any) {
			select {
			case r.wake <- struct{}{}:
			default:
			}
		}
		_, _ = r.inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: poke, UpdateFunc: func(_, o any) { poke(o) }, DeleteFunc: poke})
	})
}

// Start starts the informer and waits for its first list. It fails when the PodAutoscaler API
// is not installed (no Knative) or not readable.
func (r *Reconciler) Start(ctx context.Context) error {
	r.init()
	r.factory.Start(ctx.Done())
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if !cache.WaitForCacheSync(sctx.Done(), r.inf.HasSynced) {
		return fmt.Errorf("paclass: PodAutoscalers in %q not listed within 30 s: is Knative Serving installed, and may knactor list and watch podautoscalers.autoscaling.internal.knative.dev (config/ RBAC)?", r.Namespace)
	}
	return nil
}

// Run reconciles on every PodAutoscaler event and every Resync until ctx ends. Start first.
func (r *Reconciler) Run(ctx context.Context) error {
	r.init()
	t := r.Clock.NewTicker(r.Resync)
	defer t.Stop()
	for {
		r.ReconcileAll(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C():
		case <-r.wake:
			if r.OnChange != nil {
				r.OnChange()
			}
		}
	}
}

// mine lists the cached PodAutoscalers of Class.
func (r *Reconciler) mine() []*autoscalingv1alpha1.PodAutoscaler {
	var out []*autoscalingv1alpha1.PodAutoscaler
	for _, obj := range r.inf.GetStore().List() {
		if pa, ok := obj.(*autoscalingv1alpha1.PodAutoscaler); ok && pa.Class() == Class && pa.DeletionTimestamp == nil {
			out = append(out, pa)
		}
	}
	return out
}

// Annotations returns the annotations and containerConcurrency of the PodAutoscaler of
// revision (Knative names it after the revision), where Knative keeps the revision's autoscaling
// settings.
func (r *Reconciler) Annotations(revision string) (map[string]string, int64, bool) {
	r.init()
	obj, ok, err := r.inf.GetStore().GetByKey(r.Namespace + "/" + revision)
	if err != nil || !ok {
		return nil, 0, false
	}
	pa := obj.(*autoscalingv1alpha1.PodAutoscaler)
	if pa.Class() != Class {
		return nil, 0, false
	}
	return maps.Clone(pa.Annotations), pa.Spec.ContainerConcurrency, true
}

// Unreachable reports whether Knative marked the revision's PodAutoscaler (of Class)
// unreachable: no route sends it traffic, so it is not autoscaled but retired.
func (r *Reconciler) Unreachable(revision string) bool {
	r.init()
	obj, ok, err := r.inf.GetStore().GetByKey(r.Namespace + "/" + revision)
	if err != nil || !ok {
		return false
	}
	pa := obj.(*autoscalingv1alpha1.PodAutoscaler)
	return pa.Class() == Class && pa.Spec.Reachability == autoscalingv1alpha1.ReachabilityUnreachable
}

// ReconcileAll brings every PodAutoscaler of Class up to date, logging failures.
func (r *Reconciler) ReconcileAll(ctx context.Context) {
	for _, pa := range r.mine() {
		if err := r.reconcile(ctx, pa); err != nil && ctx.Err() == nil {
			r.Logger.Warn("podautoscaler: status not updated", "podautoscaler", pa.Namespace+"/"+pa.Name, "err", err)
		}
	}
}

func (r *Reconciler) reconcile(ctx context.Context, pa *autoscalingv1alpha1.PodAutoscaler) error {
	rev := pa.Name
	want := pa.DeepCopy()
	_, depOK := r.Decisions.Deployment(rev)
	target := pa.Spec.ScaleTargetRef.Name
	if depOK && target != "" && pa.Spec.Reachability == autoscalingv1alpha1.ReachabilityUnreachable {
		// No route sends it traffic: its actors run on the revisions that have it (their state
		// is the function's, in the store, not the revision's), so it is scaled to zero and
		// reported inactive.
		if r.Retire != nil {
			if err := r.Retire(ctx, rev, target); err != nil {
				return fmt.Errorf("retire %s: %w", target, err)
			}
		}
		ComputeStatus(&want.Status, target, true, autoscaler.Status{}, true, 0, pa.Generation)
	} else {
		status, ok := r.Decisions.Status(rev)
		if err := r.Decisions.SettingsError(rev); err != nil {
			// Not scaled: nothing to say of its scale, and ScaleTargetInitialized is never
			// marked True on the way, so an unchanged error writes nothing.
			ComputeStatus(&want.Status, target, false, status, ok, 0, pa.Generation)
			MarkInvalidSettings(&want.Status, err)
		} else {
			ComputeStatus(&want.Status, target, depOK, status, ok, r.Decisions.ReadyPods(rev), pa.Generation)
		}
	}
	if equality.Semantic.DeepEqual(pa.Status, want.Status) {
		return nil
	}
	_, err := r.Client.AutoscalingV1alpha1().PodAutoscalers(pa.Namespace).UpdateStatus(ctx, want, metav1.UpdateOptions{})
	if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
		return nil // the informer brings the newer object; the next pass recomputes
	}
	return err
}

// paConditions are a PodAutoscaler's conditions as Knative's lifecycle defines them (Ready
// follows the other three), for the one transition its status type has no method for.
var paConditions = apis.NewLivingConditionSet(autoscalingv1alpha1.PodAutoscalerConditionActive,
	autoscalingv1alpha1.PodAutoscalerConditionScaleTargetInitialized, autoscalingv1alpha1.PodAutoscalerConditionSKSReady)

// MarkInvalidSettings reports a revision knactor does not scale because of its settings:
// ScaleTargetInitialized turns False with reason InvalidSettings and the error, so the Revision
// and the Knative Service are not Ready and say why (kubectl get ksvc, kn-actor list).
func MarkInvalidSettings(s *autoscalingv1alpha1.PodAutoscalerStatus, err error) {
	paConditions.Manage(s).MarkFalse(autoscalingv1alpha1.PodAutoscalerConditionScaleTargetInitialized,
		"InvalidSettings", "knactor does not scale this revision: %v", err)
}

// ComputeStatus sets a knactor-class PodAutoscaler's status from what knactor knows: whether
// its Deployment exists, the autoscaler's latest decision (ok false before the first) and the
// ready pods. It reads no clock: condition times are kept when a condition does not change
// (the Knative condition manager sets them).
func ComputeStatus(s *autoscalingv1alpha1.PodAutoscalerStatus, target string, deploymentExists bool, d autoscaler.Status, ok bool, ready int, generation int64) {
	s.InitializeConditions()
	s.ObservedGeneration = generation
	// knactor's routers reach pods directly; the PodAutoscaler's "service" is the revision's
	// Deployment, the only name Knative reads it for (logging, the Revision's ServiceName).
	s.ServiceName = target
	s.MetricsServiceName = target
	s.MarkSKSReady()
	if !deploymentExists {
		return // Knative creates it with the PodAutoscaler; ScaleTargetInitialized stays Unknown
	}
	s.MarkScaleTargetInitialized()
	actual := int32(ready)
	s.ActualScale = &actual
	desired := actual
	if ok && d.AppliedPods >= 0 {
		desired = d.DesiredPods
	}
	s.DesiredScale = &desired
	switch {
	case ready > 0:
		s.MarkActive()
	case desired > 0:
		s.MarkActivating("Queued", "waiting for pods to become ready")
	default:
		s.MarkInactive("NoTraffic", "the function is scaled to zero; knactor's activator holds calls and scales it up")
	}
}
