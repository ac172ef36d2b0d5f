package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
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
	"github.com/knactor/knactor/statecache"
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
(examples/*/service.yaml under the working directory). While it runs, "kn-actor deploy -f FILE"
deploys more (POST /v1/functions) and "kn-actor list" lists them (GET /v1/functions).`,
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
	registerRequestFlags(fs, &f.router)
	registerClientLimitFlags(fs, &f.router)
	registerTurnFlags(fs, &f.router)
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

// localFunctions is knactor up's deployed functions: the router's Backends (the runtime's
// ready pods and each function's settings), its FunctionLister (GET /v1/functions) and its
// Deployer (POST /v1/functions, `kn-actor deploy -f`).
//
// Deploying checks every function of a manifest before it deploys any, so a manifest deploys
// whole or not at all. A function deployed again is updated in place: its autoscaling,
// timeout, containerConcurrency and state cap at once, its command, working directory and env
// for the pods started from then on (running pods keep theirs until they stop); a different
// knactor.dev/write-mode is refused, because the function's cached state would have to move
// between caches (restart knactor up to change it).
//
// deployMu serializes deployments and guards deployed. routes is the router's view, read on
// every call without a lock: a deployment stores a new map, never changes a stored one.
type localFunctions struct {
	*local.Runtime
	scaler *autoscaler.Autoscaler
	state  *state
	grace  time.Duration
	opts   manifest.Options

	deployMu sync.Mutex
	deployed map[string]functionSettings
	routes   atomic.Pointer[map[string]router.Function]
}

var (
	_ router.Backends       = (*localFunctions)(nil)
	_ router.FunctionLister = (*localFunctions)(nil)
	_ router.Deployer       = (*localFunctions)(nil)
)

// functionSettings is everything deploying one function sets, so a redeployment can tell an
// update from a no-op.
type functionSettings struct {
	pod   local.Function
	route router.Function
	spec  autoscaler.Spec
	mode  statecache.WriteMode
}

func newLocalFunctions(rt *local.Runtime, scaler *autoscaler.Autoscaler, st *state, grace time.Duration, opts manifest.Options) *localFunctions {
	f := &localFunctions{Runtime: rt, scaler: scaler, state: st, grace: grace, opts: opts, deployed: map[string]functionSettings{}}
	f.routes.Store(&map[string]router.Function{})
	return f
}

// Function implements router.Backends.
func (f *localFunctions) Function(name string) (router.Function, bool) {
	fn, ok := (*f.routes.Load())[name]
	return fn, ok
}

// names returns the deployed functions' names, sorted.
func (f *localFunctions) names() []string {
	return slices.Sorted(maps.Keys(*f.routes.Load()))
}

// FunctionStatuses implements router.FunctionLister: the runtime's pods now and the
// autoscaler's latest decision.
func (f *localFunctions) FunctionStatuses() []router.FunctionStatus {
	names := f.names()
	out := make([]router.FunctionStatus, 0, len(names))
	for _, name := range names {
		fs := router.FunctionStatus{Function: name}
		for _, p := range f.Pods(name) {
			switch p.State {
			case "ready":
				fs.ReadyPods++
			case "starting":
				fs.StartingPods++
			}
		}
		if s, ok := f.scaler.Status(name); ok {
			fs.DesiredPods, fs.Panicking, fs.ActiveActors, fs.ScaleError = int(s.DesiredPods), s.Panicking, s.ActiveActors, s.ScaleError
		}
		out = append(out, fs)
	}
	return out
}

// Deploy implements router.Deployer: it parses the manifest as `knactor up -f` does and
// deploys its functions.
func (f *localFunctions) Deploy(_ context.Context, data []byte, dir string) ([]router.Deployment, error) {
	fns, err := f.opts.Parse(data, dir)
	if err != nil {
		return nil, marked(router.ErrBadManifest, err)
	}
	for _, fn := range fns {
		for _, w := range fn.Warnings {
			slog.Warn("manifest", "function", fn.Name, "warning", w)
		}
	}
	return f.deploy(fns)
}

// settings checks fn and resolves what deploying it sets.
func (f *localFunctions) settings(fn manifest.Function) (functionSettings, error) {
	if len(fn.Command) == 0 {
		return functionSettings{}, fmt.Errorf("function %q has no knactor.dev/command annotation: set the command that runs it locally", fn.Name)
	}
	spec, err := autoscalingSpec(fn, f.grace)
	if err != nil {
		return functionSettings{}, err
	}
	mode := f.state.def
	if fn.WriteMode != "" {
		if mode, err = statecache.ParseWriteMode(fn.WriteMode); err != nil {
			return functionSettings{}, fmt.Errorf("function %q: %w", fn.Name, err)
		}
	}
	command, err := prebuild(context.Background(), fn.Name, fn.WorkingDir, fn.Command)
	if err != nil {
		return functionSettings{}, err
	}
	return functionSettings{
		pod: local.Function{Name: fn.Name, Command: command, Dir: fn.WorkingDir, Env: plainEnv(fn)},
		route: router.Function{
			Name: fn.Name, Timeout: fn.Timeout, MaxStateBytes: fn.MaxStateBytes, ContainerConcurrency: int(fn.ContainerConcurrency),
		},
		spec: spec,
		mode: mode,
	}, nil
}

// deploy deploys fns (see localFunctions). Errors in the functions wrap router.ErrBadManifest,
// a refused change router.ErrDeployConflict.
func (f *localFunctions) deploy(fns []manifest.Function) ([]router.Deployment, error) {
	f.deployMu.Lock()
	defer f.deployMu.Unlock()
	all := make([]functionSettings, len(fns))
	for i, fn := range fns {
		s, err := f.settings(fn)
		if err != nil {
			return nil, marked(router.ErrBadManifest, err)
		}
		if old, ok := f.deployed[fn.Name]; ok && old.mode != s.mode {
			return nil, marked(router.ErrDeployConflict, fmt.Errorf(
				"function %q runs with knactor.dev/write-mode %s: changing it to %s needs a restart of knactor up (its cached state lives in the %s cache)",
				fn.Name, old.mode, s.mode, old.mode))
		}
		all[i] = s
	}
	routes := maps.Clone(*f.routes.Load())
	defer func() { f.routes.Store(&routes) }() // the functions deployed, also after an error
	out := make([]router.Deployment, 0, len(fns))
	for i, fn := range fns {
		s := all[i]
		result := router.DeployCreated
		if old, ok := f.deployed[fn.Name]; ok {
			result = router.DeployUpdated
			if reflect.DeepEqual(old, s) {
				result = router.DeployUnchanged
			}
		}
		if result != router.DeployUnchanged {
			// State first and the router last: a call is routed only once everything knows it.
			_, err := f.state.pinMode(fn.Name, s.mode.String())
			if err == nil {
				err = f.Runtime.Deploy(s.pod)
			}
			if err == nil {
				err = f.scaler.Add(fn.Name, s.spec)
			}
			if err != nil {
				return out, fmt.Errorf("deploying function %q: %w", fn.Name, err)
			}
		}
		f.deployed[fn.Name] = s
		routes[fn.Name] = s.route
		out = append(out, router.Deployment{Function: fn.Name, Result: result, Warnings: fn.Warnings})
	}
	return out, nil
}

// markedError is err, also matching mark with errors.Is, with err's message alone.
type markedError struct{ mark, err error }

func marked(mark, err error) error { return &markedError{mark: mark, err: err} }

func (e *markedError) Error() string   { return e.err.Error() }
func (e *markedError) Unwrap() []error { return []error{e.mark, e.err} }

// routerStats lets the autoscaler read the router's statistics; the router is built after the
// autoscaler (whose Poke the activator needs).
type routerStats struct{ r *router.Router }

func (s *routerStats) Snapshot(function string) stats.Snapshot {
	return s.r.Stats().EndWindow(function)
}

func runUp(parent context.Context, f *upFlags, out io.Writer) error {
	ctx, stop := signal.NotifyContext(parent, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	fns, err := loadManifests(f.files, f.manifests)
	if err != nil {
		return err
	}
	tp, stopTracing, err := setupTracing(ctx, serviceUp)
	if err != nil {
		return err
	}
	defer stopTracing()
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
	lease, err := acquireLease(ctx, st, f.router.Listen)
	if err != nil {
		return errors.Join(err, st.Close(ctx))
	}
	src := &routerStats{}
	scaler := autoscaler.New(autoscaler.Config{}, src, rt, clock.RealClock{}, slog.Default())
	functions := newLocalFunctions(rt, scaler, st, f.grace, f.manifests)
	if _, err := functions.deploy(fns); err != nil {
		return errors.Join(err, st.Close(ctx))
	}
	act := activator.New(activator.Config{}, functions, scaler)
	r, err := router.New(f.router, router.Options{Backends: functions, State: st, Activator: act,
		Functions: functions, Deployer: functions, TracerProvider: tp,
		Collectors: append([]prometheus.Collector{newScalingCollector(scaler, nil), newPodsCollector(rt, functions.names), act.Collector()}, st.collectors...)})
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
	leaseCtx, stopLease := context.WithCancel(context.Background())
	lost := make(chan error, 1)
	go func() { lost <- lease.Run(leaseCtx) }()
	printBanner(out, "http://"+ln.Addr().String(), st.describe, logDir, fns)

	shutdown := func() error {
		sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace+f.stopGrace)
		defer cancel()
		return errors.Join(r.Shutdown(sctx), <-served)
	}
	select {
	case err = <-served:
	case <-ctx.Done():
		fmt.Fprintln(out, "\nknactor: shutting down")
		err = shutdown()
	case err = <-lost:
		lost <- nil // Run has returned; the wait below must not block
		fmt.Fprintf(out, "\nknactor: %v\n", err)
		err = errors.Join(err, shutdown())
	}
	stopScaling()
	sctx, cancel := context.WithTimeout(context.Background(), f.stopGrace+5*time.Second)
	defer cancel()
	err = errors.Join(err, <-scaled, rt.Close(sctx), st.Close(sctx))
	stopLease()
	<-lost
	return errors.Join(err, lease.Release(sctx))
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
	fmt.Fprintf(out, "  status:    %s/ui/\n", url) // the status page
	fmt.Fprintf(out, "  metrics:   %s/metrics\n\nTry:\n", url)
	example := "counter"
	if len(names) > 0 && !slices.Contains(names, example) {
		example = names[0]
	}
	fmt.Fprintf(out, "  curl -X POST %s/v1/actors/%s/alice/add -d '{\"by\":1}'\n", url, example)
	fmt.Fprintf(out, "  curl %s/v1/actors/%s/alice\n\nCtrl-C stops everything.\n", url, example)
}
