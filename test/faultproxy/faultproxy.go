// Package faultproxy is a fault-injecting HTTP proxy to put in front of a real S3 server (MinIO)
// in chaos tests.
//
// A test points knactor's S3 client (minio-go, plain HTTP, AWS SigV4) at [Proxy.Addr] instead of
// the store, and chooses with [Proxy.Set] what happens to the requests that follow: they can hang
// (Freeze), be slow (Latency), reach the store while their answer is lost (DropResponse), be cut
// off before reaching it (Reset), or be refused (Unavailable). These are the failures a store
// client has to survive, and DropResponse and Freeze produce the hard one: an "ambiguous write",
// where a PUT the client saw fail did land in the store.
//
// The proxy is a real TCP/HTTP server on 127.0.0.1, not a mock. It forwards each request to the
// upstream unchanged: the same method, path and raw query, the same Host header (SigV4 signs it,
// so the upstream accepts the client's signature), the same end-to-end headers and the same body
// bytes. Hop-by-hop headers (Connection and the headers it names, Keep-Alive, Proxy-Connection,
// Proxy-Authenticate, Proxy-Authorization, TE, Trailer, Transfer-Encoding, Upgrade) belong to one
// connection and are not forwarded, as RFC 9110 §7.6.1 requires of a proxy; SigV4 never signs
// them. The whole request body is read before anything else happens, so a frozen request is
// complete and can be forwarded later even if its client is gone.
package faultproxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// MaxBody bounds a request body; a longer one is answered 413 Request Entity Too Large.
const MaxBody = 64 << 20

// closeGrace is how long Close waits for connections to finish their responses before it closes
// them under their handlers.
const closeGrace = 2 * time.Second

// Mode is the kind of fault the proxy applies to a request.
type Mode int

const (
	// None forwards requests normally.
	None Mode = iota
	// Freeze holds a request, neither forwarding nor answering it, until [Proxy.Clear] or a
	// [Proxy.Set] of a mode other than Freeze. Then the request is forwarded to the upstream,
	// even if its client has given up meanwhile, as a frozen server processes the requests it
	// buffered once it resumes; a client still connected gets the upstream's answer.
	// [Proxy.Close] releases frozen requests without forwarding them: they are answered 503.
	Freeze
	// Latency waits [Fault.Delay] before forwarding a request.
	Latency
	// DropResponse forwards a request and reads the upstream's whole response, then resets the
	// client's connection (TCP RST) without answering: the request took effect upstream, and the
	// client cannot know.
	DropResponse
	// Reset resets the client's connection (TCP RST) without forwarding the request.
	Reset
	// Unavailable answers 503 Service Unavailable with an S3-style XML error body and
	// Retry-After: 1, without forwarding the request.
	Unavailable

	numModes // the number of modes; not a mode
)

var modeNames = [numModes]string{"None", "Freeze", "Latency", "DropResponse", "Reset", "Unavailable"}

// String returns the mode's name, as in the constants' names.
func (m Mode) String() string {
	if m >= 0 && m < numModes {
		return modeNames[m]
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// Fault describes what the proxy does to the requests it receives.
type Fault struct {
	// Mode is the fault applied; None forwards normally.
	Mode Mode
	// Delay is how long a request waits before it is forwarded, for Latency.
	Delay time.Duration
	// Methods limits the fault to requests with one of these HTTP methods, compared
	// case-insensitively; other requests are forwarded normally. Empty: all methods.
	Methods []string
	// Count limits the fault to the next Count requests it applies to; later ones are forwarded
	// normally. 0: every request until the next Set or Clear.
	Count int
}

// Stats counts what the proxy did since it started.
type Stats struct {
	// Requests is the number of requests received, answered or not.
	Requests int64
	// Forwarded is the number of requests sent to the upstream (normally, after a Latency delay,
	// after a Freeze was released, or for DropResponse), whether or not the upstream answered.
	Forwarded int64
	// UpstreamErrors is the number of forwarded requests the upstream did not answer (connection
	// refused or reset, or the proxy closing); their client got 502 Bad Gateway.
	UpstreamErrors int64
	// Faulted is the number of requests a fault was applied to, by mode. It never has a None key.
	Faulted map[Mode]int64
	// Frozen is the number of requests held by Freeze right now.
	Frozen int
}

// Proxy is a running fault-injecting proxy. Its methods are safe for concurrent use.
//
// Concurrency: mu guards closed, fault, left, release and stats. Every request is handled on its
// own goroutine by the http.Server; a handler that gets past the closed check is counted in wg
// (Add under mu, so Close's Wait, which follows setting closed under mu, sees every Add). ctx is
// cancelled by Close: it aborts calls to the upstream, interrupts Latency waits and releases
// frozen requests without forwarding them; srv.Shutdown closes each client connection once its
// response is out, and srv.Close, after a grace period, the rest, which ends a handler blocked
// writing to a client that does not read. So every handler, and the one
// goroutine New starts (srv.Serve, which ends with the listener), ends once Close is called.
// closeOnce guards closeErr. The remaining fields are set by New and read-only afterwards.
type Proxy struct {
	upstream  string
	ln        net.Listener
	srv       *http.Server
	transport *http.Transport
	ctx       context.Context // the context of every upstream call; cancelled by Close
	cancel    context.CancelFunc
	serveDone chan struct{} // closed when srv.Serve has returned
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error

	mu      sync.Mutex
	closed  bool          // Close has started; new requests are answered 503
	fault   Fault         // the fault set last; Mode None after Clear
	left    int           // with fault.Count > 0: how many more requests the fault applies to
	release chan struct{} // with fault.Mode Freeze: closed to release the requests frozen so far
	stats   Stats
}

// Start starts a proxy to upstream (host:port of an S3 server) for the test, and closes it when
// the test and its subtests end. It fails the test when the proxy cannot start.
func Start(t testing.TB, upstream string) *Proxy {
	t.Helper()
	p, err := New(upstream)
	if err != nil {
		t.Fatalf("faultproxy: %v", err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("faultproxy: close: %v", err)
		}
	})
	return p
}

// New starts a proxy to upstream (host:port of an S3 server) listening on 127.0.0.1 on a free
// port. It forwards normally until Set is called. The caller must Close it.
func New(upstream string) (*Proxy, error) {
	if _, _, err := net.SplitHostPort(upstream); err != nil {
		return nil, fmt.Errorf("upstream %q is not host:port: %w", upstream, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Proxy{
		upstream: upstream,
		ln:       ln,
		transport: &http.Transport{
			Proxy: nil, // never the environment's proxy: the upstream is on this machine
			DialContext: (&net.Dialer{
				Timeout:   5 * time.Second,
				KeepAlive: 30 * time.Second,
			}).DialContext,
			MaxIdleConns:        64,
			MaxIdleConnsPerHost: 16,
			IdleConnTimeout:     90 * time.Second,
			// Pass Accept-Encoding and compressed bodies through untouched instead of asking for
			// gzip and decompressing on the client's behalf.
			DisableCompression: true,
		},
		ctx:       ctx,
		cancel:    cancel,
		serveDone: make(chan struct{}),
		stats:     Stats{Faulted: make(map[Mode]int64)},
	}
	p.srv = &http.Server{
		Handler:           http.HandlerFunc(p.serveHTTP),
		ReadHeaderTimeout: 30 * time.Second,
	}
	go func() {
		defer close(p.serveDone)
		_ = p.srv.Serve(ln) // returns when Close closes the listener
	}()
	return p, nil
}

// Addr returns host:port of the proxy, for clients to use as their S3 endpoint.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Set makes f the fault applied to the requests received from now on, replacing the previous
// one. Requests frozen by a previous Freeze are released (and forwarded) unless f.Mode is Freeze
// too. Set panics on a Mode that is not one of the constants.
func (p *Proxy) Set(f Fault) {
	if f.Mode < 0 || f.Mode >= numModes {
		panic(fmt.Sprintf("faultproxy: Set with unknown %v", f.Mode))
	}
	f.Methods = slices.Clone(f.Methods)
	p.mu.Lock()
	defer p.mu.Unlock()
	if f.Mode != Freeze {
		p.releaseLocked()
	} else if p.release == nil {
		p.release = make(chan struct{})
	}
	p.fault, p.left = f, f.Count
}

// Clear goes back to forwarding every request normally, and releases the frozen requests: they
// are forwarded now. It is Set(Fault{}).
func (p *Proxy) Clear() { p.Set(Fault{}) }

// releaseLocked lets the requests frozen so far go on to the upstream. p.mu must be held.
func (p *Proxy) releaseLocked() {
	if p.release != nil {
		close(p.release)
		p.release = nil
	}
}

// Stats returns a snapshot of the proxy's counters.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.stats
	s.Faulted = make(map[Mode]int64, len(p.stats.Faulted))
	for m, n := range p.stats.Faulted {
		s.Faulted[m] = n
	}
	return s
}

// Close stops the proxy: it stops accepting connections, aborts calls in flight to the upstream
// (their clients get 502), answers requests that are frozen or waiting out a Latency delay with
// 503 without forwarding them, lets the handlers finish their responses, closes the client
// connections, and waits for every request handler to return. A connection still busy after 2 s
// (a client that does not read its response or does not finish its request) is closed under
// its handler. Calling Close again does nothing and returns the first result.
func (p *Proxy) Close() error {
	p.closeOnce.Do(func() {
		p.mu.Lock()
		p.closed = true
		p.mu.Unlock()
		p.cancel()
		// Shutdown closes the listener, then each connection once its handler has returned and
		// its response is out, so the 503s above reach their clients.
		ctx, cancel := context.WithTimeout(context.Background(), closeGrace)
		defer cancel()
		if err := p.srv.Shutdown(ctx); errors.Is(err, context.DeadlineExceeded) {
			_ = p.srv.Close() // ends a handler blocked writing to a client that does not read
		} else {
			p.closeErr = err
		}
		p.wg.Wait()
		<-p.serveDone
		p.transport.CloseIdleConnections()
	})
	return p.closeErr
}

// serveHTTP handles one request from a client.
func (p *Proxy) serveHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	p.stats.Requests++
	if p.closed {
		p.mu.Unlock()
		writeS3Error(w, r, http.StatusServiceUnavailable, "ServiceUnavailable", "faultproxy is closed")
		return
	}
	p.wg.Add(1)
	p.mu.Unlock()
	defer p.wg.Done()

	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	if err != nil {
		if maxErr := (*http.MaxBytesError)(nil); errors.As(err, &maxErr) {
			writeS3Error(w, r, http.StatusRequestEntityTooLarge, "EntityTooLarge",
				fmt.Sprintf("faultproxy takes request bodies up to %d bytes", MaxBody))
		}
		return // otherwise the client is gone: nobody to answer
	}

	f, release := p.decide(r.Method)
	switch f.Mode {
	case None:
		p.forward(w, r, body)
	case Freeze:
		released := false
		select {
		case <-release:
			released = true
		case <-p.ctx.Done():
		}
		p.mu.Lock()
		p.stats.Frozen--
		p.mu.Unlock()
		if released {
			p.forward(w, r, body)
		} else {
			writeS3Error(w, r, http.StatusServiceUnavailable, "ServiceUnavailable", "faultproxy closed while the request was frozen")
		}
	case Latency:
		timer := time.NewTimer(f.Delay)
		defer timer.Stop()
		select {
		case <-timer.C:
			p.forward(w, r, body)
		case <-p.ctx.Done():
			writeS3Error(w, r, http.StatusServiceUnavailable, "ServiceUnavailable", "faultproxy closed during the injected latency")
		}
	case DropResponse:
		if resp, err := p.roundTrip(r, body); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		resetConn(w)
	case Reset:
		resetConn(w)
	case Unavailable:
		w.Header().Set("Retry-After", "1")
		writeS3Error(w, r, http.StatusServiceUnavailable, "ServiceUnavailable", "injected by faultproxy")
	}
}

// decide picks the fault for a request with the given method and counts it. For Freeze it also
// returns the channel whose closing releases the request.
func (p *Proxy) decide(method string) (Fault, <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f := p.fault
	if f.Mode == None ||
		(len(f.Methods) > 0 && !slices.ContainsFunc(f.Methods, func(m string) bool { return strings.EqualFold(m, method) })) ||
		(f.Count > 0 && p.left <= 0) {
		return Fault{}, nil
	}
	if f.Count > 0 {
		p.left--
	}
	p.stats.Faulted[f.Mode]++
	if f.Mode == Freeze {
		p.stats.Frozen++
	}
	return f, p.release
}

// forward sends the request to the upstream and copies the answer back to the client: 502 Bad
// Gateway when the upstream does not answer.
func (p *Proxy) forward(w http.ResponseWriter, r *http.Request, body []byte) {
	resp, err := p.roundTrip(r, body)
	if err != nil {
		writeS3Error(w, r, http.StatusBadGateway, "BadGateway", "faultproxy: upstream: "+err.Error())
		return
	}
	defer resp.Body.Close()
	h := w.Header()
	for k, vs := range resp.Header {
		h[k] = vs
	}
	removeHopByHop(h)
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, resp.Body) // an error here means the client is gone
}

// roundTrip sends the request to the upstream with the proxy's context, not the client's: a
// request, once forwarded, is processed to the end even if its client goes away, as it would be
// by a real server that has received it.
func (p *Proxy) roundTrip(r *http.Request, body []byte) (*http.Response, error) {
	p.mu.Lock()
	p.stats.Forwarded++
	p.mu.Unlock()
	resp, err := p.transport.RoundTrip(p.upstreamRequest(r, body))
	if err != nil {
		p.mu.Lock()
		p.stats.UpstreamErrors++
		p.mu.Unlock()
		return nil, err
	}
	return resp, nil
}

// upstreamRequest builds the request to the upstream: the client's method, request target, Host,
// end-to-end headers and body.
func (p *Proxy) upstreamRequest(r *http.Request, body []byte) *http.Request {
	u := &url.URL{Scheme: "http", Host: p.upstream, RawQuery: r.URL.RawQuery, ForceQuery: r.URL.ForceQuery}
	// Keep the path exactly as the client escaped it (SigV4 signs the escaped form): the raw
	// request target goes out as the URL's opaque part. A target that is not in origin form
	// ("http://host/path", "*"), or whose path starts with "//" (which an opaque part cannot
	// carry), falls back to the parsed path.
	if path, _, _ := strings.Cut(r.RequestURI, "?"); strings.HasPrefix(path, "/") && !strings.HasPrefix(path, "//") {
		u.Opaque = path
	} else {
		u.Path, u.RawPath = r.URL.Path, r.URL.RawPath
	}
	out := (&http.Request{
		Method:        r.Method,
		URL:           u,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        r.Header.Clone(),
		Host:          r.Host,
		ContentLength: int64(len(body)),
		Body:          io.NopCloser(bytes.NewReader(body)),
		GetBody:       func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil },
	}).WithContext(p.ctx)
	if len(body) == 0 {
		out.Body, out.GetBody = http.NoBody, nil
	}
	if out.Header == nil {
		out.Header = make(http.Header)
	}
	removeHopByHop(out.Header)
	if _, ok := out.Header["User-Agent"]; !ok {
		out.Header["User-Agent"] = nil // send none, rather than Go's default, when the client sent none
	}
	return out
}

// hopByHop lists the headers that belong to one connection (RFC 9110 §7.6.1 and the obsolete
// Keep-Alive and Proxy-Connection that proxies still drop).
var hopByHop = []string{
	"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization",
	"Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// removeHopByHop deletes the hop-by-hop headers from h, including those its Connection names.
func removeHopByHop(h http.Header) {
	for _, v := range h.Values("Connection") {
		for name := range strings.SplitSeq(v, ",") {
			if name = strings.TrimSpace(name); name != "" {
				h.Del(name)
			}
		}
	}
	for _, name := range hopByHop {
		h.Del(name)
	}
}

// resetConn takes the client's connection from the HTTP server and closes it with SO_LINGER 0,
// so the client gets a TCP RST and no response.
func resetConn(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		// Not hijackable (never the case for this HTTP/1 server): fail the response as hard as
		// net/http allows.
		panic(http.ErrAbortHandler)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}

// writeS3Error answers with an S3-style XML error, as S3 and MinIO do.
func writeS3Error(w http.ResponseWriter, r *http.Request, status int, code, message string) {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	_, _ = fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>`+
		`<Error><Code>%s</Code><Message>%s</Message><Resource>%s</Resource><RequestId>faultproxy</RequestId></Error>`,
		html.EscapeString(code), html.EscapeString(message), html.EscapeString(r.URL.Path))
}
