package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/knactor/knactor/router/record"
	"github.com/knactor/knactor/statecache"
	"github.com/knactor/knactor/test/faultproxy"
	"github.com/knactor/knactor/test/miniotest"
	"github.com/knactor/knactor/test/proctest"
)

func TestMain(m *testing.M) { proctest.Main(m) }

const (
	// callers is the load: 16 callers, 12 with keys and 4 without.
	keyedCallers, keylessCallers = 12, 4
	// actors spread the calls; few enough that each sees many turns (and conflicts, with two
	// routers).
	keyedActors, keylessActors = 24, 8
	bucket                     = "chaos"
)

func skipShort(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos: runs real processes under faults; run without -short")
	}
}

// startCounters runs n counter pods and returns their addresses, joined as --function wants.
func startCounters(t *testing.T, n int) string {
	t.Helper()
	bin := proctest.Build(t, "examples/counter")
	var addrs []string
	for range n {
		port := proctest.FreePort(t)
		addr := "127.0.0.1:" + strconv.Itoa(port)
		p := proctest.Start(t, "counter-"+strconv.Itoa(port), []string{"PORT=" + strconv.Itoa(port)}, bin)
		proctest.WaitHealthy(t, p, "http://"+addr+"/healthz")
		addrs = append(addrs, addr)
	}
	return strings.Join(addrs, ",")
}

// server is a knactor process (`knactor router` or `knactor up`) that the test kills and
// starts again on the same address.
type server struct {
	t      *testing.T
	name   string
	env    []string
	args   []string
	listen string

	mu   sync.Mutex
	proc *proctest.Process
	runs int
}

func newServer(t *testing.T, name string, env []string, args ...string) *server {
	listen := "127.0.0.1:" + strconv.Itoa(proctest.FreePort(t))
	s := &server{t: t, name: name, env: env, listen: listen,
		args: append(append([]string{}, args...), "--listen", listen)}
	s.start()
	return s
}

func (s *server) url() string { return "http://" + s.listen }

func (s *server) start() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.runs++
	s.proc = proctest.Start(s.t, fmt.Sprintf("%s-%d", s.name, s.runs), s.env, proctest.Build(s.t, "cmd/knactor"), s.args...)
	proctest.WaitHealthy(s.t, s.proc, s.url()+"/readyz")
}

// kill SIGKILLs the process and waits for it to be gone.
func (s *server) kill() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.proc.Signal(syscall.SIGKILL); err != nil {
		s.t.Fatalf("kill %s: %v", s.name, err)
	}
}

func s3Env() []string {
	return []string{"KNACTOR_S3_ACCESS_KEY=" + miniotest.AccessKey, "KNACTOR_S3_SECRET_KEY=" + miniotest.SecretKey}
}

// routerArgs run a router on the counter pods with its state on the S3 endpoint.
func routerArgs(endpoint, pods string, extra ...string) []string {
	return append([]string{"router", "--function", "counter=" + pods, "--s3-endpoint", endpoint,
		"--s3-bucket", bucket, "--s3-create-bucket", "--log-level", "warn"}, extra...)
}

// s3Store opens the bucket the routers write, to count what it holds.
func s3Store(t *testing.T, endpoint string) statecache.Store {
	t.Helper()
	s, err := statecache.OpenS3Store(context.Background(), statecache.S3Config{
		Endpoint: endpoint, Bucket: bucket, AccessKey: miniotest.AccessKey, SecretKey: miniotest.SecretKey, CreateBucket: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// run drives both loads for the test's fault schedule and returns when every caller is done.
func run(routers func() []string, faults func()) (keyed, keyless *load) {
	keyed = newLoad("k", true, keyedActors, routers)
	keyless = newLoad("n", false, keylessActors, routers)
	stop := make(chan struct{})
	waitKeyed := keyed.start(keyedCallers, stop)
	waitKeyless := keyless.start(keylessCallers, stop)
	faults()
	close(stop)
	waitKeyed()
	waitKeyless()
	return keyed, keyless
}

// (a) The store freezes (SIGSTOP) for longer than one S3 attempt's timeout, twice, under load
// from 16 callers. Writes in flight time out and are retried: some landed (MinIO processes
// what it had buffered once it resumes), some did not. Calls wait up to --store-timeout, then
// answer 503; keyed callers retry. Nothing is lost or applied twice.
func TestStoreFrozenUnderLoad(t *testing.T) {
	skipShort(t)
	start := time.Now()
	srv := miniotest.Start(t)
	pods := startCounters(t, 2)
	r := newServer(t, "router", s3Env(), routerArgs(srv.Endpoint, pods, "--s3-timeout", "1s", "--s3-attempts", "2", "--store-timeout", "2s")...)
	const freezes, frozen = 2, 4 * time.Second
	keyed, keyless := run(func() []string { return []string{r.url()} }, func() {
		for range freezes {
			time.Sleep(time.Second)
			if err := srv.Freeze(); err != nil {
				t.Fatal(err)
			}
			time.Sleep(frozen)
			if err := srv.Thaw(); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(time.Second)
	})
	report(t, start, fmt.Sprintf("MinIO frozen (SIGSTOP) %d × %v; S3 attempt timeout 1 s, store timeout 2 s", freezes, frozen), check(t, s3Store(t, srv.Endpoint), keyed, keyless))
}

// (b) The router is SIGKILLed 10 times under load and started again each time. Calls in
// flight die with it; keyed callers retry, and a retry of a call that had committed is
// answered from the actor's record.
func TestRouterKilledUnderLoad(t *testing.T) {
	skipShort(t)
	start := time.Now()
	srv := miniotest.Start(t)
	pods := startCounters(t, 2)
	r := newServer(t, "router", s3Env(), routerArgs(srv.Endpoint, pods)...)
	const kills = 10
	keyed, keyless := run(func() []string { return []string{r.url()} }, func() {
		for range kills {
			time.Sleep(400 * time.Millisecond)
			r.kill()
			r.start()
		}
		time.Sleep(500 * time.Millisecond)
	})
	report(t, start, fmt.Sprintf("router SIGKILLed %d × and restarted", kills), check(t, s3Store(t, srv.Endpoint), keyed, keyless))
}

// (c) Two routers, each with its own cache, on one MinIO bucket: calls for the same actors go
// through both (conflicting writes re-run on fresh state), and some calls are sent with the same
// key to both routers at once. Each distinct call is applied once, and both routers answer it
// with the same reply.
func TestTwoRoutersOneBucket(t *testing.T) {
	skipShort(t)
	start := time.Now()
	srv := miniotest.Start(t)
	pods := startCounters(t, 2)
	args := routerArgs(srv.Endpoint, pods, "--store-timeout", "5s")
	a, b := newServer(t, "router-a", s3Env(), args...), newServer(t, "router-b", s3Env(), args...)
	both := func() []string { return []string{a.url(), b.url()} }
	dual := newLoad("d", true, 4, both)
	stopDual := make(chan struct{})
	doneDual := make(chan struct{})
	var (
		mismatchMu sync.Mutex
		mismatches []string
	)
	go func() {
		defer close(doneDual)
		for i := int64(0); ; i++ {
			select {
			case <-stopDual:
				return
			default:
			}
			if m := dual.sendToAll(i); m != "" {
				mismatchMu.Lock()
				mismatches = append(mismatches, m)
				mismatchMu.Unlock()
			}
		}
	}()
	keyed, keyless := run(both, func() { time.Sleep(8 * time.Second) })
	close(stopDual)
	<-doneDual
	store := s3Store(t, srv.Endpoint)
	res := check(t, store, keyed, keyless)
	dres := check(t, store, dual, nil)
	if len(mismatches) > 0 {
		t.Errorf("%d keys answered differently by the two routers, e.g. %s", len(mismatches), mismatches[0])
	}
	res.calls += dres.calls
	res.lost += dres.lost
	res.twice += dres.twice
	res.replays += dres.replays
	res.failedAttempts += dres.failedAttempts
	report(t, start, fmt.Sprintf("2 routers, own caches, one bucket; %d calls sent with one key to both at once", dres.calls), res)
}

// (d) `knactor up` with write-through to its local store (the embedded log-structured database,
// whose fsyncs the turns of all actors share) is SIGKILLed 5 times under load and started again:
// its pods die with it and start from zero on the next call, and the store replays its log.
func TestKnactorUpKilledWriteThrough(t *testing.T) {
	skipShort(t)
	start := time.Now()
	dir := t.TempDir()
	manifest := proctest.CounterManifest(t, "counter")
	stateDir := filepath.Join(dir, "state")
	up := newServer(t, "up", nil, "up", "-f", manifest, "--state-dir", stateDir, "--log-dir", filepath.Join(dir, "logs"),
		"--write-mode", "write-through", "--log-level", "warn")
	const kills = 5
	keyed, keyless := run(func() []string { return []string{up.url()} }, func() {
		for range kills {
			time.Sleep(time.Second)
			up.kill()
			up.start()
		}
		time.Sleep(time.Second)
	})
	// The last stop is a SIGKILL as well: what was acknowledged must be in the store's log without
	// a graceful shutdown's help, and the dead process's lock is released for the count below.
	up.kill()
	store, err := statecache.OpenPebbleStore(stateDir, statecache.PebbleOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	report(t, start, fmt.Sprintf("`knactor up` (write-through, local store) SIGKILLed %d × and restarted", kills), check(t, store, keyed, keyless))
}

// (e) Every kind of store fault between the router and MinIO, from a fault-injecting proxy:
// answers dropped after the write reached MinIO (the ambiguous write), connections reset,
// 503s, latency past the attempt timeout, and a freeze.
func TestStoreFaultsThroughAProxy(t *testing.T) {
	skipShort(t)
	start := time.Now()
	srv := miniotest.Start(t)
	proxy := faultproxy.Start(t, srv.Endpoint)
	pods := startCounters(t, 2)
	r := newServer(t, "router", s3Env(), routerArgs(proxy.Addr(), pods, "--s3-timeout", "1s", "--s3-attempts", "2", "--store-timeout", "3s")...)
	schedule := []struct {
		fault faultproxy.Fault
		for_  time.Duration
	}{
		{faultproxy.Fault{Mode: faultproxy.DropResponse, Methods: []string{"PUT"}}, 2 * time.Second},
		{faultproxy.Fault{Mode: faultproxy.Reset}, time.Second},
		{faultproxy.Fault{Mode: faultproxy.Unavailable}, time.Second},
		{faultproxy.Fault{Mode: faultproxy.Latency, Delay: 1500 * time.Millisecond, Methods: []string{"PUT"}}, 2 * time.Second},
		{faultproxy.Fault{Mode: faultproxy.Freeze}, 3 * time.Second},
		{faultproxy.Fault{Mode: faultproxy.DropResponse, Methods: []string{"PUT"}}, 2 * time.Second},
	}
	var names []string
	keyed, keyless := run(func() []string { return []string{r.url()} }, func() {
		for _, s := range schedule {
			time.Sleep(500 * time.Millisecond)
			proxy.Set(s.fault)
			time.Sleep(s.for_)
			proxy.Clear()
			names = append(names, s.fault.Mode.String())
		}
		time.Sleep(time.Second)
	})
	res := check(t, s3Store(t, srv.Endpoint), keyed, keyless)
	st := proxy.Stats()
	var faulted int64
	for _, n := range st.Faulted {
		faulted += n
	}
	report(t, start, fmt.Sprintf("proxy faults in turn: %s (%d of %d requests faulted)", strings.Join(names, ", "), faulted, st.Requests), res)
}

// readRecord decodes what the store holds for an actor: its counter value.
func readRecord(ctx context.Context, s statecache.Store, actor string) (int, error) {
	e, err := s.Get(ctx, statecache.Key{Function: "counter", ID: actor})
	if err != nil {
		return 0, err
	}
	rec, err := record.Decode(e.Value, e.Exists)
	if err != nil || !rec.HasState {
		return 0, err
	}
	var v struct{ Value int }
	if err := json.Unmarshal(rec.State, &v); err != nil {
		return 0, fmt.Errorf("actor %s holds %q: %w", actor, rec.State, err)
	}
	return v.Value, nil
}
