package router

// Pass-through passes a pod's answer on without allocating (issue 15; the allocation budgets are
// in hotpath_allocs_test.go) because passTransport reads an answer of known, small length whole
// and streams only the others. These tests hold it to what fasthttp's streaming transport did:
// every kind of answer arrives intact, large and open-ended ones as they come, and a connection
// goes back to the pool only when nothing of its answer is left on it.

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/knactor/knactor/router/placement"
	"github.com/knactor/knactor/router/routing"
	"github.com/knactor/knactor/test/proctest"
)

// countingPod serves handler as the only pod of function fn and counts the connections the
// router opens to it.
func (h *harness) countingPod(fn routing.Function, handler http.Handler) *atomic.Int64 {
	h.t.Helper()
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(handler)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	h.t.Cleanup(srv.Close)
	addr := strings.TrimPrefix(srv.URL, "http://")
	h.backends.Set(fn, placement.Pod{Name: addr, Addr: addr})
	return &conns
}

func TestPassThroughAnswerBodies(t *testing.T) {
	h := newHarness(t, Config{})
	sized := func(n int) http.HandlerFunc {
		return func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Length", strconv.Itoa(n))
			_, _ = w.Write(bytes.Repeat([]byte("k"), n))
		}
	}
	cases := []struct {
		name     string
		method   string
		pod      http.HandlerFunc
		status   int
		body     string
		newConns int64 // of three calls in a row
	}{
		{"small, buffered", "GET", sized(17), 200, strings.Repeat("k", 17), 1},
		{"empty", "POST", sized(0), 200, "", 1},
		{"the largest buffered", "GET", sized(maxBufferedResponse), 200, strings.Repeat("k", maxBufferedResponse), 1},
		{"streamed for its size", "GET", sized(maxBufferedResponse + 1), 200, strings.Repeat("k", maxBufferedResponse+1), 1},
		{"chunked, streamed", "GET", func(w http.ResponseWriter, _ *http.Request) {
			_, _ = io.WriteString(w, "first ")
			w.(http.Flusher).Flush() // no length: net/http chunks the body
			_, _ = io.WriteString(w, "second")
		}, 200, "first second", 1},
		{"no content", "DELETE", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(204) }, 204, "", 1},
		{"HEAD of a length", "HEAD", sized(1000), 200, "", 1},
		{"after an informational answer", "GET", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Link", "</style.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			w.WriteHeader(201)
			_, _ = io.WriteString(w, "created")
		}, 201, "created", 1},
		{"until the pod closes", "GET", func(w http.ResponseWriter, _ *http.Request) {
			conn, buf, err := w.(http.Hijacker).Hijack()
			if err != nil {
				t.Error(err)
				return
			}
			defer conn.Close()
			_, _ = buf.WriteString("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nto the end")
			_ = buf.Flush()
		}, 200, "to the end", 3},
	}
	for i, c := range cases {
		name := "answers-" + strconv.Itoa(i)
		conns := h.countingPod(routing.Function{Name: name}, c.pod)
		for range 3 {
			rp := h.do(c.method, "/v1/functions/"+name+"/x", "")
			if rp.status != c.status || rp.body != c.body {
				t.Fatalf("%s: %d, %d bytes %.40q, want %d, %d bytes", c.name, rp.status, len(rp.body), rp.body, c.status, len(c.body))
			}
		}
		if n := conns.Load(); n != c.newConns {
			t.Errorf("%s: three calls opened %d connections to the pod, want %d", c.name, n, c.newConns)
		}
	}
}

// An open-ended answer (server-sent events, a long download) reaches the client as the pod sends
// it, not once it is complete.
func TestPassThroughStreamsAnswersAsTheyCome(t *testing.T) {
	h := newHarness(t, Config{})
	rest := make(chan struct{})
	h.deploy(routing.Function{Name: "events"}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, "data: one\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-rest:
		case <-r.Context().Done():
			return
		}
		_, _ = io.WriteString(w, "data: two\n\n")
	}))
	resp, err := http.Get(h.url + "/v1/functions/events/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	first := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(resp.Body).ReadString('\n')
		first <- line
	}()
	select {
	case line := <-first:
		if line != "data: one\n" {
			t.Fatalf("first event %q", line)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the first event did not arrive before the pod finished its answer: the router held it back")
	}
	close(rest)
}

// A client that goes away in the middle of a streamed answer leaves the rest of it on the pod's
// connection: that connection is closed, not given to the next call.
func TestPassThroughAbandonedStreamClosesThePodConnection(t *testing.T) {
	h := newHarness(t, Config{})
	const size = 8 << 20
	var closed atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(size))
		_, _ = w.Write(bytes.Repeat([]byte("z"), size))
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateClosed {
			closed.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	addr := strings.TrimPrefix(srv.URL, "http://")
	h.backends.Set(routing.Function{Name: "big"}, placement.Pod{Name: addr, Addr: addr})

	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get(h.url + "/v1/functions/big/file")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(resp.Body, make([]byte, 64<<10)); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close() // with most of the body still to come
	proctest.Eventually(t, "the router to close the pod's connection", func() bool { return closed.Load() == 1 })
	for range 2 {
		resp, err := http.Get(h.url + "/v1/functions/big/file")
		if err != nil {
			t.Fatal(err)
		}
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil || n != size {
			t.Fatalf("the next call: %d bytes, %v; want %d", n, err, size)
		}
	}
}

// A pod that stops in the middle of a small answer is a pod that did not answer in time: 504,
// not a 200 whose body breaks off.
func TestPassThroughStalledAnswerTimesOut(t *testing.T) {
	h := newHarness(t, Config{})
	h.deploy(routing.Function{Name: "stall", Timeout: 300 * time.Millisecond}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100")
		_, _ = io.WriteString(w, "the first ten")
		w.(http.Flusher).Flush()
		<-r.Context().Done() // the router gives up and closes the connection
	}))
	start := time.Now()
	rp := h.do("GET", "/v1/functions/stall/x", "")
	if rp.status != 504 || !strings.Contains(rp.body, CodeFunctionTimeout) {
		t.Fatalf("%d %s, want 504 %s", rp.status, rp.body, CodeFunctionTimeout)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("answered after %v, want about the function's timeout", took)
	}
}
