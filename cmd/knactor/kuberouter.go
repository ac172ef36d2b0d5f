package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/utils/clock"
	networkingclient "knative.dev/networking/pkg/client/clientset/versioned"

	"github.com/knactor/knactor/activator"
	"github.com/knactor/knactor/activator/statreporter"
	"github.com/knactor/knactor/config"
	"github.com/knactor/knactor/crds/actorsystem"
	"github.com/knactor/knactor/manifest"
	"github.com/knactor/knactor/pods/kube"
	"github.com/knactor/knactor/router"
	"github.com/knactor/knactor/router/ingress"
	"github.com/knactor/knactor/router/routing"
	"github.com/knactor/knactor/router/stats"
)

// kubeRouterFlags are the router's Kubernetes-mode flags.
type kubeRouterFlags struct {
	enabled        bool
	kube           kubeFlags
	autoscalerURL  string
	name           string
	peers          string
	ingressAddress string
}

func (k *kubeRouterFlags) register(fs *pflag.FlagSet) {
	fs.BoolVar(&k.enabled, "kube", false, "Kubernetes mode: learn pods from the cluster, scale through the autoscaler, configure state from the ActorSystem")
	k.kube.register(fs)
	fs.StringVar(&k.autoscalerURL, "autoscaler-url", "ws://knactor-autoscaler.knactor-system.svc.cluster.local:8080/stats",
		"the autoscaler's stats WebSocket (--kube)")
	fs.StringVar(&k.peers, "peers-selector", "app.kubernetes.io/name=knactor-router",
		"label selector of the router pods in --system-namespace: each actor's calls run on one of them, its owner (--kube)")
	fs.StringVar(&k.ingressAddress, "ingress-address", "knactor-router.knactor-system.svc.cluster.local",
		"the routers' cluster-local address, reported on the Knative Ingresses they serve (--kube, with Knative)")
	hostname, _ := os.Hostname()
	fs.StringVar(&k.name, "router-name", cmp.Or(os.Getenv("POD_NAME"), hostname),
		"this router's name in the stats stream (default $POD_NAME, else the host name)")
}

func runKubeRouter(cmd *cobra.Command, cfg router.Config, state *stateFlags, kf *kubeRouterFlags) error {
	ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	tp, stopTracing, err := setupTracing(ctx, serviceRouter)
	if err != nil {
		return err
	}
	defer stopTracing()
	c, err := kf.kube.clients()
	if err != nil {
		return err
	}
	sys, err := kf.kube.loadConfig(ctx, c)
	if err != nil {
		return err
	}
	// The ConfigMap sets the defaults; flags given on the command line win.
	fromFlags := cfg
	sys.ApplyRouter(&cfg)
	fs := cmd.Flags()
	for flag, apply := range map[string]func(){
		"call-timeout":        func() { cfg.CallTimeout = fromFlags.CallTimeout },
		"max-queue-per-actor": func() { cfg.MaxQueuePerActor = fromFlags.MaxQueuePerActor },
		"max-payload-bytes":   func() { cfg.MaxPayloadBytes = fromFlags.MaxPayloadBytes },
		"max-state-bytes":     func() { cfg.MaxStateBytes = fromFlags.MaxStateBytes },
		"store-timeout":       func() { cfg.StoreTimeout = fromFlags.StoreTimeout },
		"idempotency-keys":    func() { cfg.IdempotencyKeys = fromFlags.IdempotencyKeys },
		"idempotency-ttl":     func() { cfg.IdempotencyTTL = fromFlags.IdempotencyTTL },
		"idempotency-bytes":   func() { cfg.IdempotencyBytes = fromFlags.IdempotencyBytes },
		"timer-scan-interval": func() { cfg.ScanInterval = fromFlags.ScanInterval },
		"timer-concurrency":   func() { cfg.TimerConcurrency = fromFlags.TimerConcurrency },
	} {
		if fs.Changed(flag) {
			apply()
		}
	}

	as, settings, err := actorsystem.Resolve(ctx, c.kube, c.dynamic, kf.kube.namespace, kf.kube.actorSystem)
	if err != nil {
		return err
	}
	state.s3 = settings.S3
	state.writeMode = settings.WriteMode.String()
	state.cacheMB = settings.CacheBytes >> 20
	state.idleAfter, state.flushEvery = settings.PassivateAfter, settings.FlushInterval
	state.encryptionKeys = settings.EncryptionKeys
	// Several routers serve one actor system, each with its own cache: a read is confirmed with
	// the store (a conditional GET) so it never returns a value older than an acknowledged write,
	// and write-behind is refused (the ActorSystem's writeMode by its validation, a function's
	// annotation by running write-through), since an actor that moves between routers would
	// lose acknowledged writes.
	state.revalidate, state.severalRouters = true, true
	cfg.AuthTokens = append(cfg.AuthTokens, settings.AuthTokens...)
	if t := os.Getenv(envAuthTokens); t != "" {
		cfg.AuthTokens = append(cfg.AuthTokens, splitList(t)...)
	}

	// The routers' shared secret: peers present it to each other and to the autoscaler.
	if cfg.PeerToken, err = config.InternalToken(ctx, c.kube, kf.kube.systemNamespace); err != nil {
		return err
	}

	st, err := state.openState(ctx)
	if err != nil {
		return err
	}
	closeState := func(err error) error { return errors.Join(err, st.Close(context.Background())) }
	w, err := kube.NewWatcher(c.kube, kube.Config{Namespace: kf.kube.namespace})
	if err != nil {
		return closeState(err)
	}
	// Start calls it for the functions it finds before it returns, so every function has its
	// write mode before the first call.
	w.OnFunctionsChanged(func() { applyFunctionSettings(st, w) })
	watchCtx, stopWatching := context.WithCancel(context.Background())
	defer stopWatching()
	if err := w.Start(watchCtx); err != nil {
		return closeState(err)
	}
	// Every router of the Deployment listens on the same port: peers are reached on this one's.
	_, portStr, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return fmt.Errorf("--listen %q: %w", cfg.Listen, err)
	}
	port, _ := strconv.Atoi(portStr)
	peers := kube.NewPeers(c.kube, kf.kube.systemNamespace, kf.peers, kf.name, port, slog.Default())
	if err := peers.Start(watchCtx); err != nil {
		return closeState(err)
	}
	// With Knative Serving installed, the router is also a Knative ingress class: it serves the
	// hosts of the Ingresses of its class, splits calls between revisions as their Routes say,
	// and marks them ready.
	var ing *ingress.Reconciler
	if _, err := c.kube.Discovery().ServerResourcesForGroupVersion("networking.internal.knative.dev/v1alpha1"); err == nil {
		ing = &ingress.Reconciler{Client: networkingclient.NewForConfigOrDie(c.rest), Namespace: kf.kube.namespace, Address: kf.ingressAddress}
		if err := ing.Start(watchCtx); err != nil {
			return closeState(err)
		}
		slog.Info("knative: serving Ingresses", "class", ingress.Class, "namespace", kf.kube.namespace)
	}
	// The router records its statistics into rec, which the stats reporter (the router's
	// activator's poker, so made first) sends to the autoscaler.
	rec := stats.NewRecorder(clock.RealClock{})
	rep, err := statreporter.New(statreporter.Config{URL: kf.autoscalerURL, Router: kf.name,
		Header: http.Header{"Authorization": {"Bearer " + cfg.PeerToken}}}, rec)
	if err != nil {
		return closeState(err)
	}
	act := activator.New(activator.Config{}, w, rep)

	var traffic routing.Traffic
	if ing != nil {
		traffic = ing
	}
	r, err := router.New(cfg, router.Options{Backends: w, State: st, Activator: act, Peers: peers, Traffic: traffic, TracerProvider: tp, Stats: rec,
		ScaleStatus: newAutoscalerView(kf.autoscalerURL, cfg.PeerToken), // the status page's autoscaler view
		Collectors:  append([]prometheus.Collector{act.Collector()}, st.collectors...)})
	if err != nil {
		return closeState(err)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return closeState(err)
	}
	slog.Info("router listening", "addr", ln.Addr().String(), "namespace", kf.kube.namespace,
		"actor-system", as.Name, "state", st.describe, "autoscaler", kf.autoscalerURL, "router", kf.name)

	repCtx, stopReporting := context.WithCancel(context.Background())
	reported := make(chan error, 1)
	go func() { reported <- rep.Run(repCtx) }()
	ingDone := make(chan error, 1)
	if ing != nil {
		go func() { ingDone <- ing.Run(repCtx) }()
	} else {
		ingDone <- nil
	}
	served := make(chan error, 1)
	go func() { served <- r.Serve(ln) }()
	select {
	case err = <-served:
	case <-ctx.Done():
		slog.Info("shutting down")
		sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
		defer cancel()
		err = errors.Join(r.Shutdown(sctx), <-served)
	}
	stopReporting()
	err = errors.Join(err, <-ingDone)
	if rerr := <-reported; rerr != nil && !errors.Is(rerr, context.Canceled) {
		err = errors.Join(err, fmt.Errorf("stats reporter: %w", rerr))
	}
	return closeState(err)
}

// annotatedFunctions lists functions and their pod templates' annotations (kube.Watcher).
type annotatedFunctions interface {
	Functions() []string
	Annotations(name string) map[string]string
}

// applyFunctionSettings gives each function the state settings of its annotations: the write
// mode of knactor.dev/write-mode, or the ActorSystem's writeMode without one, and the idle time
// of knactor.dev/passivate-after, or the ActorSystem's cache.passivateAfter. A function keeps
// the mode it was first served with (its cached state lives in that mode's cache): a change is
// logged, and applies once the routers restart. An idle time applies at once. With several
// routers (Kubernetes mode) a function that asks for write-behind runs write-through: a warning
// says so once per function.
func applyFunctionSettings(st *state, fns annotatedFunctions) {
	var asking []string // functions whose annotation asks for write-behind
	defer func() {
		for _, fn := range st.noteWriteBehindRefused(asking) {
			slog.Warn("knactor.dev/write-mode: write-behind refused, the function runs write-through: several routers share its actors, "+
				"and an actor that moves to another router would lose the writes the old one acknowledged but had not flushed", "function", fn)
		}
	}()
	for _, fn := range fns.Functions() {
		anns := fns.Annotations(fn)
		idle := time.Duration(-1)
		if v, ok := anns[manifest.PassivateAfterAnnotation]; ok {
			d, err := manifest.ParsePassivateAfter(v)
			if err != nil {
				slog.Warn("knactor.dev/passivate-after not applied: the ActorSystem's applies", "function", fn, "err", err)
			} else {
				idle = d
			}
		}
		st.SetPassivateAfter(fn, idle)
		mode := anns[manifest.WriteModeAnnotation]
		if mode == manifest.WriteBehind {
			asking = append(asking, fn)
		}
		if _, err := st.pinMode(fn, mode); err != nil {
			slog.Warn("write mode not applied", "function", fn, "err", err)
		}
	}
}

// splitList splits a comma-separated list, dropping blanks.
func splitList(v string) []string {
	var out []string
	for _, t := range strings.Split(v, ",") {
		if t = strings.TrimSpace(t); t != "" {
			out = append(out, t)
		}
	}
	return out
}
