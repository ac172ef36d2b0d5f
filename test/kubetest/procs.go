package kubetest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// process is one component of the cluster, started by path and stopped by PID.
type process struct {
	name    string
	logPath string
	cmd     *exec.Cmd
	exit    chan struct{}
}

// startProcess starts bin with args (and env, when not nil), output appended to logPath.
func startProcess(name, logPath, bin string, env []string, args ...string) (*process, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Pdeathsig: a component never outlives the test binary, even when it is SIGKILLed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{name: name, logPath: logPath, cmd: cmd, exit: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.exit) }()
	return p, nil
}

func (p *process) exited() bool {
	select {
	case <-p.exit:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, waits up to grace, then SIGKILLs; it always waits for the process.
func (p *process) stop(grace time.Duration) error {
	if p.exited() {
		return nil
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	select {
	case <-p.exit:
		return nil
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.exit
		return fmt.Errorf("%s (pid %d) did not stop within %v of SIGTERM; killed", p.name, p.cmd.Process.Pid, grace)
	}
}

// kill SIGKILLs the process and waits for it: for a component whose SIGTERM handling only
// delays its exit (a drain for load balancers that do not exist here).
func (p *process) kill() error {
	if p.exited() {
		return nil
	}
	if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	<-p.exit
	return nil
}

// tail returns the last lines of the process's log.
func (p *process) tail(lines int) string {
	b, _ := os.ReadFile(p.logPath)
	s := strings.TrimRight(string(b), "\n")
	all := strings.Split(s, "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}

// waitHTTP polls url until it answers 200, the process exits or ctx ends.
func waitHTTP(ctx context.Context, p *process, url string, caPEM []byte, token string) error {
	tr := &http.Transport{TLSClientConfig: &tls.Config{}}
	if caPEM != nil {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(caPEM)
		tr.TLSClientConfig.RootCAs = pool
	} else {
		// The controller-manager's and scheduler's self-signed serving certificates.
		tr.TLSClientConfig.InsecureSkipVerify = true
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 2 * time.Second}
	var last string
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		select {
		case <-p.exit:
			return fmt.Errorf("%s exited during start (%v); log:\n%s", p.name, p.cmd.ProcessState, p.tail(40))
		case <-ctx.Done():
			return fmt.Errorf("%s not ready at %s: %v (last: %s); log:\n%s", p.name, url, ctx.Err(), last, p.tail(40))
		case <-time.After(50 * time.Millisecond):
		}
	}
}
