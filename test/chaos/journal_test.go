package chaos

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/knactor/knactor/test/miniotest"
)

// (f) A write-behind router is stopped while its store is down: the final flush fails, so the
// changes it acknowledged go to its journal on local disk. The store comes back on another
// address, a router starts on the same journal, takes the changes back and makes them durable
// at its own shutdown. Every acknowledged call is in the store exactly once.
func TestWriteBehindJournalThroughAStoreOutageAtShutdown(t *testing.T) {
	skipShort(t)
	start := time.Now()
	srv := miniotest.Start(t)
	pods := startCounters(t, 1)
	journal := filepath.Join(t.TempDir(), "journal")
	args := func(endpoint string) []string {
		return routerArgs(endpoint, pods, "--write-mode", "write-behind", "--flush-interval", "1h",
			"--journal-dir", journal, "--store-timeout", "2s", "--s3-attempts", "1")
	}
	first := newServer(t, "router-first", s3Env(), args(srv.Endpoint)...)
	keyed, keyless := run(func() []string { return []string{first.url()} }, func() {
		time.Sleep(2 * time.Second)
		if err := srv.Stop(); err != nil { // the store goes away; write-behind goes on answering
			t.Fatal(err)
		}
		time.Sleep(time.Second)
	})
	firstLog := first.stop()
	if !strings.Contains(firstLog, "kept in the write-behind journal") {
		t.Fatalf("the first router's shutdown did not say it kept its changes in the journal:\n%s", firstLog)
	}
	files, _ := filepath.Glob(filepath.Join(journal, "changes-*.jsonl"))
	if len(files) != 1 {
		t.Fatalf("journal files %v after the failed final flush, want one", files)
	}
	kept, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	changes := bytes.Count(kept, []byte("\n"))

	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	second := newServer(t, "router-second", s3Env(), args(srv.Endpoint)...)
	if log := second.stop(); strings.Contains(log, "level=ERROR") {
		t.Fatalf("the second router did not flush the journal cleanly:\n%s", log)
	}
	if files, _ := filepath.Glob(filepath.Join(journal, "changes-*.jsonl")); len(files) != 0 {
		t.Fatalf("journal files %v after their changes were flushed", files)
	}
	report(t, start, fmt.Sprintf("write-behind router stopped with MinIO down (%d changes journaled), MinIO restarted, router restarted on the journal", changes),
		check(t, s3Store(t, srv.Endpoint), keyed, keyless))
}

// stop ends the process with SIGTERM (a graceful shutdown), waits for it and returns its log.
func (s *server) stop() string {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.proc.Signal(syscall.SIGTERM); err != nil {
		s.t.Fatalf("stop %s: %v", s.name, err)
	}
	select {
	case <-s.proc.Exited():
	case <-time.After(60 * time.Second):
		s.t.Fatalf("%s did not stop within 60 s of SIGTERM", s.name)
	}
	return s.proc.Log()
}
