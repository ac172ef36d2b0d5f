package sdk_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/knactor/knactor/sdk"
)

func TestServeGracefulShutdown(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	a := sdk.NewActor[counter]()
	sdk.Handle(a, "slow", func(_ context.Context, t *sdk.Turn[counter], _ any) (int, error) {
		close(entered)
		<-release
		t.State.N = 1
		return 42, nil
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- sdk.Serve(ctx, ln, a) }()

	resp, err := http.Get(url + "/healthz")
	if err != nil {
		t.Fatalf("GET /healthz: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /healthz = %d while serving, want 200", resp.StatusCode)
	}

	type result struct {
		status int
		body   string
		err    error
	}
	answered := make(chan result, 1)
	go func() {
		resp, err := http.Post(url+"/v1/invoke", "application/json", strings.NewReader(`{"actor":"a","action":"slow"}`))
		if err != nil {
			answered <- result{err: err}
			return
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		answered <- result{resp.StatusCode, string(body), err}
	}()
	<-entered
	cancel()
	select {
	case err := <-served:
		t.Fatalf("Serve returned %v before the in-flight call finished", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(release)

	got := <-answered
	if got.err != nil || got.status != http.StatusOK || got.body != `{"state":{"n":1},"reply":42}` {
		t.Errorf("in-flight call = %d %s (err %v), want 200 with the turn's answer", got.status, got.body, got.err)
	}
	if err := <-served; err != nil {
		t.Errorf("Serve = %v, want nil", err)
	}
	if _, err := http.Get(url + "/healthz"); err == nil {
		t.Error("GET /healthz after shutdown succeeded, want a connection error")
	}
}

func TestServeListenerClosed(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	if err := sdk.Serve(context.Background(), ln, sdk.NewActor[counter]()); err == nil {
		t.Error("Serve on a closed listener = nil, want an error")
	}
}
