// Command hello is knactor's smallest stateless function: an ordinary HTTP handler that the
// router reaches through its pass-through path (/v1/functions/hello/...).
//
// POST /hello (or GET) reads the request body and answers {"hello":"world"} as
// application/json; GET /healthz answers 200 while serving. It listens on $PORT (8080 when
// unset) on all interfaces, or on $HOST:$PORT when HOST is set (benchmarks bind 127.0.0.1),
// and shuts down gracefully on SIGTERM or SIGINT, letting in-flight requests finish.
//
// It uses the standard library only, so it doubles as the plain net/http baseline of the
// router benchmark (hack/bench-router.sh).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// maxBodyBytes bounds the request body hello reads (and throws away).
const maxBodyBytes = 1 << 20

// shutdownGrace bounds the wait for in-flight requests after SIGTERM; Kubernetes' default grace
// period is 30 s.
const shutdownGrace = 20 * time.Second

// helloBody is the answer to every /hello request.
var helloBody = []byte(`{"hello":"world"}`)

func main() {
	if err := run(); err != nil {
		slog.Error("hello", "err", err)
		os.Exit(1)
	}
}

// run listens on $HOST:$PORT and serves until SIGTERM or SIGINT.
func run() error {
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	ln, err := net.Listen("tcp", net.JoinHostPort(os.Getenv("HOST"), port))
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	slog.Info("hello: serving", "addr", ln.Addr().String())
	return serve(ctx, ln)
}

// serve serves hello on ln until ctx is done, then stops accepting connections, waits up to
// shutdownGrace for in-flight requests and returns nil. serve closes ln.
func serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           newHandler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Minute,
		WriteTimeout:      time.Minute,
		IdleTimeout:       2 * time.Minute,
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shut down: %w", err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

// newHandler returns hello's routes: /hello (POST or GET) and GET /healthz. Other methods on
// them answer 405, other paths 404.
func newHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /hello", hello)
	mux.HandleFunc("GET /hello", hello)
	mux.HandleFunc("GET /healthz", healthz)
	return mux
}

// hello reads the whole request body, then answers {"hello":"world"}.
func hello(w http.ResponseWriter, r *http.Request) {
	if _, err := io.Copy(io.Discard, http.MaxBytesReader(w, r.Body, maxBodyBytes)); err != nil {
		status := http.StatusBadRequest
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			status = http.StatusRequestEntityTooLarge
		}
		http.Error(w, "reading the request body: "+err.Error(), status)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(helloBody)
}

// healthz answers 200: hello is ready as soon as it listens.
func healthz(w http.ResponseWriter, _ *http.Request) {
	w.WriteHeader(http.StatusOK)
}
