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
// context's (S3Store gives every attempt one); a cancel without a deadline is not seen. Proxy
// settings from the environment are not used: the endpoint is dialled directly.
type fastTransport struct {
	client *fasthttp.Client
}

func newFastTransport(tlsConfig *tls.Config) *fastTransport {
	return &fastTransport{client: &fasthttp.Client{
		MaxConnsPerHost:               s3MaxConns,
		MaxIdleConnDuration:           90 * time.Second, // as net/http's default transport
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
	req.SetRequestURI(r.URL.String())
	if r.Host != "" {
		req.Header.SetHost(r.Host)
	}
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

// transportError keeps what S3Store's retries look at: a timeout stays a net.Error with
// Timeout() true, a refused dial wraps ECONNREFUSED, and a connection that closed before the
// answer came is io.ErrUnexpectedEOF (the request may have landed).
func transportError(r *http.Request, err error) error {
	switch {
	case errors.Is(err, fasthttp.ErrTimeout), errors.Is(err, fasthttp.ErrDialTimeout):
		return fmt.Errorf("%s %s: %w", r.Method, r.URL.Redacted(), err)
	case errors.Is(err, fasthttp.ErrConnectionClosed):
		return fmt.Errorf("%s %s: %w: %w", r.Method, r.URL.Redacted(), io.ErrUnexpectedEOF, err)
	}
	return fmt.Errorf("%s %s: %w", r.Method, r.URL.Redacted(), err)
}
