package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"

	"github.com/knactor/knactor/autoscaler"
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
	var a *autoscaler.Autoscaler
	stats := statserver.New(statserver.Config{Poke: func(fn string) { a.Poke(fn) }})
	a = autoscaler.New(sys.AutoscalerConfig(), stats, kube.NewScaler(c.kube, w), clock.RealClock{}, slog.Default())
	fns := &kubeFunctions{kube: c, namespace: f.kube.namespace, watcher: w, scaler: a, sys: sys, specs: map[string]autoscaler.Spec{}}
	w.OnFunctionsChanged(fns.sync)
	fns.sync()

	reg := prometheus.NewRegistry()
	reg.MustRegister(newScalingCollector(a), stats.Collector(),
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle("/stats", stats)
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("/v1/functions", func(rw http.ResponseWriter, _ *http.Request) {
		out := functionsStatus(a, stats)
		rw.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(rw).Encode(out)
	})
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

// kubeFunctions keeps the autoscaler's functions equal to the watcher's: it is called from the
// watcher's goroutine (OnFunctionsChanged) and once at start; mu serializes the two.
type kubeFunctions struct {
	kube      *kubeClients
	namespace string
	watcher   *kube.Watcher
	scaler    *autoscaler.Autoscaler
	sys       config.Config

	mu    sync.Mutex
	specs map[string]autoscaler.Spec // guarded by mu: what was last given to scaler.Add
}

func (k *kubeFunctions) sync() {
	k.mu.Lock()
	defer k.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	live := map[string]bool{}
	for _, name := range k.watcher.Functions() {
		live[name] = true
		dep, ok := k.watcher.Deployment(name)
		if !ok {
			continue
		}
		d, err := k.kube.kube.AppsV1().Deployments(k.namespace).Get(ctx, dep, metav1.GetOptions{})
		if err != nil {
			slog.Warn("function: cannot read its Deployment", "function", name, "deployment", dep, "err", err)
			continue
		}
		source := fmt.Sprintf("deployment %s/%s", k.namespace, dep)
		fn, err := functionFromTemplate(name, source, &d.Spec.Template)
		var spec autoscaler.Spec
		if err == nil {
			spec, err = autoscalingSpec(fn, k.sys.Autoscaler.ScaleToZeroGracePeriod)
		}
		if err == nil {
			spec = k.sys.ApplyAutoscaler(spec, d.Spec.Template.Annotations)
			err = spec.Validate()
		}
		if err != nil {
			slog.Error("function: bad autoscaling settings; not scaled", "function", name, "err", err)
			continue
		}
		if old, ok := k.specs[name]; ok && old == spec {
			continue
		}
		if err := k.scaler.Add(name, spec); err != nil {
			slog.Error("function: cannot autoscale", "function", name, "err", err)
			continue
		}
		k.specs[name] = spec
		slog.Info("function autoscaled", "function", name, "deployment", dep)
	}
	for name := range k.specs {
		if !live[name] {
			k.scaler.Remove(name)
			delete(k.specs, name)
			slog.Info("function gone", "function", name)
		}
	}
}

// functionStatus is one function in /v1/functions.
type functionStatus struct {
	Function     string  `json:"function"`
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

func functionsStatus(a *autoscaler.Autoscaler, stats *statserver.Server) functionsReport {
	out := functionsReport{Functions: []functionStatus{}, Routers: stats.Routers()}
	for _, fn := range a.Functions() {
		s, ok := a.Status(fn)
		if !ok {
			continue
		}
		out.Functions = append(out.Functions, functionStatus{Function: fn, DesiredPods: s.DesiredPods, ReadyPods: s.ReadyPods,
			Panicking: s.Panicking, StableValue: s.StableValue, ActiveActors: s.ActiveActors, ScaleError: s.ScaleError})
	}
	return out
}
