package kube

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/knactor/knactor/autoscaler"
)

// Scaler carries out the autoscaler's decisions on a cluster: it sets the replicas of a
// function's Deployment (the Watcher's choice) through the scale subresource, and reads the
// ready pods from the Watcher. It is safe for concurrent use.
type Scaler struct {
	client kubernetes.Interface
	w      *Watcher
}

var _ autoscaler.Scaler = (*Scaler)(nil)

// NewScaler returns a Scaler of the functions w watches.
func NewScaler(client kubernetes.Interface, w *Watcher) *Scaler {
	return &Scaler{client: client, w: w}
}

// Scale sets the replicas of the function's Deployment to desired (autoscaler.Scaler), unless
// they are already that. It does not wait for the pods. A write that loses a race with another
// writer of the Deployment is retried on the newer version. The error wraps ErrNoDeployment
// when the function has no Deployment, and says which permission is missing when RBAC refuses.
func (s *Scaler) Scale(ctx context.Context, function string, desired int32) error {
	name, ok := s.w.Deployment(function)
	if !ok {
		return fmt.Errorf("kube: scaling %q: %w", function, ErrNoDeployment)
	}
	if err := s.ScaleDeployment(ctx, name, desired); err != nil {
		return fmt.Errorf("kube: scaling %q: %w", function, err)
	}
	return nil
}

// ScaleDeployment sets the replicas of the named Deployment of the watched namespace through its
// scale subresource, retrying on conflicts; it writes nothing when they are already desired.
// Besides Scale, the Knative PodAutoscaler class uses it to scale a function's older revisions
// to zero.
func (s *Scaler) ScaleDeployment(ctx context.Context, name string, desired int32) error {
	deps := s.client.AppsV1().Deployments(s.w.cfg.Namespace)
	verb := "get"
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		verb = "get"
		scale, err := deps.GetScale(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if scale.Spec.Replicas == desired {
			return nil
		}
		scale.Spec.Replicas = desired
		verb = "update"
		_, err = deps.UpdateScale(ctx, name, scale, metav1.UpdateOptions{})
		return err
	})
	switch {
	case err == nil:
		return nil
	case apierrors.IsNotFound(err):
		return fmt.Errorf("deployment %q: %w: %w", name, ErrNoDeployment, err)
	case apierrors.IsForbidden(err):
		return fmt.Errorf("deployment %q to %d: %w", name, desired,
			forbiddenError(fmt.Sprintf("%q", verb), "deployments/scale", s.w.cfg.Namespace, err))
	default:
		return fmt.Errorf("deployment %q to %d: %w", name, desired, err)
	}
}

// ReadyPods returns how many of the function's pods are ready (autoscaler.Scaler).
func (s *Scaler) ReadyPods(function string) int { return s.w.ReadyPods(function) }
