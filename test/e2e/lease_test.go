package e2e

import (
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/knactor/knactor/test/miniotest"
	"github.com/knactor/knactor/test/proctest"
)

// One `knactor up` per S3 bucket and prefix: a second one refuses, naming the first; one that
// starts after the first was SIGKILLed takes over at once (same host, dead pid), and after a
// clean stop too (a released lease). Another prefix in the same bucket is another store.
func TestSecondUpOnOneBucketRefusesNamingTheFirst(t *testing.T) {
	skipShort(t)
	srv := miniotest.Start(t)
	env, s3 := minioRouterArgs(srv)
	manifest := proctest.Manifest(t, "counter", "examples/counter")
	args := append([]string{"-f", manifest}, s3...)

	first := startUp(t, env, args...)
	if v, _, err := add(routerProc(first), "lease-a", 5); err != nil || v != 5 {
		t.Fatalf("first up: add = %d, %v", v, err)
	}

	port := proctest.FreePort(t)
	second := proctest.Start(t, "up-second", env, proctest.Build(t, "cmd/knactor"),
		append([]string{"up", "--listen", "127.0.0.1:" + strconv.Itoa(port), "--state-dir", t.TempDir()}, args...)...)
	select {
	case <-second.Exited():
	case <-time.After(30 * time.Second):
		t.Fatal("a second knactor up on the same bucket and prefix is still running after 30 s")
	}
	if code := second.ExitCode(); code == 0 {
		t.Fatalf("second up exited with status 0:\n%s", second.Log())
	}
	want := "in use by another knactor (pid " + strconv.Itoa(first.Cmd().Process.Pid)
	if log := second.Log(); !strings.Contains(log, want) || !strings.Contains(log, first.url[len("http://"):]) {
		t.Fatalf("second up's error does not name the first (%q and its address):\n%s", want, log)
	}
	if v, _, err := add(routerProc(first), "lease-a", 1); err != nil || v != 6 {
		t.Fatalf("first up after the refusal: add = %d, %v", v, err)
	}

	// Another prefix in the same bucket is another store: it starts.
	other := startUp(t, env, append(args, "--s3-prefix", "other/")...)
	if v, _, err := add(routerProc(other), "lease-a", 1); err != nil || v != 1 {
		t.Fatalf("up on another prefix: add = %d, %v", v, err)
	}

	first.Signal(syscall.SIGKILL)
	<-first.Exited()
	start := time.Now()
	third := startUp(t, env, args...)
	if took := time.Since(start); took > 20*time.Second {
		t.Errorf("up after a SIGKILLed holder on this host took %v to start", took)
	}
	if v, _, err := add(routerProc(third), "lease-a", 1); err != nil || v != 7 {
		t.Fatalf("up after the takeover: add = %d, %v (want the first's acknowledged 6 + 1)", v, err)
	}

	third.Signal(syscall.SIGTERM)
	<-third.Exited()
	start = time.Now()
	fourth := startUp(t, env, args...)
	if took := time.Since(start); took > 20*time.Second {
		t.Errorf("up after a clean stop took %v to start", took)
	}
	if !strings.Contains(third.Log(), "holding the store's lease") {
		t.Errorf("up does not log that it holds the lease:\n%s", third.Log())
	}
	if v, _, err := add(routerProc(fourth), "lease-a", 1); err != nil || v != 8 {
		t.Fatalf("up after a clean stop: add = %d, %v", v, err)
	}
}
