package kube

import (
	"log/slog"
	"testing"
	"time"

	"github.com/knactor/knactor/router/routing"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

func TestFunctionInfo(t *testing.T) {
	w, err := NewWatcher(fake.NewClientset(), Config{Namespace: ns, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	queue := func(env ...corev1.EnvVar) *appsv1.Deployment {
		d := deployment("counter", "counter-00001", 0)
		d.Spec.Template.Spec.Containers[1].Env = env
		return d
	}
	tests := []struct {
		name string
		dep  *appsv1.Deployment
		want routing.Function
	}{{
		name: "plain Deployment",
		dep:  deployment("counter", "counter-00001", 0),
		want: routing.Function{Name: "counter"},
	}, {
		name: "Knative's queue-proxy settings",
		dep: queue(
			corev1.EnvVar{Name: "SERVING_SERVICE", Value: "counter"},
			corev1.EnvVar{Name: envContainerConcurrency, Value: "1"},
			corev1.EnvVar{Name: envTimeoutSeconds, Value: "300"}),
		want: routing.Function{Name: "counter", Timeout: 300 * time.Second, ContainerConcurrency: 1},
	}, {
		name: "unreadable settings are ignored",
		dep: queue(
			corev1.EnvVar{Name: envContainerConcurrency, Value: "-1"},
			corev1.EnvVar{Name: envTimeoutSeconds, Value: "5m"}),
		want: routing.Function{Name: "counter"},
	}, {
		name: "the user container's variables are not Knative's",
		dep: func() *appsv1.Deployment {
			d := deployment("counter", "counter-00001", 0)
			d.Spec.Template.Spec.Containers[0].Env = []corev1.EnvVar{{Name: envContainerConcurrency, Value: "3"}}
			return d
		}(),
		want: routing.Function{Name: "counter"},
	}, {
		name: "state size cap",
		dep: func() *appsv1.Deployment {
			d := deployment("counter", "counter-00001", 0)
			d.Spec.Template.Annotations = map[string]string{"knactor.dev/max-state-bytes": "512Ki"}
			return d
		}(),
		want: routing.Function{Name: "counter", MaxStateBytes: 512 << 10},
	}, {
		name: "state size cap too large",
		dep: func() *appsv1.Deployment {
			d := deployment("counter", "counter-00001", 0)
			d.Spec.Template.Annotations = map[string]string{"knactor.dev/max-state-bytes": "1Gi"}
			return d
		}(),
		want: routing.Function{Name: "counter"},
	}, {
		name: "negative timeout and fractional state size cap are ignored, the rest is kept",
		dep: func() *appsv1.Deployment {
			d := queue(
				corev1.EnvVar{Name: envTimeoutSeconds, Value: "-5"},
				corev1.EnvVar{Name: envContainerConcurrency, Value: "0"})
			d.Spec.Template.Annotations = map[string]string{"knactor.dev/max-state-bytes": "0.5"}
			return d
		}(),
		want: routing.Function{Name: "counter"},
	}, {
		name: "a container named otherwise is not the queue-proxy",
		dep: func() *appsv1.Deployment {
			d := queue(corev1.EnvVar{Name: envTimeoutSeconds, Value: "30"})
			d.Spec.Template.Spec.Containers[1].Name = "sidecar"
			return d
		}(),
		want: routing.Function{Name: "counter"},
	}, {
		name: "the smallest state size cap; a zero timeout is kept",
		dep: func() *appsv1.Deployment {
			d := queue(corev1.EnvVar{Name: envTimeoutSeconds, Value: "0"})
			d.Spec.Template.Annotations = map[string]string{"knactor.dev/max-state-bytes": "1"}
			return d
		}(),
		want: routing.Function{Name: "counter", MaxStateBytes: 1},
	}, {
		name: "the largest state size cap",
		dep: func() *appsv1.Deployment {
			d := deployment("counter", "counter-00001", 0)
			d.Spec.Template.Annotations = map[string]string{"knactor.dev/max-state-bytes": "64Mi"}
			return d
		}(),
		want: routing.Function{Name: "counter", MaxStateBytes: 64 << 20},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := w.functionInfo("counter", tt.dep); got != tt.want {
				t.Errorf("functionInfo = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestPodAddr(t *testing.T) {
	tests := []struct {
		name   string
		pod    func() *corev1.Pod
		want   string
		wantOK bool
	}{{
		name:   "ready",
		pod:    func() *corev1.Pod { return pod("f", "f-1", "p", "10.0.0.1") },
		want:   "10.0.0.1:8080",
		wantOK: true,
	}, {
		name: "IPv6",
		pod: func() *corev1.Pod {
			p := pod("f", "f-1", "p", "fd00::1")
			return p
		},
		want:   "[fd00::1]:8080",
		wantOK: true,
	}, {
		name: "pending",
		pod: func() *corev1.Pod {
			p := pod("f", "f-1", "p", "10.0.0.1")
			p.Status.Phase = corev1.PodPending
			return p
		},
	}, {
		name: "no conditions",
		pod: func() *corev1.Pod {
			p := pod("f", "f-1", "p", "10.0.0.1")
			p.Status.Conditions = nil
			return p
		},
	}, {
		name: "ready unknown",
		pod: func() *corev1.Pod {
			p := pod("f", "f-1", "p", "10.0.0.1")
			p.Status.Conditions[1].Status = corev1.ConditionUnknown
			return p
		},
	}, {
		name: "not ready",
		pod:  func() *corev1.Pod { return setReady(pod("f", "f-1", "p", "10.0.0.1"), false) },
	}, {
		name: "no IP yet",
		pod:  func() *corev1.Pod { return pod("f", "f-1", "p", "") },
	}, {
		name: "being deleted",
		pod: func() *corev1.Pod {
			p := pod("f", "f-1", "p", "10.0.0.1")
			now := metav1.NewTime(epoch)
			p.DeletionTimestamp = &now
			return p
		},
	}, {
		name: "succeeded",
		pod: func() *corev1.Pod {
			p := pod("f", "f-1", "p", "10.0.0.1")
			p.Status.Phase = corev1.PodSucceeded
			return p
		},
	}, {
		name: "the user container's own port",
		pod: func() *corev1.Pod {
			p := pod("f", "f-1", "p", "10.0.0.1")
			p.Spec.Containers[1].Ports[0].ContainerPort = 9000
			return p
		},
		want:   "10.0.0.1:9000",
		wantOK: true,
	}, {
		name: "a user container without ports serves on the default port",
		pod: func() *corev1.Pod {
			p := pod("f", "f-1", "p", "10.0.0.1")
			p.Spec.Containers[1].Ports = nil
			return p
		},
		want:   "10.0.0.1:8080",
		wantOK: true,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := podAddr(tt.pod())
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("podAddr = %q, %v; want %q, %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestUserPort(t *testing.T) {
	port := func(n int32) []corev1.ContainerPort { return []corev1.ContainerPort{{ContainerPort: n}} }
	tests := []struct {
		name       string
		containers []corev1.Container
		want       int32
	}{
		{"no ports", []corev1.Container{{Name: "user-container"}}, DefaultUserPort},
		{"user port", []corev1.Container{{Name: "user-container", Ports: port(9000)}}, 9000},
		{"queue-proxy first", []corev1.Container{{Name: QueueProxyContainer, Ports: port(8012)}, {Name: "app", Ports: port(9000)}}, 9000},
		{"only queue-proxy declares", []corev1.Container{{Name: "app"}, {Name: QueueProxyContainer, Ports: port(8012)}}, DefaultUserPort},
		{"sidecar without ports", []corev1.Container{{Name: "sidecar"}, {Name: "app", Ports: port(7000)}}, 7000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := userPort(tt.containers); got != tt.want {
				t.Errorf("userPort = %d, want %d", got, tt.want)
			}
		})
	}
}
