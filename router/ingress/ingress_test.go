package ingress

import (
	"context"
	"reflect"
	"testing"

	"github.com/knactor/knactor/router/routing"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"knative.dev/networking/pkg/apis/networking"
	networkingv1alpha1 "knative.dev/networking/pkg/apis/networking/v1alpha1"
	networkingfake "knative.dev/networking/pkg/client/clientset/versioned/fake"
)

// split is one Knative Ingress split: a revision and its share.
type split struct {
	revision string
	percent  int
}

// rule is an Ingress rule of Knative's shape: its hosts, all routed to splits.
func rule(vis networkingv1alpha1.IngressVisibility, hosts []string, splits ...split) networkingv1alpha1.IngressRule {
	path := networkingv1alpha1.HTTPIngressPath{AppendHeaders: map[string]string{"Knative-Serving-Namespace": "default"}}
	for _, s := range splits {
		path.Splits = append(path.Splits, networkingv1alpha1.IngressBackendSplit{
			IngressBackend: networkingv1alpha1.IngressBackend{ServiceName: s.revision, ServiceNamespace: "default"},
			Percent:        s.percent,
			AppendHeaders:  map[string]string{"Knative-Serving-Revision": s.revision},
		})
	}
	return networkingv1alpha1.IngressRule{Hosts: hosts, Visibility: vis, HTTP: &networkingv1alpha1.HTTPIngressRuleValue{
		Paths: []networkingv1alpha1.HTTPIngressPath{path}}}
}

func ing(name, class string, rules ...networkingv1alpha1.IngressRule) *networkingv1alpha1.Ingress {
	return &networkingv1alpha1.Ingress{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Generation: 2,
			Labels:      map[string]string{routeLabel: name},
			Annotations: map[string]string{networking.IngressClassAnnotationKey: class}},
		Spec: networkingv1alpha1.IngressSpec{Rules: rules},
	}
}

func TestRoutesAndStatus(t *testing.T) {
	local, public := networkingv1alpha1.IngressVisibilityClusterLocal, networkingv1alpha1.IngressVisibilityExternalIP
	// What Knative's Route controller writes for traffic 80/20 between two revisions, the older
	// one tagged "v1".
	counter := ing("counter", Class,
		rule(local, []string{"counter.default", "counter.default.svc", "counter.default.svc.cluster.local"},
			split{"counter-00002", 80}, split{"counter-00001", 20}),
		rule(public, []string{"counter.default.example.com"}, split{"counter-00002", 80}, split{"counter-00001", 20}),
		rule(local, []string{"v1-counter.default.svc.cluster.local"}, split{"counter-00001", 100}),
		rule(public, []string{"v1-counter.default.example.com"}, split{"counter-00001", 100}),
		// Header-matched paths (tag-header-based-routing) are not served.
		networkingv1alpha1.IngressRule{Hosts: []string{"hdr.default.example.com"}, HTTP: &networkingv1alpha1.HTTPIngressRuleValue{
			Paths: []networkingv1alpha1.HTTPIngressPath{{Headers: map[string]networkingv1alpha1.HeaderMatch{"Knative-Serving-Tag": {Exact: "v1"}},
				Splits: []networkingv1alpha1.IngressBackendSplit{{IngressBackend: networkingv1alpha1.IngressBackend{ServiceName: "counter-00001"}, Percent: 100}}}}}},
	)
	client := networkingfake.NewSimpleClientset(counter,
		ing("other", "istio.ingress.networking.knative.dev", rule(public, []string{"other.default.example.com"}, split{"other-00001", 100})))
	r := &Reconciler{Client: client, Namespace: "default", Address: "knactor-router.knactor-system.svc.cluster.local"}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	main := []routing.Split{
		{Target: "counter-00002", Percent: 80, Headers: map[string]string{"Knative-Serving-Namespace": "default", "Knative-Serving-Revision": "counter-00002"}},
		{Target: "counter-00001", Percent: 20, Headers: map[string]string{"Knative-Serving-Namespace": "default", "Knative-Serving-Revision": "counter-00001"}},
	}
	tagged := main[1:]
	tagged = []routing.Split{{Target: tagged[0].Target, Percent: 100, Headers: tagged[0].Headers}}
	tests := []struct {
		host   string
		splits []routing.Split // nil: not served
	}{
		{"counter.default.example.com", main},
		{"Counter.Default.Example.Com:8080", main},
		{"counter.default.svc.cluster.local", main},
		{"counter.default", main},
		{"v1-counter.default.example.com", tagged},
		{"v1-counter.default.svc.cluster.local", tagged},
		{"hdr.default.example.com", nil},   // header-matched only
		{"other.default.example.com", nil}, // another class's host
		{"unknown.example.com", nil},
	}
	for _, tc := range tests {
		t.Run(tc.host, func(t *testing.T) {
			rt, ok := r.Host(tc.host)
			if ok != (tc.splits != nil) {
				t.Fatalf("Host(%q) served = %v, want %v", tc.host, ok, tc.splits != nil)
			}
			if ok && (rt.Function != "counter" || !reflect.DeepEqual(rt.Splits, tc.splits)) {
				t.Errorf("Host(%q) = %+v, want function counter, splits %+v", tc.host, rt, tc.splits)
			}
		})
	}
	if rt, ok := r.Function("counter"); !ok || !reflect.DeepEqual(rt.Splits, main) {
		t.Errorf("Function(counter) = %+v, %v; want the main URL's splits %+v", rt, ok, main)
	}
	if _, ok := r.Function("other"); ok {
		t.Error("Function(other) is served: it is another class's")
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
