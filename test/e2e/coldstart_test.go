package e2e

import (
	"net/http"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/knactor/knactor/test/proctest"
)

// The cold-start benchmarks time a call to a function at zero, end to end, beside the bare
// process start measured the same way. Run them with
//
//	go test -run XXX -bench ColdStart -benchtime 20x ./test/e2e/
//
// and read p50/p99 from the reported metrics.

// reportLatencies reports the p50 and p99 of ds in milliseconds.
func reportLatencies(b *testing.B, ds []time.Duration) {
	slices.Sort(ds)
	pct := func(p float64) float64 {
		i := int(float64(len(ds)-1) * p)
		return float64(ds[i].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.5), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(0, "ns/op") // the loop includes set-up; the percentiles are the result
}

// BenchmarkColdStartKnactor: `knactor up` with the counter at zero; time from sending the first
// call to its reply (activator hold, autoscaler poke, process start, readiness probe, turn).
func BenchmarkColdStartKnactor(b *testing.B) {
	var ds []time.Duration
	for range b.N {
		b.StopTimer()
		manifest := proctest.CounterManifest(b, "counter", "autoscaling.knative.dev/initial-scale", "0")
		port := proctest.FreePort(b)
		url := "http://127.0.0.1:" + strconv.Itoa(port)
		dir := b.TempDir()
		p := proctest.Start(b, "up-"+strconv.Itoa(port), nil, proctest.Build(b, "cmd/knactor"), "up", "--listen", "127.0.0.1:"+strconv.Itoa(port),
			"--state-dir", dir+"/state", "--log-dir", dir+"/logs", "--allow-zero-initial-scale", "-f", manifest)
		proctest.WaitHealthy(b, p, url+"/readyz")
		b.StartTimer()
		start := time.Now()
		resp, err := http.Post(url+"/v1/actors/counter/a/add", "application/json", strings.NewReader(`{"by":1}`))
		d := time.Since(start)
		b.StopTimer()
		if err != nil || resp.StatusCode != 200 {
			b.Fatalf("first call: %v %v", err, resp)
		}
		resp.Body.Close()
		ds = append(ds, d)
		_ = p.Signal(syscall.SIGTERM)
	}
	reportLatencies(b, ds)
}

// BenchmarkColdStartBareProcess: start the counter process and time until its first
// invocation answers, polling every millisecond.
func BenchmarkColdStartBareProcess(b *testing.B) {
	var ds []time.Duration
	envelope := `{"function":"counter","actor":"a","action":"add","version":"","payload":{"by":1},"metadata":{}}`
	for range b.N {
		port := proctest.FreePort(b)
		url := "http://127.0.0.1:" + strconv.Itoa(port) + "/v1/invoke"
		cmd := exec.Command(proctest.Build(b, "examples/counter"))
		cmd.Env = append(cmd.Environ(), "PORT="+strconv.Itoa(port))
		start := time.Now()
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		for {
			resp, err := http.Post(url, "application/json", strings.NewReader(envelope))
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					break
				}
			}
			if time.Since(start) > 30*time.Second {
				b.Fatal("counter never answered")
			}
			time.Sleep(time.Millisecond)
		}
		ds = append(ds, time.Since(start))
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}
	reportLatencies(b, ds)
}

// BenchmarkScaleUpReaction: a function holds one pod under one caller; then ten callers arrive
// (a 10× step). Reports the time until a second pod is ready.
func BenchmarkScaleUpReaction(b *testing.B) {
	var ds []time.Duration
	for range b.N {
		manifest := proctest.CounterManifest(b, "counter",
			"autoscaling.knative.dev/window", "6s",
			"autoscaling.knative.dev/target", "2",
			"autoscaling.knative.dev/target-utilization-percentage", "100",
			"autoscaling.knative.dev/max-scale", "10",
		)
		u := startUp(b, nil, "-f", manifest)
		r := routerProc{Process: u.Process, url: u.url}
		u.waitPods(b, "the initial pod", 30*time.Second, func(n int) bool { return n == 1 })
		steady := startLoad(r, 1, 4)
		time.Sleep(3 * time.Second)
		if n := u.readyPods(b); n != 1 {
			b.Fatalf("%d pods under steady load of one caller, want 1", n)
		}
		step := startLoad(r, 9, 4)
		ds = append(ds, u.waitPods(b, "scale-up after a 10× step", 30*time.Second, func(n int) bool { return n >= 2 }))
		step.end()
		steady.end()
		u.Signal(syscall.SIGTERM)
	}
	reportLatencies(b, ds)
}
