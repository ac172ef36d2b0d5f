package e2e

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// binaries built once per test run: name → path.
var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// binary returns the path of a knactor binary built from this checkout (cmd/knactor,
// examples/counter, ...), building all of them on first use.
func binary(t testing.TB, name string) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "knactor-e2e-bin-")
		if buildErr != nil {
			return
		}
		for _, pkg := range []string{"cmd/knactor", "examples/counter"} {
			out, err := exec.Command("go", "build", "-o", filepath.Join(binDir, filepath.Base(pkg)), "../../"+pkg).CombinedOutput()
			if err != nil {
				buildErr = fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(binDir, name)
}

// proc is a real process started for a test, stopped by PID when the test ends.
type proc struct {
	t    testing.TB
	cmd  *exec.Cmd
	log  string
	exit chan struct{}
}

// start runs bin with args and extra env, logging to a file in the test's temp dir.
func start(t testing.TB, name, bin string, env []string, args ...string) *proc {
	t.Helper()
	log := filepath.Join(t.TempDir(), name+".log")
	f, err := os.Create(log)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command(bin, args...)
	cmd.Dir = "../.." // the repository root, where the README's commands run
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{t: t, cmd: cmd, log: log, exit: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.exit) }()
	t.Cleanup(func() {
		p.signal(syscall.SIGTERM)
		if t.Failed() {
			b, _ := os.ReadFile(log)
			t.Logf("%s log:\n%s", name, b)
		}
	})
	return p
}

// signal sends sig and waits for the process to end (SIGKILL after 10 s).
func (p *proc) signal(sig syscall.Signal) {
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.exit:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exit
	}
}

// exitCode is the process's exit code once it ended.
func (p *proc) exitCode() int { return p.cmd.ProcessState.ExitCode() }

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// waitHealthy polls url until it answers 200.
func waitHealthy(t testing.TB, p *proc, url string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-p.exit:
			t.Fatalf("process exited before %s answered", url)
		default:
		}
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s not healthy within 30 s", url)
}

// startCounter runs a counter pod and returns its address.
func startCounter(t *testing.T) string {
	t.Helper()
	port := freePort(t)
	p := start(t, "counter-"+strconv.Itoa(port), binary(t, "counter"), []string{"PORT=" + strconv.Itoa(port)})
	addr := "127.0.0.1:" + strconv.Itoa(port)
	waitHealthy(t, p, "http://"+addr+"/healthz")
	return addr
}
