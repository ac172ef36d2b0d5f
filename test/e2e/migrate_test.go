package e2e

import (
	"strings"
	"testing"

	"github.com/knactor/knactor/statecache"
	"github.com/knactor/knactor/test/proctest"
)

// TestUpMigratesADirectoryStore starts `knactor up` on a --state-dir written by the directory
// store of earlier releases: the actors are there, and the log says they moved.
func TestUpMigratesADirectoryStore(t *testing.T) {
	skipShort(t)
	dir := t.TempDir()
	old, err := statecache.OpenDirStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"alice", "bob"} {
		if _, err := old.Put(t.Context(), statecache.Key{Function: "counter", ID: id}, []byte(`{"value":41}`), statecache.NoVersion, "old-"+statecache.Commit(id)); err != nil {
			t.Fatal(err)
		}
	}
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}

	u := startUp(t, nil, "--state-dir", dir, "-f", proctest.CounterManifest(t, "counter"))
	r := routerProc{Process: u.Process, url: u.url}
	if v, _, err := add(r, "alice", 1); err != nil || v != 42 {
		t.Fatalf("alice after the migration: %d, %v; want 42", v, err)
	}
	if v := stateOf(t, r, "bob"); v != 41 {
		t.Fatalf("bob after the migration: %d, want 41", v)
	}
	if log := u.Log(); !strings.Contains(log, "migrated the directory store") || !strings.Contains(log, "actors=2") {
		t.Fatalf("the log does not report the migration:\n%s", log)
	}
}
