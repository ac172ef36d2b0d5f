// Package miniotest starts a real MinIO server on 127.0.0.1 for tests.
//
// The server binary is the pinned build that hack/install-minio.sh installs into the project's
// bin/ (built through the Go toolchain the first time, reused afterwards). Each Start gets a free
// port and a fresh data directory and is stopped when the test ends; Freeze and Thaw make it hang
// and resume, as a stuck store does (Linux only, like the rest). Under `go test -short` the
// tests that need MinIO are skipped; otherwise a MinIO that cannot start fails the test.
package miniotest

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/knactor/knactor/test/proctest"
)

const (
	// AccessKey and SecretKey are the root credentials of every test server. They guard nothing
	// but a throw-away data directory on loopback.
	AccessKey = "knactor-test"
	SecretKey = "knactor-test-secret"

	// readyTimeout bounds MinIO's start; it is ready in ~0.4 s on 2 cores, so 30 s only trips
	// on a broken binary or a machine under extreme load.
	readyTimeout = 30 * time.Second
	// stopGrace is how long a SIGTERM gets before SIGKILL; MinIO stops in ~2 s.
	stopGrace = 10 * time.Second
	// signalTimeout bounds how long Freeze and Thaw wait for the process's threads to stop or
	// resume, which takes well under a millisecond.
	signalTimeout = 5 * time.Second
)

// Server is one running MinIO.
type Server struct {
	// Endpoint is host:port of the S3 API.
	Endpoint string
	// DataDir holds the server's data; it survives Stop, so a restarted server sees it again.
	DataDir string

	bin     string
	logPath string

	mu     sync.Mutex    // guards cmd, exit and frozen
	cmd    *exec.Cmd     // the running server; nil after Stop or Kill
	exit   chan struct{} // closed when cmd has exited
	frozen bool          // cmd is stopped by Freeze
}

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// Binary returns the path of the pinned MinIO server, installing it on first use. The
// KNACTOR_MINIO_BIN environment variable overrides it.
func Binary() (string, error) {
	binOnce.Do(func() {
		if p := os.Getenv("KNACTOR_MINIO_BIN"); p != "" {
			binPath = p
			return
		}
		root, err := moduleRoot()
		if err != nil {
			binErr = err
			return
		}
		var stderr bytes.Buffer
		cmd := exec.Command("bash", filepath.Join(root, "hack", "install-minio.sh"))
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			binErr = fmt.Errorf("install MinIO with hack/install-minio.sh: %w\n%s", err, stderr.String())
			return
		}
		binPath = strings.TrimSpace(string(out))
	})
	return binPath, binErr
}

// moduleRoot finds the directory of knactor's go.mod from the working directory upwards.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "hack", "install-minio.sh")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("cannot find the knactor repository root (hack/install-minio.sh) above the working directory")
		}
		dir = parent
	}
}

// Start runs a MinIO server for the test and stops it at the test's end. It skips the test
// under -short and fails it when MinIO cannot start.
func Start(t testing.TB) *Server {
	t.Helper()
	if testing.Short() {
		t.Skip("needs a real MinIO server; run without -short")
	}
	bin, err := Binary()
	if err != nil {
		t.Fatalf("miniotest: %v", err)
	}
	dir := t.TempDir()
	s := &Server{DataDir: filepath.Join(dir, "data"), bin: bin, logPath: filepath.Join(dir, "minio.log")}
	if err := s.Restart(); err != nil {
		t.Fatalf("miniotest: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("miniotest: stop: %v", err)
		}
	})
	return s
}

// Restart starts the server again after Stop or Kill, on a new port, with the same data.
func (s *Server) Restart() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return errors.New("minio is already running")
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ { // a freed port can be taken by someone else
		if lastErr = s.startLocked(); lastErr == nil {
			return nil
		}
	}
	return lastErr
}

func (s *Server) startLocked() error {
	ports, err := proctest.FreePorts(2)
	if err != nil {
		return err
	}
	logFile, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer logFile.Close()
	endpoint := fmt.Sprintf("127.0.0.1:%d", ports[0])
	cmd := exec.Command(s.bin, "server", s.DataDir, "--address", endpoint,
		"--console-address", fmt.Sprintf("127.0.0.1:%d", ports[1]), "--quiet")
	cmd.Env = append(os.Environ(), "MINIO_ROOT_USER="+AccessKey, "MINIO_ROOT_PASSWORD="+SecretKey,
		"MINIO_BROWSER=off", "MINIO_UPDATE=off")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the test
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", s.bin, err)
	}
	exit := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exit) }()
	if err := waitReady(endpoint, exit); err != nil {
		_ = cmd.Process.Kill()
		<-exit
		return fmt.Errorf("%w; log:\n%s", err, tail(s.logPath))
	}
	s.Endpoint, s.cmd, s.exit = endpoint, cmd, exit
	return nil
}

// Stop ends the server with SIGTERM (SIGKILL after a grace period) and waits for it. A frozen
// server is resumed to handle the SIGTERM.
func (s *Server) Stop() error { return s.signal(syscall.SIGTERM) }

// Kill ends the server with SIGKILL, as a crash would, and waits for it. It works on a frozen
// server too.
func (s *Server) Kill() error { return s.signal(syscall.SIGKILL) }

// Freeze stops the server process with SIGSTOP: it keeps its sockets but answers nothing, as a
// hung store does. Thaw resumes it. Freeze returns once every thread of the process has stopped
// (the signal itself takes effect asynchronously). Stop, Kill and the test's cleanup work on a
// frozen server. Freeze fails when the server is not running; freezing a frozen server does
// nothing.
func (s *Server) Freeze() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return errors.New("minio is not running")
	}
	if err := s.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		return fmt.Errorf("freeze minio: %w", err)
	}
	s.frozen = true
	return s.waitStoppedLocked(true)
}

// Thaw resumes a server stopped by Freeze with SIGCONT, and returns once no thread of it is
// stopped any more; it does nothing to a server that is not frozen. Requests that reached the
// server while it was frozen are processed now.
func (s *Server) Thaw() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil || !s.frozen {
		return nil
	}
	if err := s.contLocked(); err != nil {
		return err
	}
	return s.waitStoppedLocked(false)
}

// contLocked sends SIGCONT to a frozen server. s.mu must be held and s.cmd set.
func (s *Server) contLocked() error {
	if err := s.cmd.Process.Signal(syscall.SIGCONT); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("thaw minio: %w", err)
	}
	s.frozen = false
	return nil
}

// waitStoppedLocked waits until every thread of the server is stopped (stopped true) or none is
// (stopped false), as /proc/PID/task/TID/stat shows (state T). s.mu must be held and s.cmd set.
func (s *Server) waitStoppedLocked(stopped bool) error {
	pid := s.cmd.Process.Pid
	deadline := time.Now().Add(signalTimeout)
	for {
		select {
		case <-s.exit:
			return errors.New("minio exited")
		default:
		}
		all, some, err := threadsStopped(pid)
		if err != nil {
			return err
		}
		if stopped && all || !stopped && !some {
			return nil
		}
		if time.Now().After(deadline) {
			if stopped {
				return fmt.Errorf("minio (pid %d) not stopped within %v of SIGSTOP", pid, signalTimeout)
			}
			return fmt.Errorf("minio (pid %d) not resumed within %v of SIGCONT", pid, signalTimeout)
		}
		time.Sleep(time.Millisecond)
	}
}

// threadsStopped reports whether all and whether some of the threads of process pid are stopped.
func threadsStopped(pid int) (all, some bool, err error) {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return false, false, err
	}
	all = true
	for _, task := range tasks {
		stat, err := os.ReadFile(filepath.Join(dir, task.Name(), "stat"))
		if errors.Is(err, os.ErrNotExist) {
			continue // the thread has exited
		} else if err != nil {
			return false, false, err
		}
		// "TID (COMM) STATE ...": COMM may contain anything, ")" included.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 || i+2 >= len(stat) {
			return false, false, fmt.Errorf("cannot parse %s/%s/stat: %q", dir, task.Name(), stat)
		}
		state := stat[i+2]
		isStopped := state == 'T' || state == 't'
		all, some = all && isStopped, some || isStopped
	}
	return all, some, nil
}

func (s *Server) signal(sig syscall.Signal) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return nil
	}
	defer func() { s.cmd, s.frozen = nil, false }()
	if err := s.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	// A stopped process keeps SIGTERM pending until it continues (SIGKILL needs no help). The
	// signal goes first, so a frozen server does not serve the requests it has buffered before
	// it sees it. Should SIGCONT fail, the SIGKILL after stopGrace still ends the process.
	if s.frozen {
		_ = s.contLocked()
	}
	select {
	case <-s.exit:
		return nil
	case <-time.After(stopGrace):
		_ = s.cmd.Process.Kill()
		<-s.exit
		return fmt.Errorf("minio did not stop within %v of %v; killed", stopGrace, sig)
	}
}

func waitReady(endpoint string, exit <-chan struct{}) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(readyTimeout)
	for time.Now().Before(deadline) {
		select {
		case <-exit:
			return errors.New("minio exited during start")
		default:
		}
		resp, err := client.Get("http://" + endpoint + "/minio/health/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && iamReady(client, endpoint) {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("minio not ready at %s within %v", endpoint, readyTimeout)
}

// iamReady reports whether MinIO's IAM has initialized, which it does after /minio/health/ready
// answers 200: until then a request signed with a key MinIO must look up is answered 503
// XMinioIAMNotInitialized, where tests expect the 403 a wrong key gets. The probe is signed
// (badly) with an unknown key and the current time, so MinIO gets as far as looking the key up.
func iamReady(client *http.Client, endpoint string) bool {
	req, err := http.NewRequest(http.MethodGet, "http://"+endpoint+"/", nil)
	if err != nil {
		return false
	}
	now := time.Now().UTC()
	req.Header.Set("X-Amz-Date", now.Format("20060102T150405Z"))
	req.Header.Set("X-Amz-Content-Sha256", "UNSIGNED-PAYLOAD")
	req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=knactor-iam-probe/"+now.Format("20060102")+
		"/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature="+strings.Repeat("0", 64))
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode != http.StatusServiceUnavailable
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 4096 {
		b = b[len(b)-4096:]
	}
	return string(b)
}
