package kubetest

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"testing"
	"unsafe"
)

const (
	// envInside is set to "1" in the test binary that ReexecInNetNS started inside a fresh network
	// namespace.
	envInside = "KNACTOR_KUBETEST_NETNS"
	// envNetNS set to "host" runs the tests in the caller's network namespace instead: for a
	// developer machine without root or user namespaces. The cluster then binds 127.0.0.1 of the
	// host (pod IPs 127.1.x.y still work, all of 127.0.0.0/8 is loopback on Linux), and anything
	// that listens on all interfaces is reachable from outside.
	envNetNS = "KNACTOR_NETNS"
)

// ReexecInNetNS is a TestMain for packages whose tests use Start:
//
//	func TestMain(m *testing.M) { kubetest.ReexecInNetNS(m) }
//
// Outside the namespace it first builds the control-plane binaries (hack/kube/install.sh; the
// build needs the Go module proxy, which is unreachable from inside), then re-executes the test
// binary with the same arguments in a new network namespace that holds only loopback, forwards
// SIGINT/SIGTERM/SIGQUIT to it and exits with its exit code. Inside, it brings lo up and runs the
// tests. So every process the tests start — the control plane, MinIO, function processes on
// 127.1.x.y pod IPs, Knative components that listen on all interfaces — is unreachable from
// outside and cannot collide with ports of other test binaries or of the machine.
//
// The namespace is created with clone(CLONE_NEWNET) as root, or together with a user namespace
// (CLONE_NEWUSER, the caller mapped to root inside) otherwise, which works where unprivileged user
// namespaces are allowed. It ends with the last process in it: nothing is left to clean up.
//
// Each build function runs before the namespace is entered (after the control plane's own
// build): pass the installers of other binaries the tests need, since nothing can be downloaded
// from inside, e.g.
//
//	kubetest.ReexecInNetNS(m, func() error { _, err := miniotest.Binary(); return err })
//
// Under -short the tests run directly (the ones that need the cluster skip), and with
// KNACTOR_NETNS=host they run in the caller's namespace without isolation. Any failure to build
// or to enter the namespace fails the run.
func ReexecInNetNS(m *testing.M, build ...func() error) {
	os.Exit(reexecInNetNS(m, build))
}

func reexecInNetNS(m *testing.M, build []func() error) int {
	if InNetNS() {
		if err := loopbackUp(); err != nil {
			fmt.Fprintf(os.Stderr, "kubetest: bring lo up in the test network namespace: %v\n", err)
			return 1
		}
		return m.Run()
	}
	if !flag.Parsed() {
		flag.Parse()
	}
	if testing.Short() {
		return m.Run()
	}
	// Build before entering the namespace: go build needs the module proxy.
	if _, err := Binaries(); err != nil {
		fmt.Fprintf(os.Stderr, "kubetest: %v\n", err)
		return 1
	}
	for _, b := range build {
		if err := b(); err != nil {
			fmt.Fprintf(os.Stderr, "kubetest: before entering the network namespace: %v\n", err)
			return 1
		}
	}
	if os.Getenv(envNetNS) == "host" {
		return m.Run()
	}
	code, err := runInNewNetNS()
	if err != nil {
		fmt.Fprintf(os.Stderr, "kubetest: run the tests in a private network namespace: %v\n"+
			"(needs root or unprivileged user namespaces; KNACTOR_NETNS=host runs them without one)\n", err)
		return 1
	}
	return code
}

// InNetNS reports whether this process runs in the private network namespace made by
// ReexecInNetNS.
func InNetNS() bool { return os.Getenv(envInside) == "1" }

// isolationOK reports whether Start may run here: inside the namespace, or with the explicit
// KNACTOR_NETNS=host opt-out.
func isolationOK() bool { return InNetNS() || os.Getenv(envNetNS) == "host" }

func runInNewNetNS() (int, error) {
	exe, err := os.Executable()
	if err != nil {
		return 0, err
	}
	cmd := exec.Command(exe, os.Args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), envInside+"=1")
	attr := &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWNET,
		Pdeathsig:  syscall.SIGKILL, // never outlive the outer test binary
	}
	if os.Geteuid() != 0 {
		attr.Cloneflags |= syscall.CLONE_NEWUSER
		attr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}}
		attr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}}
		attr.GidMappingsEnableSetgroups = false
	}
	cmd.SysProcAttr = attr

	// Deliver Ctrl-C, SIGTERM and go test's SIGQUIT on timeout to the inner binary, which stops
	// its processes and reports; this one only waits for it.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGQUIT)
	defer signal.Stop(sigs)
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	done := make(chan struct{})
	go func() {
		for {
			select {
			case s := <-sigs:
				_ = cmd.Process.Signal(s)
			case <-done:
				return
			}
		}
	}()
	err = cmd.Wait()
	close(done)
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		if st, ok := exitErr.Sys().(syscall.WaitStatus); ok && st.Signaled() {
			fmt.Fprintf(os.Stderr, "kubetest: the test binary in the network namespace died of %v\n", st.Signal())
			return 128 + int(st.Signal()), nil
		}
		return exitErr.ExitCode(), nil
	}
	if err != nil {
		return 0, err
	}
	return 0, nil
}

// loopbackUp sets IFF_UP on lo (a fresh network namespace has it down), which also gives it
// 127.0.0.1/8 and ::1, then checks that a loopback address outside 127.0.0.1 — like a kwok pod IP —
// can be bound.
func loopbackUp() error {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer syscall.Close(fd)
	var req struct { // struct ifreq with ifr_flags; 40 bytes on 64-bit Linux
		name  [syscall.IFNAMSIZ]byte
		flags uint16
		_     [22]byte
	}
	copy(req.name[:], "lo")
	ioctl := func(op uintptr) error {
		if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), op, uintptr(unsafe.Pointer(&req))); errno != 0 {
			return errno
		}
		return nil
	}
	if err := ioctl(syscall.SIOCGIFFLAGS); err != nil {
		return fmt.Errorf("SIOCGIFFLAGS lo: %w", err)
	}
	if req.flags&syscall.IFF_UP == 0 {
		req.flags |= syscall.IFF_UP
		if err := ioctl(syscall.SIOCSIFFLAGS); err != nil {
			return fmt.Errorf("SIOCSIFFLAGS lo: %w", err)
		}
	}
	l, err := net.Listen("tcp", "127.1.255.254:0")
	if err != nil {
		return fmt.Errorf("lo is up but a 127.1.x.y address cannot be bound: %w", err)
	}
	return l.Close()
}
