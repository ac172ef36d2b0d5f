package proctest

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

// procStat is what a test reads of a process from /proc/{pid}/stat: its state and parent.
type procStat struct {
	state string
	ppid  int
}

// readStat reads /proc/{pid}/stat; ok is false when the process is gone.
func readStat(pid int) (procStat, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, false
	}
	// pid (comm) state ppid ...; comm may hold spaces and parentheses: split after the last ')'.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(f) < 2 {
		return procStat{}, false
	}
	ppid, _ := strconv.Atoi(f[1])
	return procStat{state: f[0], ppid: ppid}, true
}

// ChildPIDs returns the pids of parent's direct children.
func ChildPIDs(t testing.TB, parent int) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, ok := readStat(pid); ok && st.ppid == parent {
			pids = append(pids, pid)
		}
	}
	return pids
}

// Descendants returns every process below parent.
func Descendants(t testing.TB, parent int) []int {
	t.Helper()
	var out []int
	for next := []int{parent}; len(next) > 0; next = next[1:] {
		for _, c := range ChildPIDs(t, next[0]) {
			out = append(out, c)
			next = append(next, c)
		}
	}
	return out
}

// Alive reports whether pid is a process that has not exited (a zombie has).
func Alive(pid int) bool {
	st, ok := readStat(pid)
	return ok && st.state != "Z"
}
