package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"syscall"
	"testing"

	"github.com/knactor/knactor/test/conformance"
	"github.com/knactor/knactor/test/proctest"
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

func TestMain(m *testing.M) { proctest.Main(m) }

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
	port := proctest.FreePort(t)
	p := proctest.Start(t, "counter", []string{"PORT=" + strconv.Itoa(port)}, proctest.Build(t, "examples/counter"))
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	proctest.WaitHealthy(t, p, url+"/healthz")
	conformance.Run(t, url, options)
	testSemantics(t, url)

	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Error(err)
	} else if p.ExitCode() != 0 {
		t.Errorf("counter exited with %v after SIGTERM, want a clean exit", p.Cmd().ProcessState)
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
