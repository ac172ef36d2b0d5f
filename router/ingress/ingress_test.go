package ingress

import (
	"context"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"knative.dev/networking/pkg/apis/networking"
	networkingv1alpha1 "knative.dev/networking/pkg/apis/networking/v1alpha1"
	networkingfake "knative.dev/networking/pkg/client/clientset/versioned/fake"
)

func ing(name, class string, hosts ...string) *networkingv1alpha1.Ingress {
	return &networkingv1alpha1.Ingress{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Generation: 2,
			Labels:      map[string]string{routeLabel: name},
			Annotations: map[string]string{networking.IngressClassAnnotationKey: class}},
		Spec: networkingv1alpha1.IngressSpec{Rules: []networkingv1alpha1.IngressRule{{Hosts: hosts}}},
	}
}

func TestHostsAndStatus(t *testing.T) {
	client := networkingfake.NewSimpleClientset(
		ing("counter", Class, "counter.default.example.com", "counter.default.svc.cluster.local"),
		ing("other", "istio.ingress.networking.knative.dev", "other.default.example.com"))
	r := &Reconciler{Client: client, Namespace: "default", Address: "knactor-router.knactor-system.svc.cluster.local"}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		host, fn string
		ok       bool
	}{
		{"counter.default.example.com", "counter", true},
		{"Counter.Default.Example.Com:8080", "counter", true},
		{"counter.default.svc.cluster.local", "counter", true},
		{"other.default.example.com", "", false}, // another class's host
		{"unknown.example.com", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.host, func(t *testing.T) {
			if fn, ok := r.Function(tc.host); fn != tc.fn || ok != tc.ok {
				t.Errorf("Function(%q) = %q, %v; want %q, %v", tc.host, fn, ok, tc.fn, tc.ok)
			}
		})
	}
	for _, i := range r.mine() {
		if err := r.markReady(ctx, i); err != nil {
			t.Fatal(err)
		}
	}
	got, _ := client.NetworkingV1alpha1().Ingresses("default").Get(ctx, "counter", metav1.GetOptions{})
	if !got.IsReady() || got.Status.PublicLoadBalancer == nil || got.Status.PublicLoadBalancer.Ingress[0].DomainInternal != r.Address {
		t.Errorf("our Ingress status = %+v, want Ready with the router's address", got.Status)
	}
	other, _ := client.NetworkingV1alpha1().Ingresses("default").Get(ctx, "other", metav1.GetOptions{})
	if len(other.Status.Conditions) != 0 {
		t.Errorf("another class's Ingress was touched: %+v", other.Status)
	}
}
