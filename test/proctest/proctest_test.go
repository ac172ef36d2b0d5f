package proctest

import (
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestMain(m *testing.M) { Main(m) }

func TestFreePort(t *testing.T) {
	port := FreePort(t)
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		t.Fatalf("listen on the free port %d: %v", port, err)
	}
	l.Close()
}

// startServer starts testdata/server with PORT and the extra env and returns it with its base
// URL, without waiting for it.
func startServer(t *testing.T, env ...string) (*Process, string) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs a real process; run without -short")
	}
	port := strconv.Itoa(FreePort(t))
	p := Start(t, "server", append([]string{"PORT=" + port}, env...), Build(t, "test/proctest/testdata/server"))
	return p, "http://127.0.0.1:" + port
}

func TestBuildReusesTheBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go build; run without -short")
	}
	first := Build(t, "test/proctest/testdata/server")
	if fi, err := os.Stat(first); err != nil || fi.Mode()&0o111 == 0 {
		t.Fatalf("Build returned %s (%v); want an executable", first, err)
	}
	if second := Build(t, "test/proctest/testdata/server"); second != first {
		t.Errorf("second Build = %s, want the first binary %s", second, first)
	}
}

func TestBuildFailureFailsTheTest(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go build; run without -short")
	}
	msg := fatalOf(t, func(tb testing.TB) { Build(tb, "test/proctest/testdata/nonexistent") })
	if !strings.Contains(msg, "go build ./test/proctest/testdata/nonexistent") {
		t.Errorf("Build of a missing package failed with %q, want the go build error", msg)
	}
}

func TestBuildNeedsMain(t *testing.T) {
	mu.Lock()
	inMain = false
	mu.Unlock()
	defer func() {
		mu.Lock()
		inMain = true
		mu.Unlock()
	}()
	msg := fatalOf(t, func(tb testing.TB) { Build(tb, "test/proctest/testdata/server") })
	if !strings.Contains(msg, "call proctest.Main from TestMain") {
		t.Errorf("Build without Main failed with %q, want a pointer to Main", msg)
	}
}

func TestStartWaitAndStop(t *testing.T) {
	p, url := startServer(t)
	WaitHealthy(t, p, url+"/healthz")
	if code := p.ExitCode(); code != -1 {
		t.Errorf("ExitCode while running = %d, want -1", code)
	}
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("Signal(SIGTERM) = %v, want nil", err)
	}
	select {
	case <-p.Exited():
	default:
		t.Fatal("Exited not closed after Signal returned")
	}
	if code := p.ExitCode(); code != 0 {
		t.Errorf("ExitCode = %d, want 0", code)
	}
	root := repoRoot(t)
	if log := p.Log(); !strings.Contains(log, "cwd="+root+"\n") || !strings.Contains(log, "a line on stderr\n") {
		t.Errorf("log = %q, want stdout (cwd=%s) and stderr", log, root)
	}
	if err := p.Signal(syscall.SIGTERM); err == nil {
		t.Error("Signal to an ended process = nil, want an error")
	}
}

func TestExitCode(t *testing.T) {
	p, url := startServer(t, "EXIT_CODE=3")
	WaitHealthy(t, p, url+"/healthz")
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.ExitCode(); code != 3 {
		t.Errorf("ExitCode = %d, want 3", code)
	}
}

// A process that ignores the signal gets SIGQUIT after the grace (a Go program prints its
// goroutines' stacks to its log), then SIGKILL.
func TestSignalKillsAfterTheGrace(t *testing.T) {
	defer func(d time.Duration) { stopGrace = d }(stopGrace)
	stopGrace = 300 * time.Millisecond
	p, url := startServer(t, "MODE=ignore-term")
	WaitHealthy(t, p, url+"/healthz")
	start := time.Now()
	err := p.Signal(syscall.SIGTERM)
	if err == nil || !strings.Contains(err.Error(), "killed") {
		t.Errorf("Signal(SIGTERM) to a process that ignores it = %v, want it killed", err)
	}
	if d := time.Since(start); d < stopGrace {
		t.Errorf("killed after %v, before the grace of %v", d, stopGrace)
	}
	// A Go program ends on the SIGQUIT with its goroutines' stacks (exit status 2); anything else
	// would have been killed (-1).
	if code := p.ExitCode(); code != 2 || !strings.Contains(p.Log(), "goroutine ") {
		t.Errorf("after the grace: exit code %d, log with stacks %v; want 2 and the stacks", code, strings.Contains(p.Log(), "goroutine "))
	}
}

func TestWaitHealthyFailsWhenTheProcessExits(t *testing.T) {
	p, url := startServer(t, "MODE=exit")
	msg := fatalOf(t, func(tb testing.TB) { WaitHealthy(tb, p, url+"/healthz") })
	if !strings.Contains(msg, "server exited (exit status 7) before") {
		t.Errorf("WaitHealthy failed with %q, want the exit", msg)
	}
}

func TestWaitHealthyTimesOut(t *testing.T) {
	defer func(d time.Duration) { healthyTimeout = d }(healthyTimeout)
	healthyTimeout = 300 * time.Millisecond
	p, url := startServer(t, "MODE=no-listen")
	msg := fatalOf(t, func(tb testing.TB) { WaitHealthy(tb, p, url+"/healthz") })
	if !strings.Contains(msg, "did not answer 200 within 300ms") {
		t.Errorf("WaitHealthy failed with %q, want the timeout", msg)
	}
}

// fatalTB records the message of Fatal or Fatalf and ends the goroutine, as testing.T does.
type fatalTB struct {
	testing.TB
	msg string
}

func (f *fatalTB) Helper() {}

func (f *fatalTB) Fatal(args ...any) { f.msg = fmt.Sprint(args...); runtime.Goexit() }

func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// fatalOf runs fn in a goroutine and returns the message it failed with ("" if none).
func fatalOf(t *testing.T, fn func(testing.TB)) string {
	tb := &fatalTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(tb)
	}()
	<-done
	return tb.msg
}

// fatalRecorder is a testing.TB whose Fatalf records the message and ends the goroutine, as
// t.Fatalf does, so a test can watch a helper fail.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (f *fatalRecorder) Helper() {}

func (f *fatalRecorder) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func TestEventually(t *testing.T) {
	defer func(d time.Duration) { eventuallyTimeout = d }(eventuallyTimeout)
	eventuallyTimeout = 200 * time.Millisecond
	tests := []struct {
		name      string
		holdAfter int           // cond holds from its holdAfter-th call on; < 0: never
		within    time.Duration // EventuallyWithin's bound; 0: Eventually
		wantFail  bool
	}{
		{name: "holds at once", holdAfter: 0},
		{name: "holds after a few polls", holdAfter: 5},
		{name: "never holds", holdAfter: -1, wantFail: true},
		{name: "within: holds after a few polls", holdAfter: 3, within: time.Second},
		{name: "within: never holds", holdAfter: -1, within: 50 * time.Millisecond, wantFail: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &fatalRecorder{TB: t}
			calls := 0
			done := make(chan struct{})
			start := time.Now()
			cond := func() bool {
				calls++
				return tt.holdAfter >= 0 && calls > tt.holdAfter
			}
			bound := eventuallyTimeout
			go func() {
				defer close(done)
				if tt.within > 0 {
					bound = tt.within
					EventuallyWithin(rec, tt.within, "the condition", cond)
					return
				}
				Eventually(rec, "the condition", cond)
			}()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("Eventually did not return")
			}
			if failed := rec.msg != ""; failed != tt.wantFail {
				t.Fatalf("failed = %v (%q), want %v", failed, rec.msg, tt.wantFail)
			}
			if tt.wantFail {
				if !strings.Contains(rec.msg, "timed out waiting for the condition") {
					t.Errorf("message %q does not say what it waited for", rec.msg)
				}
				if d := time.Since(start); d < bound {
					t.Errorf("gave up after %v, before its bound of %v", d, bound)
				}
				return
			}
			if calls != tt.holdAfter+1 {
				t.Errorf("cond called %d times, want %d", calls, tt.holdAfter+1)
			}
		})
	}
}

func TestFreePortsAreDistinctAndFree(t *testing.T) {
	tests := []struct {
		name string
		n    int
	}{
		{name: "one", n: 1},
		{name: "six", n: 6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ports, err := FreePorts(tt.n)
			if err != nil {
				t.Fatal(err)
			}
			seen := map[int]bool{}
			for _, p := range ports {
				if seen[p] {
					t.Fatalf("port %d given twice in %v", p, ports)
				}
				seen[p] = true
				l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
				if err != nil {
					t.Fatalf("listen on the free port %d: %v", p, err)
				}
				l.Close()
			}
			if len(ports) != tt.n {
				t.Fatalf("%d ports, want %d", len(ports), tt.n)
			}
		})
	}
}

func TestClosedAddrRefusesConnections(t *testing.T) {
	addr := ClosedAddr(t)
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err == nil {
		c.Close()
		t.Fatalf("dialling %s succeeded, want it refused", addr)
	}
}
