// Package proctest holds the helpers knactor's tests share. Most are for tests that run real
// processes: build a package's binary once per test binary, start a process with extra
// environment and a log file that is shown when the test fails, wait for a URL to answer 200, and
// stop a process with SIGTERM, then SIGKILL, and read its exit code. The others serve every test
// package, in-process ones included, so that each is written once: pick free loopback ports
// (FreePort, FreePorts, ClosedAddr) and wait for a condition (Eventually).
//
// A test package that calls Build runs its tests through Main, which removes the binaries at the
// end:
//
//	func TestMain(m *testing.M) { proctest.Main(m) }
//
//	func TestServer(t *testing.T) {
//		port := proctest.FreePort(t)
//		p := proctest.Start(t, "counter", []string{"PORT=" + strconv.Itoa(port)}, proctest.Build(t, "examples/counter"))
//		proctest.WaitHealthy(t, p, "http://127.0.0.1:"+strconv.Itoa(port)+"/healthz")
//		...
//		if err := p.Signal(syscall.SIGTERM); err != nil || p.ExitCode() != 0 { ... }
//	}
//
// Every process is started in the repository root and stopped when its test ends.
package proctest
