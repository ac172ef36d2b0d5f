package main

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
	servingclient "knative.dev/serving/pkg/client/clientset/versioned"

	"github.com/knactor/knactor/autoscaler"
	"github.com/knactor/knactor/autoscaler/paclass"
	"github.com/knactor/knactor/autoscaler/statserver"
	"github.com/knactor/knactor/config"
	"github.com/knactor/knactor/crds/actorsystem"
	"github.com/knactor/knactor/pods/kube"
)

// autoscalerFlags are the flags of `knactor autoscaler`.
type autoscalerFlags struct {
	kube   kubeFlags
	listen string
}

func newAutoscalerCommand() *cobra.Command {
	var f autoscalerFlags
	cmd := &cobra.Command{
		Use:   "autoscaler",
		Short: "Scale a namespace's functions on a Kubernetes cluster (Kubernetes mode)",
		Long: `Run knactor's autoscaler against a Kubernetes cluster: it learns the namespace's functions
from the Deployments labelled as Knative labels a revision's (serving.knative.dev/service),
receives every router's statistics on the WebSocket at /stats, decides with the same KPA
decider as local mode, and scales each function's Deployment through the scale subresource.
It also keeps the status conditions of the namespace's ActorSystems true.

Serves /stats (routers' WebSocket), /healthz, /metrics and /v1/functions on --listen.
Settings come from the ConfigMap ` + config.ConfigMapName + ` in --system-namespace.`,
		Example: `  knactor autoscaler --kubeconfig ~/.kube/config --namespace default --listen 127.0.0.1:8081`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runAutoscaler(cmd.Context(), &f)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&f.listen, "listen", "127.0.0.1:8081", "address to serve /stats, /healthz, /metrics and /v1/functions on")
	f.kube.register(fs)
	return cmd
}

func runAutoscaler(parent context.Context, f *autoscalerFlags) error {
	ctx, stop := signal.NotifyContext(parent, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	_, stopTracing, err := setupTracing(ctx, serviceAutoscaler) // sets the global provider and propagator
	if err != nil {
		return err
	}
	defer stopTracing()
	c, err := f.kube.clients()
	if err != nil {
		return err
	}
	sys, err := f.kube.loadConfig(ctx, c)
	if err != nil {
		return err
	}
	w, err := kube.NewWatcher(c.kube, kube.Config{Namespace: f.kube.namespace})
	if err != nil {
		return err
	}
	watchCtx, stopWatching := context.WithCancel(context.Background())
	defer stopWatching()
	if err := w.Start(watchCtx); err != nil {
		return err
	}
	// Only the routers, which share this secret, may send statistics.
	token, err := config.InternalToken(ctx, c.kube, f.kube.systemNamespace)
	if err != nil {
		return err
	}
	var a *autoscaler.Autoscaler
	stats := statserver.New(statserver.Config{Poke: func(fn string) { a.Poke(fn) }, Token: token, Logger: slog.Default()})
	scaler := kube.NewScaler(c.kube, w)
	a = autoscaler.New(sys.AutoscalerConfig(), stats, scaler, clock.RealClock{}, slog.Default())
	fns := &kubeFunctions{kube: c, namespace: f.kube.namespace, watcher: w, scaler: a, sys: sys, specs: map[string]autoscaler.Spec{}}
	// With Knative Serving installed, knactor is also a PodAutoscaler class: it keeps the status
	// of PodAutoscalers of its class, and reads revisions' settings from them.
	var pas *paclass.Reconciler
	if knativeInstalled(c) {
		pas = &paclass.Reconciler{Client: servingclient.NewForConfigOrDie(c.rest), Namespace: f.kube.namespace,
			Decisions: kubeDecisions{a, w, fns}, OnChange: fns.sync,
			Retire: func(ctx context.Context, rev, dep string) error {
				fns.retire(rev)
				return scaler.ScaleDeployment(ctx, dep, 0)
			}}
		if err := pas.Start(watchCtx); err != nil {
			return err
		}
		fns.pas = pas
		slog.Info("knative: reconciling PodAutoscalers", "class", paclass.Class, "namespace", f.kube.namespace)
	}
	w.OnFunctionsChanged(fns.sync)
	fns.sync()

	reg := prometheus.NewRegistry()
	reg.MustRegister(newScalingCollector(a, w.FunctionOf), stats.Collector(),
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle("/stats", stats)
	mux.Handle("/metrics", requireToken(token, promhttp.HandlerFor(reg, promhttp.HandlerOpts{})))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.Handle("/v1/functions", requireToken(token, http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) {
		out := functionsStatus(a, stats, w)
		rw.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(rw).Encode(out)
	})))
	ln, err := net.Listen("tcp", f.listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	slog.Info("autoscaler listening", "addr", ln.Addr().String(), "namespace", f.kube.namespace)

	var wg sync.WaitGroup
	runCtx, stopRunning := context.WithCancel(context.Background())
	errs := make(chan error, 3)
	wg.Add(2)
	if pas != nil {
		wg.Add(1)
		go func() { defer wg.Done(); errs <- pas.Run(runCtx) }()
	}
	go func() { defer wg.Done(); errs <- a.Run(runCtx) }()
	go func() {
		defer wg.Done()
		r := &actorsystem.Reconciler{Kube: c.kube, Dynamic: c.dynamic, Namespace: f.kube.namespace}
		errs <- r.Run(runCtx)
	}()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	select {
	case err = <-served:
	case <-ctx.Done():
		slog.Info("shutting down")
		sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
		defer cancel()
		err = errors.Join(srv.Shutdown(sctx), stats.Close())
		if serr := <-served; !errors.Is(serr, http.ErrServerClosed) {
			err = errors.Join(err, serr)
		}
	}
	stopRunning()
	wg.Wait()
	close(errs)
	for e := range errs {
		err = errors.Join(err, e)
	}
	return err
}

// kubeFunctions keeps what the autoscaler scales equal to the watcher's revisions (with
// Knative, those whose PodAutoscaler is knactor's and reachable): it is called from the
// watcher's goroutine (OnFunctionsChanged), from the PodAutoscaler class's (OnChange) and once
// at start; mu serializes them.
type kubeFunctions struct {
	kube      *kubeClients
	namespace string
	watcher   *kube.Watcher
	scaler    *autoscaler.Autoscaler
	sys       config.Config
	pas       *paclass.Reconciler // nil without Knative

	mu    sync.Mutex
	specs map[string]autoscaler.Spec // guarded by mu: what was last given to scaler.Add
	bad   map[string]error           // guarded by mu: revisions not scaled, and why
}

// retire stops autoscaling a revision the PodAutoscaler class retires, at once: a decider left
// running until the next sync would scale the revision up again while it has no ready pod.
func (k *kubeFunctions) retire(revision string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.stopLocked(revision, "retired: no route sends it traffic")
}

// stopLocked stops autoscaling a revision, if it was, saying why. Hold mu.
func (k *kubeFunctions) stopLocked(revision, why string) {
	if _, ok := k.specs[revision]; ok {
		k.scaler.Remove(revision)
		delete(k.specs, revision)
		slog.Info("revision no longer autoscaled", "revision", revision, "why", why)
	}
}

// settingsError returns why a revision is not autoscaled, nil when it is (or is unknown).
func (k *kubeFunctions) settingsError(revision string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.bad[revision]
}

func (k *kubeFunctions) sync() {
	k.mu.Lock()
	defer k.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	live := map[string]bool{}
	prevBad := k.bad
	k.bad = map[string]error{}
	// Each revision is scaled on its own, as Knative's autoscalers scale each PodAutoscaler:
	// a traffic split sends each a share of the calls, and the router reports them apart.
	for _, name := range k.watcher.Targets() {
		if k.pas != nil {
			// With Knative, a revision is knactor's to scale when its PodAutoscaler is of
			// knactor's class (another class's autoscaler scales the rest) and a route sends it
			// traffic (else the PodAutoscaler class retires it to zero).
			if _, _, ours := k.pas.Annotations(name); !ours || k.pas.Unreachable(name) {
				continue
			}
		}
		live[name] = true
		dep, ok := k.watcher.Deployment(name)
		if !ok {
			continue
		}
		fnName, _ := k.watcher.FunctionOf(name)
		d, err := k.kube.kube.AppsV1().Deployments(k.namespace).Get(ctx, dep, metav1.GetOptions{})
		if err != nil {
			slog.Warn("revision: cannot read its Deployment", "revision", name, "deployment", dep, "err", err)
			if prev, ok := prevBad[name]; ok {
				k.bad[name] = prev // unknown now: keep what was said, the status does not flap
			}
			continue
		}
		source := fmt.Sprintf("deployment %s/%s", k.namespace, dep)
		tmpl := &d.Spec.Template
		if k.pas != nil {
			// Knative keeps a revision's autoscaling annotations on its PodAutoscaler, not on
			// the Deployment.
			if anns, cc, ok := k.pas.Annotations(name); ok {
				tmpl = tmpl.DeepCopy()
				tmpl.Annotations = anns
				source = fmt.Sprintf("podautoscaler %s/%s", k.namespace, name)
				if cc > 0 {
					setContainerConcurrency(tmpl, cc)
				}
			}
		}
		fn, err := functionFromTemplate(fnName, source, tmpl)
		var spec autoscaler.Spec
		if err == nil {
			spec, err = autoscaler.SpecFromManifest(fn, k.sys.Autoscaler.ScaleToZeroGracePeriod)
		}
		if err == nil {
			spec = k.sys.ApplyAutoscaler(spec, tmpl.Annotations)
			err = spec.Validate()
		}
		if err != nil {
			if prev := prevBad[name]; prev == nil || prev.Error() != err.Error() { // said once, not at every sync
				slog.Error("revision: bad autoscaling settings; not scaled", "function", fnName, "revision", name, "err", err)
			}
			k.bad[name] = err
			k.stopLocked(name, "bad autoscaling settings") // if it was good before, as its status says
			continue
		}
		if old, ok := k.specs[name]; ok && old == spec {
			continue
		}
		if err := k.scaler.Add(name, spec); err != nil {
			slog.Error("revision: cannot autoscale", "function", fnName, "revision", name, "err", err)
			k.bad[name] = err
			continue
		}
		k.specs[name] = spec
		slog.Info("revision autoscaled", "function", fnName, "revision", name, "deployment", dep)
	}
	for name := range k.specs {
		if !live[name] {
			k.stopLocked(name, "gone, another class's, or unreachable")
		}
	}
}

// functionStatus is one scaled revision of a function in /v1/functions.
type functionStatus struct {
	Function     string  `json:"function"`
	Revision     string  `json:"revision,omitempty"`
	DesiredPods  int32   `json:"desiredPods"`
	ReadyPods    int     `json:"readyPods"`
	Panicking    bool    `json:"panicking"`
	StableValue  float64 `json:"stableValue"`
	ActiveActors int     `json:"activeActors"`
	ScaleError   string  `json:"scaleError,omitempty"`
}

// functionsReport is the body of /v1/functions.
type functionsReport struct {
	Functions []functionStatus          `json:"functions"`
	Routers   []statserver.RouterStatus `json:"routers"`
}

func functionsStatus(a *autoscaler.Autoscaler, stats *statserver.Server, w *kube.Watcher) functionsReport {
	out := functionsReport{Functions: []functionStatus{}, Routers: stats.Routers()}
	for _, rev := range a.Functions() {
		s, ok := a.Status(rev)
		if !ok {
			continue
		}
		fn, _ := w.FunctionOf(rev)
		out.Functions = append(out.Functions, functionStatus{Function: fn, Revision: rev, DesiredPods: s.DesiredPods, ReadyPods: s.ReadyPods,
			Panicking: s.Panicking, StableValue: s.StableValue, ActiveActors: s.ActiveActors, ScaleError: s.ScaleError})
	}
	return out
}

// kubeDecisions is what the PodAutoscaler class reads: the autoscaler's decisions, the
// watcher's pods and the revisions whose settings knactor refused.
type kubeDecisions struct {
	a   *autoscaler.Autoscaler
	w   *kube.Watcher
	fns *kubeFunctions
}

func (d kubeDecisions) SettingsError(rev string) error { return d.fns.settingsError(rev) }

func (d kubeDecisions) Status(fn string) (autoscaler.Status, bool) { return d.a.Status(fn) }
func (d kubeDecisions) ReadyPods(fn string) int                    { return d.w.ReadyPods(fn) }
func (d kubeDecisions) Deployment(fn string) (string, bool)        { return d.w.Deployment(fn) }

// knativeInstalled reports whether the cluster serves Knative's PodAutoscaler API.
func knativeInstalled(c *kubeClients) bool {
	_, err := c.kube.Discovery().ServerResourcesForGroupVersion("autoscaling.internal.knative.dev/v1alpha1")
	return err == nil
}

// setContainerConcurrency sets the queue-proxy's CONTAINER_CONCURRENCY in tmpl, where
// functionFromTemplate reads a revision's containerConcurrency.
func setContainerConcurrency(tmpl *corev1.PodTemplateSpec, cc int64) {
	for i := range tmpl.Spec.Containers {
		if tmpl.Spec.Containers[i].Name == queueProxy {
			tmpl.Spec.Containers[i].Env = append(tmpl.Spec.Containers[i].Env, corev1.EnvVar{Name: "CONTAINER_CONCURRENCY", Value: strconv.FormatInt(cc, 10)})
			return
		}
	}
	tmpl.Spec.Containers = append(tmpl.Spec.Containers, corev1.Container{Name: queueProxy,
		Env: []corev1.EnvVar{{Name: "CONTAINER_CONCURRENCY", Value: strconv.FormatInt(cc, 10)}}})
}

// requireToken serves h only to requests with the components' shared secret as their bearer
// token (the knactor-internal Secret, which the routers hold): what the autoscaler knows of
// every function and pod is not for whoever can reach its port. An empty token serves all.
func requireToken(token string, h http.Handler) http.Handler {
	if token == "" {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(token)) != 1 {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error":{"code":"unauthorized","message":"missing or invalid bearer token: send the knactor-internal Secret's token"}}` + "\n"))
			return
		}
		h.ServeHTTP(w, r)
	})
}
