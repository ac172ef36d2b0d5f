package local

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// The second layer behind the shim (shim.go): a run file per running pod, so that a knactor
// started again stops what a crashed one left. The shim stops every process of its pod when
// knactor dies; but a shim that is itself SIGKILLed (the OOM killer, a stray kill) leaves the
// command running with nobody to stop it, and knactor, dying after that, cannot either.
//
// Every pod's processes carry KNACTOR_POD_RUN=<random id> in their environment (inherited by
// children and grandchildren, as the environment is), and {LogDir}/.run/<id> exists while the
// pod runs. New sweeps the directory: it kills every process of this user whose environment holds
// the id of a file left there, then removes the file. Matching on a random id of this run, not
// on a pid, means a pid reused by an unrelated process is never touched.

// runEnv names the variable that marks a pod run's processes.
const runEnv = "KNACTOR_POD_RUN"

// runDir is where the run files live, under the log directory.
func runDir(logDir string) string { return filepath.Join(logDir, ".run") }

// newRunID returns a fresh pod run id.
func newRunID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// markRun records a pod run that is starting; the returned func removes the record once the run
// has ended and its processes are gone.
func markRun(logDir, id, pod string) (func(), error) {
	dir := runDir(logDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, id)
	if err := os.WriteFile(path, []byte(pod+"\n"), 0o600); err != nil {
		return nil, err
	}
	return func() { _ = os.Remove(path) }, nil
}

// sweepRuns kills the processes of every pod run recorded under logDir (runs a previous knactor
// did not see end) and removes the records. It returns how many processes it killed.
func sweepRuns(logDir string, log *slog.Logger) int {
	dir := runDir(logDir)
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) == 0 {
		return 0
	}
	ids := make(map[string]string, len(entries)) // run id → pod name
	for _, e := range entries {
		pod, _ := os.ReadFile(filepath.Join(dir, e.Name()))
		ids[e.Name()] = strings.TrimSpace(string(pod))
	}
	killed := killRuns(ids, log)
	for id := range ids {
		_ = os.Remove(filepath.Join(dir, id))
	}
	return killed
}

// killRuns sends SIGKILL to every process of this user whose environment names one of the runs
// (run id → pod name) and returns how many it signalled.
func killRuns(ids map[string]string, log *slog.Logger) int {
	killed := 0
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		id, ok := runOf(pid)
		if !ok {
			continue
		}
		if pod, left := ids[id]; left {
			if err := syscall.Kill(pid, syscall.SIGKILL); err == nil || errors.Is(err, syscall.ESRCH) {
				killed++
				log.Warn("stopped a process its pod's shim left running", "pod", pod, "pid", pid)
			}
		}
	}
	return killed
}

// runOf returns the pod run id in pid's environment, if it has one (and is this user's).
func runOf(pid int) (string, bool) {
	env, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "environ"))
	if err != nil {
		return "", false
	}
	prefix := []byte(runEnv + "=")
	for _, kv := range bytes.Split(env, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, prefix); ok {
			return string(v), true
		}
	}
	return "", false
}
