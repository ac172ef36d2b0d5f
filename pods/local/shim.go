package local

import (
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
)

// The pod shim: every pod's command runs under a small process of its own, the knactor binary
// started again in shim mode (RunShimIfAsked), so that no process of a pod outlives knactor,
// whatever the command starts (`go run` compiles and runs a grandchild; a shell script or a
// worker pool starts children of its own):
//
//   - The shim leads the pod's process group and is a child subreaper
//     (PR_SET_CHILD_SUBREAPER): descendants orphaned by their parent are reparented to it,
//     not to init, so it reaps them and can find them.
//   - knactor hands it the read end of a pipe whose write end only knactor holds. When knactor
//     exits, however it exits (SIGKILL included), the pipe reads EOF and the shim kills the
//     whole group and every descendant it finds, then itself.
//   - When the command's own process exits, the shim kills what it left behind and exits with
//     the command's status, so the runtime sees the pod's exit as before.
//
// Signals the runtime sends to the group (SIGTERM, then SIGKILL) reach the command directly; the
// shim only waits for it.

// shimEnv marks a process started as a pod's shim; it never reaches the command.
const shimEnv = "KNACTOR_POD_SHIM"

// shimParentFD is the descriptor of the pipe from knactor in the shim (ExtraFiles[0]).
const shimParentFD = 3

// prSetChildSubreaper is prctl's PR_SET_CHILD_SUBREAPER (Linux 3.4).
const prSetChildSubreaper = 36

// RunShimIfAsked runs the pod shim and exits when this process was started as one; otherwise it
// returns at once. Call it first in main of any binary that runs a local Runtime (knactor), and
// in TestMain of tests that start pods.
func RunShimIfAsked() {
	if os.Getenv(shimEnv) != "1" {
		return
	}
	os.Exit(runShim(os.Args[1:]))
}

// shimCommand returns the command that runs argv under a shim, and the pipe's write end, which
// the caller keeps open as long as it lives (and closes once the pod has exited).
func shimCommand(argv []string) (*exec.Cmd, *os.File, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, nil, err
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, nil, err
	}
	cmd := exec.Command(self, argv...)
	cmd.ExtraFiles = []*os.File{r}
	// The child keeps its own copy of r; knactor closes its copy once the shim has started.
	return cmd, w, nil
}

// runShim runs argv as the pod's command and returns the exit status to exit with.
func runShim(argv []string) int {
	if len(argv) == 0 {
		os.Stderr.WriteString("knactor pod shim: no command\n")
		return 2
	}
	_, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0)
	if errno != 0 {
		os.Stderr.WriteString("knactor pod shim: PR_SET_CHILD_SUBREAPER: " + errno.Error() + "\n")
	}
	// Handled, not ignored: an ignored signal would stay ignored in the command after exec.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)

	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = withoutShimEnv(os.Environ())
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		os.Stderr.WriteString("knactor pod shim: " + err.Error() + "\n")
		return 127
	}
	parent := os.NewFile(shimParentFD, "knactor")
	go func() {
		_, _ = io.Copy(io.Discard, parent) // returns when knactor is gone
		killStrays()
		_ = syscall.Kill(0, syscall.SIGKILL) // the group, the shim included
	}()

	status := 0
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, 0, nil)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			break // ECHILD: nothing left to wait for
		}
		if pid == cmd.Process.Pid {
			switch {
			case ws.Exited():
				status = ws.ExitStatus()
			case ws.Signaled():
				status = 128 + int(ws.Signal())
			}
			break
		}
	}
	killStrays()
	return status
}

// withoutShimEnv returns environ without shimEnv.
func withoutShimEnv(environ []string) []string {
	out := environ[:0:0]
	for _, kv := range environ {
		if !strings.HasPrefix(kv, shimEnv+"=") {
			out = append(out, kv)
		}
	}
	return out
}

// killStrays kills every other process of the shim's group and every descendant reparented to
// it, and reaps them, until none is left (a process may fork while it is being killed).
func killStrays() {
	self := os.Getpid()
	for range 100 {
		strays := 0
		for _, p := range processes() {
			if p.pid != self && (p.pgrp == self || p.ppid == self) {
				_ = syscall.Kill(p.pid, syscall.SIGKILL)
				strays++
			}
		}
		for {
			var ws syscall.WaitStatus
			if pid, _ := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil); pid <= 0 {
				break
			}
		}
		if strays == 0 {
			return
		}
	}
}

// proc is one process's ids from /proc/{pid}/stat.
type proc struct{ pid, ppid, pgrp int }

// processes lists the processes of the system it can read.
func processes() []proc {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []proc
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp ...; comm may hold spaces and parentheses: cut at the last ')'.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 3 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		pgrp, _ := strconv.Atoi(f[2])
		out = append(out, proc{pid: pid, ppid: ppid, pgrp: pgrp})
	}
	return out
}
