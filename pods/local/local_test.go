package local

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/knactor/knactor/router/placement"
	"github.com/knactor/knactor/test/proctest"
)

func TestMain(m *testing.M) {
	RunShimIfAsked() // the tests' pods run under this test binary as their shim
	proctest.Main(m)
}

// counterBin returns the path of the examples/counter binary.
func counterBin(t *testing.T) string { return proctest.Build(t, "examples/counter") }

func newRuntime(t *testing.T, cfg Config) *Runtime {
	t.Helper()
	if testing.Short() {
		t.Skip("runs real processes; run without -short")
	}
	cfg.LogDir = t.TempDir()
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := r.Close(ctx); err != nil {
			t.Error(err)
		}
	})
	return r
}

// waitReady waits until the function has n ready pods.
func waitReady(t *testing.T, r *Runtime, fn string, n int) *placement.Set {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		changed := r.Changed(fn)
		if set := r.Ready(fn); set.Len() == n {
			return set
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("%s: %d ready pods, want %d (pods %+v)", fn, r.Ready(fn).Len(), n, r.Pods(fn))
		}
	}
}

func TestScaleUpProbesAndScaleDownStops(t *testing.T) {
	r := newRuntime(t, Config{})
	if err := r.Deploy(Function{Name: "counter", Command: []string{counterBin(t)}}); err != nil {
		t.Fatal(err)
	}
	if err := r.Scale(context.Background(), "counter", 2); err != nil {
		t.Fatal(err)
	}
	set := waitReady(t, r, "counter", 2)
	for _, p := range set.Pods() {
		if !strings.HasPrefix(p.Addr, "127.0.0.1:") {
			t.Fatalf("pod %s listens on %s, want loopback", p.Name, p.Addr)
		}
	}
	if err := r.Scale(context.Background(), "counter", 0); err != nil {
		t.Fatal(err)
	}
	if n := r.Ready("counter").Len(); n != 0 {
		t.Fatalf("%d pods ready right after scaling to 0: removal must take them out at once", n)
	}
	r.wg.Wait() // every supervisor ended: the processes are gone
	for _, p := range set.Pods() {
		if b, err := os.ReadFile(filepath.Join(r.cfg.LogDir, "counter", p.Name+".log")); err != nil {
			t.Fatalf("no log for %s: %v", p.Name, err)
		} else if len(b) == 0 {
			t.Logf("log of %s is empty", p.Name)
		}
	}
}

func TestCrashedPodRestartsOnItsAddress(t *testing.T) {
	r := newRuntime(t, Config{})
	_ = r.Deploy(Function{Name: "counter", Command: []string{counterBin(t)}})
	_ = r.Scale(context.Background(), "counter", 1)
	before := waitReady(t, r, "counter", 1).Pods()[0]
	changed := r.Changed("counter")
	if err := r.Kill("counter", before.Name); err != nil {
		t.Fatal(err)
	}
	<-changed // it left the ready set
	after := waitReady(t, r, "counter", 1).Pods()[0]
	if after != before {
		t.Fatalf("restarted pod is %+v, want %+v (same name and address, so its actors stay)", after, before)
	}
	if st := r.Pods("counter")[0]; st.Restarts != 1 {
		t.Fatalf("restarts = %d, want 1", st.Restarts)
	}
}

// recordingDrainer checks the pod still runs while it is drained.
type recordingDrainer struct {
	mu      sync.Mutex
	drained []string
	alive   []bool
}

func (d *recordingDrainer) Drain(_ context.Context, p placement.Pod) error {
	resp, err := (&http.Client{Timeout: time.Second}).Get("http://" + p.Addr + "/healthz")
	if err == nil {
		resp.Body.Close()
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.drained = append(d.drained, p.Name)
	d.alive = append(d.alive, err == nil)
	return nil
}

// warmList is a WarmActors whose warm actors are the same for every function.
type warmList []string

func (w *warmList) WarmIDs(string) []string { return *w }

func TestScaleDownRemovesThePodOwningFewestWarmActors(t *testing.T) {
	d := &recordingDrainer{}
	var warm warmList // filled below, before the scale-down reads it
	r := newRuntime(t, Config{Drainer: d, WarmActors: &warm})
	_ = r.Deploy(Function{Name: "counter", Command: []string{counterBin(t)}})
	_ = r.Scale(context.Background(), "counter", 3)
	set := waitReady(t, r, "counter", 3)
	// Warm actors: 20 on each of two pods, 1 on the third.
	light := set.Pods()[2].Name
	want := map[string]int{set.Pods()[0].Name: 20, set.Pods()[1].Name: 20, light: 1}
	counts := map[string]int{}
	for i := 0; len(warm) < 41; i++ {
		id := "actor-" + strconv.Itoa(i)
		if o, _ := set.Owner("counter/" + id); counts[o.Name] < want[o.Name] {
			counts[o.Name]++
			warm = append(warm, id)
		}
	}
	if err := r.Scale(context.Background(), "counter", 2); err != nil {
		t.Fatal(err)
	}
	if r.Ready("counter").Contains(light) || r.Ready("counter").Len() != 2 {
		t.Fatalf("after scale-down the ready set is %v; want every pod but %s (warm counts %v)", r.Ready("counter").Pods(), light, counts)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		d.mu.Lock()
		n := len(d.drained)
		d.mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the removed pod was not drained")
		}
		time.Sleep(time.Millisecond)
	}
	if d.drained[0] != light || !d.alive[0] {
		t.Fatalf("drained %v (alive %v), want %s drained while still running", d.drained, d.alive, light)
	}
}

func TestStopEscalatesToSIGKILL(t *testing.T) {
	r := newRuntime(t, Config{StopGrace: 200 * time.Millisecond})
	// Ignores SIGTERM and never turns ready; it says when its trap is in place.
	armed := filepath.Join(t.TempDir(), "armed")
	_ = r.Deploy(Function{Name: "stubborn", Command: []string{"sh", "-c", `trap "" TERM; touch "$ARMED"; while :; do sleep 0.05; done`},
		Env: []string{"ARMED=" + armed}})
	_ = r.Scale(context.Background(), "stubborn", 1)
	var pid int
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		r.mu.Lock()
		pid = r.fns["stubborn"].pods[0].pid
		r.mu.Unlock()
		if _, err := os.Stat(armed); err == nil && pid != 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the process did not start and arm its trap")
		}
	}
	start := time.Now()
	_ = r.Scale(context.Background(), "stubborn", 0)
	r.wg.Wait()
	if err := syscall.Kill(pid, 0); err == nil {
		t.Fatal("the process survived its stop")
	}
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Fatalf("stopped after %v: SIGKILL came before the grace period", d)
	}
}
