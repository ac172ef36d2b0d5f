package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/knactor/knactor/test/conformance"
)

// options are the conformance options for the counter.
var options = conformance.Options{
	Function: "counter",
	State:    json.RawMessage(`{"value":5}`),
	Actions: []conformance.Action{{
		Name:    "add",
		Payload: json.RawMessage(`{"by":2}`),
		Expect:  expect(`{"value":2}`, `{"value":2}`),
	}, {
		Name:   "get",
		Expect: expect("", `{"value":0}`),
	}},
}

// expect returns a check that a new actor's answer has the given state ("" for none) and reply.
func expect(state, reply string) func(*conformance.Answer) error {
	return func(a *conformance.Answer) error {
		if string(a.State) != state || string(a.Reply) != reply || a.Delete || len(a.Effects) > 0 {
			return fmt.Errorf("want state %q and reply %s only", state, reply)
		}
		return nil
	}
}

func TestCounter(t *testing.T) {
	srv := httptest.NewServer(newActor())
	defer srv.Close()
	conformance.Run(t, srv.URL, options)
	testSemantics(t, srv.URL)
}

// TestCounterProcess builds the counter, runs it as a process the way knactor's local runtime does
// and checks it against the contract and for a clean exit on SIGTERM.
func TestCounterProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping in -short mode: builds the counter binary and runs it as a process")
	}
	bin := filepath.Join(t.TempDir(), "counter")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	port := freePort(t)
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "PORT="+strconv.Itoa(port))
	var logs bytes.Buffer // read only once the process has exited
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start counter: %v", err)
	}
	var waitErr error
	exited := make(chan struct{})
	go func() {
		waitErr = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("counter output:\n%s", &logs)
		}
	})

	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	waitReady(t, url, exited)
	conformance.Run(t, url, options)
	testSemantics(t, url)

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	select {
	case <-exited:
		if waitErr != nil {
			t.Errorf("counter exited with %v after SIGTERM, want a clean exit", waitErr)
		}
	case <-time.After(10 * time.Second):
		t.Error("counter still running 10s after SIGTERM")
	}
}

// testSemantics checks add and get through the real envelope: state in, new state out.
func testSemantics(t *testing.T, url string) {
	tests := []struct {
		name     string
		envelope string
		status   int
		want     string
	}{{
		name:     "add to a new actor",
		envelope: `{"function":"counter","actor":"c1","action":"add","version":"","payload":{"by":3}}`,
		status:   http.StatusOK,
		want:     `{"state":{"value":3},"reply":{"value":3}}`,
	}, {
		name:     "add to an existing actor",
		envelope: `{"function":"counter","actor":"c1","action":"add","state":{"value":3},"version":"v1","payload":{"by":-10}}`,
		status:   http.StatusOK,
		want:     `{"state":{"value":-7},"reply":{"value":-7}}`,
	}, {
		name:     "add zero leaves the state unchanged",
		envelope: `{"function":"counter","actor":"c1","action":"add","state":{"value":-7},"version":"v2","payload":{"by":0}}`,
		status:   http.StatusOK,
		want:     `{"reply":{"value":-7}}`,
	}, {
		name:     "get leaves the state unchanged",
		envelope: `{"function":"counter","actor":"c1","action":"get","state":{"value":-7},"version":"v2","payload":null}`,
		status:   http.StatusOK,
		want:     `{"reply":{"value":-7}}`,
	}, {
		name:     "get on a new actor is zero and stores nothing",
		envelope: `{"function":"counter","actor":"c2","action":"get","payload":null}`,
		status:   http.StatusOK,
		want:     `{"reply":{"value":0}}`,
	}, {
		name:     "overflow is reported",
		envelope: `{"function":"counter","actor":"c1","action":"add","state":{"value":9223372036854775807},"version":"v3","payload":{"by":1}}`,
		status:   http.StatusUnprocessableEntity,
		want:     `{"error":{"status":422,"code":"overflow","message":"adding 1 to 9223372036854775807 overflows a 64-bit integer"}}`,
	}}
	for _, tc := range tests {
		t.Run("semantics/"+tc.name, func(t *testing.T) {
			resp, err := http.Post(url+"/v1/invoke", "application/json", bytes.NewBufferString(tc.envelope))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.status || string(body) != tc.want {
				t.Errorf("answer = %d %s\nwant     %d %s", resp.StatusCode, body, tc.status, tc.want)
			}
		})
	}
}

// freePort returns a TCP port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// waitReady polls url's /healthz until it answers 200, failing t if the process exits first or
// it takes longer than 30 s.
func waitReady(t *testing.T, url string, exited <-chan struct{}) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		resp, err := http.Get(url + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-exited:
			t.Fatal("counter exited before it was ready")
		case <-ctx.Done():
			t.Fatal("counter not ready after 30s")
		case <-tick.C:
		}
	}
}
