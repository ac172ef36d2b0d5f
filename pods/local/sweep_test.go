package local

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/knactor/knactor/test/proctest"
)

// A pod whose shim is SIGKILLed leaves its command running with nobody to stop it; the next
// knactor on the same log directory finds the run's record and stops every process of the run,
// and nothing else.
func TestSweepStopsWhatAKilledShimLeft(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real processes; run without -short")
	}
	logDir := t.TempDir()
	pidFile := filepath.Join(t.TempDir(), "child.pid")
	// A bystander with the same command line but no run id must survive the sweep.
	bystander := startSleeper(t)

	id := newRunID()
	unmark, err := markRun(logDir, id, "stray-1")
	if err != nil {
		t.Fatal(err)
	}
	defer unmark()
	// What a pod whose shim died leaves: a shell and its child, both carrying the run id.
	sh := proctest.Start(t, "stray", []string{runEnv + "=" + id}, "sh", "-c", `sleep 300 & echo $! > "$0"; wait`, pidFile).Cmd().Process.Pid
	var child int
	for deadline := time.Now().Add(5 * time.Second); child == 0; time.Sleep(5 * time.Millisecond) {
		b, _ := os.ReadFile(pidFile)
		child, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		if time.Now().After(deadline) {
			t.Fatal("the stray shell did not start its child")
		}
	}

	if n := sweepRuns(logDir, slog.Default()); n != 2 {
		t.Fatalf("sweep killed %d processes, want 2 (the shell and its child)", n)
	}
	for _, pid := range []int{sh, child} {
		waitGone(t, pid)
	}
	if !proctest.Alive(bystander) {
		t.Fatal("the sweep killed a process without the run id")
	}
	if entries, _ := os.ReadDir(runDir(logDir)); len(entries) != 0 {
		t.Fatalf("run records left after the sweep: %v", entries)
	}
	if n := sweepRuns(logDir, slog.Default()); n != 0 {
		t.Fatalf("a second sweep killed %d processes", n)
	}
}

// Through the runtime: SIGKILL of a pod's shim; the runtime notices the exit and stops the rest
// of the run at once.
func TestKilledShimsLeftoversAreStopped(t *testing.T) {
	r := newRuntime(t, Config{})
	pidFile := filepath.Join(t.TempDir(), "child.pid")
	_ = r.Deploy(Function{Name: "wrapper", Command: []string{"sh", "-c", `sleep 300 & echo $! > "$CHILD_PID"; wait`},
		Env: []string{"CHILD_PID=" + pidFile}})
	_ = r.Scale(context.Background(), "wrapper", 1)
	var shim, child int
	for deadline := time.Now().Add(10 * time.Second); shim == 0 || child == 0; time.Sleep(5 * time.Millisecond) {
		r.mu.Lock()
		shim = r.fns["wrapper"].pods[0].pid
		r.mu.Unlock()
		b, _ := os.ReadFile(pidFile)
		child, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		if time.Now().After(deadline) {
			t.Fatal("the pod did not start its child")
		}
	}
	// Kill the shim alone (not its group): the shell and the child are orphaned.
	if err := syscall.Kill(shim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitGone(t, child)
}

func waitGone(t *testing.T, pid int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); proctest.Alive(pid); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("process %d still runs", pid)
		}
	}
}

func startSleeper(t *testing.T) int {
	return proctest.Start(t, "bystander", nil, "sleep", "300").Cmd().Process.Pid
}
