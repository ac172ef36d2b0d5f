package kube

import (
	"errors"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	ktesting "k8s.io/client-go/testing"
)

var deploymentsResource = appsv1.SchemeGroupVersion.WithResource("deployments")

// serveScale makes the fake clientset answer the deployments/scale subresource from the
// Deployments it holds, as the API server does; the fake alone returns the Deployment itself.
func serveScale(c *fake.Clientset) {
	deploymentOf := func(a ktesting.Action, name string) (*appsv1.Deployment, error) {
		obj, err := c.Tracker().Get(deploymentsResource, a.GetNamespace(), name)
		if err != nil {
			return nil, err
		}
		return obj.(*appsv1.Deployment), nil
	}
	c.PrependReactor("get", "deployments", func(a ktesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "scale" {
			return false, nil, nil
		}
		d, err := deploymentOf(a, a.(ktesting.GetAction).GetName())
		if err != nil {
			return true, nil, err
		}
		return true, &autoscalingv1.Scale{
			ObjectMeta: metav1.ObjectMeta{Name: d.Name, Namespace: d.Namespace, ResourceVersion: d.ResourceVersion},
			Spec:       autoscalingv1.ScaleSpec{Replicas: *d.Spec.Replicas},
		}, nil
	})
	c.PrependReactor("update", "deployments", func(a ktesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "scale" {
			return false, nil, nil
		}
		scale := a.(ktesting.UpdateAction).GetObject().(*autoscalingv1.Scale)
		d, err := deploymentOf(a, scale.Name)
		if err != nil {
			return true, nil, err
		}
		d.Spec.Replicas = &scale.Spec.Replicas
		if err := c.Tracker().Update(deploymentsResource, d, d.Namespace); err != nil {
			return true, nil, err
		}
		return true, scale, nil
	})
}

// scaleActions counts the client's calls of verb on deployments/scale.
func scaleActions(c *fake.Clientset, verb string) int {
	n := 0
	for _, a := range c.Actions() {
		if a.GetVerb() == verb && a.GetResource().Resource == "deployments" && a.GetSubresource() == "scale" {
			n++
		}
	}
	return n
}

func TestScale(t *testing.T) {
	const fn = "counter"
	dep := "counter-00002-deployment"
	tests := []struct {
		name        string
		function    string
		desired     int32
		react       func(c *fake.Clientset) // reactors in front of serveScale's
		wantErr     func(err error) string  // "" when err is as expected
		wantUpdates int
		wantGets    int
		wantReplica int32
	}{{
		name:     "sets replicas",
		function: fn, desired: 3,
		wantUpdates: 1, wantGets: 1, wantReplica: 3,
	}, {
		name:     "to zero",
		function: fn, desired: 0,
		wantUpdates: 1, wantGets: 1, wantReplica: 0,
	}, {
		name:     "already there",
		function: fn, desired: 1,
		wantUpdates: 0, wantGets: 1, wantReplica: 1,
	}, {
		name:     "conflict, then success",
		function: fn, desired: 4,
		react: func(c *fake.Clientset) {
			conflicts := 1 // reactors run under the fake's lock
			c.PrependReactor("update", "deployments", func(a ktesting.Action) (bool, runtime.Object, error) {
				if a.GetSubresource() == "scale" && conflicts > 0 {
					conflicts--
					return true, nil, apierrors.NewConflict(schema.GroupResource{Group: "apps", Resource: "deployments"},
						dep, errors.New("the object has been modified"))
				}
				return false, nil, nil
			})
		},
		wantUpdates: 2, wantGets: 2, wantReplica: 4,
	}, {
		name:     "conflicts until retries run out",
		function: fn, desired: 4,
		react: func(c *fake.Clientset) {
			c.PrependReactor("update", "deployments", func(ktesting.Action) (bool, runtime.Object, error) {
				return true, nil, apierrors.NewConflict(schema.GroupResource{Group: "apps", Resource: "deployments"},
					dep, errors.New("the object has been modified"))
			})
		},
		wantErr: func(err error) string {
			if !apierrors.IsConflict(err) {
				return "not a conflict"
			}
			return ""
		},
		wantUpdates: 5, wantGets: 5, wantReplica: 1,
	}, {
		name:     "update forbidden",
		function: fn, desired: 2,
		react: func(c *fake.Clientset) {
			c.PrependReactor("update", "deployments", func(ktesting.Action) (bool, runtime.Object, error) {
				return true, nil, apierrors.NewForbidden(schema.GroupResource{Group: "apps", Resource: "deployments/scale"},
					dep, errors.New(`User "system:serviceaccount:knactor:autoscaler" cannot update resource`))
			})
		},
		wantErr:     forbidden(`"update"`),
		wantUpdates: 1, wantGets: 1, wantReplica: 1,
	}, {
		name:     "get forbidden",
		function: fn, desired: 2,
		react: func(c *fake.Clientset) {
			c.PrependReactor("get", "deployments", func(ktesting.Action) (bool, runtime.Object, error) {
				return true, nil, apierrors.NewForbidden(schema.GroupResource{Group: "apps", Resource: "deployments/scale"},
					dep, errors.New(`User "system:serviceaccount:knactor:autoscaler" cannot get resource`))
			})
		},
		wantErr:     forbidden(`"get"`),
		wantUpdates: 0, wantGets: 1, wantReplica: 1,
	}, {
		name:     "unknown function",
		function: "nope", desired: 1,
		wantErr: noDeployment, wantReplica: 1,
	}, {
		name:     "deployment deleted behind the watcher's back",
		function: fn, desired: 2,
		react: func(c *fake.Clientset) {
			c.PrependReactor("get", "deployments", func(ktesting.Action) (bool, runtime.Object, error) {
				return true, nil, apierrors.NewNotFound(schema.GroupResource{Group: "apps", Resource: "deployments"}, dep)
			})
		},
		wantErr: func(err error) string {
			if s := noDeployment(err); s != "" {
				return s
			}
			if !apierrors.IsNotFound(err) {
				return "does not wrap the NotFound answer"
			}
			return ""
		},
		wantGets: 1, wantReplica: 1,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, watching := newClient(deployment(fn, "counter-00001", 0), deployment(fn, "counter-00002", 10))
			serveScale(c)
			if tt.react != nil {
				tt.react(c)
			}
			h := newHarness(t, c)
			if err := h.w.Start(h.ctx); err != nil {
				t.Fatal(err)
			}
			<-watching
			<-watching
			if got, _ := h.w.Deployment(fn); got != dep {
				t.Fatalf("Deployment = %q, want %q", got, dep)
			}
			c.ClearActions()
			s := NewScaler(c, h.w)
			err := s.Scale(h.ctx, tt.function, tt.desired)
			switch {
			case tt.wantErr == nil && err != nil:
				t.Fatalf("Scale: %v", err)
			case tt.wantErr != nil && err == nil:
				t.Fatal("Scale succeeded, want an error")
			case tt.wantErr != nil:
				if problem := tt.wantErr(err); problem != "" {
					t.Errorf("Scale error %q: %s", err, problem)
				}
			}
			if got := scaleActions(c, "update"); got != tt.wantUpdates {
				t.Errorf("%d scale updates, want %d", got, tt.wantUpdates)
			}
			if got := scaleActions(c, "get"); got != tt.wantGets {
				t.Errorf("%d scale reads, want %d", got, tt.wantGets)
			}
			obj, err := c.Tracker().Get(deploymentsResource, ns, dep)
			if err != nil {
				t.Fatal(err)
			}
			if got := *obj.(*appsv1.Deployment).Spec.Replicas; got != tt.wantReplica {
				t.Errorf("replicas = %d, want %d", got, tt.wantReplica)
			}
			if older, _ := c.Tracker().Get(deploymentsResource, ns, "counter-00001-deployment"); *older.(*appsv1.Deployment).Spec.Replicas != 1 {
				t.Error("the older revision's Deployment was scaled")
			}
		})
	}
}

// forbidden checks that a Scale error explains the missing permission.
func forbidden(verb string) func(err error) string {
	return func(err error) string {
		if !apierrors.IsForbidden(err) {
			return "does not wrap the Forbidden answer"
		}
		for _, want := range []string{verb, "deployments/scale", `namespace "functions"`, "config/ RBAC"} {
			if !strings.Contains(err.Error(), want) {
				return "does not say " + want
			}
		}
		return ""
	}
}

func noDeployment(err error) string {
	if !errors.Is(err, ErrNoDeployment) {
		return "does not wrap ErrNoDeployment"
	}
	return ""
}

func TestScalerReadyPods(t *testing.T) {
	h := start(t, deployment("counter", "counter-00001", 0), pod("counter", "counter-00001", "p1", "127.1.0.1"))
	h.waitReady("counter", at("p1", "127.1.0.1"))
	if got := NewScaler(h.client, h.w).ReadyPods("counter"); got != 1 {
		t.Errorf("ReadyPods = %d, want 1", got)
	}
}
