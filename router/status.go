package router

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/knactor/knactor/router/ui"
)

// The status page (/ui) and its data (GET /v1/status). Everything it keeps is bounded: a
// timeline of statusHistory samples per function the router serves, the last statusErrors
// error answers, and the hot actors the stats recorder counts (stats.HotActors).
const (
	// statusHistory is the samples of a function's timeline: one a second over Knative's
	// default stable window.
	statusHistory = 60
	// statusErrors is how many error answers the status keeps, the newest.
	statusErrors = 50
	// statusHotActors is how many of the most called actors the status lists.
	statusHotActors = 10
	// statusMessageBytes and statusRequestBytes bound what an error entry keeps of the message
	// and the request line.
	statusMessageBytes = 300
	statusRequestBytes = 200
)

// HeaderRequestID carries a call's request id: the caller's, or one the router made. The router
// echoes it on actor calls and on every error answer, and the status page lists it with errors.
const HeaderRequestID = "X-Request-Id"

// ScaleViewError is implemented by a FunctionLister that reads the autoscaler from afar
// (Kubernetes mode): Err reports why its latest read failed, nil when it succeeded.
type ScaleViewError interface {
	Err() error
}

// Where GET /v1/status's pods and autoscaling come from.
const (
	statusSourceLocal      = "local"      // knactor up: its autoscaler and local pods
	statusSourceAutoscaler = "autoscaler" // Kubernetes mode: the autoscaler, across routers
	statusSourceRouter     = "router"     // this router's own statistics and ready pods only
)

// statusSample is one second of a function's timeline.
type statusSample struct {
	// T is the sample's time in Unix milliseconds.
	T int64 `json:"t"`
	// RPS is the requests begun per second and Concurrency the average requests in flight,
	// both over the second before T, at this router.
	RPS         float64 `json:"rps"`
	Concurrency float64 `json:"concurrency"`
	// Ready is the ready pods at T, Desired the autoscaler's latest decision (-1: unknown).
	Ready   int `json:"ready"`
	Desired int `json:"desired"`
}

// timeline is a ring of a function's newest samples, and the totals the next one is the
// difference from.
type timeline struct {
	samples  [statusHistory]statusSample
	n, next  int
	lastReq  uint64
	lastArea time.Duration
	lastT    time.Time
}

func (t *timeline) push(s statusSample) {
	t.samples[t.next] = s
	t.next = (t.next + 1) % statusHistory
	t.n = min(t.n+1, statusHistory)
}

// all returns the samples, oldest first.
func (t *timeline) all() []statusSample {
	out := make([]statusSample, 0, t.n)
	for i := range t.n {
		out = append(out, t.samples[(t.next-t.n+i+statusHistory)%statusHistory])
	}
	return out
}

// statusError is one error answer as the status lists it.
type statusError struct {
	Time      time.Time `json:"time"`
	Function  string    `json:"function,omitempty"`
	Status    int       `json:"status"`
	Code      string    `json:"code,omitempty"`
	Message   string    `json:"message,omitempty"`
	Request   string    `json:"request"`
	RequestID string    `json:"request_id"`
}

// statusBoard is what the status keeps between reads. mu guards it.
type statusBoard struct {
	mu        sync.Mutex
	timelines map[string]*timeline // by stats key: the function, or its revision (Kubernetes)
	errors    [statusErrors]statusError
	nErr      int // errors recorded, ever
}

// statusFunction is one function (in Kubernetes mode, one revision) in GET /v1/status.
type statusFunction struct {
	FunctionStatus
	// RequestsPerSecond and Concurrency are the newest sample's, at this router; InFlight is now.
	RequestsPerSecond float64 `json:"requests_per_second"`
	Concurrency       float64 `json:"concurrency"`
	InFlight          int     `json:"in_flight"`
	// ColdStarts are the calls this router's activator held while the function had no ready
	// pod, and the median and 99th percentile of their wait.
	ColdStarts statusColdStarts `json:"cold_starts"`
	// Timeline is the last statusHistory seconds, oldest first.
	Timeline []statusSample `json:"timeline"`
}

type statusColdStarts struct {
	Count uint64  `json:"count"`
	P50Ms float64 `json:"p50_ms"`
	P99Ms float64 `json:"p99_ms"`
}

type statusHotActor struct {
	Function string `json:"function"`
	Actor    string `json:"actor"`
	Calls    uint64 `json:"calls"`
}

// statusAnswer is the body of GET /v1/status.
type statusAnswer struct {
	Time time.Time `json:"time"`
	// Source says where pods and autoscaling come from (statusSource*); AutoscalerError why
	// the autoscaler's view is unavailable, when it is (then Source is "router").
	Source          string `json:"source"`
	AutoscalerError string `json:"autoscaler_error,omitempty"`
	// WindowSeconds is the span of the timelines and the hot-actor window.
	WindowSeconds int              `json:"window_seconds"`
	Functions     []statusFunction `json:"functions"`
	HotActors     []statusHotActor `json:"hot_actors"`
	Errors        []statusError    `json:"errors"`
}

// coldStartReporter is implemented by an Activator that counts its cold starts
// (activator.Activator).
type coldStartReporter interface {
	ColdStarts(function string) (count uint64, p50, p99 time.Duration)
}

var (
	pathStatus = []byte("/v1/status")
	pathUI     = []byte("/ui")
	prefixUI   = []byte("/ui/")
)

// scaleStatuses returns what the autoscaler knows of each function (in Kubernetes mode, of
// each revision), where it comes from, and why it is unavailable when it is.
func (r *Router) scaleStatuses() ([]FunctionStatus, string, error) {
	switch {
	case r.scaleView != nil:
		list := r.scaleView.FunctionStatuses()
		if ve, ok := r.scaleView.(ScaleViewError); ok {
			if err := ve.Err(); err != nil {
				return nil, statusSourceRouter, err
			}
		}
		return list, statusSourceAutoscaler, nil
	case r.functions != nil:
		return r.functions.FunctionStatuses(), statusSourceLocal, nil
	}
	return nil, statusSourceRouter, nil
}

// statusKey is the name the function's statistics and pods go by.
func statusKey(fs FunctionStatus) string { return cmp.Or(fs.Revision, fs.Function) }

// statusFunctions returns every function the status shows: the autoscaler's, then those only
// this router's statistics know (their pods from the backends; desired unknown).
func (r *Router) statusFunctions() ([]FunctionStatus, string, error) {
	list, source, err := r.scaleStatuses()
	known := make(map[string]bool, len(list))
	for _, fs := range list {
		known[statusKey(fs)] = true
	}
	for _, key := range r.stats.Functions() {
		if known[key] {
			continue
		}
		fs := FunctionStatus{Function: key, ReadyPods: r.backends.Ready(key).Len(), DesiredPods: -1}
		if fn, ok := r.backends.Function(key); !ok || fn.Target() != key {
			// A revision (Kubernetes mode) the lister does not name: its function is unknown.
			fs.Function, fs.Revision = "", key
		}
		list = append(list, fs)
	}
	slices.SortFunc(list, func(a, b FunctionStatus) int {
		return cmp.Or(cmp.Compare(a.Function, b.Function), cmp.Compare(a.Revision, b.Revision))
	})
	return list, source, err
}

// sampleStatus adds a sample to every function's timeline once a second until Shutdown.
func (r *Router) sampleStatus() {
	defer r.background.Done()
	for {
		select {
		case <-r.stopping:
			return
		case <-r.clock.After(time.Second):
		}
		r.takeStatusSample()
	}
}

// takeStatusSample adds one sample to each function's timeline and forgets the timelines of
// functions that are gone.
func (r *Router) takeStatusSample() {
	list, _, _ := r.statusFunctions()
	now := r.clock.Now()
	b := &r.status
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.timelines == nil {
		b.timelines = make(map[string]*timeline)
	}
	seen := make(map[string]bool, len(list))
	for _, fs := range list {
		key := statusKey(fs)
		seen[key] = true
		req, area, _ := r.stats.Totals(key)
		tl := b.timelines[key]
		s := statusSample{T: now.UnixMilli(), Ready: fs.ReadyPods, Desired: fs.DesiredPods}
		if tl == nil {
			tl = &timeline{}
			b.timelines[key] = tl
		} else if dt := now.Sub(tl.lastT).Seconds(); dt > 0 {
			dReq, dArea := req-tl.lastReq, area-tl.lastArea
			if req < tl.lastReq || area < tl.lastArea { // the recorder forgot the function meanwhile
				dReq, dArea = req, area
			}
			s.RPS = float64(dReq) / dt
			s.Concurrency = dArea.Seconds() / dt
		}
		tl.lastReq, tl.lastArea, tl.lastT = req, area, now
		tl.push(s)
	}
	for key := range b.timelines {
		if !seen[key] {
			delete(b.timelines, key)
		}
	}
}

// noteError records an error answer for the status page. It runs only for answers of status
// 400 and above, so successful calls pay nothing for it. The answer gets the request's id in
// HeaderRequestID (the caller's, the one the call already had, or a new one).
func (r *Router) noteError(ctx *fasthttp.RequestCtx) {
	path := ctx.URI().PathOriginal()
	if bytes.Equal(path, pathStatus) || bytes.Equal(path, pathUI) || bytes.HasPrefix(path, prefixUI) ||
		bytes.Equal(path, pathHealthz) || bytes.Equal(path, pathReadyz) {
		return // the page's own polls, and probes
	}
	e := statusError{Time: r.clock.Now(), Status: ctx.Response.StatusCode(), Function: functionOfPath(path)}
	switch id := ctx.Response.Header.Peek(HeaderRequestID); {
	case len(id) > 0:
		e.RequestID = string(id)
	default:
		if id = ctx.Request.Header.Peek(HeaderRequestID); len(id) > 0 && len(id) <= 128 {
			e.RequestID = string(id)
		} else {
			e.RequestID = r.newRequestID()
		}
		ctx.Response.Header.Set(HeaderRequestID, e.RequestID)
	}
	e.Request = truncate(string(ctx.Method())+" "+string(path), statusRequestBytes)
	if !ctx.Response.IsBodyStream() && bytes.HasPrefix(ctx.Response.Header.ContentType(), contentJSON) {
		var body struct {
			Error struct {
				Code    string `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		if json.Unmarshal(ctx.Response.Body(), &body) == nil {
			e.Code, e.Message = body.Error.Code, truncate(body.Error.Message, statusMessageBytes)
		}
	}
	r.logFailedCall(e, path)
	b := &r.status
	b.mu.Lock()
	b.errors[b.nErr%statusErrors] = e
	b.nErr++
	b.mu.Unlock()
}

// logFailedCall logs an API call answered with an error, with its request id, function and
// actor: a failure of knactor or the function (5xx) as a warning, other refusals at debug level
// (a caller's mistakes, and load shedding, would flood the log).
func (r *Router) logFailedCall(e statusError, path []byte) {
	level := slog.LevelDebug
	if e.Status >= fasthttp.StatusInternalServerError && e.Status != fasthttp.StatusServiceUnavailable {
		level = slog.LevelWarn
	}
	if !r.log.Enabled(context.Background(), level) {
		return
	}
	r.log.Log(context.Background(), level, "call failed", "request_id", e.RequestID, "function", e.Function,
		"actor", actorOfPath(path), "request", e.Request, "status", e.Status, "code", e.Code, "message", e.Message)
}

// actorOfPath returns the actor id an actor API path names ("" for another path), as sent.
func actorOfPath(path []byte) string {
	if !bytes.HasPrefix(path, prefixActors) {
		return ""
	}
	_, rest, _ := bytes.Cut(path[len(prefixActors):], []byte("/"))
	id, _, _ := bytes.Cut(rest, []byte("/"))
	return truncate(string(id), 256)
}

// functionOfPath returns the function an API path names ("" for another path).
func functionOfPath(path []byte) string {
	var rest []byte
	switch {
	case bytes.HasPrefix(path, prefixActors):
		rest = path[len(prefixActors):]
	case bytes.HasPrefix(path, prefixFuncs):
		rest = path[len(prefixFuncs):]
	default:
		return ""
	}
	fn, _, _ := bytes.Cut(rest, []byte("/"))
	return truncate(string(fn), 128)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && n < len(s) && s[n]&0xC0 == 0x80 { // not in the middle of a UTF-8 sequence
		n--
	}
	return s[:n] + "…"
}

// serveStatus answers GET /v1/status. A token limited to some functions sees only those
// functions, their hot actors and their errors.
func (r *Router) serveStatus(ctx *fasthttp.RequestCtx, a access) {
	if m := string(ctx.Method()); m != fasthttp.MethodGet && m != fasthttp.MethodHead {
		writeError(ctx, errorf(fasthttp.StatusMethodNotAllowed, CodeMethodNotAllowed, "%s /v1/status: use GET", m))
		return
	}
	list, source, err := r.statusFunctions()
	ans := statusAnswer{Time: r.clock.Now(), Source: source, WindowSeconds: statusHistory,
		Functions: []statusFunction{}, HotActors: []statusHotActor{}, Errors: []statusError{}}
	if err != nil {
		ans.AutoscalerError = err.Error()
	}
	may := func(fn string) bool { return a.mayUse(fn) == nil && (fn != "" || a.mayUseAll() == nil) }
	cold := r.cold
	b := &r.status
	b.mu.Lock()
	for _, fs := range list {
		if !may(fs.Function) {
			continue
		}
		key := statusKey(fs)
		f := statusFunction{FunctionStatus: fs, Timeline: []statusSample{}}
		if tl := b.timelines[key]; tl != nil {
			f.Timeline = tl.all()
			if len(f.Timeline) > 0 {
				last := f.Timeline[len(f.Timeline)-1]
				f.RequestsPerSecond, f.Concurrency = last.RPS, last.Concurrency
			}
		}
		ans.Functions = append(ans.Functions, f)
	}
	for i := max(0, b.nErr-statusErrors); i < b.nErr; i++ {
		if e := b.errors[i%statusErrors]; may(e.Function) {
			ans.Errors = append(ans.Errors, e)
		}
	}
	b.mu.Unlock()
	slices.Reverse(ans.Errors) // newest first
	for i := range ans.Functions {
		f := &ans.Functions[i]
		key := statusKey(f.FunctionStatus)
		_, _, f.InFlight = r.stats.Totals(key)
		if cold != nil {
			n, p50, p99 := cold.ColdStarts(key)
			f.ColdStarts = statusColdStarts{Count: n, P50Ms: durationMs(p50), P99Ms: durationMs(p99)}
		}
		for _, h := range r.stats.HotActors(key, statusHotActors) {
			ans.HotActors = append(ans.HotActors, statusHotActor{Function: f.Function, Actor: h.Actor, Calls: h.Calls})
		}
	}
	slices.SortStableFunc(ans.HotActors, func(x, y statusHotActor) int { return cmp.Compare(y.Calls, x.Calls) })
	if len(ans.HotActors) > statusHotActors {
		ans.HotActors = ans.HotActors[:statusHotActors]
	}
	ctx.Response.Header.Set(fasthttp.HeaderCacheControl, "no-store")
	writeJSON(ctx, ans)
}

func durationMs(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// serveUI serves the status page's files: they hold no data, so they need no token (the page
// asks for one when /v1/status answers 401).
func (r *Router) serveUI(ctx *fasthttp.RequestCtx, path []byte) {
	if m := string(ctx.Method()); m != fasthttp.MethodGet && m != fasthttp.MethodHead {
		writeError(ctx, errorf(fasthttp.StatusMethodNotAllowed, CodeMethodNotAllowed, "%s %s: use GET", m, path))
		return
	}
	if bytes.Equal(path, pathUI) {
		ctx.Redirect("/ui/", fasthttp.StatusFound)
		return
	}
	asset, ok := ui.Lookup(string(path[len(prefixUI):]))
	if !ok {
		writeError(ctx, errorf(fasthttp.StatusNotFound, CodeNotFound, "no such file of the status page"))
		return
	}
	h := &ctx.Response.Header
	h.Set(fasthttp.HeaderContentType, asset.ContentType)
	h.Set(fasthttp.HeaderCacheControl, "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	// Scripts and styles from the router only; uPlot sizes its elements with inline styles.
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'")
	ctx.SetBody(asset.Body)
}

// errorNoted reports whether the status page keeps a request's answer as an error.
func errorNoted(status int) bool { return status >= fasthttp.StatusBadRequest }
