package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/knactor/knactor/test/proctest"
)

func TestMain(m *testing.M) { proctest.Main(m) }

// cliRun is one finished run of the kn-actor binary.
type cliRun struct {
	stdout, stderr string
	code           int
}

// cli runs the kn-actor binary with env added to the test's environment.
type cli struct {
	t   *testing.T
	bin string
	env []string
}

func (c cli) run(stdin string, args ...string) cliRun {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.bin, args...)
	cmd.Env = append(os.Environ(), c.env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errw strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errw
	err := cmd.Run()
	code := 0
	if err != nil {
		code = -1
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
	}
	return cliRun{stdout: out.String(), stderr: errw.String(), code: code}
}

// ok runs kn-actor and fails the test unless it exits 0.
func (c cli) ok(stdin string, args ...string) string {
	c.t.Helper()
	r := c.run(stdin, args...)
	if r.code != 0 {
		c.t.Fatalf("kn-actor %q: exit %d\nstdout: %s\nstderr: %s", args, r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// fails runs kn-actor and fails the test unless it exits 1 with want in its error.
func (c cli) fails(want string, args ...string) {
	c.t.Helper()
	r := c.run("", args...)
	if r.code != 1 || !strings.Contains(r.stderr, want) {
		c.t.Fatalf("kn-actor %q: exit %d, stderr %q; want exit 1 and %q", args, r.code, r.stderr, want)
	}
}

func (c cli) with(env ...string) cli {
	c.env = append(append([]string(nil), c.env...), env...)
	return c
}

// TestCLIAgainstKnactorUp drives the kn-actor binary against a real `knactor up` running the
// counter example from its manifest, with auth tokens: deploy, invoke, state, list, logs, ws
// and the errors of a missing server, a bad token and an unknown function.
func TestCLIAgainstKnactorUp(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: builds and runs real processes; run without -short")
	}
	const token = "e2e-token-0123456789abcdef"
	knactor, bin := proctest.Build(t, "cmd/knactor"), proctest.Build(t, "cmd/kn-actor")
	dir := t.TempDir()
	logDir := filepath.Join(dir, "logs")
	listen := "127.0.0.1:" + strconv.Itoa(proctest.FreePort(t))
	up := proctest.Start(t, "up", []string{"KNACTOR_AUTH_TOKENS=" + token}, knactor, "up", "-f", "examples/counter/service.yaml",
		"--listen", listen, "--state-dir", filepath.Join(dir, "state"), "--log-dir", logDir)
	url := "http://" + listen
	proctest.WaitHealthy(t, up, url+"/readyz")
	kn := cli{t: t, bin: bin, env: []string{"KNACTOR_URL=" + url, "KNACTOR_TOKEN=" + token}}

	// invoke ×5, then with -o json and the payload from stdin.
	for i := 1; i <= 5; i++ {
		if got := kn.ok("", "invoke", "counter", "alice", "add", `{"by":1}`); got != fmt.Sprintf("{\"value\":%d}\n", i) {
			t.Fatalf("add #%d: %q", i, got)
		}
	}
	var inv struct {
		Reply   struct{ Value int }
		Version string
		Pod     string
	}
	if err := json.Unmarshal([]byte(kn.ok(`{"by":4}`, "invoke", "counter", "alice", "add", "-f", "-", "-o", "json")), &inv); err != nil {
		t.Fatal(err)
	}
	if inv.Reply.Value != 9 || inv.Version == "" || !strings.HasPrefix(inv.Pod, "counter-") {
		t.Fatalf("invoke -o json: %+v", inv)
	}

	// --idempotency-key: a repeat is answered from the actor's record, not run again; the same
	// key with another payload is refused.
	if got := kn.ok("", "invoke", "counter", "dave", "add", `{"by":3}`, "--idempotency-key", "order-1", "--retry", "2"); got != "{\"value\":3}\n" {
		t.Fatalf("invoke with a key: %q", got)
	}
	var again struct {
		Reply    struct{ Value int }
		Replayed bool
	}
	if err := json.Unmarshal([]byte(kn.ok("", "invoke", "counter", "dave", "add", `{"by":3}`, "--idempotency-key", "order-1", "-o", "json")), &again); err != nil {
		t.Fatal(err)
	}
	if again.Reply.Value != 3 || !again.Replayed {
		t.Fatalf("repeat of a key: %+v, want the first reply, replayed", again)
	}
	kn.fails("already names another call of this actor; pick a new key", "invoke", "counter", "dave", "add", `{"by":4}`, "--idempotency-key", "order-1")

	// state get, as it is and -o json with the version of the last turn.
	if got := kn.ok("", "state", "get", "counter", "alice"); got != "{\"value\":9}\n" {
		t.Fatalf("state get: %q", got)
	}
	var st struct {
		Function, ID, Version string
		State                 struct{ Value int }
	}
	if err := json.Unmarshal([]byte(kn.ok("", "state", "get", "counter", "alice", "-o", "json")), &st); err != nil {
		t.Fatal(err)
	}
	if st.Function != "counter" || st.ID != "alice" || st.Version != inv.Version || st.State.Value != 9 {
		t.Fatalf("state get -o json: %+v, want version %s", st, inv.Version)
	}

	// deploy a second function; again unchanged; a write-mode change and a bad manifest refused.
	tally := proctest.CounterManifest(t, "tally")
	if got := kn.ok("", "deploy", "-f", tally); got != "function \"tally\" created\n" {
		t.Fatalf("deploy: %q", got)
	}
	if got := kn.ok("", "deploy", "-f", tally); got != "function \"tally\" unchanged\n" {
		t.Fatalf("deploy again: %q", got)
	}
	kn.fails(`function "tally" runs with knactor.dev/write-mode write-through: changing it to write-behind needs a restart of knactor up`,
		"deploy", "-f", proctest.CounterManifest(t, "tally", "knactor.dev/write-mode", "write-behind"))
	bad := proctest.CounterManifest(t, "tally", "autoscaling.knative.dev/min-scale", "-1")
	kn.fails(bad+": document 1 (line 1): spec.template.metadata.annotations[autoscaling.knative.dev/min-scale]", "deploy", "-f", bad)

	// logs -f of the new function, started before its first pod, shows the pod's output.
	follow := proctest.Start(t, "logs-follow", kn.env, bin, "logs", "tally", "-f", "--log-dir", logDir)
	for i := 1; i <= 3; i++ {
		if got := kn.ok("", "invoke", "tally", "bob", "add", `{"by":1}`); got != fmt.Sprintf("{\"value\":%d}\n", i) {
			t.Fatalf("tally add #%d: %q", i, got)
		}
	}
	waitLog(t, follow, "[tally-00001] ", "sdk: serving")
	if err := follow.Signal(syscall.SIGTERM); err != nil || follow.ExitCode() != 0 {
		t.Fatalf("logs -f after SIGTERM: %v, exit %d", err, follow.ExitCode())
	}
	if got := kn.ok("", "logs", "counter", "--log-dir", logDir); !strings.Contains(got, "sdk: serving") {
		t.Fatalf("logs counter: %q", got)
	}

	// list as a table and as JSON, with the token from a file.
	table := kn.ok("", "list")
	lines := strings.Split(strings.TrimSpace(table), "\n")
	if len(lines) != 3 || strings.Join(strings.Fields(lines[0]), " ") != "NAME READY STARTING DESIRED PANIC ACTORS" ||
		strings.Fields(lines[1])[0] != "counter" || strings.Fields(lines[1])[1] != "1" || strings.Fields(lines[2])[0] != "tally" {
		t.Fatalf("list:\n%s", table)
	}
	tokenFile := filepath.Join(dir, "token")
	writeFile(t, tokenFile, token+"\n", 0o600)
	var list functionList
	if err := json.Unmarshal([]byte(kn.with("KNACTOR_TOKEN=").ok("", "list", "-o", "json", "--token-file", tokenFile)), &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Functions) != 2 || list.Functions[0].Function != "counter" || list.Functions[1].Function != "tally" {
		t.Fatalf("list -o json: %+v", list)
	}
	for _, fs := range list.Functions {
		if fs.ReadyPods != 1 || fs.DesiredPods < 1 || fs.Panicking {
			t.Fatalf("list -o json: %+v", fs)
		}
	}

	// ws: an interactive round trip, one line at a time, with state pushes; Ctrl-D ends it.
	wsRoundTrip(t, kn)
	if got := kn.ok("", "state", "get", "counter", "carol"); got != "{\"value\":5}\n" {
		t.Fatalf("state after ws: %q", got)
	}

	// state delete, then get says there is none.
	if got := kn.ok("", "state", "delete", "counter", "alice"); got != "actor \"alice\" of function \"counter\" deleted\n" {
		t.Fatalf("state delete: %q", got)
	}
	kn.fails(`actor "alice" of function "counter" has no state`, "state", "get", "counter", "alice")

	// Errors say what to do next.
	closed := "http://127.0.0.1:" + strconv.Itoa(proctest.FreePort(t))
	kn.fails("no knactor at "+closed+": start one with `knactor up`", "--server", closed, "invoke", "counter", "alice", "get")
	kn.with("KNACTOR_TOKEN=wrong-token-0123456789").fails("refused the bearer token from $KNACTOR_TOKEN: set $KNACTOR_TOKEN", "invoke", "counter", "alice", "get")
	kn.with("KNACTOR_TOKEN=").fails("wants a bearer token: set $KNACTOR_TOKEN", "list")
	kn.with("KNACTOR_TOKEN=").fails("wants a bearer token: set $KNACTOR_TOKEN", "ws", "counter", "carol")
	kn.fails(`no function "nope" is deployed at `+url+": deploy it with `kn-actor deploy -f service.yaml`", "invoke", "nope", "a", "add")
	kn.fails(`no function "nope" is deployed`, "ws", "nope", "a")

	if err := up.Signal(syscall.SIGINT); err != nil || up.ExitCode() != 0 {
		t.Fatalf("knactor up after Ctrl-C: %v, exit %d", err, up.ExitCode())
	}
}

// waitLog waits until p's output holds every string of want.
func waitLog(t *testing.T, p *proctest.Process, want ...string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		log, all := p.Log(), true
		for _, w := range want {
			all = all && strings.Contains(log, w)
		}
		if all {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("output never held %q:\n%s", want, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// wsRoundTrip drives `kn-actor ws counter carol --subscribe` one line at a time: each reply is
// read before the next line is written.
func wsRoundTrip(t *testing.T, kn cli) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, kn.bin, "ws", "counter", "carol", "--subscribe")
	cmd.Env = append(os.Environ(), kn.env...)
	var errw strings.Builder
	cmd.Stderr = &errw
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	out := bufio.NewReader(stdout)
	var pushes []string
	// reply reads lines until a reply (not a state push) arrives.
	reply := func() string {
		for {
			line, err := out.ReadString('\n')
			if err != nil {
				t.Fatalf("ws output ended: %v; stderr %s", err, errw.String())
			}
			if strings.HasPrefix(line, "state changed (version ") {
				pushes = append(pushes, line)
				continue
			}
			return line
		}
	}
	for _, step := range []struct{ send, want string }{
		{`add {"by":2}`, `{"value":2}`},
		{`get`, `{"value":2}`},
		{`add {"by":3}`, `{"value":5}`},
	} {
		if _, err := io.WriteString(stdin, step.send+"\n"); err != nil {
			t.Fatal(err)
		}
		if got := strings.TrimSpace(reply()); got != step.want {
			t.Fatalf("ws %s: got %q, want %q", step.send, got, step.want)
		}
	}
	stdin.Close() // Ctrl-D
	rest, _ := io.ReadAll(out)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("ws after end of input: %v; stderr %s", err, errw.String())
	}
	pushes = append(pushes, strings.Split(strings.TrimSpace(string(rest)), "\n")...)
	if !strings.Contains(strings.Join(pushes, ""), `): {"value":5}`) {
		t.Fatalf("no state push of value 5: %q", pushes)
	}
}

// TestCLIWatchesAChannelAndShowsTimers drives `kn-actor ws --channel` and `state get --record`
// against `knactor up` running the auction example: the record shows the auction's close timer,
// and the channel's watcher prints the result the timer's turn broadcasts.
func TestCLIWatchesAChannelAndShowsTimers(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: builds and runs real processes; run without -short")
	}
	knactor, bin := proctest.Build(t, "cmd/knactor"), proctest.Build(t, "cmd/kn-actor")
	dir := t.TempDir()
	listen := "127.0.0.1:" + strconv.Itoa(proctest.FreePort(t))
	up := proctest.Start(t, "up", nil, knactor, "up", "-f", proctest.Manifest(t, "auction", "examples/auction"),
		"-f", proctest.Manifest(t, "bidder", "examples/auction bidder"),
		"--listen", listen, "--state-dir", filepath.Join(dir, "state"), "--log-dir", filepath.Join(dir, "logs"))
	url := "http://" + listen
	proctest.WaitHealthy(t, up, url+"/readyz")
	kn := cli{t: t, bin: bin, env: []string{"KNACTOR_URL=" + url}}

	watch := exec.Command(bin, "ws", "--channel", "auction.lot")
	watch.Env = append(os.Environ(), kn.env...)
	stdout, err := watch.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr proctest.Buffer // written by exec's copier while the test reads it
	watch.Stderr = &stderr
	if err := watch.Start(); err != nil {
		t.Fatal(err)
	}
	defer watch.Process.Kill() //nolint:errcheck // ended below unless the test failed first
	lines := bufio.NewScanner(stdout)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(stderr.String(), "Watching channel") { // connected
		if time.Now().After(deadline) {
			t.Fatalf("kn-actor ws --channel did not connect: %s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}

	kn.ok("", "invoke", "auction", "lot", "open", `{"item":"vase","duration_ms":2000}`)
	kn.ok("", "invoke", "bidder", "ann", "bid", `{"auction":"lot","amount":7}`)
	var rec struct {
		Timers []struct{ Name, Action string } `json:"timers"`
	}
	if err := json.Unmarshal([]byte(kn.ok("", "state", "get", "auction", "lot", "--record", "-o", "json")), &rec); err != nil {
		t.Fatal(err)
	}
	if len(rec.Timers) != 1 || rec.Timers[0].Name != "close" || rec.Timers[0].Action != "close" {
		t.Fatalf("state get --record: timers %+v, want the close timer", rec.Timers)
	}
	if !lines.Scan() {
		t.Fatalf("no broadcast printed: %v; stderr %s", lines.Err(), stderr.String())
	}
	if got := lines.Text(); !strings.HasPrefix(got, "auction.lot result ") || !strings.Contains(got, `"winner":"ann"`) {
		t.Fatalf("watcher printed %q, want the result naming ann", got)
	}
	_ = watch.Process.Signal(syscall.SIGINT)
	if err := watch.Wait(); err != nil {
		t.Fatalf("kn-actor ws --channel after Ctrl-C: %v; stderr %s", err, stderr.String())
	}
}
