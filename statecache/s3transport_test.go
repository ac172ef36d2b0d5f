package statecache

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/knactor/knactor/test/proctest"
)

func roundTrip(t *testing.T, tr *fastTransport, method, url string, body io.Reader) (*http.Response, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Add("X-Amz-Meta-Knactor-Commit", "c1")
	return tr.RoundTrip(req)
}

func TestFastTransportCarriesRequestsAndAnswers(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Add("X-Seen", r.Method+" "+r.URL.RequestURI()+" "+string(b)+" "+r.Header.Get("X-Amz-Meta-Knactor-Commit"))
		w.Header().Add("X-Multi", "a")
		w.Header().Add("X-Multi", "b")
		w.Header().Set("ETag", `"abc"`)
		if r.Method == http.MethodHead {
			w.Header().Set("Content-Length", "42")
			return
		}
		w.WriteHeader(http.StatusPreconditionFailed)
		io.WriteString(w, "<Error/>")
	}))
	defer srv.Close()
	tr := newFastTransport(nil, time.Second)

	resp, err := roundTrip(t, tr, http.MethodPut, srv.URL+"/bucket/counter/a%2Fb?x=1", strings.NewReader("state"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusPreconditionFailed || string(body) != "<Error/>" || resp.ContentLength != int64(len(body)) {
		t.Fatalf("PUT answer: %d %q (length %d)", resp.StatusCode, body, resp.ContentLength)
	}
	if got := resp.Header.Get("X-Seen"); got != "PUT /bucket/counter/a%2Fb?x=1 state c1" {
		t.Fatalf("the server saw %q", got)
	}
	if got := resp.Header.Values("X-Multi"); len(got) != 2 || resp.Header.Get("Etag") != `"abc"` {
		t.Fatalf("answer headers %v", resp.Header)
	}

	resp, err = roundTrip(t, tr, http.MethodHead, srv.URL+"/bucket/counter/a", nil)
	if err != nil {
		t.Fatal(err)
	}
	if body, _ := io.ReadAll(resp.Body); resp.StatusCode != 200 || len(body) != 0 || resp.ContentLength != 42 {
		t.Fatalf("HEAD answer: %d, %d body bytes, length %d", resp.StatusCode, len(body), resp.ContentLength)
	}
}

// TestFastTransportNeverResendsAndSaysWhatMayHaveLanded: a PUT whose connection closes before
// the answer is sent once and reported as possibly landed; a PUT to a closed port as never sent.
func TestFastTransportNeverResendsAndSaysWhatMayHaveLanded(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var requests atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if _, err := http.ReadRequest(bufio.NewReader(c)); err == nil {
					requests.Add(1) // read it, then hang up without an answer
				}
			}()
		}
	}()
	tr := newFastTransport(nil, time.Second)
	_, err = roundTrip(t, tr, http.MethodPut, "http://"+ln.Addr().String()+"/b/k", strings.NewReader("v"))
	if err == nil || neverSent(err) || !errors.Is(err, io.ErrUnexpectedEOF) && !isTransient(err) {
		t.Fatalf("a PUT whose answer never came: %v; want a transient error that may have landed", err)
	}
	// The server counts a request before it hangs up, and a resend happens inside RoundTrip
	// after that hang-up: the count is final.
	if n := requests.Load(); n != 1 {
		t.Fatalf("the server got the PUT %d times, want once", n)
	}

	addr := proctest.ClosedAddr(t)
	_, err = roundTrip(t, tr, http.MethodPut, "http://"+addr+"/b/k", strings.NewReader("v"))
	if !neverSent(err) || !isTransient(err) {
		t.Fatalf("a PUT to a closed port: %v; want a transient error that was never sent", err)
	}
}
