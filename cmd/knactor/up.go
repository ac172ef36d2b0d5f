package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"k8s.io/utils/clock"

	"github.com/knactor/knactor/activator"
	"github.com/knactor/knactor/autoscaler"
	"github.com/knactor/knactor/manifest"
	"github.com/knactor/knactor/pods/local"
	"github.com/knactor/knactor/router"
	"github.com/knactor/knactor/router/stats"
)

// upFlags are the flags of `knactor up`.
type upFlags struct {
	router    router.Config
	state     stateFlags
	files     []string
	logDir    string
	grace     time.Duration
	stopGrace time.Duration
	manifests manifest.Options
}

func newUpCommand() *cobra.Command {
	var f upFlags
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Run knactor on this machine: router, activator, autoscaler and local pods in one process",
		Long: `Run the whole platform in one process on embedded defaults: the router on --listen, the
activator and the autoscaler, and every function of the manifests as local processes that
scale from zero. State lives in --state-dir unless --s3-endpoint is set.

Manifests are Knative Services (serving.knative.dev/v1); the command that runs a function
locally is its knactor.dev/command annotation. Without -f, the examples are deployed
(examples/*/service.yaml under the working directory).`,
		Example: `  knactor up
  knactor up -f examples/counter/service.yaml --listen 127.0.0.1:9090
  KNACTOR_S3_ACCESS_KEY=... KNACTOR_S3_SECRET_KEY=... knactor up --s3-endpoint 127.0.0.1:9000 --s3-create-bucket`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if t := os.Getenv(envAuthTokens); t != "" {
				f.router.AuthTokens = splitList(t)
			}
			return runUp(cmd.Context(), &f, cmd.OutOrStdout())
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&f.router.Listen, "listen", router.DefaultListen, "address to serve the API on")
	fs.StringArrayVarP(&f.files, "filename", "f", nil, "manifest file or directory to deploy (repeatable; default examples/*/service.yaml)")
	fs.StringVar(&f.logDir, "log-dir", "", "directory of the pods' log files (default: beside --state-dir)")
	fs.DurationVar(&f.grace, "scale-to-zero-grace", autoscaler.DefaultScaleToZeroGracePeriod, "how long an idle function keeps its last pod after its stable window (Knative's scale-to-zero-grace-period)")
	fs.BoolVar(&f.manifests.AllowZeroInitialScale, "allow-zero-initial-scale", false, "accept autoscaling.knative.dev/initial-scale: \"0\" (Knative's config-autoscaler setting)")
	fs.DurationVar(&f.stopGrace, "pod-stop-grace", local.DefaultStopGrace, "SIGTERM grace period of a pod before SIGKILL")
	fs.DurationVar(&f.router.CallTimeout, "call-timeout", 0, "deadline of one call when the manifest sets no timeoutSeconds (default: Knative's 300 s from the manifest)")
	f.state.register(fs)
	return cmd
}

// loadManifests reads the functions to deploy.
func loadManifests(files []string, opts manifest.Options) ([]manifest.Function, error) {
	if len(files) == 0 {
		matches, _ := filepath.Glob(filepath.Join("examples", "*", "service.yaml"))
		if len(matches) == 0 {
			return nil, errors.New("no manifests: pass -f FILE or -f DIR (no examples/*/service.yaml here)")
		}
		files = matches
	}
	var fns []manifest.Function
	seen := map[string]string{}
	for _, path := range files {
		info, err := os.Stat(path)
		if err != nil {
			return nil, err
		}
		var got []manifest.Function
		if info.IsDir() {
			got, err = opts.ParseDir(path)
		} else {
			got, err = opts.ParseFile(path)
		}
		if err != nil {
			return nil, err
		}
		for _, fn := range got {
			if prev, dup := seen[fn.Name]; dup {
				return nil, fmt.Errorf("function %q is defined in %s and in %s", fn.Name, prev, path)
			}
			seen[fn.Name] = path
			for _, w := range fn.Warnings {
				slog.Warn("manifest", "warning", w)
			}
		}
		fns = append(fns, got...)
	}
	return fns, nil
}

// autoscalingSpec turns a manifest's Knative settings into the autoscaler's.
func autoscalingSpec(fn manifest.Function, grace time.Duration) (autoscaler.Spec, error) {
	a := fn.Autoscaling
	s := autoscaler.DefaultSpec()
	s.MinScale, s.MaxScale, s.InitialScale, s.ActivationScale = a.MinScale, a.MaxScale, a.InitialScale, a.ActivationScale
	s.Metric, s.Target, s.TargetUtilization = a.Metric, a.Target, a.TargetUtilization
	s.ContainerConcurrency = int(fn.ContainerConcurrency)
	s.StableWindow, s.ScaleDownDelay = a.Window, a.ScaleDownDelay
	s.PanicWindowPercentage, s.PanicThresholdPercentage = a.PanicWindowPercentage, a.PanicThresholdPercentage
	s.TargetActorsPerPod = a.TargetActorsPerPod
	s.ScaleToZeroGracePeriod = grace
	s.AllowZeroInitialScale = a.InitialScale == 0 // the manifest parser already applied the setting
	if err := s.Validate(); err != nil {
		return s, fmt.Errorf("function %q: %w", fn.Name, err)
	}
	return s, nil
}

// localBackends is the router's view of the local runtime: the manifests' functions and the
// runtime's ready pods.
type localBackends struct {
	*local.Runtime
	functions map[string]router.Function
}

func (b *localBackends) Function(name string) (router.Function, bool) {
	fn, ok := b.functions[name]
	return fn, ok
}

// routerStats lets the autoscaler read the router's statistics; the router is built after the
// autoscaler (whose Poke the activator needs).
type routerStats struct{ r *router.Router }

func (s *routerStats) Snapshot(function string) stats.Snapshot { return s.r.Stats().Snapshot(function) }

func runUp(parent context.Context, f *upFlags, out io.Writer) error {
	ctx, stop := signal.NotifyContext(parent, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	fns, err := loadManifests(f.files, f.manifests)
	if err != nil {
		return err
	}
	logDir := f.logDir
	if logDir == "" {
		logDir = filepath.Join(filepath.Dir(f.state.dir), "logs")
	}
	rt, err := local.New(local.Config{LogDir: logDir, StopGrace: f.stopGrace})
	if err != nil {
		return err
	}
	st, err := f.state.openState(ctx)
	if err != nil {
		return err
	}
	backends := &localBackends{Runtime: rt, functions: map[string]router.Function{}}
	src := &routerStats{}
	scaler := autoscaler.New(autoscaler.Config{}, src, rt, clock.RealClock{}, slog.Default())
	for _, fn := range fns {
		if len(fn.Command) == 0 {
			return errors.Join(fmt.Errorf("function %q has no knactor.dev/command annotation: set the command that runs it locally", fn.Name), st.Close(ctx))
		}
		spec, err := autoscalingSpec(fn, f.grace)
		if err == nil {
			err = st.setMode(fn.Name, fn.WriteMode)
		}
		if err == nil {
			err = rt.Deploy(local.Function{Name: fn.Name, Command: fn.Command, Dir: fn.WorkingDir, Env: plainEnv(fn)})
		}
		if err == nil {
			err = scaler.Add(fn.Name, spec)
		}
		if err != nil {
			return errors.Join(err, st.Close(ctx))
		}
		backends.functions[fn.Name] = router.Function{
			Name: fn.Name, Timeout: fn.Timeout, MaxStateBytes: fn.MaxStateBytes, ContainerConcurrency: int(fn.ContainerConcurrency),
		}
	}
	act := activator.New(activator.Config{}, backends, scaler)
	r, err := router.New(f.router, router.Options{Backends: backends, State: st, Activator: act,
		Collectors: []prometheus.Collector{newScalingCollector(scaler), newPodsCollector(rt, fns), act.Collector()}})
	if err != nil {
		return errors.Join(err, st.Close(ctx))
	}
	src.r = r
	rt.SetDrainer(r)
	rt.SetWarmActors(st)
	ln, err := net.Listen("tcp", f.router.Listen)
	if err != nil {
		return errors.Join(err, st.Close(ctx))
	}

	scaleCtx, stopScaling := context.WithCancel(context.Background())
	scaled := make(chan error, 1)
	go func() { scaled <- scaler.Run(scaleCtx) }()
	served := make(chan error, 1)
	go func() { served <- r.Serve(ln) }()
	printBanner(out, "http://"+ln.Addr().String(), st.describe, logDir, fns)

	select {
	case err = <-served:
	case <-ctx.Done():
		fmt.Fprintln(out, "\nknactor: shutting down")
		sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace+f.stopGrace)
		defer cancel()
		err = errors.Join(r.Shutdown(sctx), <-served)
	}
	stopScaling()
	sctx, cancel := context.WithTimeout(context.Background(), f.stopGrace+5*time.Second)
	defer cancel()
	return errors.Join(err, <-scaled, rt.Close(sctx), st.Close(sctx))
}

// plainEnv returns the manifest's env entries that carry a value; valueFrom references
// (Secrets, ConfigMaps) exist only on a cluster.
func plainEnv(fn manifest.Function) []string {
	var env []string
	for _, e := range fn.Env {
		if e.ValueFrom != nil {
			slog.Warn("env entry with valueFrom is ignored in local mode", "function", fn.Name, "name", e.Name)
			continue
		}
		env = append(env, e.Name+"="+e.Value)
	}
	return env
}

func printBanner(out io.Writer, url, state, logs string, fns []manifest.Function) {
	names := make([]string, 0, len(fns))
	for _, fn := range fns {
		names = append(names, fn.Name)
	}
	sort.Strings(names)
	fmt.Fprintf(out, "knactor is up on %s\n", url)
	fmt.Fprintf(out, "  state:     %s\n  pod logs:  %s\n  functions: %s (pods start on the first call)\n", state, logs, strings.Join(names, ", "))
	fmt.Fprintf(out, "  metrics:   %s/metrics\n\nTry:\n", url)
	example := "counter"
	if len(names) > 0 && !slices.Contains(names, example) {
		example = names[0]
	}
	fmt.Fprintf(out, "  curl -X POST %s/v1/actors/%s/alice/add -d '{\"by\":1}'\n", url, example)
	fmt.Fprintf(out, "  curl %s/v1/actors/%s/alice\n\nCtrl-C stops everything.\n", url, example)
}
