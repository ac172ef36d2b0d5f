package miniotest_test

import (
	"errors"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/knactor/knactor/test/miniotest"
)

// live GETs MinIO's liveness endpoint with a 1 s client timeout.
func live(endpoint string) error {
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get("http://" + endpoint + "/minio/health/live")
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return errors.New(resp.Status)
	}
	return nil
}

// liveSoon waits up to 10 s for live to succeed, for a server that has just resumed.
func liveSoon(t *testing.T, endpoint string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := live(endpoint)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("MinIO at %s does not answer: %v", endpoint, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// gone reports whether nothing listens on endpoint any more.
func gone(endpoint string) bool {
	c, err := net.DialTimeout("tcp", endpoint, time.Second)
	if err != nil {
		return true
	}
	c.Close()
	return false
}

func TestFreezeThaw(t *testing.T) {
	srv := miniotest.Start(t)
	if err := live(srv.Endpoint); err != nil {
		t.Fatalf("before Freeze: %v", err)
	}
	if err := srv.Freeze(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Freeze(); err != nil { // a second Freeze changes nothing
		t.Fatal(err)
	}
	start := time.Now()
	err := live(srv.Endpoint)
	t.Logf("GET while frozen: %v after %v", err, time.Since(start))
	if err == nil {
		t.Fatal("a frozen MinIO answered")
	}
	if err := srv.Thaw(); err != nil {
		t.Fatal(err)
	}
	liveSoon(t, srv.Endpoint)
	if err := srv.Thaw(); err != nil { // thawing a running server changes nothing
		t.Fatal(err)
	}
}

func TestStopAndKillFrozen(t *testing.T) {
	srv := miniotest.Start(t)

	if err := srv.Freeze(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := srv.Stop(); err != nil {
		t.Fatalf("Stop of a frozen server: %v", err)
	}
	t.Logf("Stop of a frozen server took %v", time.Since(start))
	if !gone(srv.Endpoint) {
		t.Fatal("MinIO still listens after Stop")
	}
	if err := srv.Freeze(); err == nil {
		t.Error("Freeze of a stopped server succeeded")
	}
	if err := srv.Thaw(); err != nil {
		t.Errorf("Thaw of a stopped server: %v", err)
	}

	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Freeze(); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	if err := srv.Kill(); err != nil {
		t.Fatalf("Kill of a frozen server: %v", err)
	}
	t.Logf("Kill of a frozen server took %v", time.Since(start))
	if !gone(srv.Endpoint) {
		t.Fatal("MinIO still listens after Kill")
	}

	if err := srv.Restart(); err != nil { // a restarted server is not frozen
		t.Fatal(err)
	}
	liveSoon(t, srv.Endpoint)
}

// TestCleanupOfFrozen checks that the cleanup Start registers ends a server a test left frozen.
func TestCleanupOfFrozen(t *testing.T) {
	var endpoint string
	t.Run("leaves it frozen", func(t *testing.T) {
		srv := miniotest.Start(t)
		endpoint = srv.Endpoint
		if err := srv.Freeze(); err != nil {
			t.Fatal(err)
		}
	})
	if !gone(endpoint) {
		t.Errorf("MinIO at %s still listens after the cleanup of the test that froze it", endpoint)
	}
}
