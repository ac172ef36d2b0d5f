package sdk

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"
)

// Server timeouts used by Serve. The write timeout outlasts Knative's default maximum request
// timeout (600 s), so that the router's deadline, not the server, bounds a turn.
const (
	readHeaderTimeout = 10 * time.Second
	readTimeout       = time.Minute
	writeTimeout      = 11 * time.Minute
	idleTimeout       = 2 * time.Minute
)

// Main serves h on $HOST:$PORT (all interfaces when HOST is unset, as a Kubernetes pod needs;
// knactor's local runtime sets HOST=127.0.0.1; port 8080 when PORT is unset) until the process receives SIGTERM or
// SIGINT, then shuts down gracefully as Serve does. It exits the process with status 1 if serving
// fails. A second signal kills the process at once.
//
// h is usually an *Actor; a function that also serves stateless paths can pass an http.ServeMux
// that routes /v1/invoke to its Actor.
func Main(h http.Handler) {
	if err := listenAndServe(h); err != nil {
		slog.Error("sdk: serve", "err", err)
		os.Exit(1)
	}
}

// listenAndServe implements Main.
func listenAndServe(h http.Handler) error {
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	context.AfterFunc(ctx, stop) // restore the default action so that a second signal kills
	ln, err := net.Listen("tcp", net.JoinHostPort(os.Getenv("HOST"), port))
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	slog.Info("sdk: serving", "addr", ln.Addr().String())
	return Serve(ctx, ln, h)
}

// Serve serves h on ln until ctx is done, then shuts down gracefully and returns nil: from then on
// GET /healthz answers 503, new connections are refused, and Serve waits for in-flight requests to
// finish. While serving, GET /healthz answers 200 without reaching h. Serve closes ln.
func Serve(ctx context.Context, ln net.Listener, h http.Handler) error {
	hs := &healthServer{next: h}
	srv := &http.Server{
		Handler:           hs,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	hs.draining.Store(true)
	if err := srv.Shutdown(context.WithoutCancel(ctx)); err != nil {
		return fmt.Errorf("shut down: %w", err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

// healthServer answers GET /healthz by its own state and passes every other request to next.
type healthServer struct {
	next     http.Handler
	draining atomic.Bool
}

// ServeHTTP implements http.Handler.
func (s *healthServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/healthz" || r.Method != http.MethodGet && r.Method != http.MethodHead {
		s.next.ServeHTTP(w, r)
		return
	}
	if s.draining.Load() {
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	w.WriteHeader(http.StatusOK)
}
