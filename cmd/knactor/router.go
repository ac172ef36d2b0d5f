package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/knactor/knactor/router"
	"github.com/knactor/knactor/router/placement"
	"github.com/knactor/knactor/router/routing"
	"github.com/knactor/knactor/statecache"
)

// shutdownGrace bounds a graceful stop: in-flight turns (up to their own deadline), WebSocket
// close frames and the final write-behind flush. Kubernetes' default grace period is 30 s.
const shutdownGrace = 25 * time.Second

func newRouterCommand() *cobra.Command {
	var (
		cfg       router.Config
		state     stateFlags
		functions []string
		kf        kubeRouterFlags
	)
	cmd := &cobra.Command{
		Use:   "router",
		Short: "Serve the public API in front of function pods (a fixed list, or a cluster's with --kube)",
		Long: `Serve knactor's public API (actor calls, state, WebSocket, pass-through, /metrics)
in front of function pods given by --function NAME=HOST:PORT[,HOST:PORT...].

With --kube, the pods are a Kubernetes namespace's: the router watches the Pods and Deployments
labelled as Knative labels a revision's, holds calls for a function at zero while the
autoscaler (--autoscaler-url) scales it up, streams its statistics to the autoscaler, and takes
its state store and auth tokens from the ActorSystem --actor-system (and the Secrets it names).

Bearer tokens come from $` + envAuthTokens + ` (comma-separated); without them the router only
listens on loopback. S3 credentials come from $` + envS3AccessKey + ` and $` + envS3SecretKey + `.`,
		Example: `  knactor router --function counter=127.0.0.1:9001,127.0.0.1:9002
  KNACTOR_S3_ACCESS_KEY=... KNACTOR_S3_SECRET_KEY=... knactor router --s3-endpoint 127.0.0.1:9000 --function counter=127.0.0.1:9001`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if kf.enabled {
				if len(functions) > 0 {
					return errors.New("--function and --kube exclude each other: with --kube the cluster says where pods are")
				}
				return runKubeRouter(cmd, cfg, &state, &kf)
			}
			backends := routing.NewStatic()
			for _, spec := range functions {
				fn, pods, err := parseFunctionFlag(spec)
				if err != nil {
					return err
				}
				backends.Set(routing.Function{Name: fn}, pods...)
			}
			if t := os.Getenv(envAuthTokens); t != "" {
				cfg.AuthTokens = splitList(t)
			}
			return runRouter(cmd.Context(), cfg, &state, backends)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&cfg.Listen, "listen", router.DefaultListen, "address to serve the API on")
	fs.StringArrayVar(&functions, "function", nil, "a function and its ready pods: NAME=HOST:PORT[,HOST:PORT...] (repeatable)")
	fs.DurationVar(&cfg.CallTimeout, "call-timeout", router.DefaultCallTimeout, "deadline of one call: turn wait, state, function and save")
	registerRequestFlags(fs, &cfg)
	registerClientLimitFlags(fs, &cfg)
	registerTurnFlags(fs, &cfg)
	state.register(fs)
	kf.register(fs)
	return cmd
}

// parseFunctionFlag parses NAME=HOST:PORT[,HOST:PORT...]. Each pod is named by its address,
// which is stable for a fixed list and so keeps actor ownership stable across restarts.
func parseFunctionFlag(spec string) (string, []placement.Pod, error) {
	name, addrs, ok := strings.Cut(spec, "=")
	if !ok || addrs == "" {
		return "", nil, fmt.Errorf("--function %q: want NAME=HOST:PORT[,HOST:PORT...]", spec)
	}
	if err := statecache.ValidateFunction(name); err != nil {
		return "", nil, fmt.Errorf("--function %q: %w", spec, err)
	}
	var pods []placement.Pod
	for _, a := range strings.Split(addrs, ",") {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return "", nil, fmt.Errorf("--function %q: pod address %q: %w", spec, a, err)
		}
		pods = append(pods, placement.Pod{Name: a, Addr: a})
	}
	return name, pods, nil
}

func runRouter(ctx context.Context, cfg router.Config, state *stateFlags, backends routing.Backends) error {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	tp, stopTracing, err := setupTracing(ctx, serviceRouter)
	if err != nil {
		return err
	}
	defer stopTracing()
	st, err := state.openState(ctx)
	if err != nil {
		return err
	}
	r, err := router.New(cfg, router.Options{Backends: backends, State: st, Collectors: st.collectors, TracerProvider: tp})
	if err != nil {
		return errors.Join(err, st.Close(context.Background()))
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return errors.Join(err, st.Close(context.Background()))
	}
	slog.Info("router listening", "addr", ln.Addr().String(), "state", st.describe)
	served := make(chan error, 1)
	go func() { served <- r.Serve(ln) }()
	select {
	case err = <-served:
		err = errors.Join(err, st.Close(context.Background()))
	case <-ctx.Done():
		slog.Info("shutting down")
		sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
		defer cancel()
		err = errors.Join(r.Shutdown(sctx), <-served, st.Close(sctx))
	}
	return err
}
