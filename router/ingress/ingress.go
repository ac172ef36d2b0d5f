// Package ingress makes knactor's router a Knative networking ingress class (Class, named in
// Knative's config-network as ingress-class).
//
// Knative's Route controller writes an Ingress (networking.internal.knative.dev) of the class
// config-network names for every Route: the hosts of the Service's URLs (cluster-local and
// public, and one more per traffic tag) and, for each, how its traffic splits between revisions.
// A Reconciler follows the Ingresses of Class in its namespace and hands the router those routes
// (routing.Traffic): a stateless request takes a split drawn by its percentages, an actor's call
// the split its fixed hash falls in, so an actor stays on one revision while the split stays.
// Each split's revision brings its own timeout and containerConcurrency (pods/kube.Watcher
// reads them from the revision's Deployment) and the headers Knative asks for
// (appendHeaders). The Reconciler marks each Ingress ready with the router's Service as its
// address, which is what Knative waits for before the Route, and so the Knative Service, is
// Ready with its URL.
//
// Not served: paths matched on request headers (Knative's tag-header-based-routing, off by
// default), path prefixes other than "/", rewriteHost (domain mappings) and TLS.
package ingress

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"time"

	"github.com/knactor/knactor/router/routing"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"
	"knative.dev/networking/pkg/apis/networking"
	networkingv1alpha1 "knative.dev/networking/pkg/apis/networking/v1alpha1"
	networkingclient "knative.dev/networking/pkg/client/clientset/versioned"
	networkinginformers "knative.dev/networking/pkg/client/informers/externalversions"
)

// Class is knactor's ingress class.
const Class = "knactor.ingress.networking.knactor.dev"

// routeLabel names an Ingress's Route: a Knative Service's Route has the Service's name, which
// is the knactor function.
const routeLabel = "serving.knative.dev/route"

// DefaultResync is how often every Ingress's status is rewritten if it drifted.
const DefaultResync = 10 * time.Second

// Reconciler serves the hosts of the Ingresses of Class and keeps them Ready. Run's goroutine
// writes statuses and rebuilds hosts; mu guards hosts, read by Function on every request.
type Reconciler struct {
	Client    networkingclient.Interface
	Namespace string
	// Address is the router's cluster-local name, reported as the Ingress's load balancer
	// (e.g. knactor-router.knactor-system.svc.cluster.local).
	Address string
	Clock   clock.WithTicker
	Logger  *slog.Logger

	once    sync.Once
	factory networkinginformers.SharedInformerFactory
	inf     cache.SharedIndexInformer
	wake    chan struct{}

	mu     sync.RWMutex
	hosts  map[string]*routing.Route // host (lower case, no port) → its route
	routes map[string]*routing.Route // function → the route of its main (untagged) URL
}

var _ routing.Traffic = (*Reconciler)(nil)

func (r *Reconciler) init() {
	r.once.Do(func() {
		if r.Clock == nil {
			r.Clock = clock.RealClock{}
		}
		if r.Logger == nil {
			r.Logger = slog.Default()
		}
		r.wake = make(chan struct{}, 1)
		r.factory = networkinginformers.NewSharedInformerFactoryWithOptions(r.Client, 0, networkinginformers.WithNamespace(r.Namespace))
		r.inf = r.factory.Networking().V1alpha1().Ingresses().Informer()
		poke := func(any) {
			select {
			case r.wake <- struct{}{}:
			default:
			}
		}
		_, _ = r.inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: poke, UpdateFunc: func(_, o any) { poke(o) }, DeleteFunc: poke})
	})
}

// Start starts the informer and waits for its first list.
func (r *Reconciler) Start(ctx context.Context) error {
	r.init()
	r.factory.Start(ctx.Done())
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if !cache.WaitForCacheSync(sctx.Done(), r.inf.HasSynced) {
		return fmt.Errorf("ingress: Knative Ingresses in %q not listed within 30 s: may knactor list and watch ingresses.networking.internal.knative.dev (config/ RBAC)?", r.Namespace)
	}
	r.rebuild()
	return nil
}

// Run reconciles on every Ingress event and every DefaultResync until ctx ends.
func (r *Reconciler) Run(ctx context.Context) error {
	r.init()
	t := r.Clock.NewTicker(DefaultResync)
	defer t.Stop()
	for {
		r.rebuild()
		for _, ing := range r.mine() {
			if err := r.markReady(ctx, ing); err != nil && ctx.Err() == nil {
				r.Logger.Warn("ingress: status not updated", "ingress", ing.Namespace+"/"+ing.Name, "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C():
		case <-r.wake:
		}
	}
}

func (r *Reconciler) mine() []*networkingv1alpha1.Ingress {
	var out []*networkingv1alpha1.Ingress
	for _, obj := range r.inf.GetStore().List() {
		ing, ok := obj.(*networkingv1alpha1.Ingress)
		if ok && ing.Annotations[networking.IngressClassAnnotationKey] == Class && ing.DeletionTimestamp == nil {
			out = append(out, ing)
		}
	}
	return out
}

// rebuild maps every host of every Ingress of Class to its route, and every function to its
// main route.
func (r *Reconciler) rebuild() {
	hosts, routes := map[string]*routing.Route{}, map[string]*routing.Route{}
	for _, ing := range r.mine() {
		fn := ing.Labels[routeLabel]
		if fn == "" {
			continue
		}
		for _, rule := range ing.Spec.Rules {
			rt := routeOf(fn, rule)
			if rt == nil {
				continue
			}
			for _, h := range rule.Hosts {
				h = strings.ToLower(h)
				hosts[h] = rt
				// The main URL is {function}.{namespace}.…; a tag's is {tag}-{function}.….
				if strings.HasPrefix(h, fn+"."+ing.Namespace+".") && routes[fn] == nil {
					routes[fn] = rt
				}
			}
		}
	}
	r.mu.Lock()
	r.hosts, r.routes = hosts, routes
	r.mu.Unlock()
}

// routeOf reads the splits of a rule's first path that matches every request (no header match,
// the whole path space): nil when it has none.
func routeOf(function string, rule networkingv1alpha1.IngressRule) *routing.Route {
	if rule.HTTP == nil {
		return nil
	}
	for _, p := range rule.HTTP.Paths {
		if len(p.Headers) > 0 || (p.Path != "" && p.Path != "/") {
			continue
		}
		rt := &routing.Route{Function: function}
		for _, sp := range p.Splits {
			headers := maps.Clone(p.AppendHeaders)
			if len(sp.AppendHeaders) > 0 {
				if headers == nil {
					headers = map[string]string{}
				}
				maps.Copy(headers, sp.AppendHeaders)
			}
			rt.Splits = append(rt.Splits, routing.Split{Target: sp.ServiceName, Percent: sp.Percent, Headers: headers})
		}
		if len(rt.Splits) == 0 {
			return nil
		}
		return rt
	}
	return nil
}

// Host returns the route that serves host (a Host header, port allowed): routing.Traffic.
func (r *Reconciler) Host(host string) (*routing.Route, bool) {
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.Contains(host[i:], "]") {
		host = host[:i]
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	rt, ok := r.hosts[strings.ToLower(host)]
	return rt, ok
}

// Function returns the route of the function's main URL: routing.Traffic.
func (r *Reconciler) Function(function string) (*routing.Route, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	rt, ok := r.routes[function]
	return rt, ok
}

// markReady reports the Ingress served through the router's address.
func (r *Reconciler) markReady(ctx context.Context, ing *networkingv1alpha1.Ingress) error {
	want := ing.DeepCopy()
	want.Status.InitializeConditions()
	want.Status.ObservedGeneration = ing.Generation
	lb := []networkingv1alpha1.LoadBalancerIngressStatus{{DomainInternal: r.Address}}
	want.Status.MarkLoadBalancerReady(lb, lb)
	want.Status.MarkNetworkConfigured()
	if equality.Semantic.DeepEqual(ing.Status, want.Status) {
		return nil
	}
	_, err := r.Client.NetworkingV1alpha1().Ingresses(ing.Namespace).UpdateStatus(ctx, want, metav1.UpdateOptions{})
	if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
		return nil
	}
	return err
}
