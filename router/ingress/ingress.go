// Package ingress makes knactor's router a Knative networking ingress class (Class, named in
// Knative's config-network as ingress-class).
//
// Knative's Route controller writes an Ingress (networking.internal.knative.dev) of the class
// config-network names for every Route: the hosts of the Service's URL and where their traffic
// goes. A Reconciler follows the Ingresses of Class in its namespace, serves their hosts (Hosts
// maps a request's Host to the function, the Route's Service) and marks each Ingress ready with
// the router's Service as its address, which is what Knative waits for before the Route, and so
// the Knative Service, is Ready with its URL.
//
// This first version serves the Route's whole traffic through the function's newest ready
// revision: traffic splits, tags and per-path timeouts are not applied yet.
package ingress

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

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

	mu    sync.RWMutex
	hosts map[string]string // host (lower case, no port) → function
}

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

// rebuild maps every host of every Ingress of Class to its Route's function.
func (r *Reconciler) rebuild() {
	hosts := map[string]string{}
	for _, ing := range r.mine() {
		fn := ing.Labels[routeLabel]
		if fn == "" {
			continue
		}
		for _, rule := range ing.Spec.Rules {
			for _, h := range rule.Hosts {
				hosts[strings.ToLower(h)] = fn
			}
		}
	}
	r.mu.Lock()
	r.hosts = hosts
	r.mu.Unlock()
}

// Function returns the function whose Ingress serves host (a Host header, port allowed).
func (r *Reconciler) Function(host string) (string, bool) {
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.Contains(host[i:], "]") {
		host = host[:i]
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	fn, ok := r.hosts[strings.ToLower(host)]
	return fn, ok
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
