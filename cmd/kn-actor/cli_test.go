package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/gorilla/websocket"
	"github.com/knactor/knactor/test/proctest"
)

// run runs kn-actor in-process with env as its whole environment.
func run(t *testing.T, env map[string]string, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errw bytes.Buffer
	code = execute(context.Background(), args, strings.NewReader(stdin), &out, &errw, func(k string) string { return env[k] })
	return out.String(), errw.String(), code
}

func TestParseFormat(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want format
		err  bool
	}{
		{"", formatHuman, false},
		{"json", formatJSON, false},
		{"YAML", formatYAML, false},
		{" yaml ", formatYAML, false},
		{"table", "", true},
		{"wide", "", true},
	} {
		got, err := parseFormat(tc.in)
		if got != tc.want || (err != nil) != tc.err {
			t.Errorf("parseFormat(%q) = %q, %v", tc.in, got, err)
		}
	}
}

func TestParseServer(t *testing.T) {
	for _, tc := range []struct {
		in, want, err string
	}{
		{"http://127.0.0.1:8080", "http://127.0.0.1:8080", ""},
		{"http://127.0.0.1:8080/", "http://127.0.0.1:8080", ""},
		{"127.0.0.1:9090", "http://127.0.0.1:9090", ""},
		{"https://knactor.example.com/api/", "https://knactor.example.com/api", ""},
		{"", "", "--server is empty"},
		{"ftp://host", "", "http:// or https://"},
		{"http://", "", "no host"},
		{"http://user:pw@host", "", "token goes in $KNACTOR_TOKEN"},
		{"http://host/?x=1", "", "scheme, host and path only"},
	} {
		u, err := parseServer(tc.in)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("parseServer(%q): err %v, want %q", tc.in, err, tc.err)
		case tc.err == "" && (err != nil || u.String() != tc.want):
			t.Errorf("parseServer(%q) = %v, %v; want %s", tc.in, u, err, tc.want)
		}
	}
}

func TestToken(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "token")
	empty := filepath.Join(dir, "empty")
	writeFile(t, file, "from-file-0123456789\n", 0o600)
	writeFile(t, empty, " \n", 0o600)
	for _, tc := range []struct {
		name, env, file, want, from, err string
	}{
		{"none", "", "", "", "", ""},
		{"env", " from-env-0123456789 ", "", "from-env-0123456789", "$KNACTOR_TOKEN", ""},
		{"file wins", "from-env-0123456789", file, "from-file-0123456789", "--token-file " + file, ""},
		{"empty file", "", empty, "", "", "is empty"},
		{"missing file", "", filepath.Join(dir, "nope"), "", "", "no such file"},
	} {
		g := &globals{tokenFile: tc.file, getenv: func(k string) string {
			if k == envToken {
				return tc.env
			}
			return ""
		}}
		got, from, err := g.token()
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: err %v, want %q", tc.name, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want || from != tc.from {
			t.Errorf("%s: got %q from %q, %v", tc.name, got, from, err)
		}
	}
}

func TestInvokePayload(t *testing.T) {
	file := filepath.Join(t.TempDir(), "p.json")
	writeFile(t, file, `{"by":3}`, 0o600)
	for _, tc := range []struct {
		name  string
		args  []string
		file  string
		stdin string
		want  string
		err   string
	}{
		{"none", nil, "", "", "", ""},
		{"argument", []string{`{"by":1}`}, "", "", `{"by":1}`, ""},
		{"a JSON number", []string{`5`}, "", "", `5`, ""},
		{"shell ate the quotes", []string{`{by:1}`}, "", "", "", "not JSON: quote it"},
		{"both", []string{`{}`}, file, "", "", "not both"},
		{"file", nil, file, "", `{"by":3}`, ""},
		{"stdin", nil, "-", `{"by":4}`, `{"by":4}`, ""},
		{"stdin bytes", nil, "-", "\x00\x01", "\x00\x01", ""},
		{"missing file", nil, file + ".nope", "", "", "no such file"},
	} {
		got, err := invokePayload(tc.args, tc.file, strings.NewReader(tc.stdin))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: err %v, want %q", tc.name, err, tc.err)
			}
			continue
		}
		if err != nil || string(got) != tc.want {
			t.Errorf("%s: got %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
}

func TestParseWSLine(t *testing.T) {
	for _, tc := range []struct {
		line, action, payload, err string
	}{
		{"", "", "", ""},
		{"   ", "", "", ""},
		{"# a comment", "", "", ""},
		{"get", "get", "", ""},
		{"  add {\"by\": 2}  ", "add", `{"by": 2}`, ""},
		{"add\t[1, 2]", "add", `[1, 2]`, ""},
		{"add {by:2}", "", "", "not JSON"},
		{"bad/action {}", "", "", "want ACTION [JSON]"},
	} {
		action, payload, err := parseWSLine(tc.line)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: err %v, want %q", tc.line, err, tc.err)
			}
			continue
		}
		if err != nil || action != tc.action || string(payload) != tc.payload {
			t.Errorf("%q: got %q %q %v", tc.line, action, payload, err)
		}
	}
}

func TestArgumentErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"invoke", "counter"}, `kn-actor invoke wants FUNCTION ID ACTION [JSON], got 1: "counter"; see kn-actor invoke --help`},
		{[]string{"invoke", "counter", "a", "add", "{}", "x"}, "wants FUNCTION ID ACTION [JSON], got 5"},
		{[]string{"invoke", "counter", "a", "add/x"}, `action "add/x": use 1-128 characters`},
		{[]string{"invoke", "counter", "", "add"}, `actor ID "": use 1-1024 bytes`},
		{[]string{"invoke", "counter", "a", "get", "-o", "wide"}, `-o "wide": use -o json or -o yaml`},
		{[]string{"invoke", "counter", "a", "add", "--retry", "3"}, "--retry needs --idempotency-key: without a key a retried call may run twice"},
		{[]string{"invoke", "counter", "a", "add", "--idempotency-key", strings.Repeat("k", 256)}, "use 1-255 printable ASCII characters"},
		{[]string{"state"}, "kn-actor state wants a subcommand: get or delete"},
		{[]string{"state", "get", "counter"}, "kn-actor state get wants FUNCTION ID, got 1"},
		{[]string{"state", "delete"}, "kn-actor state delete wants FUNCTION ID, got no arguments"},
		{[]string{"ws", "counter"}, "kn-actor ws wants FUNCTION ID"},
		{[]string{"logs"}, "kn-actor logs wants FUNCTION"},
		{[]string{"logs", "../etc"}, `function "../etc": give a function's name`},
		{[]string{"deploy"}, "deploy wants -f FILE"},
		{[]string{"deploy", "-f", "/nonexistent/service.yaml"}, "reading the manifest: open /nonexistent/service.yaml"},
		{[]string{"list", "extra"}, `unknown command "extra"`},
		{[]string{"--server", "ftp://x", "list"}, "use an http:// or https:// URL"},
	} {
		_, stderr, code := run(t, nil, "", tc.args...)
		if code != 1 || !strings.Contains(stderr, tc.want) || !strings.HasPrefix(stderr, "Error: ") {
			t.Errorf("%q: exit %d, stderr %q; want %q", tc.args, code, stderr, tc.want)
		}
	}
}

func TestPrintFunctions(t *testing.T) {
	list := functionList{Functions: []functionStatus{
		{Function: "counter", ReadyPods: 2, DesiredPods: 3, Panicking: true, ActiveActors: 12, StartingPods: 1},
		{Function: "hello-world", ScaleError: "no free port"},
	}}
	for _, tc := range []struct {
		name, format string
		list         functionList
		want, errw   string
	}{
		{"table", "", list, "" +
			"NAME          READY   STARTING   DESIRED   PANIC   ACTORS\n" +
			"counter       2       1          3         yes     12\n" +
			"hello-world   0       0          0         no      0\n",
			`function "hello-world" cannot scale: no free port; ` + "`kn-actor logs hello-world`" + " shows its pods' output\n"},
		{"empty table", "", functionList{}, "No functions are deployed. Deploy one with `kn-actor deploy -f service.yaml`.\n", ""},
		{"json", "json", list, `{
  "functions": [
    {
      "function": "counter",
      "ready_pods": 2,
      "starting_pods": 1,
      "desired_pods": 3,
      "panicking": true,
      "active_actors": 12
    },
    {
      "function": "hello-world",
      "ready_pods": 0,
      "starting_pods": 0,
      "desired_pods": 0,
      "panicking": false,
      "active_actors": 0,
      "scale_error": "no free port"
    }
  ]
}
`, ""},
		{"empty json", "json", functionList{}, "{\n  \"functions\": []\n}\n", ""},
		{"yaml", "yaml", functionList{Functions: list.Functions[:1]}, `functions:
- active_actors: 12
  desired_pods: 3
  function: counter
  panicking: true
  ready_pods: 2
  starting_pods: 1
`, ""},
	} {
		var out, errw bytes.Buffer
		f, _ := parseFormat(tc.format)
		if err := printFunctions(&out, &errw, f, tc.list); err != nil {
			t.Fatal(err)
		}
		if out.String() != tc.want || errw.String() != tc.errw {
			t.Errorf("%s:\n%s\nstderr %q\nwant:\n%s\nstderr %q", tc.name, out.String(), errw.String(), tc.want, tc.errw)
		}
	}
}

func TestPrintReplyAndState(t *testing.T) {
	jsonAns := &answer{header: http.Header{"Content-Type": {"application/json"}, "X-Knactor-State-Version": {"v7"}, "X-Knactor-Pod": {"counter-00001"}}, body: []byte(`{"value":2}`)}
	binAns := &answer{header: http.Header{"Content-Type": {"application/octet-stream"}, "X-Knactor-State-Version": {"v8"}}, body: []byte{0xff, 0x00}}
	for _, tc := range []struct {
		name string
		f    format
		ans  *answer
		want string
	}{
		{"reply", formatHuman, jsonAns, "{\"value\":2}\n"},
		{"reply json", formatJSON, jsonAns, "{\n  \"reply\": {\n    \"value\": 2\n  },\n  \"version\": \"v7\",\n  \"pod\": \"counter-00001\"\n}\n"},
		{"reply yaml", formatYAML, jsonAns, "pod: counter-00001\nreply:\n  value: 2\nversion: v7\n"},
		{"binary reply", formatHuman, binAns, "\xff\x00"},
		{"binary reply json", formatJSON, binAns, "{\n  \"reply_b64\": \"/wA=\",\n  \"version\": \"v8\",\n  \"pod\": \"\"\n}\n"},
	} {
		var out bytes.Buffer
		if err := printReply(&out, tc.f, tc.ans); err != nil || out.String() != tc.want {
			t.Errorf("%s: got %q, %v; want %q", tc.name, out.String(), err, tc.want)
		}
	}
	for _, tc := range []struct {
		name string
		f    format
		ans  *answer
		want string
	}{
		{"state", formatHuman, jsonAns, "{\"value\":2}\n"},
		{"state json", formatJSON, jsonAns, "{\n  \"function\": \"counter\",\n  \"id\": \"a/b\",\n  \"version\": \"v7\",\n  \"state\": {\n    \"value\": 2\n  }\n}\n"},
		{"state yaml", formatYAML, jsonAns, "function: counter\nid: a/b\nstate:\n  value: 2\nversion: v7\n"},
		{"binary state yaml", formatYAML, binAns, "function: counter\nid: a/b\nstate_b64: /wA=\nversion: v8\n"},
	} {
		var out bytes.Buffer
		if err := printState(&out, tc.f, "counter", "a/b", tc.ans); err != nil || out.String() != tc.want {
			t.Errorf("%s: got %q, %v; want %q", tc.name, out.String(), err, tc.want)
		}
	}
	var out, errw bytes.Buffer
	res := deployResult{Functions: []deployment{{Function: "a", Result: "created", Warnings: []string{"w1"}}, {Function: "b", Result: "unchanged"}}}
	if err := printDeployed(&out, &errw, formatHuman, res); err != nil {
		t.Fatal(err)
	}
	if out.String() != "function \"a\" created\nfunction \"b\" unchanged\n" || errw.String() != "Warning: function \"a\": w1\n" {
		t.Errorf("deploy output %q, stderr %q", out.String(), errw.String())
	}
}

// fakeRouter answers like a router: the token "good-token-0123456789", function "counter"
// only, and no /v1/functions (a cluster's router).
func fakeRouter(t *testing.T) *httptest.Server {
	t.Helper()
	fail := func(w http.ResponseWriter, status int, code, msg string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": code, "message": msg}})
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer good-token-0123456789" {
			fail(w, 401, "unauthorized", "missing or invalid bearer token")
			return
		}
		switch p := r.URL.EscapedPath(); {
		case p == "/v1/functions":
			fail(w, 404, "not_found", "no such endpoint")
		case p == "/v1/actors/counter/a%2Fb/add":
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("X-Knactor-State-Version", "v1")
			w.Write([]byte(`{"value":1}`))
		case p == "/v1/actors/counter/a%2Fb":
			fail(w, 404, "actor_not_found", `actor "a/b" of function "counter" has no state`)
		case p == "/v1/actors/counter/a/big":
			fail(w, 422, "overflow", "adding overflows")
		case p == "/v1/actors/counter/a/slow":
			fail(w, 504, "function_timeout", "function did not answer before the deadline")
		case strings.HasPrefix(p, "/v1/actors/counter/"):
			fail(w, 404, "not_found", "no such endpoint")
		default:
			fail(w, 404, "unknown_function", "no function is deployed")
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestErrorsSayWhatToDoNext(t *testing.T) {
	srv := fakeRouter(t)
	good := map[string]string{envURL: srv.URL, envToken: "good-token-0123456789"}
	closed := "http://" + proctest.ClosedAddr(t)
	notKnactor := httptest.NewServer(http.NotFoundHandler())
	defer notKnactor.Close()
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"works", good, []string{"invoke", "counter", "a/b", "add", `{"by":1}`}, ""},
		{"nothing listens", map[string]string{envURL: closed}, []string{"invoke", "counter", "a", "add"},
			"no knactor at " + closed + ": start one with `knactor up`, or point --server or $KNACTOR_URL at a running one"},
		{"--server wins over $KNACTOR_URL", map[string]string{envURL: srv.URL}, []string{"--server", closed, "list"}, "no knactor at " + closed},
		{"no token", map[string]string{envURL: srv.URL}, []string{"invoke", "counter", "a", "add"}, "wants a bearer token: set $KNACTOR_TOKEN (or --token-file)"},
		{"bad token", map[string]string{envURL: srv.URL, envToken: "bad-token-0123456789"}, []string{"state", "get", "counter", "a"},
			"refused the bearer token from $KNACTOR_TOKEN: set $KNACTOR_TOKEN (or --token-file)"},
		{"unknown function", good, []string{"invoke", "nope", "a", "add"}, `no function "nope" is deployed at ` + srv.URL + ": deploy it with `kn-actor deploy -f service.yaml`"},
		{"no state", good, []string{"state", "get", "counter", "a/b"}, `actor "a/b" of function "counter" has no state`},
		{"function error", good, []string{"invoke", "counter", "a", "big"}, `function "counter" answered 422 overflow: adding overflows`},
		{"timeout", good, []string{"invoke", "counter", "a", "slow"}, "`kn-actor logs counter` shows its pods' output"},
		{"list on a cluster", good, []string{"list"}, "listing functions is not yet supported against a cluster (" + srv.URL + " has no /v1/functions): use `kubectl get ksvc`"},
		{"deploy on a cluster", good, []string{"deploy", "-f", "-"}, "deploying is not yet supported against a cluster (" + srv.URL + " has no deploy endpoint): use `kubectl apply -f -`"},
		{"not a knactor", map[string]string{envURL: notKnactor.URL}, []string{"invoke", "counter", "a", "add"}, "not as a knactor router does: check --server or $KNACTOR_URL"},
		{"ws unknown function", good, []string{"ws", "nope", "a"}, `no function "nope" is deployed`},
		{"ws nothing listens", map[string]string{envURL: closed}, []string{"ws", "counter", "a"}, "no knactor at " + closed},
	} {
		stdout, stderr, code := run(t, tc.env, "kind: Service\n", tc.args...)
		if tc.want == "" {
			if code != 0 || stdout != "{\"value\":1}\n" {
				t.Errorf("%s: exit %d, %q %q", tc.name, code, stdout, stderr)
			}
			continue
		}
		if code != 1 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%s: exit %d, stderr %q; want %q", tc.name, code, stderr, tc.want)
		}
	}
}

func TestExplainedErrorsWrap(t *testing.T) {
	c := &client{}
	err := c.explain(&apiError{Status: 404, Code: "unknown_function"}, "x")
	var ae *apiError
	if !errors.As(err, &ae) || ae.Code != "unknown_function" {
		t.Fatalf("explain lost the API error: %v", err)
	}
}

func TestLogs(t *testing.T) {
	dir := t.TempDir()
	fn := filepath.Join(dir, "counter")
	mkdirAll(t, fn)
	writeFile(t, filepath.Join(fn, "counter-00001.log"), "one\ntwo", 0o644)
	stdout, stderr, code := run(t, nil, "", "logs", "counter", "--log-dir", dir)
	if code != 0 || stdout != "one\ntwo\n" {
		t.Fatalf("one pod: exit %d, %q %q", code, stdout, stderr)
	}
	writeFile(t, filepath.Join(fn, "counter-00002.log"), "three\n", 0o644)
	writeFile(t, filepath.Join(fn, "notes.txt"), "not a log\n", 0o644)
	stdout, _, _ = run(t, nil, "", "logs", "counter", "--log-dir", dir)
	if want := "[counter-00001] one\n[counter-00001] two\n[counter-00002] three\n"; stdout != want {
		t.Fatalf("two pods: %q, want %q", stdout, want)
	}
	_, stderr, code = run(t, nil, "", "logs", "hello", "--log-dir", dir)
	if code != 1 || !strings.Contains(stderr, `no pod logs of function "hello" in `+dir+": its pods start on its first call") {
		t.Fatalf("no logs: exit %d, %q", code, stderr)
	}

	// -f prints what exists, then new lines and new pods, until cancelled.
	var out proctest.Buffer
	l := &podLogs{dir: filepath.Join(dir, "hello"), out: &out, prefix: true}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.follow(ctx) }()
	mkdirAll(t, filepath.Join(dir, "hello"))
	log := filepath.Join(dir, "hello", "hello-00001.log")
	writeFile(t, log, "sdk: serving\npart", 0o644)
	waitFor(t, &out, "[hello-00001] sdk: serving\n")
	appendFile(t, log, "ial line\n")
	waitFor(t, &out, "[hello-00001] partial line\n")
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// writeFile writes a test's input file, failing the test if it cannot.
func writeFile(t *testing.T, path, data string, perm os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), perm); err != nil {
		t.Fatal(err)
	}
}

// appendFile appends data to the file at path, failing the test if it cannot.
func appendFile(t *testing.T, path, data string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(data); err != nil {
		f.Close()
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// mkdirAll makes a test's directory, failing the test if it cannot.
func mkdirAll(t *testing.T, path string) {
	t.Helper()
	if err := os.MkdirAll(path, 0o755); err != nil {
		t.Fatal(err)
	}
}

// waitFor waits until the output s holds want.
func waitFor(t *testing.T, s interface{ String() string }, want string) {
	t.Helper()
	proctest.Eventually(t, fmt.Sprintf("the output to hold %q", want), func() bool { return strings.Contains(s.String(), want) })
}

// TestWSSessionMessages runs a session against a fake router's WebSocket: the messages sent,
// replies and pushes printed, errors counted, and a clean close at end of input.
func TestWSSessionMessages(t *testing.T) {
	var (
		mu       sync.Mutex
		received []string
		closed   = make(chan int, 1)
	)
	up := websocket.Upgrader{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.EscapedPath() != "/v1/actors/counter/a%2Fb/ws" || r.URL.Query().Get("subscribe") != "1" {
			http.Error(w, `{"error":{"code":"not_found","message":"wrong path"}}`, 404)
			return
		}
		conn, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer conn.Close()
		for {
			_, data, err := conn.ReadMessage()
			if ce := (*websocket.CloseError)(nil); errors.As(err, &ce) {
				closed <- ce.Code
				return
			} else if err != nil {
				closed <- -1
				return
			}
			mu.Lock()
			received = append(received, string(data))
			mu.Unlock()
			var m wsOutgoing
			json.Unmarshal(data, &m)
			if m.Action == "fail" {
				conn.WriteMessage(websocket.TextMessage, []byte(`{"id":`+itoa(m.ID)+`,"error":{"status":422,"code":"nope","message":"always fails"}}`))
				continue
			}
			conn.WriteMessage(websocket.TextMessage, []byte(`{"event":"state","version":"v`+itoa(m.ID)+`","state":{"value":`+itoa(m.ID)+`}}`))
			conn.WriteMessage(websocket.TextMessage, []byte(`{"id":`+itoa(m.ID)+`,"version":"v`+itoa(m.ID)+`","reply":{"value":`+itoa(m.ID)+`}}`))
		}
	}))
	defer srv.Close()
	env := map[string]string{envURL: srv.URL}
	stdout, stderr, code := run(t, env, "add {\"by\": 1}\n\n# comment\nget\n", "ws", "counter", "a/b", "--subscribe")
	if code != 0 || stdout != "state changed (version v1): {\"value\":1}\n{\"value\":1}\nstate changed (version v2): {\"value\":2}\n{\"value\":2}\n" || stderr != "" {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if c := <-closed; c != websocket.CloseNormalClosure {
		t.Fatalf("close code %d, want 1000", c)
	}
	mu.Lock()
	if strings.Join(received, "\n") != `{"id":1,"action":"add","payload":{"by":1}}`+"\n"+`{"id":2,"action":"get"}` {
		t.Fatalf("sent %q", received)
	}
	mu.Unlock()

	stdout, stderr, code = run(t, env, "fail\nbad line {\nget\n", "ws", "counter", "a/b", "--subscribe", "-o", "json")
	if code != 1 || !strings.Contains(stderr, "1 of 2 turns failed, 1 line was not ACTION [JSON]") ||
		stdout != `{"id":1,"error":{"status":422,"code":"nope","message":"always fails"}}`+"\n"+
			`{"event":"state","version":"v2","state":{"value":2}}`+"\n"+`{"id":2,"version":"v2","reply":{"value":2}}`+"\n" {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	<-closed
}

func itoa(i int) string { return strconv.Itoa(i) }
