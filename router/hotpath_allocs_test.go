package router

import (
	"net"
	"strconv"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/knactor/knactor/statecache"
)

// The router's allocations per call are a budget (issue 15): an allocation count is stable
// where a time is not, so these tests fail as soon as a change adds allocations to a hot path.
// They measure in-process on the benchmarks' rig (bench_test.go) and take out what the caller
// and the pod allocate themselves, measured the same way on a call straight to the pod.
// hack/test.sh runs them without the race detector, which changes the counts.
const (
	// maxActorCallAllocs is a cache-hit stateful call's budget, the ten the issue asks for: the
	// request id, the actor's name (which holds its id), bigcache's two copies on a read (key and
	// entry), the cached entry's versions, the write-behind version and value, the commit id,
	// the call's context (which holds its metadata and result), and one for what the pools
	// refill after a collection during the measured runs.
	maxActorCallAllocs = 10
	// maxPassThroughAllocs is a pass-through call's budget: it allocates nothing (function
	// names are interned; passTransport reads a small answer whole into pooled buffers). One is
	// a margin for the pools' refills after a collection during the measured runs. Issue 15 asks
	// for 3.
	maxPassThroughAllocs = 1
)

// routerAllocs returns the allocations per run of call through the router (total) and of bare,
// the same exchange without the router (baseline), each averaged over runs after a warm-up.
func routerAllocs(t *testing.T, call, bare func()) (total, baseline float64) {
	t.Helper()
	const runs = 500
	for range 50 { // warm: pools, connections, the cache
		call()
		bare()
	}
	return testing.AllocsPerRun(runs, call), testing.AllocsPerRun(runs, bare)
}

// skipAllocationCounts skips t under the race detector (it allocates on its own; hack/test.sh
// runs these tests without it) and with -short. It comes before the rig is built: a rig shut
// down before its router began serving would wait for it for ever.
func skipAllocationCounts(t *testing.T) {
	t.Helper()
	if raceEnabled {
		t.Skip("allocation counts: the race detector allocates on its own; hack/test.sh runs this without -race")
	}
	if testing.Short() {
		t.Skip("allocation counts: skipped with -short")
	}
}

// bareClient calls a rig's pod directly, over the same kind of in-memory connection.
func (rig *benchRig) bareClient(pod string) *fasthttp.HostClient {
	return &fasthttp.HostClient{
		Addr:            pod,
		Dial:            func(string) (net.Conn, error) { return rig.pods[pod].Dial() },
		ReadBufferSize:  16 << 10,
		WriteBufferSize: 16 << 10,
	}
}

func TestActorCallAllocations(t *testing.T) {
	skipAllocationCounts(t)
	rig := newBenchRig(t, writeBehindCache(t))
	paths := make([]string, 64)
	for i := range paths {
		paths[i] = "http://router/v1/actors/counter/allocs-" + strconv.Itoa(i) + "/add"
		rig.add(t, paths[i], "") // every measured call is a cache hit
	}
	pod := rig.bareClient("counter:1")
	envelope := []byte(`{"contract":2,"function":"counter","actor":"allocs-1","action":"add","state":{"value":1},"version":"v","payload":{"by":1},"metadata":{}}`)
	i := 0
	total, baseline := routerAllocs(t,
		func() { rig.add(t, paths[i%len(paths)], ""); i++ },
		func() { post(t, pod, "http://counter:1/v1/invoke", envelope) })
	withinBudget(t, "a cache-hit actor call", total, baseline, maxActorCallAllocs)
}

func TestPassThroughAllocations(t *testing.T) {
	skipAllocationCounts(t)
	rig := newBenchRig(t, &statecache.MemStore{})
	pod := rig.bareClient("hello:1")
	total, baseline := routerAllocs(t,
		func() { post(t, rig.client, "http://router/v1/functions/hello/hello", benchBody) },
		func() { post(t, pod, "http://hello:1/hello", benchBody) })
	withinBudget(t, "a pass-through call", total, baseline, maxPassThroughAllocs)
}

// withinBudget fails t when what allocates more than budget times in the router: total less
// what the caller and the pod allocate (baseline).
func withinBudget(t *testing.T, what string, total, baseline float64, budget int) {
	t.Helper()
	own := total - baseline
	if own > float64(budget) {
		t.Fatalf("%s allocates %.1f times in the router (%.1f in all, %.1f by the caller and pod), over the budget of %d",
			what, own, total, baseline, budget)
	}
	t.Logf("%s allocates %.1f times in the router (budget %d); caller and pod %.1f", what, own, budget, baseline)
}

// post sends body to url with client and fails t unless the answer is 200.
func post(t *testing.T, client *fasthttp.HostClient, url string, body []byte) {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(url)
	req.Header.SetMethod(fasthttp.MethodPost)
	req.Header.SetContentType("application/json")
	req.SetBody(body)
	if err := client.Do(req, resp); err != nil || resp.StatusCode() != fasthttp.StatusOK {
		t.Fatalf("POST %s: %v %d %s", url, err, resp.StatusCode(), resp.Body())
	}
}
