package router

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/knactor/knactor/router/routing"
)

// The contract's endpoints are out of the pass-through's reach however the path is spelled
// (issue 16, point 1: "%761/invoke" reached the SDK's /v1/invoke with a forged state).
func TestContractPath(t *testing.T) {
	tests := []struct {
		path string
		want bool
	}{
		{"v1/invoke", true}, {"v1/invoke/", true}, {"healthz", true}, {"healthz//", true},
		{"%761/invoke", true}, {"v1%2Finvoke", true}, {"%68ealthz", true}, {"v1/%69nvoke", true},
		{"a/../v1/invoke", true}, {"./healthz", true}, {"//v1//invoke", true}, {"v1\\invoke", true},
		{"%zz", true}, // undecodable: refused
		{"hello", false}, {"v1/invoked", false}, {"v1/invoke/x", false}, {"healthz2", false},
		{"", false}, {"v1", false}, {"%68ello", false}, {"a/b/../c", false},
	}
	for _, tt := range tests {
		if got := contractPath([]byte(tt.path)); got != tt.want {
			t.Errorf("contractPath(%q) = %v, want %v", tt.path, got, tt.want)
		}
	}
}

// Through a real router to a real SDK function: spelled any way, the contract's endpoints
// answer 400 and the actor's state is untouched.
func TestPassThroughCannotReachTheContract(t *testing.T) {
	h := newHarness(t, Config{})
	h.deploy(counterFn, newTestActor())
	h.do("POST", "/v1/actors/counter/victim/add", `{"by":1}`).want(t, 200, `{"value":1}`)
	forged := `{"function":"counter","actor":"victim","action":"add","state":{"value":1000000},"version":"x","payload":{"by":1},"metadata":{}}`
	for _, p := range []string{"%761/invoke", "v1%2Finvoke", "a/..%2Fv1/invoke", "%68ealthz", "v1/invoke/"} {
		method := "POST"
		if p == "%68ealthz" {
			method = "GET"
		}
		if rp := h.do(method, "/v1/functions/counter/"+p, forged); rp.status != 400 {
			t.Errorf("%s /v1/functions/counter/%s: %d %s, want 400", method, p, rp.status, rp.body)
		}
	}
	h.do("GET", "/v1/actors/counter/victim", "").want(t, 200, `{"value":1}`)
}

// The table of rawHasHopHeader, the one scan that tells whether a request needs stripping.
func TestRawHasHopHeader(t *testing.T) {
	tests := []struct {
		raw  string
		want bool
	}{
		{"", false},
		{"Host: a\r\nContent-Length: 2\r\n\r\n", false},
		{"Host: a\r\nConnection: keep-alive\r\n\r\n", true},
		{"host: a\r\nconnection: close\r\n\r\n", true},
		{"Host: a\r\nKEEP-ALIVE: timeout=5\r\n\r\n", true},
		{"Host: a\r\nTe: trailers\r\n\r\n", true},
		{"Host: a\r\nProxy-Authorization : x\r\n\r\n", true},
		{"Host: a\r\nUpgrade: h2c\r\n\r\n", true},
		{"Host: a\r\nTransfer-Encoding: chunked\r\n\r\n", true},
		{"Host: a\r\nX-Connection: 1\r\nTEA: 1\r\nX: Connection: 1\r\n\r\n", false}, // names that only look alike
		{"Host: a\r\nTrailer", false},                                               // no colon: not a header
	}
	for _, tt := range tests {
		if got := rawHasHopHeader([]byte(tt.raw)); got != tt.want {
			t.Errorf("rawHasHopHeader(%q) = %v, want %v", tt.raw, got, tt.want)
		}
	}
}

// Hop-by-hop headers, and the headers a Connection header names, end at the router both ways
// (RFC 9110 §7.6.1): the pod never sees the caller's, the caller never sees the pod's; every
// other header passes.
func TestPassThroughDropsHopByHopHeaders(t *testing.T) {
	h := newHarness(t, Config{})
	got := make(chan http.Header, 1)
	h.deploy(routing.Function{Name: "echo"}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Clone()
		w.Header().Set("Connection", "X-Pod-Secret")
		w.Header().Set("X-Pod-Secret", "1")
		w.Header().Set("Proxy-Authenticate", "Basic")
		w.Header().Set("Keep-Alive", "timeout=9")
		w.Header().Set("X-Normal", "ok")
		_, _ = io.WriteString(w, "hi")
	}))
	conn, err := net.Dial("tcp", strings.TrimPrefix(h.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Written by hand: net/http's client would drop some of these itself.
	_, err = io.WriteString(conn, "GET /v1/functions/echo/x HTTP/1.1\r\nHost: 127.0.0.1\r\n"+
		"Connection: X-Secret, keep-alive\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\n"+
		"Proxy-Authorization: Basic eA==\r\nTe: trailers\r\nX-Kept: yes\r\n\r\n")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	pod := <-got
	for _, name := range []string{"X-Secret", "Keep-Alive", "Proxy-Authorization", "Te"} {
		if v := pod.Get(name); v != "" {
			t.Errorf("the pod got the caller's %s: %q", name, v)
		}
	}
	if pod.Get("X-Kept") != "yes" {
		t.Errorf("the pod did not get X-Kept: %v", pod)
	}
	for _, name := range []string{"X-Pod-Secret", "Proxy-Authenticate", "Keep-Alive"} {
		if v := resp.Header.Get(name); v != "" {
			t.Errorf("the caller got the pod's %s: %q", name, v)
		}
	}
	if resp.Header.Get("X-Normal") != "ok" {
		t.Errorf("the caller did not get X-Normal: %v", resp.Header)
	}
}
