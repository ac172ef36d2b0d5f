package kube

import (
	"net"
	"strconv"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/knactor/knactor/manifest"
	"github.com/knactor/knactor/router/routing"
)

// podAddr returns where a pod takes calls, and whether the API reports it ready to: not being
// deleted, running, with an IP and its Ready condition true.
func podAddr(pod *corev1.Pod) (string, bool) {
	if pod.DeletionTimestamp != nil || pod.Status.Phase != corev1.PodRunning || pod.Status.PodIP == "" {
		return "", false
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			if c.Status != corev1.ConditionTrue {
				return "", false
			}
			return net.JoinHostPort(pod.Status.PodIP, strconv.Itoa(int(userPort(pod.Spec.Containers)))), true
		}
	}
	return "", false
}

// userPort is the port of the container that serves calls: the first container other than
// Knative's queue-proxy that declares a port (Knative allows only one to), its first port; or
// DefaultUserPort.
func userPort(containers []corev1.Container) int32 {
	for _, c := range containers {
		if c.Name != QueueProxyContainer && len(c.Ports) > 0 && c.Ports[0].ContainerPort > 0 {
			return c.Ports[0].ContainerPort
		}
	}
	return DefaultUserPort
}

// functionInfo reads what the router needs to know about a function from its Deployment: the
// timeout and container concurrency Knative hands the queue-proxy, and knactor's state size cap
// from the pod template's annotations. A value it cannot read is left zero (the router's
// default) and logged.
func (w *Watcher) functionInfo(name string, dep *appsv1.Deployment) routing.Function {
	info := routing.Function{Name: name}
	bad := func(field, value string, err error) {
		w.cfg.Logger.Warn("kube: ignoring an unreadable setting", "function", name, "deployment", dep.Name,
			"field", field, "value", value, "err", err)
	}
	for _, c := range dep.Spec.Template.Spec.Containers {
		if c.Name != QueueProxyContainer {
			continue
		}
		for _, e := range c.Env {
			switch e.Name {
			case envTimeoutSeconds:
				if s, err := strconv.ParseInt(e.Value, 10, 32); err != nil || s < 0 {
					bad(e.Name, e.Value, err)
				} else {
					info.Timeout = time.Duration(s) * time.Second
				}
			case envContainerConcurrency:
				if n, err := strconv.ParseInt(e.Value, 10, 32); err != nil || n < 0 {
					bad(e.Name, e.Value, err)
				} else {
					info.ContainerConcurrency = int(n)
				}
			}
		}
	}
	if v, ok := dep.Spec.Template.Annotations[manifest.MaxStateBytesAnnotation]; ok {
		q, err := resource.ParseQuantity(v)
		n, whole := q.AsInt64()
		if err != nil || !whole || n < 1 || n > manifest.MaxStateBytesLimit {
			bad(manifest.MaxStateBytesAnnotation, v, err)
		} else {
			info.MaxStateBytes = int(n)
		}
	}
	return info
}
