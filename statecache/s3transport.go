package statecache

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/valyala/fasthttp"
)

// s3MaxConns bounds the connections to the S3 endpoint: turns run concurrently, one request each.
const s3MaxConns = 512

// fastTransport is the http.RoundTripper minio-go sends S3Store's requests through: fasthttp's
// client, which writes a request and reads its answer on the calling goroutine. net/http's
// transport hands each request to a connection's writer goroutine and its answer back from a
// reader goroutine: at S3's rate of small requests those wake-ups were most of the router's CPU
// per write-through call (docs/benchmarks.md).
//
// Bodies are buffered both ways (states are at most 64 MiB). A request's deadline is its
// context's (S3Store gives every attempt one); a context's cancellation is not seen otherwise.
// Proxy settings from the environment are not used: the endpoint is dialled directly.
//
// The client never resends a request by itself (fasthttp would resend a PUT after a broken
// connection): S3Store decides, and must know that a try may have landed.
type fastTransport struct {
	client *fasthttp.Client
}

// s3IdleConn is how long an idle connection is kept: below the idle timeouts of S3 servers and
// load balancers (MinIO's is 30 s), so a kept connection is rarely one the server has closed.
const s3IdleConn = 20 * time.Second

func newFastTransport(tlsConfig *tls.Config, connWait time.Duration) *fastTransport {
	return &fastTransport{client: &fasthttp.Client{
		MaxConnsPerHost:               s3MaxConns,
		MaxConnWaitTimeout:            connWait, // more turns than connections queue, as with net/http
		MaxIdemponentCallAttempts:     1,
		MaxIdleConnDuration:           s3IdleConn,
		TLSConfig:                     tlsConfig,
		NoDefaultUserAgentHeader:      true, // minio-go sends its own
		DisableHeaderNamesNormalizing: true, // minio-go's headers are signed as they are
		DisablePathNormalizing:        true, // so is the object's path
		// Reads of a large state stream into the buffer; no limit beyond the state's own.
		MaxResponseBodySize: 0,
	}}
}

// RoundTrip implements http.RoundTripper.
func (t *fastTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)

	req.Header.SetMethod(r.Method)
	req.SetRequestURI(r.URL.String()) // its host is the Host header (minio-go signs URL.Host)
	for k, vs := range r.Header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	if r.Body != nil && r.Body != http.NoBody {
		body, err := io.ReadAll(r.Body)
		r.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("read request body: %w", err)
		}
		req.SetBodyRaw(body)
	}

	var err error
	if d, ok := r.Context().Deadline(); ok {
		err = t.client.DoDeadline(req, resp, d)
	} else {
		err = t.client.Do(req, resp)
	}
	if err != nil {
		return nil, transportError(r, err)
	}

	out := &http.Response{
		Status:     fmt.Sprintf("%d %s", resp.StatusCode(), http.StatusText(resp.StatusCode())),
		StatusCode: resp.StatusCode(),
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     make(http.Header, resp.Header.Len()),
		Request:    r,
	}
	for k, v := range resp.Header.All() {
		out.Header.Add(string(k), string(v))
	}
	body := bytes.Clone(resp.Body())
	out.ContentLength = int64(len(body))
	if r.Method == http.MethodHead {
		out.ContentLength = int64(resp.Header.ContentLength())
	}
	out.Body = io.NopCloser(bytes.NewReader(body))
	return out, nil
}

// errNotSent marks a failure before any byte of the request left: no free connection within the
// wait, a dial that timed out or was refused. Such a write cannot have landed.
var errNotSent = errors.New("request not sent")

// transportError describes a failed round trip, keeping what S3Store's retries look at: a
// request that was never sent wraps errNotSent, a connection closed before the answer came wraps
// io.ErrUnexpectedEOF (the request may have landed), and the error is returned inside net/http's
// *url.Error, a net.Error, so every transport failure counts as transient.
func transportError(r *http.Request, err error) error {
	var dial *fasthttp.ErrDialWithUpstream
	switch {
	case errors.Is(err, fasthttp.ErrNoFreeConns), errors.Is(err, fasthttp.ErrDialTimeout), errors.As(err, &dial):
		return fmt.Errorf("%s %s: %w: %w", r.Method, r.URL.Redacted(), errNotSent, err)
	case errors.Is(err, fasthttp.ErrConnectionClosed):
		return fmt.Errorf("%s %s: %w: %w", r.Method, r.URL.Redacted(), io.ErrUnexpectedEOF, err)
	}
	return fmt.Errorf("%s %s: %w", r.Method, r.URL.Redacted(), err)
}
