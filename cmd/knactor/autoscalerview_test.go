package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/knactor/knactor/router"
)

func TestFunctionsURL(t *testing.T) {
	for in, want := range map[string]string{
		"ws://knactor-autoscaler.knactor-system.svc.cluster.local:8080/stats": "http://knactor-autoscaler.knactor-system.svc.cluster.local:8080/v1/functions",
		"wss://as:8443/stats?x=1": "https://as:8443/v1/functions",
		"http://127.0.0.1:8081/":  "http://127.0.0.1:8081/v1/functions",
	} {
		if got, err := functionsURL(in); err != nil || got != want {
			t.Errorf("functionsURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := functionsURL("ftp://x/stats"); err == nil {
		t.Error("ftp:// accepted")
	}
}

func TestAutoscalerViewReadsTheAutoscalersFunctions(t *testing.T) {
	var fail atomic.Bool
	var reads atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reads.Add(1)
		if r.URL.Path != "/v1/functions" || r.Header.Get("Authorization") != "Bearer secret-secret-secret-secret-xx" {
			http.Error(w, "wrong request", 400)
			return
		}
		if fail.Load() {
			http.Error(w, "down", 503)
			return
		}
		_, _ = w.Write([]byte(`{"functions":[{"function":"cart","revision":"cart-00002","desiredPods":3,"readyPods":2,"panicking":true,"stableValue":4.5,"activeActors":7}],"routers":[]}`))
	}))
	defer srv.Close()
	v := newAutoscalerView("ws"+strings.TrimPrefix(srv.URL, "http")+"/stats", "secret-secret-secret-secret-xx")
	now := time.Unix(1000, 0)
	v.now = func() time.Time { return now }

	want := []router.FunctionStatus{{Function: "cart", Revision: "cart-00002", ReadyPods: 2, DesiredPods: 3, Panicking: true, ActiveActors: 7}}
	got := v.FunctionStatuses()
	if len(got) != 1 || got[0] != want[0] || v.Err() != nil {
		t.Fatalf("got %+v, %v; want %+v", got, v.Err(), want)
	}
	v.FunctionStatuses() // fresh: not read again
	if n := reads.Load(); n != 1 {
		t.Fatalf("%d reads, want 1 while fresh", n)
	}

	// The autoscaler fails: the last good list stays, Err says why, and it is not asked again
	// at once.
	fail.Store(true)
	now = now.Add(time.Second)
	if got := v.FunctionStatuses(); len(got) != 1 || v.Err() == nil || !strings.Contains(v.Err().Error(), "autoscaler view unavailable") {
		t.Fatalf("after a failure: %+v, %v", got, v.Err())
	}
	now = now.Add(time.Second)
	v.FunctionStatuses()
	if n := reads.Load(); n != 2 {
		t.Fatalf("%d reads, want 2: a failure is retried after %v", n, viewRetry)
	}
	fail.Store(false)
	now = now.Add(viewRetry)
	if v.FunctionStatuses(); v.Err() != nil {
		t.Fatalf("after recovery: %v", v.Err())
	}
}
