package router

import (
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"testing"

	"github.com/knactor/knactor/router/routing"
	"github.com/knactor/knactor/statecache"
)

// fakeTraffic is a fixed routing.Traffic.
type fakeTraffic struct {
	mu     sync.Mutex
	hosts  map[string]*routing.Route
	routes map[string]*routing.Route
}

func (f *fakeTraffic) Host(host string) (*routing.Route, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	rt, ok := f.hosts[host]
	return rt, ok
}

func (f *fakeTraffic) Function(fn string) (*routing.Route, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	rt, ok := f.routes[fn]
	return rt, ok
}

func (f *fakeTraffic) set(fn string, rt *routing.Route) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.routes[fn] = rt
}

// revisionPod is a test actor that also answers stateless requests with its revision and the
// Knative-Serving-Revision header it got.
func revisionPod(revision string) http.Handler {
	a := newTestActor()
	mux := http.NewServeMux()
	mux.Handle("/v1/invoke", a)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s", revision, r.Header.Get("Knative-Serving-Revision"))
	})
	return mux
}

func TestTrafficSplitsBetweenTargets(t *testing.T) {
	traffic := &fakeTraffic{hosts: map[string]*routing.Route{}, routes: map[string]*routing.Route{}}
	store, err := statecache.OpenDirStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	h := newHarnessOn(t, Config{}, store, func(o *Options) { o.Traffic = traffic })
	// The function and its two targets (revisions), each with its own pod.
	h.deploy(routing.Function{Name: "counter"})
	rev1 := h.deploy(routing.Function{Name: "counter-00001"}, revisionPod("counter-00001"))[0]
	rev2 := h.deploy(routing.Function{Name: "counter-00002"}, revisionPod("counter-00002"))[0]
	hdr := func(rev string) map[string]string { return map[string]string{"Knative-Serving-Revision": rev} }
	main := &routing.Route{Function: "counter", Splits: []routing.Split{
		{Target: "counter-00001", Percent: 80, Headers: hdr("counter-00001")},
		{Target: "counter-00002", Percent: 20, Headers: hdr("counter-00002")}}}
	tag := &routing.Route{Function: "counter", Splits: []routing.Split{{Target: "counter-00002", Percent: 100, Headers: hdr("counter-00002")}}}
	traffic.routes["counter"] = main
	traffic.hosts["counter.default.example.com"] = main
	traffic.hosts["v2-counter.default.example.com"] = tag

	const actors = 200
	podOf := map[string]string{}
	onRev1 := 0
	for round := 1; round <= 3; round++ {
		for i := range actors {
			id := strconv.Itoa(i)
			rp := h.do("POST", "/v1/actors/counter/"+id+"/add", `{"by":1}`)
			rp.want(t, 200, fmt.Sprintf(`{"value":%d}`, round))
			pod := rp.header.Get(HeaderPod)
			if round == 1 {
				podOf[id] = pod
				if pod == rev1.Name {
					onRev1++
				}
			} else if podOf[id] != pod {
				t.Fatalf("actor %s ran on %s, then on %s: an actor stays on its revision while the split stays", id, podOf[id], pod)
			}
		}
	}
	if onRev1 < actors*65/100 || onRev1 > actors*95/100 {
		t.Errorf("%d of %d actors on the 80%% revision", onRev1, actors)
	}

	// By the tag's host, every actor runs on the tagged revision; its state is the function's.
	for i := range 20 {
		rp := h.do("POST", "/v1/actors/counter/"+strconv.Itoa(i)+"/add", `{"by":1}`, "Host", "v2-counter.default.example.com")
		rp.want(t, 200, `{"value":4}`)
		if pod := rp.header.Get(HeaderPod); pod != rev2.Name {
			t.Fatalf("tagged call ran on %s, want %s", pod, rev2.Name)
		}
	}
	h.do("POST", "/v1/actors/other/1/add", `{"by":1}`, "Host", "v2-counter.default.example.com").want(t, 404, "")

	// Stateless requests by the host draw a split and carry its headers.
	seen := map[string]int{}
	for range 200 {
		rp := h.do("GET", "/hello", "", "Host", "counter.default.example.com")
		rp.want(t, 200, "")
		seen[rp.body]++
	}
	if seen["counter-00001 counter-00001"] < 120 || seen["counter-00002 counter-00002"] < 15 || len(seen) != 2 {
		t.Errorf("stateless answers by revision: %v, want ~80/20 with each revision's header", seen)
	}
	h.do("GET", "/v1/functions/counter/hello", "").want(t, 200, "")
	h.do("POST", "/v1/invoke", "{}", "Host", "counter.default.example.com").want(t, 400, "")

	// A call that names a host whose route is gone (the tag was removed while the call was
	// forwarded, or a WebSocket session was open) follows the main split, not the newest target.
	traffic.mu.Lock()
	delete(traffic.hosts, "v2-counter.default.example.com")
	traffic.mu.Unlock()
	for i := range 20 {
		id := strconv.Itoa(i)
		rp := h.do("POST", "/v1/actors/counter/"+id+"/add", `{"by":0}`, HeaderForwarded, "1", HeaderRouteHost, "v2-counter.default.example.com")
		rp.want(t, 200, `{"value":4}`)
		if pod := rp.header.Get(HeaderPod); pod != podOf[id] {
			t.Fatalf("actor %s by a removed tag's host ran on %s, want its main-split pod %s", id, pod, podOf[id])
		}
	}

	// The rollout completes: every actor moves to the new revision and keeps its count.
	traffic.set("counter", &routing.Route{Function: "counter", Splits: []routing.Split{{Target: "counter-00002", Percent: 100}}})
	for i := range actors {
		want := 4
		if i < 20 {
			want = 5
		}
		rp := h.do("POST", "/v1/actors/counter/"+strconv.Itoa(i)+"/add", `{"by":1}`)
		rp.want(t, 200, fmt.Sprintf(`{"value":%d}`, want))
		if pod := rp.header.Get(HeaderPod); pod != rev2.Name {
			t.Fatalf("after the rollout actor %d ran on %s, want %s", i, pod, rev2.Name)
		}
	}
}
