package main

import (
	"context"
	"net/http"
	"testing"
	"time"
)

func TestPprofServesProfilesUntilItsContextEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	addr, err := servePprof(ctx, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + addr.String() + "/debug/pprof/goroutine?debug=1"
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d", url, resp.StatusCode)
	}
	cancel()
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := http.Get(url)
		if err != nil {
			return // stopped
		}
		resp.Body.Close()
		if time.Now().After(deadline) {
			t.Fatal("the pprof server still answers after its context ended")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestPprofRefusesABadAddress(t *testing.T) {
	if _, err := servePprof(context.Background(), "256.0.0.1:x"); err == nil {
		t.Fatal("a bad --pprof-listen address was accepted")
	}
}
