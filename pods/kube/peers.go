package kube

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"sync"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/knactor/knactor/router/placement"
	"github.com/knactor/knactor/router/routing"
)

// Peers follows the ready pods of knactor's router Deployment and says which router owns an
// actor: rendezvous hashing of the actor's key over them, the same choice on every router that
// sees the same pods. It implements routing.Peers. A router pod is a peer while the API reports it
// Ready, with an IP and not being deleted (podAddr); its address is its IP and the port every
// router of the Deployment listens on (this router's own), or its first container port.
//
// One informer (namespace and label selector of the routers) feeds it; its handlers rebuild the
// set under mu, and Owner reads it under mu's read lock.
type Peers struct {
	self    string
	port    int // the routers' port; 0: each pod's first container port
	factory informers.SharedInformerFactory
	inf     cache.SharedIndexInformer
	log     *slog.Logger

	mu  sync.RWMutex
	set *placement.Set // guarded by mu: the ready routers, self included when ready

	changed chan struct{} // a value after the set changed (routing.PeerWatcher); capacity 1
}

var _ routing.PeerWatcher = (*Peers)(nil)

// NewPeers returns Peers over the router pods in namespace that match selector; self is this
// router's pod name and port the port the routers listen on (0: each pod's first container port).
func NewPeers(client kubernetes.Interface, namespace, selector, self string, port int, log *slog.Logger) *Peers {
	if log == nil {
		log = slog.Default()
	}
	f := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = selector }))
	p := &Peers{self: self, port: port, factory: f, inf: f.Core().V1().Pods().Informer(), log: log, set: placement.NewSet(nil),
		changed: make(chan struct{}, 1)}
	rebuild := func(any) { p.rebuild() }
	_, _ = p.inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: rebuild, UpdateFunc: func(_, o any) { rebuild(o) }, DeleteFunc: rebuild,
	})
	return p
}

// Start runs the informer until ctx ends and waits for its first list (up to
// DefaultSyncTimeout).
func (p *Peers) Start(ctx context.Context) error {
	p.factory.Start(ctx.Done())
	sctx, cancel := context.WithTimeout(ctx, DefaultSyncTimeout)
	defer cancel()
	if !cache.WaitForCacheSync(sctx.Done(), p.inf.HasSynced) {
		return fmt.Errorf("kube: router pods not listed within %v (knactor needs \"list\" and \"watch\" on pods; apply config/ RBAC)", DefaultSyncTimeout)
	}
	p.rebuild()
	return nil
}

func (p *Peers) rebuild() {
	var pods []placement.Pod
	for _, obj := range p.inf.GetStore().List() {
		pod, ok := obj.(*corev1.Pod)
		if !ok {
			continue
		}
		if addr, ok := podAddr(pod); ok {
			if p.port > 0 {
				addr = net.JoinHostPort(pod.Status.PodIP, strconv.Itoa(p.port))
			}
			pods = append(pods, placement.Pod{Name: pod.Name, Addr: addr})
		}
	}
	set := placement.NewSet(pods)
	p.mu.Lock()
	changed := !slices.Equal(set.Pods(), p.set.Pods())
	p.set = set
	p.mu.Unlock()
	if changed {
		p.log.Info("kube: router peers changed", "routers", set.Len())
		select {
		case p.changed <- struct{}{}:
		default: // a change is already waiting to be read
		}
	}
}

// Changed implements routing.PeerWatcher.
func (p *Peers) Changed() <-chan struct{} { return p.changed }

// Others implements routing.PeerLister: the addresses of the other ready routers.
func (p *Peers) Others() []string {
	p.mu.RLock()
	set := p.set
	p.mu.RUnlock()
	var out []string
	for _, pod := range set.Pods() {
		if pod.Name != p.self {
			out = append(out, pod.Addr)
		}
	}
	return out
}

var _ routing.PeerLister = (*Peers)(nil)

// Owner implements routing.Peers.
func (p *Peers) Owner(key string) (string, bool) {
	p.mu.RLock()
	set := p.set
	p.mu.RUnlock()
	owner, ok := set.Owner(key)
	if !ok || owner.Name == p.self {
		return "", false
	}
	return owner.Addr, true
}
