package router

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/knactor/knactor/router/routing"
	"github.com/knactor/knactor/statecache"
)

func readStatus(t *testing.T, h *harness, header ...string) statusAnswer {
	t.Helper()
	rp := h.do("GET", "/v1/status", "", header...)
	if rp.status != 200 {
		t.Fatalf("GET /v1/status: %d %s", rp.status, rp.body)
	}
	var s statusAnswer
	if err := json.Unmarshal([]byte(rp.body), &s); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestStatusShowsFunctionsHotActorsAndErrors(t *testing.T) {
	lister := fakeLister{{Function: "counter", ReadyPods: 1, DesiredPods: 2, Panicking: true, ActiveActors: 2}}
	h := newHarnessOn(t, Config{}, localStore(t), func(o *Options) { o.Functions = lister })
	h.deploy(counterFn, newTestActor())
	for range 3 {
		h.do("POST", "/v1/actors/counter/alice/add", `{"by":1}`).want(t, 200, "")
	}
	ok := h.do("POST", "/v1/actors/counter/bob/add", `{"by":1}`)
	if ok.header.Get(HeaderRequestID) == "" {
		t.Error("an actor call's answer has no X-Request-Id")
	}
	failed := h.do("POST", "/v1/actors/counter/bob/fail", `{}`, HeaderRequestID, "req-fail-1")
	if failed.status != 422 || failed.header.Get(HeaderRequestID) != "req-fail-1" {
		t.Fatalf("failing call: %d, request id %q", failed.status, failed.header.Get(HeaderRequestID))
	}
	unknown := h.do("POST", "/v1/actors/nope/x/add", `{}`)
	if unknown.status != 404 || unknown.header.Get(HeaderRequestID) == "" {
		t.Fatalf("unknown function: %d, request id %q", unknown.status, unknown.header.Get(HeaderRequestID))
	}
	h.do("GET", "/ui/missing.js", "") // the page's own files are not the API's errors
	h.r.takeStatusSample()

	s := readStatus(t, h)
	if s.Source != statusSourceLocal || s.WindowSeconds != statusHistory {
		t.Fatalf("source %q, window %d", s.Source, s.WindowSeconds)
	}
	if len(s.Functions) != 1 {
		t.Fatalf("functions: %+v", s.Functions)
	}
	f := s.Functions[0]
	if f.Function != "counter" || f.ReadyPods != 1 || f.DesiredPods != 2 || !f.Panicking || f.ActiveActors != 2 || len(f.Timeline) == 0 {
		t.Fatalf("counter: %+v", f)
	}
	if last := f.Timeline[len(f.Timeline)-1]; last.Ready != 1 || last.Desired != 2 {
		t.Fatalf("timeline sample: %+v", last)
	}
	if len(s.HotActors) != 2 || s.HotActors[0].Actor != "alice" || s.HotActors[0].Calls != 3 || s.HotActors[0].Function != "counter" {
		t.Fatalf("hot actors: %+v", s.HotActors)
	}
	if len(s.Errors) != 2 {
		t.Fatalf("errors: %+v, want the failed call and the unknown function", s.Errors)
	}
	newest, older := s.Errors[0], s.Errors[1]
	if newest.Status != 404 || newest.Code != CodeUnknownFunction || newest.Function != "nope" || newest.RequestID != unknown.header.Get(HeaderRequestID) {
		t.Fatalf("newest error: %+v", newest)
	}
	if older.Status != 422 || older.RequestID != "req-fail-1" || older.Function != "counter" ||
		older.Request != "POST /v1/actors/counter/bob/fail" || older.Message == "" {
		t.Fatalf("older error: %+v", older)
	}
}

func TestStatusKeepsTheNewestErrorsOnly(t *testing.T) {
	h := newHarness(t, Config{})
	for i := range statusErrors + 10 {
		h.do("GET", "/v1/actors/nope/x", "", HeaderRequestID, "id-"+string(rune('a'+i%26)))
	}
	s := readStatus(t, h)
	if len(s.Errors) != statusErrors {
		t.Fatalf("%d errors, want %d", len(s.Errors), statusErrors)
	}
	if s.Source != statusSourceRouter || len(s.Functions) != 0 {
		t.Fatalf("a router without functions: %+v", s)
	}
}

func TestStatusNeedsATokenAndShowsALimitedOneItsFunctions(t *testing.T) {
	const admin, team = "admin-token-0123456789", "team-token-0123456789"
	lister := fakeLister{{Function: "cart"}, {Function: "counter", ReadyPods: 1}}
	h := newHarnessOn(t, Config{AuthTokens: []string{admin, team + ":functions=counter;read-only"}}, localStore(t),
		func(o *Options) { o.Functions = lister })
	h.deploy(counterFn, newTestActor())
	h.deploy(routing.Function{Name: "cart"}, newTestActor())
	h.do("POST", "/v1/actors/cart/c1/fail", `{}`, "Authorization", "Bearer "+admin).want(t, 422, "")
	h.do("POST", "/v1/actors/counter/a1/add", `{"by":1}`, "Authorization", "Bearer "+admin).want(t, 200, "")

	// The page's files need no token; its data does.
	if rp := h.do("GET", "/ui/", ""); rp.status != 200 || !strings.Contains(rp.body, "app.js") {
		t.Fatalf("GET /ui/ without a token: %d", rp.status)
	}
	h.do("GET", "/v1/status", "").want(t, 401, "")
	h.do("GET", "/v1/status?token="+admin, "").want(t, 401, "") // never from the URL

	all := readStatus(t, h, "Authorization", "Bearer "+admin)
	if len(all.Functions) != 2 || len(all.Errors) != 1 || len(all.HotActors) != 2 {
		t.Fatalf("admin sees %d functions, %d errors, %d hot actors", len(all.Functions), len(all.Errors), len(all.HotActors))
	}
	limited := readStatus(t, h, "Authorization", "Bearer "+team)
	if len(limited.Functions) != 1 || limited.Functions[0].Function != "counter" || len(limited.Errors) != 0 ||
		len(limited.HotActors) != 1 || limited.HotActors[0].Function != "counter" {
		t.Fatalf("a token limited to counter sees %+v", limited)
	}
}

func TestStatusPageFiles(t *testing.T) {
	h := newHarness(t, Config{})
	for path, want := range map[string]string{
		"/ui/":                  "text/html",
		"/ui/index.html":        "text/html",
		"/ui/app.js":            "text/javascript",
		"/ui/style.css":         "text/css",
		"/ui/uPlot.iife.min.js": "text/javascript",
		"/ui/uPlot.min.css":     "text/css",
	} {
		rp := h.do("GET", path, "")
		if rp.status != 200 || !strings.HasPrefix(rp.header.Get("Content-Type"), want) || rp.body == "" {
			t.Errorf("GET %s: %d %q", path, rp.status, rp.header.Get("Content-Type"))
		}
		if csp := rp.header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
			t.Errorf("GET %s: CSP %q", path, csp)
		}
	}
	for _, path := range []string{"/ui/nope.js", "/ui/../v1/status", "/ui/assets/app.js", "/ui/.hidden"} {
		if rp := h.do("GET", path, ""); rp.status != 404 {
			t.Errorf("GET %s: %d, want 404", path, rp.status)
		}
	}
	h.do("POST", "/ui/", "").want(t, 405, "")
}

func TestStatusTimelineSamplesRatesOverTheWindow(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Unix(1000, 0))
	cache, err := statecache.NewCache(localStore(t), statecache.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cache.Close(t.Context()) })
	backends := routing.NewStatic()
	backends.Set(counterFn)
	r, err := New(Config{}, Options{Backends: backends, State: cache, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	r.stats.Begin("counter", "a")() // the recorder knows the function
	r.takeStatusSample()
	// One second with 4 calls, two in flight all along.
	end1, end2 := r.stats.Begin("counter", "a"), r.stats.Begin("counter", "b")
	r.stats.Begin("counter", "c")()
	r.stats.Begin("counter", "c")()
	clk.Step(time.Second)
	end1()
	end2()
	r.takeStatusSample()
	r.status.mu.Lock()
	tl := r.status.timelines["counter"].all()
	r.status.mu.Unlock()
	if len(tl) != 2 {
		t.Fatalf("%d samples, want 2", len(tl))
	}
	if s := tl[1]; s.RPS != 4 || s.Concurrency != 2 || s.Desired != -1 || s.T != 1001000 {
		t.Fatalf("sample %+v: want 4 req/s, concurrency 2, desired unknown, at 1001000", s)
	}
	// The ring keeps the newest statusHistory samples.
	for range 2 * statusHistory {
		clk.Step(time.Second)
		r.takeStatusSample()
	}
	r.status.mu.Lock()
	tl = r.status.timelines["counter"].all()
	r.status.mu.Unlock()
	if len(tl) != statusHistory || tl[len(tl)-1].T != clk.Now().UnixMilli() || tl[0].T != clk.Now().Add(-(statusHistory-1)*time.Second).UnixMilli() {
		t.Fatalf("%d samples from %d to %d", len(tl), tl[0].T, tl[len(tl)-1].T)
	}
}

// downView is a Kubernetes-mode autoscaler view whose autoscaler does not answer.
type downView struct{ fakeLister }

func (downView) Err() error { return errors.New("autoscaler view unavailable: connection refused") }

func TestStatusWithoutTheAutoscalerShowsTheRoutersOwnView(t *testing.T) {
	up := fakeLister{{Function: "counter", Revision: "counter-00001", ReadyPods: 3, DesiredPods: 3}}
	h := newHarnessOn(t, Config{}, localStore(t), func(o *Options) { o.ScaleStatus = up })
	h.deploy(counterFn, newTestActor())
	h.do("POST", "/v1/actors/counter/a/add", `{"by":1}`).want(t, 200, "")
	s := readStatus(t, h)
	if s.Source != statusSourceAutoscaler || s.AutoscalerError != "" || len(s.Functions) != 2 {
		// The revision from the autoscaler, and the router's own "counter" (no revision here).
		t.Fatalf("with the autoscaler: %+v", s)
	}

	h2 := newHarnessOn(t, Config{}, localStore(t), func(o *Options) { o.ScaleStatus = downView{up} })
	h2.deploy(counterFn, newTestActor())
	h2.do("POST", "/v1/actors/counter/a/add", `{"by":1}`).want(t, 200, "")
	s = readStatus(t, h2)
	if s.Source != statusSourceRouter || !strings.Contains(s.AutoscalerError, "unavailable") {
		t.Fatalf("autoscaler down: source %q, error %q", s.Source, s.AutoscalerError)
	}
	if len(s.Functions) != 1 || s.Functions[0].Function != "counter" || s.Functions[0].ReadyPods != 1 || s.Functions[0].DesiredPods != -1 {
		t.Fatalf("autoscaler down: %+v, want the router's counter with its 1 ready pod, desired unknown", s.Functions)
	}
}
