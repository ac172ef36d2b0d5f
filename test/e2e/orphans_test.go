package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/knactor/knactor/test/proctest"
)

// writeManifest writes a Knative Service named name whose local command is command.
func writeManifest(t *testing.T, name, command string) string {
	t.Helper()
	doc := fmt.Sprintf("apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  name: %s\n  annotations:\n"+
		"    knactor.dev/command: %q\nspec:\n  template:\n    spec:\n      containers:\n        - image: example.com/%s\n", name, command, name)
	path := filepath.Join(t.TempDir(), name+".yaml")
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// No process of a pod outlives `knactor up`, even when it is SIGKILLed and the pods' commands
// leave grandchildren: a shell that starts the function in the background and waits, and a
// `go run` command (built at deploy, so its pod runs the binary).
func TestNoPodProcessOutlivesKnactorUp(t *testing.T) {
	skipShort(t)
	counter := proctest.Build(t, "examples/counter")
	u := startUp(t, nil,
		"-f", writeManifest(t, "gorun", "go run ./examples/counter"),
		"-f", writeManifest(t, "shwrap", fmt.Sprintf("sh -c '%s & wait'", counter)))
	for _, fn := range []string{"gorun", "shwrap"} {
		if v := call(t, u.url, fn, "a", "add", `{"by":1}`); string(v) != `{"value":1}` {
			t.Fatalf("%s: %s", fn, v)
		}
	}
	procs := proctest.Descendants(t, u.Cmd().Process.Pid)
	// gorun: its shim and the counter (knactor up built the go run command into a binary at
	// deploy); shwrap: its shim, the shell and the counter.
	if len(procs) < 5 {
		t.Fatalf("knactor up has %d descendants, want at least the pods' shims, the shell and the counters", len(procs))
	}
	if err := u.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-u.Exited()
	deadline := time.Now().Add(2 * time.Second)
	for {
		var left []string
		for _, pid := range procs {
			if proctest.Alive(pid) {
				cmdline, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
				left = append(left, fmt.Sprintf("%d %q", pid, strings.ReplaceAll(string(cmdline), "\x00", " ")))
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d pod processes outlived knactor up by 2 s:\n%s", len(left), len(procs), strings.Join(left, "\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The second layer: a pod whose shim was SIGKILLed before `knactor up` was leaves its command
// running; the next `knactor up` on the same log directory stops it before it starts pods.
func TestNextUpStopsWhatAKilledShimLeft(t *testing.T) {
	skipShort(t)
	counter := proctest.Build(t, "examples/counter")
	logs := filepath.Join(t.TempDir(), "logs")
	manifest := writeManifest(t, "shwrap", fmt.Sprintf("sh -c '%s & wait'", counter))
	u := startUp(t, nil, "-f", manifest, "--log-dir", logs)
	if v := call(t, u.url, "shwrap", "a", "add", `{"by":1}`); string(v) != `{"value":1}` {
		t.Fatalf("shwrap: %s", v)
	}
	shims := proctest.ChildPIDs(t, u.Cmd().Process.Pid)
	var left []int
	for _, shim := range shims {
		left = append(left, proctest.Descendants(t, shim)...)
	}
	if len(shims) != 1 || len(left) < 2 {
		t.Fatalf("knactor up runs shims %v with descendants %v, want one shim with a shell and a counter", shims, left)
	}
	// knactor up is frozen first, so it cannot see its shim die and sweep the pod itself; then
	// the shim, then knactor up: nobody is left to stop the shell and the counter.
	for _, kill := range []struct {
		pid int
		sig syscall.Signal
	}{{u.Cmd().Process.Pid, syscall.SIGSTOP}, {shims[0], syscall.SIGKILL}, {u.Cmd().Process.Pid, syscall.SIGKILL}} {
		if err := syscall.Kill(kill.pid, kill.sig); err != nil {
			t.Fatal(err)
		}
	}
	<-u.Exited()
	time.Sleep(200 * time.Millisecond) // the shim's lifeline is gone with it: nothing would stop them
	for _, pid := range left {
		if !proctest.Alive(pid) {
			t.Fatalf("process %d stopped without the sweep: the test does not test it", pid)
		}
	}
	u2 := startUp(t, nil, "-f", manifest, "--log-dir", logs)
	for _, pid := range left {
		if proctest.Alive(pid) {
			t.Errorf("process %d of the killed shim's pod survived the next knactor up", pid)
		}
	}
	if !strings.Contains(u2.Log(), "left running") {
		t.Errorf("the next knactor up did not log what it stopped:\n%s", u2.Log())
	}
}
