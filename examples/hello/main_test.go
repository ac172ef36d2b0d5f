package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestHello checks hello's answers: the JSON greeting for POST and GET /hello, 200 on /healthz,
// 405 for other methods and 413 for an oversized body.
func TestHello(t *testing.T) {
	srv := httptest.NewServer(newHandler())
	defer srv.Close()

	tests := []struct {
		name, method, path, body string
		status                   int
		want                     string // the exact body, when not empty
	}{
		{name: "POST with a JSON body", method: http.MethodPost, path: "/hello", body: `{"name":"bench","n":1}`, status: 200, want: `{"hello":"world"}`},
		{name: "POST without a body", method: http.MethodPost, path: "/hello", status: 200, want: `{"hello":"world"}`},
		{name: "GET", method: http.MethodGet, path: "/hello", status: 200, want: `{"hello":"world"}`},
		{name: "healthz", method: http.MethodGet, path: "/healthz", status: 200},
		{name: "other method", method: http.MethodDelete, path: "/hello", status: 405},
		{name: "unknown path", method: http.MethodGet, path: "/nope", status: 404},
		{name: "body over the limit", method: http.MethodPost, path: "/hello", body: strings.Repeat("x", maxBodyBytes+1), status: 413},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, srv.URL+tc.path, strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.status {
				t.Fatalf("status = %d (%s), want %d", resp.StatusCode, body, tc.status)
			}
			if tc.want == "" {
				return
			}
			if string(body) != tc.want {
				t.Errorf("body = %s, want %s", body, tc.want)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q, want application/json", ct)
			}
		})
	}
}

// TestServeShutdown checks that serve returns nil once its context ends, after answering a
// request that was in flight when shutdown began.
func TestServeShutdown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- serve(ctx, ln) }()

	// The server sends "100 Continue" when the handler starts reading the body: from then on the
	// request is in flight, and its body is sent only after shutdown began.
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	body := `{"n":1}`
	fmt.Fprintf(conn, "POST /hello HTTP/1.1\r\nHost: hello\r\nContent-Type: application/json\r\n"+
		"Content-Length: %d\r\nExpect: 100-continue\r\n\r\n", len(body))
	br := bufio.NewReader(conn)
	if line, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(line, "HTTP/1.1 100") {
		t.Fatalf("want 100 Continue, got %q, %v", line, err)
	}
	if _, err := br.ReadString('\n'); err != nil { // the empty line that ends the interim answer
		t.Fatal(err)
	}
	cancel()
	time.Sleep(50 * time.Millisecond) // let Shutdown start waiting
	if _, err := io.WriteString(conn, body); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("in-flight request: %v", err)
	}
	got, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK || string(got) != string(helloBody) {
		t.Errorf("in-flight request answered %d %s (%v), want 200 %s", resp.StatusCode, got, err, helloBody)
	}

	select {
	case err := <-served:
		if err != nil {
			t.Errorf("serve = %v, want nil after shutdown", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not return after its context ended")
	}
}
