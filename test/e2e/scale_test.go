package e2e

import (
	"bufio"
	"fmt"

	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/knactor/knactor/test/miniotest"
	"github.com/knactor/knactor/test/proctest"
)

// upProc is a `knactor up` process.
type upProc struct {
	*proctest.Process
	url string
}

func startUp(t testing.TB, env []string, args ...string) upProc {
	t.Helper()
	port := proctest.FreePort(t)
	listen := "127.0.0.1:" + strconv.Itoa(port)
	dir := t.TempDir()
	all := append([]string{"up", "--listen", listen, "--state-dir", filepath.Join(dir, "state"), "--log-dir", filepath.Join(dir, "logs")}, args...)
	p := proctest.Start(t, "up-"+strconv.Itoa(port), env, proctest.Build(t, "cmd/knactor"), all...)
	u := upProc{Process: p, url: "http://" + listen}
	proctest.WaitHealthy(t, p, u.url+"/readyz")
	return u
}

var metricLine = regexp.MustCompile(`^(knactor_[a-z_]+)\{([^}]*)\} ([0-9.e+-]+)$`)

// metric reads one gauge from /metrics: name with the given label text, e.g.
// `function="counter",state="ready"`.
func (u upProc) metric(t testing.TB, name, labels string) float64 {
	t.Helper()
	resp, err := client.Get(u.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if m := metricLine.FindStringSubmatch(sc.Text()); m != nil && m[1] == name && m[2] == labels {
			v, _ := strconv.ParseFloat(m[3], 64)
			return v
		}
	}
	return -1
}

func (u upProc) readyPods(t testing.TB) int { return u.readyPodsOf(t, "counter") }

func (u upProc) readyPodsOf(t testing.TB, function string) int {
	return int(u.metric(t, "knactor_pods", `function="`+function+`",state="ready"`))
}

// waitPods waits until cond holds for the counter's ready pod count, or fails after limit.
func (u upProc) waitPods(t testing.TB, what string, limit time.Duration, cond func(int) bool) time.Duration {
	t.Helper()
	return u.waitPodsOf(t, "counter", what, limit, cond)
}

// waitPodsOf waits until cond holds for function's ready pod count, or fails after limit.
func (u upProc) waitPodsOf(t testing.TB, function, what string, limit time.Duration, cond func(int) bool) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		n := u.readyPodsOf(t, function)
		if cond(n) {
			return time.Since(start)
		}
		if time.Since(start) > limit {
			t.Fatalf("%s: %d ready pods after %v", what, n, limit)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// load sends calls from workers goroutines, each to its own actors, until stop is closed,
// counting acknowledged increments per actor.
type load struct {
	mu     sync.Mutex
	acked  map[string]int
	failed atomic.Int64
	errs   []error
	wg     sync.WaitGroup
	stop   chan struct{}
}

func startLoad(r routerProc, workers, actorsPerWorker int) *load {
	l := &load{acked: map[string]int{}, stop: make(chan struct{})}
	for w := range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for i := 0; ; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				actor := fmt.Sprintf("w%d-a%d", w, i%actorsPerWorker)
				_, _, err := add(r, actor, 1)
				l.mu.Lock()
				if err != nil {
					l.failed.Add(1)
					if len(l.errs) < 5 {
						l.errs = append(l.errs, err)
					}
				} else {
					l.acked[actor]++
				}
				l.mu.Unlock()
			}
		}()
	}
	return l
}

func (l *load) end() { close(l.stop); l.wg.Wait() }

// verify checks every actor's state equals its acknowledged increments.
func (l *load) verify(t *testing.T, r routerProc) {
	t.Helper()
	for actor, n := range l.acked {
		if got := stateOf(t, r, actor); got != n {
			t.Errorf("%s = %d, want the %d acknowledged increments", actor, got, n)
		}
	}
}

func TestScaleFromZeroPanicAndBackToZero(t *testing.T) {
	skipShort(t)
	manifest := proctest.CounterManifest(t, "counter",
		"autoscaling.knative.dev/initial-scale", "0",
		"autoscaling.knative.dev/window", "30s", // panic window: 10% = 3 s
		"autoscaling.knative.dev/target", "1",
		"autoscaling.knative.dev/target-utilization-percentage", "100",
		"autoscaling.knative.dev/max-scale", "4",
	)
	u := startUp(t, nil, "-f", manifest, "--allow-zero-initial-scale", "--scale-to-zero-grace", "1s")
	r := routerProc{Process: u.Process, url: u.url}
	if n := u.readyPods(t); n != 0 {
		t.Fatalf("%d pods before the first call, want 0", n)
	}

	// 200 calls arrive at a function at zero: all are held, then served.
	var wg sync.WaitGroup
	var failed atomic.Int64
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, _, err := add(r, "cold-"+strconv.Itoa(i%20), 1); err != nil {
				failed.Add(1)
				t.Log(err)
			}
		}()
	}
	wg.Wait()
	if failed.Load() > 0 {
		t.Fatalf("%d of 200 calls at zero failed", failed.Load())
	}
	for a := range 20 {
		if got := stateOf(t, r, "cold-"+strconv.Itoa(a)); got != 10 {
			t.Fatalf("cold-%d = %d, want 10", a, got)
		}
	}

	// A burst: 16 callers keep the in-flight count far above one pod's target of 1. The
	// autoscaler panics and the pod count rises within the 3 s panic window.
	const panicWindow = 3 * time.Second
	l := startLoad(r, 16, 8)
	burst := time.Now()
	took := u.waitPods(t, "scale-up under a burst", panicWindow, func(n int) bool { return n >= 2 })
	t.Logf("pods rose to ≥2 %v into the burst", took)
	// Local mode scales functions, not revisions: the revision label is empty.
	for u.metric(t, "knactor_autoscaler_panic_mode", `function="counter",revision=""`) != 1 {
		if time.Since(burst) > panicWindow {
			t.Fatal("the autoscaler did not panic within the panic window of a burst")
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(2 * time.Second)
	l.end()
	if l.failed.Load() > 0 {
		t.Fatalf("%d calls failed during the scale-up: %v", l.failed.Load(), l.errs)
	}

	// Idle: back to zero after the stable window (30 s) and the grace period (1 s).
	idle := u.waitPods(t, "scale to zero", 60*time.Second, func(n int) bool { return n == 0 })
	if idle < 30*time.Second {
		t.Fatalf("scaled to zero %v after the load stopped, before the 30 s stable window", idle)
	}
	t.Logf("scaled to zero %v after the load stopped", idle)

	// Counts stayed exact through 0→N→0, and a call at zero works again.
	l.verify(t, r)
	if v, _, err := add(r, "cold-0", 1); err != nil || v != 11 {
		t.Fatalf("call after scale to zero: %d, %v", v, err)
	}
}

func TestPodKilledUnderLoadLosesNoAcknowledgedState(t *testing.T) {
	skipShort(t)
	srv := miniotest.Start(t)
	env, args := minioRouterArgs(srv)
	manifest := proctest.CounterManifest(t, "counter",
		"autoscaling.knative.dev/min-scale", "2",
		"autoscaling.knative.dev/max-scale", "2",
	)
	u := startUp(t, env, append(args, "-f", manifest)...)
	r := routerProc{Process: u.Process, url: u.url}
	u.waitPods(t, "two pods", 30*time.Second, func(n int) bool { return n == 2 })

	l := startLoad(r, 8, 16)
	time.Sleep(500 * time.Millisecond)
	pids := proctest.ChildPIDs(t, u.Cmd().Process.Pid)
	if len(pids) != 2 {
		t.Fatalf("found %d pod processes, want 2", len(pids))
	}
	if err := syscall.Kill(pids[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // calls go on while the pod restarts
	l.end()
	l.verify(t, r)
	if f := l.failed.Load(); f > 0 {
		t.Errorf("%d calls failed when a pod died (their actors should move to the other pod): %v", f, l.errs)
	}
	u.waitPods(t, "the killed pod restarts", 30*time.Second, func(n int) bool { return n == 2 })
}
