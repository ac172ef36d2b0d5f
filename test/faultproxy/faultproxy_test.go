package faultproxy_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/knactor/knactor/test/faultproxy"
	"github.com/knactor/knactor/test/miniotest"
	"github.com/knactor/knactor/test/proctest"
)

// pollTimeout bounds a client's wait for an answer (proctest.Eventually bounds the others).
const pollTimeout = 10 * time.Second

// recorded is one request as the upstream saw it.
type recorded struct {
	method, host, requestURI string
	header                   http.Header
	body                     string
}

// recordingUpstream is an httptest server that records the requests it gets and answers 200
// with a body derived from the request's.
type recordingUpstream struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []recorded
}

func newRecordingUpstream(t *testing.T) *recordingUpstream {
	u := &recordingUpstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		u.mu.Lock()
		u.reqs = append(u.reqs, recorded{r.Method, r.Host, r.RequestURI, r.Header.Clone(), string(body)})
		u.mu.Unlock()
		w.Header().Set("ETag", `"upstream-etag"`)
		w.Header().Add("X-Upstream", "a")
		w.Header().Add("X-Upstream", "b")
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, "echo:"+string(body))
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *recordingUpstream) requests() []recorded {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]recorded(nil), u.reqs...)
}

// plainClient talks to the proxy without keep-alive, so a reset connection is never retried
// silently by net/http as a stale pooled one would be.
func plainClient(timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout, Transport: &http.Transport{DisableKeepAlives: true}}
}

func TestForwardPreservesRequest(t *testing.T) {
	up := newRecordingUpstream(t)
	p := faultproxy.Start(t, strings.TrimPrefix(up.URL, "http://"))

	const target = "/bucket/dir/a%20b+c%2Fd!%27*?x-id=PutObject&prefix=a%2Fb&empty="
	body := "hello\x00\xffworld"
	req, err := http.NewRequest(http.MethodPut, "http://"+p.Addr()+target, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "s3.example.test:9000" // what SigV4 signed; not the proxy's address
	req.Header.Set("X-Amz-Date", "20260101T000000Z")
	req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=x/20260101/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-date, Signature=00")
	req.Header.Add("X-Amz-Meta-Multi", "one")
	req.Header.Add("X-Amz-Meta-Multi", "two")
	req.Header.Set("Connection", "X-Hop")
	req.Header.Set("X-Hop", "dropped")
	req.Header.Set("User-Agent", "minio-go-ish")
	resp, err := plainClient(5 * time.Second).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()

	if resp.StatusCode != http.StatusCreated || string(got) != "echo:"+body ||
		resp.Header.Get("ETag") != `"upstream-etag"` || strings.Join(resp.Header.Values("X-Upstream"), ",") != "a,b" {
		t.Errorf("client got %d %q header %v; want the upstream's 201, body, ETag and X-Upstream", resp.StatusCode, got, resp.Header)
	}
	reqs := up.requests()
	if len(reqs) != 1 {
		t.Fatalf("upstream got %d requests, want 1", len(reqs))
	}
	r := reqs[0]
	for _, c := range []struct{ what, got, want string }{
		{"method", r.method, http.MethodPut},
		{"Host", r.host, "s3.example.test:9000"},
		{"request target", r.requestURI, target},
		{"body", r.body, body},
		{"X-Amz-Date", r.header.Get("X-Amz-Date"), "20260101T000000Z"},
		{"Authorization", r.header.Get("Authorization"), req.Header.Get("Authorization")},
		{"X-Amz-Meta-Multi", strings.Join(r.header.Values("X-Amz-Meta-Multi"), ","), "one,two"},
		{"User-Agent", r.header.Get("User-Agent"), "minio-go-ish"},
		{"X-Hop (named by Connection)", r.header.Get("X-Hop"), ""},
	} {
		if c.got != c.want {
			t.Errorf("upstream saw %s %q, want %q", c.what, c.got, c.want)
		}
	}
	if s := p.Stats(); s.Requests != 1 || s.Forwarded != 1 || len(s.Faulted) != 0 {
		t.Errorf("Stats = %+v, want 1 request forwarded, none faulted", s)
	}
}

func TestUnavailableAnswer(t *testing.T) {
	up := newRecordingUpstream(t)
	p := faultproxy.Start(t, strings.TrimPrefix(up.URL, "http://"))
	p.Set(faultproxy.Fault{Mode: faultproxy.Unavailable})

	resp, err := plainClient(5 * time.Second).Get("http://" + p.Addr() + "/bucket/some%20key?versionId=1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	const want = `<?xml version="1.0" encoding="UTF-8"?><Error><Code>ServiceUnavailable</Code>` +
		`<Message>injected by faultproxy</Message><Resource>/bucket/some key</Resource><RequestId>faultproxy</RequestId></Error>`
	if resp.StatusCode != http.StatusServiceUnavailable || string(body) != want ||
		resp.Header.Get("Content-Type") != "application/xml" || resp.Header.Get("Retry-After") != "1" {
		t.Errorf("got %d %v\n%s\nwant 503, application/xml, Retry-After: 1 and\n%s", resp.StatusCode, resp.Header, body, want)
	}
	if n := len(up.requests()); n != 0 {
		t.Errorf("upstream got %d requests, want none", n)
	}
}

// TestFaultsUnit checks every mode against a plain HTTP upstream; it needs no MinIO.
func TestFaultsUnit(t *testing.T) {
	for _, tc := range []struct {
		name         string
		fault        faultproxy.Fault
		method       string
		wantErr      bool // the client gets no response
		wantStatus   int
		wantUpstream int // requests that reached the upstream
		minTime      time.Duration
	}{
		{name: "none", fault: faultproxy.Fault{}, method: "PUT", wantStatus: 201, wantUpstream: 1},
		{name: "latency", fault: faultproxy.Fault{Mode: faultproxy.Latency, Delay: 150 * time.Millisecond}, method: "PUT", wantStatus: 201, wantUpstream: 1, minTime: 150 * time.Millisecond},
		{name: "drop response", fault: faultproxy.Fault{Mode: faultproxy.DropResponse}, method: "PUT", wantErr: true, wantUpstream: 1},
		{name: "reset", fault: faultproxy.Fault{Mode: faultproxy.Reset}, method: "PUT", wantErr: true, wantUpstream: 0},
		{name: "unavailable", fault: faultproxy.Fault{Mode: faultproxy.Unavailable}, method: "PUT", wantStatus: 503, wantUpstream: 0},
		{name: "other method passes", fault: faultproxy.Fault{Mode: faultproxy.Reset, Methods: []string{"put"}}, method: "GET", wantStatus: 201, wantUpstream: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := newRecordingUpstream(t)
			p := faultproxy.Start(t, strings.TrimPrefix(up.URL, "http://"))
			p.Set(tc.fault)
			req, err := http.NewRequest(tc.method, "http://"+p.Addr()+"/b/k", strings.NewReader("x"))
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			resp, err := plainClient(5 * time.Second).Do(req)
			took := time.Since(start)
			if tc.wantErr {
				if err == nil {
					resp.Body.Close()
					t.Fatalf("got %d, want no response", resp.StatusCode)
				}
				t.Logf("client error: %v", err)
			} else {
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != tc.wantStatus {
					t.Errorf("status %d, want %d", resp.StatusCode, tc.wantStatus)
				}
			}
			// DropResponse resets the client only after the upstream has answered.
			if n := len(up.requests()); n != tc.wantUpstream {
				t.Errorf("upstream got %d requests, want %d", n, tc.wantUpstream)
			}
			if took < tc.minTime {
				t.Errorf("took %v, want at least %v", took, tc.minTime)
			}
		})
	}
}

func TestCountAndStats(t *testing.T) {
	up := newRecordingUpstream(t)
	p := faultproxy.Start(t, strings.TrimPrefix(up.URL, "http://"))
	p.Set(faultproxy.Fault{Mode: faultproxy.Unavailable, Count: 2, Methods: []string{"PUT"}})
	var statuses []int
	for _, method := range []string{"PUT", "GET", "PUT", "PUT"} {
		req, err := http.NewRequest(method, "http://"+p.Addr()+"/b/k", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := plainClient(5 * time.Second).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		statuses = append(statuses, resp.StatusCode)
	}
	if want := []int{503, 201, 503, 201}; !slices.Equal(statuses, want) {
		t.Errorf("statuses %v, want %v", statuses, want)
	}
	s := p.Stats()
	if s.Requests != 4 || s.Forwarded != 2 || s.Faulted[faultproxy.Unavailable] != 2 || len(s.Faulted) != 1 || s.Frozen != 0 {
		t.Errorf("Stats = %+v, want 4 requests, 2 forwarded, 2 Unavailable", s)
	}
}

func TestFreezeUnit(t *testing.T) {
	up := newRecordingUpstream(t)
	p := faultproxy.Start(t, strings.TrimPrefix(up.URL, "http://"))
	p.Set(faultproxy.Fault{Mode: faultproxy.Freeze})

	// A client that gives up: its request is still forwarded once the freeze ends.
	_, err := plainClient(200*time.Millisecond).Post("http://"+p.Addr()+"/b/gave-up", "", strings.NewReader("late"))
	if err == nil {
		t.Fatal("request through a frozen proxy answered; want a client timeout")
	}
	// A client that waits gets the upstream's answer.
	type result struct {
		status int
		body   string
		err    error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := plainClient(pollTimeout).Post("http://"+p.Addr()+"/b/waits", "", strings.NewReader("patient"))
		if err != nil {
			done <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		done <- result{status: resp.StatusCode, body: string(b)}
	}()
	proctest.Eventually(t, "two requests frozen", func() bool { return p.Stats().Frozen == 2 })
	p.Set(faultproxy.Fault{Mode: faultproxy.Freeze, Methods: []string{"GET"}}) // another Freeze keeps them held
	if n := len(up.requests()); n != 0 {
		t.Fatalf("upstream got %d requests during the freeze, want none", n)
	}
	p.Clear()
	r := <-done
	if r.err != nil || r.status != http.StatusCreated || r.body != "echo:patient" {
		t.Errorf("waiting client got %+v, want the upstream's 201 echo:patient", r)
	}
	proctest.Eventually(t, "both frozen requests forwarded", func() bool { return len(up.requests()) == 2 })
	if s := p.Stats(); s.Frozen != 0 || s.Faulted[faultproxy.Freeze] != 2 || s.Forwarded != 2 {
		t.Errorf("Stats = %+v, want 2 Freeze faults, both forwarded, none frozen now", s)
	}
}

func TestCloseAnswersFrozen(t *testing.T) {
	up := newRecordingUpstream(t)
	p, err := faultproxy.New(strings.TrimPrefix(up.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	p.Set(faultproxy.Fault{Mode: faultproxy.Freeze})
	status := make(chan int, 1)
	go func() {
		resp, err := plainClient(pollTimeout).Get("http://" + p.Addr() + "/b/k")
		if err != nil {
			t.Errorf("frozen request: %v", err)
			status <- 0
			return
		}
		resp.Body.Close()
		status <- resp.StatusCode
	}()
	proctest.Eventually(t, "request frozen", func() bool { return p.Stats().Frozen == 1 })
	if err := p.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if s := <-status; s != http.StatusServiceUnavailable {
		t.Errorf("frozen request got %d at Close, want 503", s)
	}
	if n := len(up.requests()); n != 0 {
		t.Errorf("upstream got %d requests, want none", n)
	}
	if err := p.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := plainClient(time.Second).Get("http://" + p.Addr() + "/b/k"); err == nil {
		t.Error("closed proxy still answers")
	}
}

// s3 is a minio-go client of the proxy and one of MinIO directly, on one bucket.
type s3 struct {
	proxied, direct *minio.Client
	bucket          string
}

func newClient(t *testing.T, endpoint string) *minio.Client {
	t.Helper()
	c, err := minio.New(endpoint, &minio.Options{
		Creds:      credentials.NewStaticV4(miniotest.AccessKey, miniotest.SecretKey, ""),
		MaxRetries: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (s *s3) put(ctx context.Context, key, value string) error {
	_, err := s.proxied.PutObject(ctx, s.bucket, key, strings.NewReader(value), int64(len(value)), minio.PutObjectOptions{})
	return err
}

// get reads an object through c; ok is false when it does not exist.
func (s *s3) get(ctx context.Context, c *minio.Client, key string) (value string, ok bool, err error) {
	obj, err := c.GetObject(ctx, s.bucket, key, minio.GetObjectOptions{})
	if err == nil {
		var b []byte
		b, err = io.ReadAll(obj)
		obj.Close()
		if err == nil {
			return string(b), true, nil
		}
	}
	if minio.ToErrorResponse(err).Code == "NoSuchKey" {
		return "", false, nil
	}
	return "", false, err
}

// landed reports what MinIO holds under key, asked directly.
func (s *s3) landed(t *testing.T, key string) (string, bool) {
	t.Helper()
	v, ok, err := s.get(context.Background(), s.direct, key)
	if err != nil {
		t.Fatalf("direct GET %s: %v", key, err)
	}
	return v, ok
}

func TestWithMinIO(t *testing.T) {
	srv := miniotest.Start(t)
	p := faultproxy.Start(t, srv.Endpoint)
	s := &s3{proxied: newClient(t, p.Addr()), direct: newClient(t, srv.Endpoint), bucket: "faultproxy"}
	ctx := context.Background()
	if err := s.proxied.MakeBucket(ctx, s.bucket, minio.MakeBucketOptions{}); err != nil {
		t.Fatalf("MakeBucket through the proxy: %v", err)
	}

	t.Run("pass-through", func(t *testing.T) {
		p.Clear()
		const key, value = "dir/a b+c%=&ü!'*(x).txt", "pass-through value"
		if err := s.put(ctx, key, value); err != nil {
			t.Fatalf("PUT through the proxy: %v", err)
		}
		viaProxy, ok, err := s.get(ctx, s.proxied, key)
		if err != nil || !ok {
			t.Fatalf("GET through the proxy: %q %v %v", viaProxy, ok, err)
		}
		direct, _ := s.landed(t, key)
		if viaProxy != value || direct != value {
			t.Errorf("through the proxy %q, direct %q; want %q", viaProxy, direct, value)
		}
		pi, err := s.proxied.StatObject(ctx, s.bucket, key, minio.StatObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		di, err := s.direct.StatObject(ctx, s.bucket, key, minio.StatObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if pi.ETag != di.ETag || pi.Size != di.Size || !pi.LastModified.Equal(di.LastModified) {
			t.Errorf("StatObject through the proxy %+v, direct %+v", pi, di)
		}
		var listed []string
		for o := range s.proxied.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: "dir/", Recursive: true}) {
			if o.Err != nil {
				t.Fatal(o.Err)
			}
			listed = append(listed, o.Key)
		}
		if !slices.Equal(listed, []string{key}) {
			t.Errorf("listed %q, want [%q]", listed, key)
		}
	})

	// A single PUT under each fault: what the client sees, and whether the object landed.
	for _, tc := range []struct {
		name       string
		fault      faultproxy.Fault
		wantStatus int // the S3 error's status; 0: a transport error, no response
		wantOK     bool
		landed     bool
		minTime    time.Duration
	}{
		{name: "drop response", fault: faultproxy.Fault{Mode: faultproxy.DropResponse, Methods: []string{"PUT"}}, landed: true},
		{name: "reset", fault: faultproxy.Fault{Mode: faultproxy.Reset}, landed: false},
		{name: "unavailable", fault: faultproxy.Fault{Mode: faultproxy.Unavailable}, wantStatus: 503, landed: false},
		{name: "latency", fault: faultproxy.Fault{Mode: faultproxy.Latency, Delay: 300 * time.Millisecond}, wantOK: true, landed: true, minTime: 300 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p.Set(tc.fault)
			defer p.Clear()
			key := "fault/" + strings.ReplaceAll(tc.name, " ", "-")
			start := time.Now()
			err := s.put(ctx, key, tc.name)
			took := time.Since(start)
			t.Logf("PUT took %v, error: %v", took, err)
			switch {
			case tc.wantOK:
				if err != nil {
					t.Fatalf("PUT: %v", err)
				}
			case err == nil:
				t.Fatal("PUT succeeded; want an error")
			case minio.ToErrorResponse(err).StatusCode != tc.wantStatus:
				t.Errorf("PUT error %v has status %d, want %d", err, minio.ToErrorResponse(err).StatusCode, tc.wantStatus)
			}
			if took < tc.minTime {
				t.Errorf("PUT took %v, want at least %v", took, tc.minTime)
			}
			if v, ok := s.landed(t, key); ok != tc.landed || (ok && v != tc.name) {
				t.Errorf("MinIO holds %q (exists %v), want exists %v", v, ok, tc.landed)
			}
		})
	}

	t.Run("freeze", func(t *testing.T) {
		p.Set(faultproxy.Fault{Mode: faultproxy.Freeze})
		defer p.Clear()
		const key, value = "fault/freeze", "written after the thaw"
		tctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		err := s.put(tctx, key, value)
		cancel()
		t.Logf("PUT error: %v", err)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("PUT through a frozen proxy: %v; want the client's deadline", err)
		}
		if _, ok := s.landed(t, key); ok {
			t.Fatal("object landed during the freeze")
		}
		if n := p.Stats().Frozen; n != 1 {
			t.Errorf("Stats().Frozen = %d, want 1", n)
		}
		p.Clear()
		proctest.Eventually(t, "the frozen PUT lands after Clear", func() bool {
			v, ok := s.landed(t, key)
			return ok && v == value
		})
		proctest.Eventually(t, "no request frozen", func() bool { return p.Stats().Frozen == 0 })
	})

	t.Run("count", func(t *testing.T) {
		p.Set(faultproxy.Fault{Mode: faultproxy.Unavailable, Count: 1})
		defer p.Clear()
		before := p.Stats().Faulted[faultproxy.Unavailable]
		err1 := s.put(ctx, "fault/count-1", "1")
		err2 := s.put(ctx, "fault/count-2", "2")
		if minio.ToErrorResponse(err1).StatusCode != 503 || err2 != nil {
			t.Errorf("PUTs: %v, %v; want 503, then success", err1, err2)
		}
		if _, ok := s.landed(t, "fault/count-1"); ok {
			t.Error("the faulted PUT landed")
		}
		if _, ok := s.landed(t, "fault/count-2"); !ok {
			t.Error("the second PUT did not land")
		}
		if n := p.Stats().Faulted[faultproxy.Unavailable] - before; n != 1 {
			t.Errorf("%d requests faulted, want 1", n)
		}
	})

	t.Run("methods", func(t *testing.T) {
		const existing = "fault/methods-existing"
		if err := s.put(ctx, existing, "v"); err != nil {
			t.Fatal(err)
		}
		p.Set(faultproxy.Fault{Mode: faultproxy.Reset, Methods: []string{http.MethodPut}})
		defer p.Clear()
		if v, ok, err := s.get(ctx, s.proxied, existing); err != nil || !ok || v != "v" {
			t.Errorf("GET while PUTs are reset: %q %v %v; want v", v, ok, err)
		}
		if err := s.put(ctx, "fault/methods-new", "n"); err == nil {
			t.Error("PUT succeeded; want a reset")
		}
		if _, ok := s.landed(t, "fault/methods-new"); ok {
			t.Error("the reset PUT landed")
		}
	})
}

// TestCloseWithStalledClient checks that Close ends a handler blocked writing a response to a
// client that does not read.
func TestCloseWithStalledClient(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		chunk := make([]byte, 1<<20)
		for range 256 { // far more than the socket buffers hold
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}))
	t.Cleanup(up.Close)
	p, err := faultproxy.New(strings.TrimPrefix(up.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "GET /big HTTP/1.1\r\nHost: s3.test\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	proctest.Eventually(t, "request forwarded", func() bool { return p.Stats().Forwarded == 1 })
	time.Sleep(200 * time.Millisecond) // let the response fill the socket buffers, blocking the handler's write
	start := time.Now()
	closed := make(chan error, 1)
	go func() { closed <- p.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
		t.Logf("Close took %v", time.Since(start))
	case <-time.After(pollTimeout):
		t.Fatal("Close does not return while a client does not read its response")
	}
}
