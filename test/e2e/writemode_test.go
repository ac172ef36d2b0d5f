package e2e

import (
	"context"
	"fmt"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/knactor/knactor/statecache"
	"github.com/knactor/knactor/test/miniotest"
	"github.com/knactor/knactor/test/proctest"
)

// TestWriteModeFlagAppliesToUnannotatedFunctions checks `knactor up --write-mode write-behind`
// from the store's side: a function without knactor.dev/write-mode takes the flag's mode, so
// with an hour-long flush interval no call writes MinIO, and the stop flushes every actor.
func TestWriteModeFlagAppliesToUnannotatedFunctions(t *testing.T) {
	skipShort(t)
	srv := miniotest.Start(t)
	env, args := minioRouterArgs(srv)
	u := startUp(t, env, append(args, "--write-mode", "write-behind", "--flush-interval", "1h",
		"-f", proctest.CounterManifest(t, "counter"))...)
	r := routerProc{Process: u.Process, url: u.url}

	const actors, calls = 4, 25
	for i := range calls {
		actor := "wb-" + strconv.Itoa(i%actors)
		if _, _, err := add(r, actor, 1); err != nil {
			t.Fatal(err)
		}
	}

	ctx := context.Background()
	store, err := statecache.OpenS3Store(ctx, statecache.S3Config{
		Endpoint: srv.Endpoint, Bucket: "e2e", AccessKey: miniotest.AccessKey, SecretKey: miniotest.SecretKey,
	})
	if err != nil {
		t.Fatal(err)
	}
	stored := func(actor string) statecache.Entry {
		t.Helper()
		e, err := store.Get(ctx, statecache.Key{Function: "counter", ID: actor})
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	for i := range actors {
		if e := stored("wb-" + strconv.Itoa(i)); e.Exists {
			t.Fatalf("wb-%d is in MinIO before any flush (%q): the function runs write-through, not the flag's write-behind", i, e.Value)
		}
	}

	if err := u.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-u.Exited():
	case <-time.After(30 * time.Second):
		t.Fatal("knactor up did not stop within 30 s of SIGTERM")
	}
	for i := range actors {
		want := fmt.Sprintf(`{"value":%d}`, calls/actors+btoi(i < calls%actors))
		if e := stored("wb-" + strconv.Itoa(i)); !e.Exists || string(e.Value) != want {
			t.Errorf("wb-%d after the stop's flush: %q (exists %v), want %s", i, e.Value, e.Exists, want)
		}
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
