package pycounter_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/knactor/knactor/test/conformance"
	"github.com/knactor/knactor/test/proctest"
)

// options are the conformance options for the counter, as for examples/counter.
var options = conformance.Options{
	Function: "pycounter",
	State:    json.RawMessage(`{"value":5}`),
	Actions: []conformance.Action{{
		Name:    "add",
		Payload: json.RawMessage(`{"by":2}`),
		Expect:  expect(`{"value":2}`, `{"value":2}`),
	}, {
		Name:   "get",
		Expect: expect("", `{"value":0}`),
	}, {
		Name:    "remind",
		Payload: json.RawMessage(`{"by":2,"in_ms":1000}`),
		Expect: func(a *conformance.Answer) error {
			if len(a.Timers) != 1 || a.Timers[0].Name != "reminder" || a.Timers[0].Action != "add" ||
				a.Timers[0].InMS == nil || *a.Timers[0].InMS != 1000 || string(a.Timers[0].Payload) != `{"by":2}` {
				return fmt.Errorf("want the timer reminder, add {\"by\":2} in 1000 ms; got %+v", a.Timers)
			}
			return nil
		},
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

// TestPycounter runs main.py with python3 as a real process, the way knactor's local runtime
// runs the manifest's command, and checks it against the contract, the counter's semantics,
// keep-alive, and a graceful exit on SIGTERM.
func TestPycounter(t *testing.T) {
	p := start(t)
	t.Run("conformance", func(t *testing.T) { conformance.Run(t, p.url, options) })
	t.Run("semantics", func(t *testing.T) { testSemantics(t, p.url) })
	t.Run("keep-alive", func(t *testing.T) { testKeepAlive(t, p.addr) })
	t.Run("sigterm", func(t *testing.T) { testSIGTERM(t, p) })
}

// testSemantics checks add and get through the real envelope: state in, new state out. Success
// answers must match examples/counter's byte for byte; error answers by status and code.
func testSemantics(t *testing.T, url string) {
	tests := []struct {
		name     string
		envelope string
		status   int
		want     string // the whole body for 200, else the error code
	}{{
		name:     "add to a new actor",
		envelope: `{"function":"pycounter","actor":"c1","action":"add","version":"","payload":{"by":3}}`,
		status:   http.StatusOK,
		want:     `{"state":{"value":3},"reply":{"value":3}}`,
	}, {
		name:     "add to an existing actor",
		envelope: `{"function":"pycounter","actor":"c1","action":"add","state":{"value":3},"version":"v1","payload":{"by":-10}}`,
		status:   http.StatusOK,
		want:     `{"state":{"value":-7},"reply":{"value":-7}}`,
	}, {
		name:     "add zero leaves the state unchanged",
		envelope: `{"function":"pycounter","actor":"c1","action":"add","state":{"value":-7},"version":"v2","payload":{"by":0}}`,
		status:   http.StatusOK,
		want:     `{"reply":{"value":-7}}`,
	}, {
		name:     "add with a null payload adds nothing",
		envelope: `{"function":"pycounter","actor":"c1","action":"add","state":{"value":4},"version":"v2","payload":null}`,
		status:   http.StatusOK,
		want:     `{"reply":{"value":4}}`,
	}, {
		name:     "add drops unknown state fields",
		envelope: `{"function":"pycounter","actor":"c1","action":"add","state":{"value":1,"old":true},"version":"v2","payload":{"by":1,"note":"x"}}`,
		status:   http.StatusOK,
		want:     `{"state":{"value":2},"reply":{"value":2}}`,
	}, {
		name:     "add up to the largest count",
		envelope: `{"function":"pycounter","actor":"c1","action":"add","state":{"value":9223372036854775806},"version":"v3","payload":{"by":1}}`,
		status:   http.StatusOK,
		want:     `{"state":{"value":9223372036854775807},"reply":{"value":9223372036854775807}}`,
	}, {
		name:     "get leaves the state unchanged",
		envelope: `{"function":"pycounter","actor":"c1","action":"get","state":{"value":-7},"version":"v2","payload":null}`,
		status:   http.StatusOK,
		want:     `{"reply":{"value":-7}}`,
	}, {
		name:     "get on a new actor is zero and stores nothing",
		envelope: `{"function":"pycounter","actor":"c2","action":"get","payload":null}`,
		status:   http.StatusOK,
		want:     `{"reply":{"value":0}}`,
	}, {
		name:     "get with a null state is zero",
		envelope: `{"function":"pycounter","actor":"c2","action":"get","state":null,"version":"v9"}`,
		status:   http.StatusOK,
		want:     `{"reply":{"value":0}}`,
	}, {
		name:     "overflow is reported",
		envelope: `{"function":"pycounter","actor":"c1","action":"add","state":{"value":9223372036854775807},"version":"v3","payload":{"by":1}}`,
		status:   http.StatusUnprocessableEntity,
		want:     "overflow",
	}, {
		name:     "underflow is reported",
		envelope: `{"function":"pycounter","actor":"c1","action":"add","state":{"value":-9223372036854775808},"version":"v3","payload":{"by":-1}}`,
		status:   http.StatusUnprocessableEntity,
		want:     "overflow",
	}, {
		name:     "by is not an integer",
		envelope: `{"function":"pycounter","actor":"c1","action":"add","payload":{"by":1.5}}`,
		status:   http.StatusBadRequest,
		want:     "bad_payload",
	}, {
		name:     "by is a string",
		envelope: `{"function":"pycounter","actor":"c1","action":"add","payload":{"by":"2"}}`,
		status:   http.StatusBadRequest,
		want:     "bad_payload",
	}, {
		name:     "by is a boolean",
		envelope: `{"function":"pycounter","actor":"c1","action":"add","payload":{"by":true}}`,
		status:   http.StatusBadRequest,
		want:     "bad_payload",
	}, {
		name:     "by exceeds 64 bits",
		envelope: `{"function":"pycounter","actor":"c1","action":"add","payload":{"by":9223372036854775808}}`,
		status:   http.StatusBadRequest,
		want:     "bad_payload",
	}, {
		name:     "payload is not an object",
		envelope: `{"function":"pycounter","actor":"c1","action":"add","payload":[1]}`,
		status:   http.StatusBadRequest,
		want:     "bad_payload",
	}, {
		name:     "payload is bytes",
		envelope: `{"function":"pycounter","actor":"c1","action":"add","payload_b64":"AAH/"}`,
		status:   http.StatusBadRequest,
		want:     "bad_payload",
	}, {
		name:     "get with a payload that is not an object",
		envelope: `{"function":"pycounter","actor":"c1","action":"get","payload":"all"}`,
		status:   http.StatusBadRequest,
		want:     "bad_payload",
	}, {
		name:     "state is bytes",
		envelope: `{"function":"pycounter","actor":"c1","action":"get","state_b64":"AAH/","version":"v1"}`,
		status:   http.StatusUnprocessableEntity,
		want:     "bad_state",
	}, {
		name:     "state value is not an integer",
		envelope: `{"function":"pycounter","actor":"c1","action":"get","state":{"value":"7"},"version":"v1"}`,
		status:   http.StatusUnprocessableEntity,
		want:     "bad_state",
	}, {
		name:     "state is not an object",
		envelope: `{"function":"pycounter","actor":"c1","action":"get","state":7,"version":"v1"}`,
		status:   http.StatusUnprocessableEntity,
		want:     "bad_state",
	}, {
		name:     "unknown action",
		envelope: `{"function":"pycounter","actor":"c1","action":"reset","payload":null}`,
		status:   http.StatusNotFound,
		want:     "unknown_action",
	}, {
		name:     "unknown action on a state that is not a counter's",
		envelope: `{"function":"pycounter","actor":"c1","action":"reset","state_b64":"AAH/","version":"v1"}`,
		status:   http.StatusNotFound,
		want:     "unknown_action",
	}, {
		name:     "no actor",
		envelope: `{"function":"pycounter","action":"get"}`,
		status:   http.StatusBadRequest,
		want:     "bad_envelope",
	}, {
		name:     "actor id too long",
		envelope: `{"function":"pycounter","actor":"` + strings.Repeat("é", 513) + `","action":"get"}`,
		status:   http.StatusBadRequest,
		want:     "bad_envelope",
	}, {
		name:     "invalid action name",
		envelope: `{"function":"pycounter","actor":"c1","action":"add/2"}`,
		status:   http.StatusBadRequest,
		want:     "bad_envelope",
	}, {
		name:     "state and state_b64 together",
		envelope: `{"function":"pycounter","actor":"c1","action":"get","state":{"value":1},"state_b64":"AAH/"}`,
		status:   http.StatusBadRequest,
		want:     "bad_envelope",
	}, {
		name:     "invalid base64",
		envelope: `{"function":"pycounter","actor":"c1","action":"add","payload_b64":"not base64!"}`,
		status:   http.StatusBadRequest,
		want:     "bad_envelope",
	}, {
		name:     "metadata of the wrong type",
		envelope: `{"function":"pycounter","actor":"c1","action":"get","metadata":{"attempt":1}}`,
		status:   http.StatusBadRequest,
		want:     "bad_envelope",
	}, {
		name:     "NaN is not JSON",
		envelope: `{"function":"pycounter","actor":"c1","action":"add","payload":{"by":NaN}}`,
		status:   http.StatusBadRequest,
		want:     "bad_envelope",
	}, {
		name:     "not UTF-8",
		envelope: "{\"function\":\"pycounter\",\"actor\":\"c\xff\",\"action\":\"get\"}",
		status:   http.StatusBadRequest,
		want:     "bad_envelope",
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := http.Post(url+"/v1/invoke", "application/json", strings.NewReader(tc.envelope))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q, want application/json", ct)
			}
			if tc.status == http.StatusOK {
				if resp.StatusCode != tc.status || string(body) != tc.want {
					t.Errorf("answer = %d %s\nwant     %d %s", resp.StatusCode, body, tc.status, tc.want)
				}
				return
			}
			var e struct {
				Error struct {
					Status  int    `json:"status"`
					Code    string `json:"code"`
					Message string `json:"message"`
				} `json:"error"`
			}
			if err := json.Unmarshal(body, &e); err != nil || resp.StatusCode != tc.status || e.Error.Status != tc.status || e.Error.Code != tc.want || e.Error.Message == "" {
				t.Errorf("answer = %d %s\nwant     %d and the error form with code %s and a message", resp.StatusCode, body, tc.status, tc.want)
			}
		})
	}
}

// testKeepAlive sends several requests on one connection and checks that each answer is
// HTTP/1.1 with a Content-Length, not chunked, and leaves the connection open.
func testKeepAlive(t *testing.T, addr string) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(conn)
	for i, req := range []string{
		invokeRequest(`{"actor":"k","action":"add","state":{"value":1},"version":"v1","payload":{"by":1}}`),
		"GET /healthz HTTP/1.1\r\nHost: pycounter\r\n\r\n",
		invokeRequest(`not json`),
		invokeRequest(`{"actor":"k","action":"get","state":{"value":2},"version":"v2"}`),
	} {
		if _, err := io.WriteString(conn, req); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		switch {
		case resp.Proto != "HTTP/1.1":
			t.Errorf("request %d: answered %s, want HTTP/1.1", i, resp.Proto)
		case len(resp.TransferEncoding) > 0:
			t.Errorf("request %d: Transfer-Encoding %v, want a Content-Length", i, resp.TransferEncoding)
		case resp.Header.Get("Content-Length") != strconv.Itoa(len(body)):
			t.Errorf("request %d: Content-Length %q for a body of %d bytes", i, resp.Header.Get("Content-Length"), len(body))
		case resp.Close:
			t.Errorf("request %d: the answer closes the connection, want keep-alive", i)
		}
	}
	// A chunked body is refused, and the connection closed since its body was not read.
	if _, err := io.WriteString(conn, "POST /v1/invoke HTTP/1.1\r\nHost: pycounter\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !resp.Close {
		t.Errorf("chunked request: %d, close %v; want 400 and the connection closed", resp.StatusCode, resp.Close)
	}
}

// testSIGTERM checks the graceful exit: with one idle keep-alive connection and one request in
// flight (its body half sent), SIGTERM closes the idle connection, lets the request finish with
// its answer, and the process exits with status 0.
func testSIGTERM(t *testing.T, p *process) {
	idle, err := net.DialTimeout("tcp", p.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	idleReader := bufio.NewReader(idle)
	if _, err := io.WriteString(idle, "GET /healthz HTTP/1.1\r\nHost: pycounter\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(idleReader, nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("healthz on the idle connection: %v %v", resp, err)
	}
	resp.Body.Close()

	busy, err := net.DialTimeout("tcp", p.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	req := invokeRequest(`{"actor":"slow","action":"add","state":{"value":40},"version":"v1","payload":{"by":2}}`)
	cut := len(req) - 10 // headers and most of the body
	if _, err := io.WriteString(busy, req[:cut]); err != nil {
		t.Fatal(err)
	}
	// Let the server read the headers, so the request is in flight when SIGTERM arrives.
	time.Sleep(200 * time.Millisecond)

	if err := p.Cmd().Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	// The idle connection is closed once the server has stopped accepting.
	_ = idle.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := idleReader.ReadByte(); !errors.Is(err, io.EOF) {
		t.Errorf("idle keep-alive connection after SIGTERM: read %v, want EOF", err)
	}
	select {
	case <-p.Exited():
		t.Fatalf("exited (%v) with a request in flight", p.Cmd().ProcessState)
	default:
	}

	// The request in flight completes and is answered.
	if _, err := io.WriteString(busy, req[cut:]); err != nil {
		t.Fatal(err)
	}
	_ = busy.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err = http.ReadResponse(bufio.NewReader(busy), nil)
	if err != nil {
		t.Fatalf("request in flight at SIGTERM: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := `{"state":{"value":42},"reply":{"value":42}}`; resp.StatusCode != http.StatusOK || string(body) != want {
		t.Errorf("request in flight at SIGTERM = %d %s, want 200 %s", resp.StatusCode, body, want)
	}
	if !resp.Close {
		t.Error("the answer during shutdown keeps the connection open, want Connection: close")
	}

	select {
	case <-p.Exited():
		if p.ExitCode() != 0 {
			t.Errorf("exited with %v after SIGTERM, want status 0", p.Cmd().ProcessState)
		}
	case <-time.After(10 * time.Second):
		t.Error("still running 10s after SIGTERM")
	}
}

// invokeRequest returns a raw keep-alive POST /v1/invoke request with the envelope as its body.
func invokeRequest(envelope string) string {
	return fmt.Sprintf("POST /v1/invoke HTTP/1.1\r\nHost: pycounter\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(envelope), envelope)
}

// process is main.py running under python3.
type process struct {
	*proctest.Process
	addr string // host:port
	url  string // http://host:port
}

// start runs main.py as knactor's local runtime runs the manifest's command: a process with $PORT
// set. It skips the test in -short mode and when python3 is not on PATH, and waits until
// /healthz answers 200. The process is stopped when the test ends, if it still runs.
func start(t *testing.T) *process {
	t.Helper()
	if testing.Short() {
		t.Skip("skipping in -short mode: runs main.py as a python3 process")
	}
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("skipping: python3 is not on PATH; install Python 3 to test the Python counter")
	}
	port := proctest.FreePort(t)
	p := &process{
		// proctest starts processes in the repository root.
		Process: proctest.Start(t, "main.py", []string{"PORT=" + strconv.Itoa(port)}, python, "examples/pycounter/main.py"),
		addr:    net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
	}
	p.url = "http://" + p.addr
	proctest.WaitHealthy(t, p.Process, p.url+"/healthz")
	return p
}
