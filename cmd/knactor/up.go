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
	"github.com/knactor/knactor/router/routing"
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

// windows is the autoscaler's view of the router's statistics (Options.Stats): each scrape ends
// the target's window.
type windows struct{ rec *stats.Recorder }

func (w windows) Snapshot(target string) stats.Snapshot { return w.rec.EndWindow(target) }

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
	st, err := f.state.openState(ctx)
	if err != nil {
		return err
	}
	// The router counts its calls in flight into inFlight and its statistics into rec, made
	// first: the runtime drains pods on inFlight, the autoscaler (whose Poke the activator
	// needs, which the router needs) reads rec.
	inFlight, rec := routing.NewInFlight(nil), stats.NewRecorder(clock.RealClock{})
	rt, err := local.New(local.Config{LogDir: logDir, StopGrace: f.stopGrace, Drainer: inFlight, WarmActors: st})
	if err != nil {
		return errors.Join(err, st.Close(ctx))
	}
	lease, err := acquireLease(ctx, st, f.router.Listen)
	if err != nil {
		return errors.Join(err, st.Close(ctx))
	}
	scaler := autoscaler.New(autoscaler.Config{}, windows{rec}, rt, clock.RealClock{}, slog.Default())
	functions := local.NewFunctions(rt, scaler, st, f.grace, f.manifests)
	if _, err := functions.DeployFunctions(fns); err != nil {
		return errors.Join(err, st.Close(ctx))
	}
	act := activator.New(activator.Config{InFlight: inFlight}, functions, scaler)
	r, err := router.New(f.router, router.Options{Backends: functions, State: st, Activator: act,
		Functions: functions, Deployer: functions, TracerProvider: tp, Stats: rec,
		Collectors: append([]prometheus.Collector{newScalingCollector(scaler, nil), newPodsCollector(rt, functions.Names), act.Collector()}, st.collectors...)})
	if err != nil {
		return errors.Join(err, st.Close(ctx))
	}
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
