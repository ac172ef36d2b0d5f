package router

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"k8s.io/utils/clock"

	"github.com/knactor/knactor/activator"
	"github.com/knactor/knactor/router/record"
	"github.com/knactor/knactor/router/routing"
	"github.com/knactor/knactor/router/stats"
	"github.com/knactor/knactor/statecache"
)

// StateCache is the state the router reads and writes: statecache.Cache satisfies it.
type StateCache interface {
	statecache.DueIndex
	statecache.ChannelIndex
	Get(ctx context.Context, key statecache.Key) (statecache.Entry, error)
	Put(ctx context.Context, key statecache.Key, value []byte, expect statecache.Version, commit statecache.Commit) (statecache.Version, error)
	Delete(ctx context.Context, key statecache.Key, expect statecache.Version, commit statecache.Commit) (statecache.Version, error)
}

// Options are a Router's collaborators. Backends and State are required.
type Options struct {
	Backends routing.Backends
	State    StateCache
	// Activator scales functions from zero (it holds a call while its function has no ready
	// pod); nil answers 503 for a function without ready pods. Every call reaches its pod
	// through an activator (activator.Activator.Try): without one, the router uses its own,
	// which holds no calls.
	Activator *activator.Activator
	// Clock times timers, delayed effects and statistics. Default the real clock.
	Clock clock.WithDelayedExecution
	// Logger receives operational events. Default slog.Default().
	Logger *slog.Logger
	// Registerer receives the router's Prometheus metrics besides its own /metrics registry
	// (nil: only its own).
	Registerer prometheus.Registerer
	// Collectors are served on the router's /metrics beside its own (the autoscaler's and the
	// runtime's in an all-in-one process).
	Collectors []prometheus.Collector
	// Peers names each actor's owner router when several routers serve one actor system; nil
	// runs every call here (one router).
	Peers routing.Peers
	// Traffic divides functions' calls between their targets and maps the hosts of Knative
	// Services' URLs (the Ingresses of knactor's class) to their functions; nil sends every
	// call to the target Backends.Function names and serves no such host.
	Traffic routing.Traffic
	// Functions lists the deployed functions for GET /v1/functions; nil answers 404.
	Functions FunctionLister
	// Deployer deploys manifests for POST /v1/functions; nil answers 404.
	Deployer Deployer
	// TracerProvider traces every call with OpenTelemetry (docs/observability.md): pass
	// otel.GetTracerProvider() to use the global one. nil: no tracing, at no cost; a caller's
	// W3C trace headers still reach the function (as envelope metadata), as they came.
	TracerProvider trace.TracerProvider
	// Propagator reads and writes trace context on HTTP headers and in the envelope's metadata.
	// nil: W3C Trace Context and Baggage.
	Propagator propagation.TextMapPropagator
	// ScaleStatus is what the autoscaler knows of every function, for the status page
	// (GET /v1/status) only; nil uses Functions. Kubernetes mode reads the autoscaler's.
	ScaleStatus FunctionLister
	// Stats receives the per-target request statistics (Router.Stats), for whoever reads them
	// (the autoscaler, the stats reporter), which can then be built before the router. nil: the
	// router makes its own, on Clock.
	Stats *stats.Recorder
}

// Router serves knactor's public API.
//
// Goroutines: fasthttp runs each request on a worker goroutine; a call's turn runs on that
// goroutine while it holds the actor's mailbox. Immediate effects are delivered on goroutines
// counted by effects; the scheduler (sched) owns a loop and the goroutines that fire timers and
// deliver due outbox entries; WebSocket
// sessions own one reader and one writer goroutine each, tracked by the hub. Shutdown stops all.
type Router struct {
	cfg       Config
	backends  routing.Backends
	state     StateCache
	activator *activator.Activator // every call's way to a pod (pick): Options.Activator or the router's own
	cold      coldStartReporter    // Options.Activator, for the status page; nil without one
	clock     clock.WithDelayedExecution
	log       *slog.Logger

	mailboxes  *Mailboxes
	client     *fasthttp.Client // invocations: whole answers, bounded, re-sent on broken connections
	passClient *fasthttp.Client // pass-through: streamed, never re-sent
	peers      routing.Peers    // nil with one router
	traffic    routing.Traffic  // nil without Knative ingress
	peerClient *fasthttp.Client // forwards actor calls to their owner router; never re-sent
	functions  FunctionLister   // nil: GET /v1/functions answers 404
	deployer   Deployer         // nil: POST /v1/functions answers 404
	scaleView  FunctionLister   // nil: the status page reads functions
	status     statusBoard      // what the status page shows besides stats (status.go)
	background sync.WaitGroup   // the status sampler
	stats      *stats.Recorder
	metrics    *metrics
	hub        *hub
	names      names // deployed functions' names, so that a call's does not allocate

	server    *fasthttp.Server
	conns     conns   // the server's open connections, hurried at Shutdown
	grants    []grant // the public API's bearer tokens; none: no auth
	peerToken []byte  // the routers' shared secret; nil: no call is a peer's
	closing   atomic.Bool
	reqPrefix string
	reqSeq    atomic.Uint64
	// commitPrefix names this router process in commit ids: 96 random bits, so two processes
	// sharing a bucket never make the same commit id (a store would take one's write for the
	// other's).
	commitPrefix string

	idemLimits record.Limits // from cfg: the idempotency keys each actor remembers
	storeDown  atomic.Bool   // the latest state read or write found the store unavailable

	effects  sync.WaitGroup // deliveries of immediate effects
	sched    *scheduler
	stopping chan struct{} // closed when Shutdown starts: effect retries stop waiting
	stopOnce sync.Once

	// limits counts the open connections against the caps (limits.go).
	limits connLimits

	// listensLoopback is set by Serve when it listens on a loopback address: without tokens, the
	// router then answers loopback host names only (auth.go, guardTokenless).
	listensLoopback atomic.Bool

	tracer trace.Tracer                  // nil: tracing off (tracing.go)
	prop   propagation.TextMapPropagator // set with tracer
}

// New returns a Router; call Serve to start it.
func New(cfg Config, opts Options) (*Router, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opts.Backends == nil || opts.State == nil {
		return nil, errors.New("router: Backends and State are required")
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Stats == nil {
		opts.Stats = stats.NewRecorder(opts.Clock)
	}
	var prefix [6]byte
	_, _ = rand.Read(prefix[:])
	var commitPrefix [12]byte
	_, _ = rand.Read(commitPrefix[:])
	r := &Router{
		cfg:          cfg,
		backends:     opts.Backends,
		state:        opts.State,
		activator:    opts.Activator,
		clock:        opts.Clock,
		log:          opts.Logger,
		mailboxes:    NewMailboxes(cfg.MaxQueuePerActor, cfg.MaxWaitingCalls),
		stats:        opts.Stats,
		reqPrefix:    hex.EncodeToString(prefix[:]),
		commitPrefix: base64.RawURLEncoding.EncodeToString(commitPrefix[:]),
		stopping:     make(chan struct{}),
		idemLimits: record.Limits{
			Keys: cfg.IdempotencyKeys, TTL: cfg.IdempotencyTTL, Bytes: cfg.IdempotencyBytes,
		},
	}
	if opts.Activator != nil {
		r.cold = opts.Activator
	} else {
		r.activator = activator.New(activator.Config{NoHold: true}, opts.Backends, nil)
	}
	for _, entry := range cfg.AuthTokens {
		t, _ := ParseAuthToken(entry) // Validate checked it
		r.grants = append(r.grants, grant{token: []byte(t.Token), functions: t.Functions, readOnly: t.ReadOnly})
	}
	if opts.Peers != nil && cfg.PeerToken == "" {
		return nil, errors.New("router: several routers (Options.Peers) need the shared secret Config.PeerToken")
	}
	r.peerToken = []byte(cfg.PeerToken)
	if cfg.PeerToken == "" {
		r.peerToken = nil
	}
	r.client = &fasthttp.Client{
		Name:                     "knactor-router",
		NoDefaultUserAgentHeader: true,
		MaxConnsPerHost:          1024,
		MaxConnWaitTimeout:       cfg.CallTimeout,
		MaxIdleConnDuration:      30 * time.Second,
		MaxResponseBodySize:      cfg.MaxReplyBytes,
		ReadBufferSize:           16 << 10,
		Dial:                     dialPod,
		// Re-sending an invocation is safe: nothing commits until the router stores the answer's
		// state, and functions are deterministic in (state, payload). A pod that closed a
		// kept-alive connection is the usual cause.
		RetryIfErr: func(_ *fasthttp.Request, attempts int, err error) (bool, bool) {
			return false, attempts < invokeAttempts && isRetryableConnError(err)
		},
	}
	r.passClient = &fasthttp.Client{
		Name:                      "knactor-router",
		NoDefaultUserAgentHeader:  true,
		MaxConnsPerHost:           1024,
		MaxConnWaitTimeout:        cfg.CallTimeout,
		MaxIdleConnDuration:       30 * time.Second,
		ReadBufferSize:            16 << 10,
		Dial:                      dialPod,
		StreamResponseBody:        true, // answers past maxBufferedResponse (passTransport)
		DisablePathNormalizing:    true,
		MaxIdemponentCallAttempts: 1,
		Transport:                 passTransport{},
	}
	r.peers, r.peerClient, r.traffic = opts.Peers, newPeerClient(cfg), opts.Traffic
	r.functions, r.deployer, r.scaleView = opts.Functions, opts.Deployer, opts.ScaleStatus
	r.setTracing(&opts)
	r.metrics = newMetrics(r, opts.Registerer)
	for _, c := range opts.Collectors {
		if err := r.metrics.registry.Register(c); err != nil {
			return nil, fmt.Errorf("router: metrics collector: %w", err)
		}
	}
	r.hub = newHub(r)
	r.sched = newScheduler(r)
	r.server = &fasthttp.Server{
		Handler:                       r.serveRequest, // r.handle, then what it left of the body
		Name:                          "knactor",
		ReadTimeout:                   cfg.ReadTimeout,
		WriteTimeout:                  cfg.WriteTimeout,
		IdleTimeout:                   cfg.IdleTimeout,
		MaxRequestBodySize:            cfg.MaxPayloadBytes,
		StreamRequestBody:             true, // bodies over the limit stream (pass-through) or get 413
		DisablePreParseMultipartForm:  true,
		NoDefaultContentType:          true,
		CloseOnShutdown:               true,
		DisableHeaderNamesNormalizing: false,
		Logger:                        fasthttpLogger{r.log},
		ErrorHandler:                  serverError,
		ConnState:                     r.conns.state,
	}
	return r, nil
}

const (
	// dialTimeout bounds connecting to a pod on the same network: a ready pod accepts in
	// microseconds, so a second means it is gone.
	dialTimeout = time.Second
	// invokeAttempts is how often one invocation is sent when the connection breaks before an
	// answer arrives.
	invokeAttempts = 3
)

func dialPod(addr string) (net.Conn, error) { return fasthttp.DialTimeout(addr, dialTimeout) }

// isRetryableConnError reports a connection that broke before the pod answered: a kept-alive
// connection the pod had closed, or a reset. A refused dial is not retried: that pod is gone.
func isRetryableConnError(err error) bool {
	return errors.Is(err, fasthttp.ErrConnectionClosed) || errors.Is(err, io.EOF) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// Serve serves the API on ln until Shutdown. It returns nil after a graceful shutdown.
func (r *Router) Serve(ln net.Listener) error {
	if a, ok := ln.Addr().(*net.TCPAddr); ok && a.IP.IsLoopback() {
		r.listensLoopback.Store(true) // guardTokenless
	}
	r.sched.start()
	if r.hub.relay != nil {
		r.hub.relay.start()
	}
	r.background.Add(1)
	go r.sampleStatus()
	return r.server.Serve(r.limitListener(ln))
}

// ListenAndServe listens on Config.Listen and serves.
func (r *Router) ListenAndServe() error {
	ln, err := net.Listen("tcp", r.cfg.Listen)
	if err != nil {
		return err
	}
	return r.Serve(ln)
}

// Shutdown stops accepting calls, gives connections shutdownReadGrace to send the rest of a
// request, lets in-flight turns finish (bounded by ctx), closes WebSocket sessions with a
// going-away close frame, stops the scheduler (timers and outbox entries not yet handled stay in
// the store for the next router) and waits for the deliveries that run. The caller closes the
// state cache afterwards, which flushes write-behind.
func (r *Router) Shutdown(ctx context.Context) error {
	r.closing.Store(true)
	r.stopOnce.Do(func() { close(r.stopping) })
	done := make(chan error, 1)
	go func() { done <- r.server.ShutdownWithContext(ctx) }()
	r.conns.shutdown()
	r.hub.closeAll()
	if r.hub.relay != nil {
		r.hub.relay.shutdown()
	}
	err := <-done
	err = errors.Join(err, r.sched.shutdown(ctx))
	waited := make(chan struct{})
	go func() { r.effects.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-ctx.Done():
		err = errors.Join(err, ctx.Err())
	}
	r.hub.wait()
	r.background.Wait()
	return err
}

// pick claims a pod of fn for a call through the activator (activator.Activator.Try): it
// chooses with choice (the actor's owner, or the less loaded of two), holds the call while fn
// has no ready pod, and counts the call against the pod (and its containerConcurrency slot)
// until the claim is released. Its errors are the API's: 503 without a pod, 504 without a slot.
func (r *Router) pick(ctx context.Context, deadline time.Time, fn routing.Function, choice activator.Choice) (activator.Claim, error) {
	claim, err := r.activator.Try(ctx, deadline, activator.Target{Name: fn.Target(), Capacity: fn.ContainerConcurrency}, choice)
	if err == nil {
		return claim, nil
	}
	var slot *activator.SlotError
	switch {
	case errors.Is(err, activator.ErrNoReadyPod):
		return claim, errorf(fasthttp.StatusServiceUnavailable, CodeNoCapacity, "function %q has no ready pod%s", fn.Name, targetNote(&fn))
	case errors.As(err, &slot):
		return claim, errorf(fasthttp.StatusGatewayTimeout, CodeFunctionTimeout, "timed out waiting for a free slot on pod %s (containerConcurrency %d)", slot.Pod, slot.Capacity)
	default:
		return claim, errorf(fasthttp.StatusServiceUnavailable, CodeNoCapacity, "function %q%s: %v", fn.Name, targetNote(&fn), err)
	}
}

// Stats returns the per-function statistics the autoscaler reads.
func (r *Router) Stats() *stats.Recorder { return r.stats }

var (
	pathHealthz  = []byte("/healthz")
	pathReadyz   = []byte("/readyz")
	pathMetrics  = []byte("/metrics")
	prefixActors = []byte("/v1/actors/")
	prefixFuncs  = []byte("/v1/functions/")
	prefixChans  = []byte("/v1/channels/")
	bearerPrefix = []byte("Bearer ")
	okBody       = []byte("ok\n")
	errNotFound  = errorf(fasthttp.StatusNotFound, CodeNotFound, "no such endpoint; see /v1/actors/{function}/{id}/{action} and /v1/functions/{function}/...")
	errBadAuth   = errorf(fasthttp.StatusUnauthorized, CodeUnauthorized, "missing or invalid bearer token")
	errClosing   = errorf(fasthttp.StatusServiceUnavailable, CodeShuttingDown, "the router is shutting down")
)

func (r *Router) handle(ctx *fasthttp.RequestCtx) {
	path := ctx.URI().PathOriginal()
	if r.traffic != nil {
		if route, ok := r.traffic.Host(string(ctx.Host())); ok {
			if a, ok := r.authorize(ctx); ok {
				r.serveHost(ctx, a, route, path)
			}
			return
		}
	}
	switch {
	case bytes.Equal(path, pathHealthz):
		ctx.SetBody(okBody)
	case bytes.Equal(path, pathReadyz):
		if r.closing.Load() {
			writeError(ctx, errClosing)
			return
		}
		ctx.SetBody(okBody)
	case bytes.Equal(path, pathMetrics):
		if a, ok := r.authorize(ctx); ok {
			if err := a.mayUseAll(); err != nil {
				writeError(ctx, err)
				return
			}
			r.metrics.serve(ctx)
		}
	case bytes.Equal(path, pathStatus):
		if a, ok := r.authorize(ctx); ok {
			r.serveStatus(ctx, a)
		}
	case bytes.Equal(path, pathUI) || bytes.HasPrefix(path, prefixUI):
		r.serveUI(ctx, path)
	case bytes.Equal(path, pathFunctions):
		if a, ok := r.authorize(ctx); ok {
			r.serveFunctions(ctx, a)
		}
	case bytes.HasPrefix(path, prefixActors):
		if a, ok := r.authorize(ctx); ok {
			host := ""
			if a.peer && len(ctx.Request.Header.Peek(HeaderForwarded)) > 0 {
				host = string(ctx.Request.Header.Peek(HeaderRouteHost))
			}
			r.serveActor(ctx, a, path[len(prefixActors):], host)
		}
	case bytes.Equal(path, pathRelay):
		if a, ok := r.authorize(ctx); ok {
			r.serveRelay(ctx, a)
		}
	case bytes.HasPrefix(path, prefixChans):
		if a, ok := r.authorize(ctx); ok {
			r.serveChannel(ctx, a, path[len(prefixChans):])
		}
	case bytes.HasPrefix(path, prefixFuncs):
		if a, ok := r.authorize(ctx); ok {
			fnName, rest, _ := bytes.Cut(path[len(prefixFuncs):], []byte("/"))
			name, interned := r.names.of(fnName)
			r.servePassThrough(ctx, a, name, interned, rest, "")
		}
	default:
		writeError(ctx, errNotFound)
	}
}

// requestID returns the caller's X-Request-Id or a new unique id.
func (r *Router) requestID(ctx *fasthttp.RequestCtx) string {
	var id string
	if b := ctx.Request.Header.Peek(HeaderRequestID); len(b) > 0 && len(b) <= 128 {
		id = string(b)
	} else {
		id = r.newRequestID()
	}
	ctx.Response.Header.Set(HeaderRequestID, id) // echoed: the id the function and the status page see
	return id
}

func (r *Router) newRequestID() string {
	var buf [64]byte
	return string(appendSeqID(buf[:0], r.reqPrefix, r.reqSeq.Add(1)))
}

// newTurnSeq numbers one turn's writes: its commit ids are the router's commitPrefix, this
// number and the attempt (turnCommits). Unique across router processes (commitPrefix) and
// within one (the sequence).
func (r *Router) newTurnSeq() uint64 { return r.reqSeq.Add(1) }

// appendSeqID appends prefix-seq (seq in base 36), the form of request and turn ids.
func appendSeqID(b []byte, prefix string, seq uint64) []byte {
	b = append(b, prefix...)
	b = append(b, '-')
	return strconv.AppendUint(b, seq, 36)
}

// serverError answers requests fasthttp itself rejects (unparsable, too large, too slow) with
// the API's JSON error form instead of fasthttp's plain text.
func serverError(ctx *fasthttp.RequestCtx, err error) {
	var ae *apiError
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		ae = errorf(fasthttp.StatusRequestEntityTooLarge, CodeTooLarge, "request body is over the limit")
	case errors.As(err, new(*fasthttp.ErrSmallBuffer)):
		ae = errorf(fasthttp.StatusRequestHeaderFieldsTooLarge, CodeBadRequest, "request headers are too large")
	default:
		var ne interface{ Timeout() bool }
		if errors.As(err, &ne) && ne.Timeout() {
			ae = errorf(fasthttp.StatusRequestTimeout, CodeBadRequest, "timed out reading the request")
		} else {
			ae = errorf(fasthttp.StatusBadRequest, CodeBadRequest, "malformed HTTP request")
		}
	}
	ctx.SetConnectionClose()
	writeError(ctx, ae)
}

// fasthttpLogger sends fasthttp's own messages (connection errors) to slog at debug level.
type fasthttpLogger struct{ log *slog.Logger }

func (l fasthttpLogger) Printf(format string, args ...any) {
	l.log.Debug("fasthttp", "msg", fmt.Sprintf(format, args...))
}
