package proctest

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

var (
	// stopGrace is how long Signal waits for the process to end before it kills it.
	stopGrace = 10 * time.Second
	// healthyTimeout is how long WaitHealthy waits for a 200.
	healthyTimeout = 30 * time.Second
)

// Process is a process started by Start.
type Process struct {
	name string
	cmd  *exec.Cmd
	log  string
	exit chan struct{}
}

// Start runs bin with args in the repository root, with env added to the test's environment and
// its output in a log file in t's temp dir. The process is killed if the test binary dies; when
// the test ends it is stopped with SIGTERM (SIGKILL after 10 s) and, if the test failed, its log
// is shown. name names the process in messages and its log file.
func Start(t testing.TB, name string, env []string, bin string, args ...string) *Process {
	t.Helper()
	root := repoRoot(t)
	log := filepath.Join(t.TempDir(), name+".log")
	f, err := os.Create(log)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command(bin, args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	dieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p := &Process{name: name, cmd: cmd, log: log, exit: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.exit) }()
	t.Cleanup(func() {
		_ = p.Signal(syscall.SIGTERM)
		if t.Failed() {
			t.Logf("%s log:\n%s", name, p.Log())
		}
	})
	return p
}

// Cmd returns the process's command; its ProcessState is set once Exited is closed.
func (p *Process) Cmd() *exec.Cmd { return p.cmd }

// Exited is closed once the process has ended.
func (p *Process) Exited() <-chan struct{} { return p.exit }

// Signal sends sig to the process and waits for it to end, killing it if it still runs 10 s
// later. It returns an error if sig could not be sent (the process had ended already) or the
// process had to be killed.
func (p *Process) Signal(sig os.Signal) error {
	sendErr := p.cmd.Process.Signal(sig)
	select {
	case <-p.exit:
		if sendErr != nil {
			return fmt.Errorf("%s: signal %q: %w", p.name, sig, sendErr)
		}
		return nil
	case <-time.After(stopGrace):
		// A Go program prints every goroutine's stack on SIGQUIT: the log then shows where it hung.
		_ = p.cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-p.exit:
		case <-time.After(2 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.exit
		}
		return fmt.Errorf("%s still running %v after signal %q: sent SIGQUIT (its log holds its goroutines' stacks) and killed it", p.name, stopGrace, sig)
	}
}

// ExitCode is the process's exit code once it has ended; -1 while it runs or if a signal ended
// it.
func (p *Process) ExitCode() int {
	select {
	case <-p.exit:
		return p.cmd.ProcessState.ExitCode()
	default:
		return -1
	}
}

// Log returns what the process wrote to stdout and stderr so far.
func (p *Process) Log() string {
	b, err := os.ReadFile(p.log)
	if err != nil {
		return fmt.Sprintf("(cannot read the log: %v)", err)
	}
	return string(b)
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	ports, err := FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	return ports[0]
}

// FreePorts returns n distinct TCP ports on 127.0.0.1 that were free a moment ago: all n are
// held open until the last is found, so none repeats. It is for setup code that reports errors
// rather than failing a test (miniotest, kubetest).
func FreePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// ClosedAddr returns a loopback host:port that nobody listens on (a port that was free a moment
// ago): dialling it is refused, for tests of a peer or pod that is gone.
func ClosedAddr(t testing.TB) string {
	t.Helper()
	return "127.0.0.1:" + strconv.Itoa(FreePort(t))
}

// WaitHealthy polls url until it answers 200. It fails t if p exits first or url does not answer
// 200 within 30 s.
func WaitHealthy(t testing.TB, p *Process, url string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), healthyTimeout)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp, err := http.DefaultClient.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-p.exit:
			t.Fatalf("%s exited (%v) before %s answered 200", p.name, p.cmd.ProcessState, url)
		case <-ctx.Done():
			t.Fatalf("%s: %s did not answer 200 within %v", p.name, url, healthyTimeout)
		case <-tick.C:
		}
	}
}
