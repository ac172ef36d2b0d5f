//go:build !linux

package proctest

import "os/exec"

// dieWithParent does nothing outside Linux, which alone has a parent-death signal: there a
// process still running when the test binary dies is left behind.
func dieWithParent(*exec.Cmd) {}
