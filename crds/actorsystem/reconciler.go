package actorsystem

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/clock"

	"github.com/knactor/knactor/crds/v1alpha1"
	"github.com/knactor/knactor/statecache"
)

// DefaultInterval is how often the Reconciler looks at every ActorSystem: a user who fixes a
// Secret or creates a bucket sees Ready within this long, and a store that goes away is reported
// within it. The work is one Secret read and one bucket check per system.
const DefaultInterval = 10 * time.Second

// storeProbeTimeout bounds one bucket check: long enough for a remote S3 endpoint's TLS
// handshake, short enough that one unreachable store does not hold up the others' status.
const storeProbeTimeout = 5 * time.Second

// Probe checks that a store answers and its bucket exists (creating it when the spec says so).
type Probe func(ctx context.Context, s3 statecache.S3Config) error

// ProbeS3 opens the store once, without retries: the check a router's start-up would do.
func ProbeS3(ctx context.Context, s3 statecache.S3Config) error {
	s3.Attempts = 1
	s3.Timeout = storeProbeTimeout
	_, err := statecache.OpenS3Store(ctx, s3)
	return err
}

// Reconciler keeps the status of every ActorSystem in Namespace true. Run's goroutine does all
// the work; it holds no state between passes besides what the API server stores.
type Reconciler struct {
	Kube      kubernetes.Interface
	Dynamic   dynamic.Interface
	Namespace string
	// Interval between passes; default DefaultInterval.
	Interval time.Duration
	// Probe checks a store; default ProbeS3.
	Probe Probe
	// Clock times the passes and the conditions' transition times; default the real clock.
	Clock  clock.WithTicker
	Logger *slog.Logger
}

func (r *Reconciler) defaults() {
	if r.Interval <= 0 {
		r.Interval = DefaultInterval
	}
	if r.Probe == nil {
		r.Probe = ProbeS3
	}
	if r.Clock == nil {
		r.Clock = clock.RealClock{}
	}
	if r.Logger == nil {
		r.Logger = slog.Default()
	}
}

// Run reconciles at once and then every Interval until ctx ends. A failed pass is logged and
// retried at the next tick.
func (r *Reconciler) Run(ctx context.Context) error {
	r.defaults()
	t := r.Clock.NewTicker(r.Interval)
	defer t.Stop()
	for {
		if err := r.ReconcileAll(ctx); err != nil && ctx.Err() == nil {
			r.Logger.Warn("actor systems: reconcile failed", "namespace", r.Namespace, "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C():
		}
	}
}

// ReconcileAll reconciles every ActorSystem in Namespace once.
func (r *Reconciler) ReconcileAll(ctx context.Context) error {
	r.defaults()
	list, err := v1alpha1.List(ctx, r.Dynamic, r.Namespace)
	if err != nil {
		if apierrors.IsForbidden(err) {
			return fmt.Errorf("knactor may not list actorsystems.knactor.dev in namespace %q (apply config/ RBAC): %w", r.Namespace, err)
		}
		return fmt.Errorf("list ActorSystems in %q: %w", r.Namespace, err)
	}
	var errs []error
	for i := range list {
		if err := r.Reconcile(ctx, &list[i]); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Reconcile computes as's conditions and writes its status when they changed.
func (r *Reconciler) Reconcile(ctx context.Context, as *v1alpha1.ActorSystem) error {
	r.defaults()
	before := as.Status.DeepCopy()
	status := as.Status.DeepCopy()
	status.ObservedGeneration = as.Generation
	now := metav1.NewTime(r.Clock.Now())
	set := func(typ string, ok bool, reason, msg string) {
		st := metav1.ConditionFalse
		if ok {
			st = metav1.ConditionTrue
		}
		c := metav1.Condition{Type: typ, Status: st, Reason: reason, Message: msg, ObservedGeneration: as.Generation, LastTransitionTime: now}
		if old := meta.FindStatusCondition(status.Conditions, typ); old != nil && old.Status == c.Status {
			c.LastTransitionTime = old.LastTransitionTime
		}
		meta.SetStatusCondition(&status.Conditions, c)
	}

	work := as.DeepCopy()
	s, err := settings(ctx, r.Kube, work)
	var ce *Error
	switch {
	case err == nil:
		set(v1alpha1.ConditionCredentialsReady, true, ReasonReady, "the Secrets exist and hold the keys knactor reads")
		if perr := r.Probe(ctx, s.S3); perr != nil {
			e := storeError(s.S3, perr)
			set(v1alpha1.ConditionStoreReady, false, e.Reason, e.Message)
			set(v1alpha1.ConditionReady, false, e.Reason, e.Message)
		} else {
			msg := fmt.Sprintf("bucket %q at %s answers", s.S3.Bucket, s.S3.Endpoint)
			set(v1alpha1.ConditionStoreReady, true, ReasonReady, msg)
			set(v1alpha1.ConditionReady, true, ReasonReady, "routers can serve this system's functions")
		}
	case errors.As(err, &ce) && ce.Condition == v1alpha1.ConditionCredentialsReady:
		set(v1alpha1.ConditionCredentialsReady, false, ce.Reason, ce.Message)
		set(v1alpha1.ConditionStoreReady, false, ReasonNotReady, "waiting for the credentials")
		set(v1alpha1.ConditionReady, false, ce.Reason, ce.Message)
	case errors.As(err, &ce):
		meta.RemoveStatusCondition(&status.Conditions, v1alpha1.ConditionCredentialsReady)
		meta.RemoveStatusCondition(&status.Conditions, v1alpha1.ConditionStoreReady)
		set(v1alpha1.ConditionReady, false, ce.Reason, ce.Message)
	default:
		return fmt.Errorf("ActorSystem %s/%s: %w", as.Namespace, as.Name, err)
	}
	if equality.Semantic.DeepEqual(before, status) {
		return nil
	}
	update := as.DeepCopy()
	update.Status = *status
	if _, err := v1alpha1.UpdateStatus(ctx, r.Dynamic, update); err != nil {
		if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
			return nil // changed or gone meanwhile: the next pass sees the new object
		}
		return fmt.Errorf("update status of ActorSystem %s/%s: %w", as.Namespace, as.Name, err)
	}
	ready := meta.FindStatusCondition(status.Conditions, v1alpha1.ConditionReady)
	r.Logger.Info("actor system status", "namespace", as.Namespace, "name", as.Name,
		"ready", ready.Status, "reason", ready.Reason, "message", ready.Message)
	return nil
}
