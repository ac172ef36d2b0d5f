//go:build unix

package router

// Slow and abusive clients (docs/api.md, "Slow and abusive clients"): each attack gets its
// documented answer, the router's memory stays within the stated bound, and a normal caller
// keeps being served while the attack runs.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/valyala/fasthttp"

	"github.com/knactor/knactor/router/placement"
	"github.com/knactor/knactor/router/routing"
	"github.com/knactor/knactor/statecache"
	"github.com/knactor/knactor/test/proctest"
)

// promptly is how long a normal caller's call may take while an attack runs.
const promptly = time.Second

// Measured bounds, stated in docs/api.md.
const (
	// idleConnHeap is what one idle connection may cost the router's heap, and idleConnStack its
	// goroutine's stack. Measured: 7.0 KiB of heap and 4 KiB of stack (8 KiB with -race).
	idleConnHeap  = 10 << 10
	idleConnStack = 12 << 10
	// wsSessionHeap and wsSessionStack are what one idle WebSocket session may cost the router:
	// its connection, buffers and queue, and its three goroutines (reader, writer, and fasthttp's
	// hijack handler). Measured: 23.4 KiB of heap (with -race 25 KiB) and 7.5 KiB of stack
	// (with -race 16.1 KiB).
	wsSessionHeap  = 32 << 10
	wsSessionStack = 20 << 10
	// floodActorBudget is what an actor may still cost the router once its calls are done,
	// beyond the state cache's MaxBytes. Measured: nothing (the growth stays under MaxBytes).
	floodActorBudget = 32
)

var abuseEchoFn = routing.Function{Name: "echo"}

// newAbuseHarness runs a router with the counter actor and a pass-through echo function.
func newAbuseHarness(t *testing.T, cfg Config, store statecache.Store, options ...func(*Options)) *harness {
	t.Helper()
	if store == nil {
		store = localStore(t)
	}
	h := newHarnessOn(t, cfg, store, options...)
	h.deploy(counterFn, newTestActor())
	h.deploy(abuseEchoFn, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.Copy(w, r.Body) }))
	return h
}

func (h *harness) hostPort() string { return strings.TrimPrefix(h.url, "http://") }

// abuseCaller is a normal client of the router: its own keep-alive connections, closed with the test.
type abuseCaller struct {
	t      *testing.T
	h      *harness
	client *http.Client
	id     string // its own counter actor
	n      int
}

var abuseCallers atomic.Int64

func newAbuseCaller(t *testing.T, h *harness, local string) *abuseCaller {
	d := &net.Dialer{Timeout: 5 * time.Second}
	if local != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(local)}
	}
	tr := &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 2}
	t.Cleanup(tr.CloseIdleConnections)
	return &abuseCaller{t: t, h: h, client: &http.Client{Transport: tr, Timeout: 10 * time.Second},
		id: "normal-caller-" + strconv.FormatInt(abuseCallers.Add(1), 10)}
}

// served makes a stateful call (an increment of the caller's own counter, read back in the
// reply) and a pass-through call, and fails unless each succeeds within promptly.
func (c *abuseCaller) served(what string) {
	c.t.Helper()
	c.n++
	want := fmt.Sprintf(`{"value":%d}`, c.n)
	c.call(what, "POST", "/v1/actors/counter/"+c.id+"/add", `{"by":1}`, want)
	body := fmt.Sprintf(`{"call":%d}`, c.n)
	c.call(what, "POST", "/v1/functions/echo/x", body, body)
}

func (c *abuseCaller) call(what, method, path, body, want string) {
	c.t.Helper()
	start := time.Now()
	req, err := http.NewRequest(method, c.h.url+path, strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		c.t.Fatalf("%s: normal caller: %s %s: %v", what, method, path, err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	took := time.Since(start)
	if resp.StatusCode != 200 || strings.TrimSpace(string(got)) != want {
		c.t.Fatalf("%s: normal caller: %s %s: %d %s, want 200 %s", what, method, path, resp.StatusCode, got, want)
	}
	if took > promptly {
		c.t.Fatalf("%s: normal caller: %s %s took %v, want under %v", what, method, path, took, promptly)
	}
}

// dialRaw opens a raw connection to the router, closed with the test.
func dialRaw(t *testing.T, h *harness) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", h.hostPort(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// rawAnswer is what a raw connection got back from the router.
type rawAnswer struct {
	status int
	header http.Header
	body   string
	close  bool          // the answer said Connection: close
	rest   int           // bytes after the first answer (a second answer)
	closed bool          // the router closed the connection (EOF, or a reset after its answer)
	err    error         // reading failed otherwise (a timeout: the connection stayed open)
	after  time.Duration // from start to the end of the connection
}

// readAnswer reads everything the router sends on c until it closes c or wait passes.
func readAnswer(c net.Conn, start time.Time, wait time.Duration) rawAnswer {
	_ = c.SetReadDeadline(time.Now().Add(wait))
	raw, err := io.ReadAll(c)
	a := rawAnswer{after: time.Since(start), err: err}
	a.closed = err == nil || errors.Is(err, syscall.ECONNRESET)
	if len(raw) > 0 {
		br := bufio.NewReader(bytes.NewReader(raw))
		if resp, perr := http.ReadResponse(br, nil); perr == nil {
			body, _ := io.ReadAll(resp.Body)
			a.status, a.header, a.body, a.close = resp.StatusCode, resp.Header, string(body), resp.Close
			a.rest = br.Buffered()
		} else {
			a.body = string(raw)
		}
	}
	return a
}

// wantJSONError checks a's status, its JSON error code and that the router closed the
// connection after it, with no second answer.
func (a rawAnswer) wantJSONError(t *testing.T, what string, status int, code string) {
	t.Helper()
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if a.status != status || json.Unmarshal([]byte(a.body), &e) != nil || e.Error.Code != code || e.Error.Message == "" ||
		a.header.Get("Content-Type") != "application/json" {
		t.Fatalf("%s: got %d %q, want %d with JSON error code %q", what, a.status, a.body, status, code)
	}
	if !a.close || !a.closed || a.rest != 0 {
		t.Fatalf("%s: after the answer: Connection: close %v, closed %v (%v), %d more bytes; want the connection closed",
			what, a.close, a.closed, a.err, a.rest)
	}
	if (status == 503 || status == 429) && a.header.Get("Retry-After") == "" {
		t.Fatalf("%s: %d without Retry-After", what, status)
	}
}

// memInUse returns the Go heap and goroutine stacks in use after a full collection.
func memInUse() (heap, stack uint64) {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC() // the first may leave finalizers and pooled objects for the second
	runtime.ReadMemStats(&m)
	return m.HeapInuse, m.StackInuse
}

func memGrowth(before, after uint64) int64 { return int64(after) - int64(before) }

// TestAbuseSlowlorisHeaders: connections that trickle their request headers one byte every
// 100 ms get 408 (the API's JSON error) once ReadTimeout has passed since the connection was
// accepted, and are closed; meanwhile a normal caller's calls succeed promptly.
func TestAbuseSlowlorisHeaders(t *testing.T) {
	const (
		readTimeout = 500 * time.Millisecond
		attackers   = 64
		trickle     = 100 * time.Millisecond
	)
	h := newAbuseHarness(t, Config{ReadTimeout: readTimeout}, nil)
	normal := newAbuseCaller(t, h, "")
	normal.served("before the attack")
	base := h.r.openConns()

	// Headers that would take 13 s at this pace: far past ReadTimeout.
	header := "POST /v1/actors/counter/victim/add HTTP/1.1\r\nHost: localhost\r\nX-Slow: " + strings.Repeat("z", 64) + "\r\nContent-Length: 8\r\n\r\n{\"by\":1}"
	var wg sync.WaitGroup
	stop := make(chan struct{})
	defer func() { close(stop); wg.Wait() }()
	answers := make(chan rawAnswer, attackers)
	var sentMost atomic.Int64
	for range attackers {
		c := dialRaw(t, h)
		start := time.Now()
		wg.Add(2)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(trickle)
			defer tick.Stop()
			for i := range len(header) {
				if _, err := c.Write([]byte{header[i]}); err != nil {
					return
				}
				if n := int64(i + 1); n > sentMost.Load() {
					sentMost.Store(n)
				}
				select {
				case <-stop:
					return
				case <-tick.C:
				}
			}
		}()
		go func() {
			defer wg.Done()
			answers <- readAnswer(c, start, readTimeout+10*time.Second)
		}()
	}
	proctest.EventuallyWithin(t, 5*time.Second, "the attackers' connections accepted", func() bool { return h.r.openConns() >= base+attackers })

	// The attack holds 64 connections; the normal caller does not notice.
	calls := 0
	for len(answers) < attackers {
		normal.served(fmt.Sprintf("during the attack (%d of %d attackers dropped)", len(answers), attackers))
		calls++
	}
	for range attackers {
		a := <-answers
		a.wantJSONError(t, "slowloris", 408, CodeBadRequest)
		if a.after < readTimeout-50*time.Millisecond || a.after > readTimeout+2*time.Second {
			t.Fatalf("slowloris connection closed after %v, want ReadTimeout (%v)", a.after, readTimeout)
		}
	}
	if int(sentMost.Load()) >= len(header) {
		t.Fatal("an attacker finished its headers: the test did not test slowloris")
	}
	proctest.EventuallyWithin(t, 5*time.Second, "the router to forget the attackers' connections", func() bool { return h.r.openConns() <= base })
	h.do("GET", "/v1/actors/counter/victim", "").want(t, 404, "") // no attacker's call ran

	// Headers past fasthttp's 4 KiB read buffer are refused at once rather than buffered.
	c := dialRaw(t, h)
	start := time.Now()
	fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Big: %s\r\n\r\n", strings.Repeat("z", 5000))
	a := readAnswer(c, start, 5*time.Second)
	a.wantJSONError(t, "headers over 4 KiB", 431, CodeBadRequest)
	if a.after > promptly {
		t.Fatalf("headers over 4 KiB: answered after %v, want at once", a.after)
	}
	t.Logf("%d slowloris connections answered 408 and closed after ReadTimeout (%v); %d normal calls (stateful + pass-through) meanwhile, each under %v",
		attackers, readTimeout, calls, promptly)
}

// TestAbuseTrickledBody: a body under the payload limit that the client sends slower than
// ReadTimeout allows gets 408 and a closed connection, and changes no state, whether fasthttp
// was still reading it (its first 8 KiB) or the router was; the pass-through does not blame the
// function for it. A body over the limit gets 413 at once. A body the router did not read is
// never parsed as a request of its own.
func TestAbuseTrickledBody(t *testing.T) {
	const (
		readTimeout = 500 * time.Millisecond
		limit       = 64 << 10
	)
	h := newAbuseHarness(t, Config{ReadTimeout: readTimeout, MaxPayloadBytes: limit}, nil)
	normal := newAbuseCaller(t, h, "")
	h.do("POST", "/v1/actors/counter/acct/add", `{"by":5}`).want(t, 200, `{"value":5}`)
	before := h.do("GET", "/v1/actors/counter/acct", "")
	unchanged := func(what string) {
		t.Helper()
		after := h.do("GET", "/v1/actors/counter/acct", "")
		if after.body != before.body || after.header.Get(HeaderStateVersion) != before.header.Get(HeaderStateVersion) {
			t.Fatalf("%s changed the actor's state: %s → %s", what, before.body, after.body)
		}
	}
	// payload is a valid increment of n bytes: had it arrived, the state would have changed.
	payload := func(n int) string {
		p := `{"by":1000,"pad":"`
		return p + strings.Repeat("x", n-len(p)-2) + `"}`
	}

	trickled := []struct {
		name, path string
		size, fast int // body size, and how much of it is sent at once before the trickle
		message    string
	}{
		{"small body, fasthttp reading it", "/v1/actors/counter/acct/add", 200, 0, "timed out reading the request"},
		{"large body, the router reading it", "/v1/actors/counter/acct/add", 32 << 10, 16 << 10, "timed out reading the request body"},
		{"large body, the pass-through streaming it", "/v1/functions/echo/x", 32 << 10, 16 << 10, "timed out reading the request body"},
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	defer func() { close(stop); wg.Wait() }()
	for _, tt := range trickled {
		c := dialRaw(t, h)
		start := time.Now()
		body := payload(tt.size)
		fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", tt.path, len(body), body[:tt.fast])
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			for i := tt.fast; i < len(body); i++ {
				if _, err := c.Write([]byte{body[i]}); err != nil {
					return
				}
				select {
				case <-stop:
					return
				case <-tick.C:
				}
			}
		}()
		normal.served(tt.name)
		a := readAnswer(c, start, readTimeout+10*time.Second)
		a.wantJSONError(t, tt.name, 408, CodeBadRequest)
		if !strings.Contains(a.body, tt.message) {
			t.Fatalf("%s: %s, want %q", tt.name, a.body, tt.message)
		}
		if a.after < readTimeout-50*time.Millisecond || a.after > readTimeout+2*time.Second {
			t.Fatalf("%s: closed after %v, want ReadTimeout (%v)", tt.name, a.after, readTimeout)
		}
		unchanged(tt.name)
	}

	// Over the limit: 413 at once, with a length or chunked.
	over := payload(limit + 1)
	for _, tt := range []struct{ name, request string }{
		{"body over the limit", fmt.Sprintf("POST /v1/actors/counter/acct/add HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n%s", len(over), over)},
		{"chunked body over the limit", fmt.Sprintf("POST /v1/actors/counter/acct/add HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n", len(over), over)},
	} {
		c := dialRaw(t, h)
		start := time.Now()
		if _, err := io.WriteString(c, tt.request); err != nil {
			t.Fatal(err)
		}
		a := readAnswer(c, start, 5*time.Second)
		a.wantJSONError(t, tt.name, 413, CodeTooLarge)
		if a.after > promptly {
			t.Fatalf("%s: answered after %v, want at once", tt.name, a.after)
		}
		unchanged(tt.name)
	}

	// A body the router does not read (the function is unknown: 404 before the body) holds a
	// request of its own right past the 8 KiB fasthttp reads before the handler. It is dropped
	// with the body, never run.
	smuggled := "POST /v1/actors/counter/acct/add HTTP/1.1\r\nHost: localhost\r\nContent-Length: 11\r\n\r\n{\"by\":1000}"
	cover := strings.Repeat(" ", 8<<10) + smuggled
	c := dialRaw(t, h)
	fmt.Fprintf(c, "POST /v1/actors/nope/a/add HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n%s", len(cover), cover)
	br := bufio.NewReader(c)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Fatalf("the carrying request: %d, want 404", resp.StatusCode)
	}
	// The connection either closed or carries on with the next request the client sends.
	if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"); err == nil {
		if resp, err := http.ReadResponse(br, nil); err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(body) != "ok\n" {
				t.Fatalf("the answer after the carrying request is %d %q: the router answered the smuggled request", resp.StatusCode, body)
			}
		}
	}
	unchanged("a request smuggled in an unread body")
}

// TestAbuseIdleConnectionsAreClosed: a keep-alive connection that went quiet after a call is
// closed once IdleTimeout passes, without an answer.
func TestAbuseIdleConnectionsAreClosed(t *testing.T) {
	const idleTimeout = 300 * time.Millisecond
	h := newAbuseHarness(t, Config{ReadTimeout: 5 * time.Second, IdleTimeout: idleTimeout}, nil)
	const conns = 100
	answers := make(chan rawAnswer, conns)
	var wg sync.WaitGroup
	defer wg.Wait()
	for range conns {
		c := dialRaw(t, h)
		if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(c)
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		start := time.Now()
		wg.Add(1)
		go func() {
			defer wg.Done()
			answers <- readAnswer(c, start, 5*time.Second)
		}()
	}
	for range conns {
		a := <-answers
		if !a.closed || a.status != 0 || a.body != "" {
			t.Fatalf("idle keep-alive connection: closed %v (%v), got %d %q; want it closed without an answer", a.closed, a.err, a.status, a.body)
		}
		if a.after < idleTimeout-50*time.Millisecond || a.after > idleTimeout+2*time.Second {
			t.Fatalf("idle keep-alive connection closed after %v, want IdleTimeout (%v)", a.after, idleTimeout)
		}
	}
}

// TestAbuseClientThatNeverReadsAnswers: a client that sends requests and never reads the
// answers is cut off once an answer has waited WriteTimeout for room in its socket.
func TestAbuseClientThatNeverReadsAnswers(t *testing.T) {
	const writeTimeout = 500 * time.Millisecond
	h := newAbuseHarness(t, Config{WriteTimeout: writeTimeout}, nil)
	big := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB
	h.deploy(routing.Function{Name: "big"}, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(big) }))
	normal := newAbuseCaller(t, h, "")
	normal.served("before")
	base := h.r.openConns()
	c := dialRaw(t, h)
	// 64 pipelined requests for 64 MiB of answers: far more than the sockets buffer.
	if _, err := io.WriteString(c, strings.Repeat("GET /v1/functions/big/x HTTP/1.1\r\nHost: localhost\r\n\r\n", 64)); err != nil {
		t.Fatal(err)
	}
	proctest.EventuallyWithin(t, 5*time.Second, "the connection accepted", func() bool { return h.r.openConns() == base+1 })
	start := time.Now()
	for h.r.openConns() > base {
		if time.Since(start) > 10*time.Second {
			t.Fatal("the router kept the connection of a client that does not read its answers")
		}
		normal.served("while a client does not read its answers")
	}
	// What the client then reads: some answers, cut short, then the end of the connection.
	a := readAnswer(c, time.Now(), 5*time.Second)
	if got := len(a.body) + a.rest; !a.closed || a.status != 200 || got >= 64*len(big) {
		t.Fatalf("after the router cut the client off: closed %v (%v), first answer %d, %d bytes in all", a.closed, a.err, a.status, got)
	}
	t.Logf("a client that did not read its answers was cut off after %v (WriteTimeout %v)", time.Since(start), writeTimeout)
}

// The helper process of the tests that measure what a connection costs the router holds the
// client ends, so that the router's process holds only its own ends (file descriptors and
// memory). It dials (mode "tcp": connections that send nothing; "ws": subscribed WebSocket
// sessions), prints a line when all are open, and reads each until the router closes it, then
// prints how each ended.
const (
	envHelperMode  = "KNACTOR_ABUSE_HELPER"
	envHelperAddr  = "KNACTOR_ABUSE_HELPER_ADDR"
	envHelperConns = "KNACTOR_ABUSE_HELPER_CONNS"
	helperPrefix   = "ABUSE-HELPER "
)

func TestAbuseHelperProcess(t *testing.T) {
	mode, addr := os.Getenv(envHelperMode), os.Getenv(envHelperAddr)
	if mode == "" {
		t.Skip("the client process of TestAbuseTenThousandIdleConnections and TestAbuseIdleWebSocketSessions; runs only as that")
	}
	n, _ := strconv.Atoi(os.Getenv(envHelperConns))
	conns := make([]io.Closer, n)
	reads := make([]func() string, n) // reads until the end; returns how it ended
	var (
		wg       sync.WaitGroup
		failed   atomic.Int64
		firstErr atomic.Value
	)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 8 {
				switch mode {
				case "tcp":
					c, err := net.DialTimeout("tcp", addr, 10*time.Second)
					if err != nil {
						failed.Add(1)
						firstErr.CompareAndSwap(nil, err.Error())
						continue
					}
					conns[i] = c
					reads[i] = func() string {
						_ = c.SetReadDeadline(time.Now().Add(60 * time.Second))
						raw, err := io.ReadAll(c)
						switch {
						case err == nil && bytes.HasPrefix(raw, []byte("HTTP/1.1 408 ")):
							return "408"
						case err == nil && len(raw) == 0:
							return "silent"
						}
						return fmt.Sprintf("other:%v:%q", err, raw)
					}
				case "ws":
					d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
					c, _, err := d.Dial(fmt.Sprintf("ws://%s/v1/actors/counter/ws-%d/ws?subscribe=1", addr, i), nil)
					if err != nil {
						failed.Add(1)
						firstErr.CompareAndSwap(nil, err.Error())
						continue
					}
					conns[i] = c
					reads[i] = func() string {
						_ = c.SetReadDeadline(time.Now().Add(60 * time.Second))
						for {
							if _, _, err := c.ReadMessage(); err != nil {
								var ce *websocket.CloseError
								if errors.As(err, &ce) {
									return strconv.Itoa(ce.Code)
								}
								return "other:" + err.Error()
							}
						}
					}
				}
			}
		}()
	}
	wg.Wait()
	fmt.Printf("%sdialed %d failed %d %v\n", helperPrefix, n-int(failed.Load()), failed.Load(), firstErr.Load())
	var mu sync.Mutex
	ends := map[string]int{}
	for i, read := range reads {
		if read == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer conns[i].Close()
			end := read()
			mu.Lock()
			defer mu.Unlock()
			if strings.HasPrefix(end, "other:") {
				if ends["other"] == 0 {
					fmt.Fprintln(os.Stderr, "helper: a connection ended with", end)
				}
				end = "other"
			}
			ends[end]++
		}()
	}
	wg.Wait()
	fmt.Printf("%sended %v\n", helperPrefix, ends)
}

// startHelper runs TestAbuseHelperProcess with n connections of mode to h; next returns its next
// line. The helper is killed when the test ends.
func startHelper(t *testing.T, h *harness, mode string, n int) (next func(within time.Duration) string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestAbuseHelperProcess$", "-test.count=1", "-test.v=false")
	cmd.Env = append(os.Environ(), envHelperMode+"="+mode, envHelperAddr+"="+h.hostPort(), envHelperConns+"="+strconv.Itoa(n))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if line, ok := strings.CutPrefix(sc.Text(), helperPrefix); ok {
				lines <- line
			}
		}
		close(lines)
		exited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill() // the helper this test started; a no-op once it has exited
		<-exited
	})
	return func(within time.Duration) string {
		t.Helper()
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatal("the helper process ended early")
			}
			return line
		case <-time.After(within):
			t.Fatalf("no word from the helper process within %v", within)
		}
		return ""
	}
}

// raiseFileLimit raises RLIMIT_NOFILE's soft limit to the hard one (Go does at start-up; a
// parent may have lowered it since) and returns it.
func raiseFileLimit(t *testing.T) uint64 {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Cur < lim.Max {
		old := lim
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old) })
	}
	return lim.Cur
}

// TestAbuseTenThousandIdleConnections: 10 000 connections that send nothing cost the router at
// most idleConnHeap and idleConnStack each, a normal caller is served while they are open, and
// the router closes each once ReadTimeout has passed, answering 408.
func TestAbuseTenThousandIdleConnections(t *testing.T) {
	if testing.Short() {
		t.Skip("heavy: 10 000 connections from a helper process (skipped with -short)")
	}
	const readTimeout = 10 * time.Second
	want := 10_000
	// Each process holds one end of each connection; leave room for everything else.
	limit := raiseFileLimit(t)
	if room := int(limit) - 512; room < want {
		t.Logf("RLIMIT_NOFILE is %d: opening %d connections instead of %d", limit, room, want)
		want = room
	}
	if want < 1000 {
		t.Fatalf("RLIMIT_NOFILE %d leaves room for %d connections only: too few to test", limit, want)
	}

	h := newAbuseHarness(t, Config{ReadTimeout: readTimeout}, nil)
	normal := newAbuseCaller(t, h, "")
	normal.served("before the connections")
	base := h.r.openConns()
	heap0, stack0 := memInUse()

	opened := time.Now()
	next := startHelper(t, h, "tcp", want)
	var dialed, failed int
	if _, err := fmt.Sscanf(next(30*time.Second), "dialed %d failed %d", &dialed, &failed); err != nil || failed != 0 || dialed != want {
		t.Fatalf("helper dialed %d, %d failed (%v), want %d", dialed, failed, err, want)
	}
	proctest.EventuallyWithin(t, readTimeout/2, "the router to accept every connection", func() bool { return h.r.openConns() >= base+want })
	heap1, stack1 := memInUse()
	open := h.r.openConns() - base
	heapPerConn := float64(memGrowth(heap0, heap1)) / float64(open)
	stackPerConn := float64(memGrowth(stack0, stack1)) / float64(open)
	normal.served(fmt.Sprintf("with %d idle connections open", open))
	if time.Since(opened) >= readTimeout {
		t.Fatal("the measurement took longer than ReadTimeout: the connections may have closed meanwhile")
	}
	t.Logf("%d idle connections: heap +%d B, stacks +%d B: %.0f B of heap and %.0f B of stack per connection (budgets %d and %d)",
		open, memGrowth(heap0, heap1), memGrowth(stack0, stack1), heapPerConn, stackPerConn, idleConnHeap, idleConnStack)
	if heapPerConn > idleConnHeap || stackPerConn > idleConnStack {
		t.Fatalf("an idle connection costs the router %.0f B of heap and %.0f B of stack, over the stated %d and %d",
			heapPerConn, stackPerConn, idleConnHeap, idleConnStack)
	}

	line := next(readTimeout + 30*time.Second)
	closedAfter := time.Since(opened)
	if line != fmt.Sprintf("ended map[408:%d]", want) {
		t.Fatalf("of %d idle connections: %s; want every one answered 408 and closed", want, line)
	}
	proctest.EventuallyWithin(t, 5*time.Second, "the router to forget the idle connections", func() bool { return h.r.openConns() <= base })
	normal.served("after the connections")
	t.Logf("all %d answered 408 and closed by the router within %v of the first dial (ReadTimeout %v)", want, closedAfter, readTimeout)
}

// TestAbuseIdleWebSocketSessions: an idle WebSocket session costs the router at most
// wsSessionHeap of heap and wsSessionStack of goroutine stacks (its reader and its writer), and
// a normal caller is served while they are open.
func TestAbuseIdleWebSocketSessions(t *testing.T) {
	n := 1000
	if testing.Short() {
		n = 200
	}
	h := newAbuseHarness(t, Config{}, nil)
	normal := newAbuseCaller(t, h, "")
	normal.served("before the sessions")
	heap0, stack0 := memInUse()
	next := startHelper(t, h, "ws", n)
	var dialed, failed int
	if _, err := fmt.Sscanf(next(30*time.Second), "dialed %d failed %d", &dialed, &failed); err != nil || failed != 0 || dialed != n {
		t.Fatalf("helper opened %d sessions, %d failed (%v), want %d", dialed, failed, err, n)
	}
	proctest.EventuallyWithin(t, 10*time.Second, "every session", func() bool { return h.r.hub.slots.n.Load() == int64(n) })
	heap1, stack1 := memInUse()
	heapPer, stackPer := float64(memGrowth(heap0, heap1))/float64(n), float64(memGrowth(stack0, stack1))/float64(n)
	t.Logf("%d idle WebSocket sessions: %.0f B of heap and %.0f B of stack each (budgets %d and %d)",
		n, heapPer, stackPer, wsSessionHeap, wsSessionStack)
	if heapPer > wsSessionHeap || stackPer > wsSessionStack {
		t.Fatalf("an idle WebSocket session costs %.0f B of heap and %.0f B of stack, over the stated %d and %d",
			heapPer, stackPer, wsSessionHeap, wsSessionStack)
	}
	normal.served("with the sessions open")
	if err := h.shutdown(); err != nil {
		t.Fatal(err)
	}
	if line := next(30 * time.Second); line != fmt.Sprintf("ended map[1001:%d]", n) {
		t.Fatalf("at shutdown the sessions ended: %s; want every one closed with 1001", line)
	}
}

// TestAbuseWebSocketClientThatNeverReads: a subscriber that never reads while its actor's
// 256 KiB state changes over and over is dropped once the socket buffers and its send queue
// (wsSendQueueBytes) are full, the router holding no more than that queue for it meanwhile;
// another subscriber of the same actor receives every change and the normal caller is served.
// The state cache is too small to keep a 256 KiB state, so that the router's heap holds the
// sessions' messages and little else. With the router's budget for all sessions' queues lowered
// below one session's queue, the budget drops the subscriber first (and says so in
// knactor_router_refused_total). Either way nothing stays counted as queued afterwards.
func TestAbuseWebSocketClientThatNeverReads(t *testing.T) {
	tests := []struct {
		name   string
		budget int64
	}{
		{"its own queue", wsQueueBudget},
		{"the router's budget", 512 << 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { testNeverReadingSubscriber(t, tt.budget) })
	}
}

func testNeverReadingSubscriber(t *testing.T, budget int64) {
	store := &statecache.MemStore{}
	cache, err := statecache.NewCache(store, statecache.Config{MaxBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cache.Close(context.Background()) })
	h := newAbuseHarness(t, Config{}, store, func(o *Options) { o.State = cache })
	h.r.hub.budget = budget
	const stateBytes = 256 << 10
	board := routing.Function{Name: "board"}
	h.deploy(board, rawPod(200, `{"state":"`+strings.Repeat("x", stateBytes)+`","reply":{"ok":true}}`))
	normal := newAbuseCaller(t, h, "")
	normal.served("before the attack")

	sessions := func() int {
		h.r.hub.mu.Lock()
		defer h.r.hub.mu.Unlock()
		return len(h.r.hub.sessions)
	}
	slow := dialWS(t, h, "/v1/actors/board/room/ws?subscribe=1", nil) // never read
	proctest.EventuallyWithin(t, 5*time.Second, "the slow session", func() bool { return sessions() == 1 })
	var slowSession *wsSession
	h.r.hub.mu.Lock()
	for s := range h.r.hub.sessions {
		slowSession = s
	}
	h.r.hub.mu.Unlock()
	good := dialWS(t, h, "/v1/actors/board/room/ws?subscribe=1", nil)
	var received atomic.Int64
	goodDone := make(chan error, 1)
	go func() {
		for {
			_, msg, err := good.ReadMessage()
			if err != nil {
				goodDone <- err
				return
			}
			if bytes.HasPrefix(msg, []byte(`{"event":"state"`)) {
				received.Add(1)
			}
		}
	}()
	proctest.EventuallyWithin(t, 5*time.Second, "both sessions", func() bool { return sessions() == 2 })

	// A few changes first, which the slow client's socket still takes: what the router keeps
	// beside the sessions (the state in the store, pooled buffers) is then in the baseline.
	updates := 0
	for range 3 {
		h.do("POST", "/v1/actors/board/room/update", `{}`).want(t, 200, `{"ok":true}`)
		updates++
	}
	proctest.EventuallyWithin(t, 10*time.Second, "the first changes at the reading subscriber", func() bool { return received.Load() == int64(updates) })
	heap0, _ := memInUse()
	var peak, peakQueued int64
	start := time.Now()
	for sessions() == 2 {
		if updates == 1000 || time.Since(start) > 20*time.Second {
			t.Fatalf("a subscriber that never reads kept its session through %d updates (%v)", updates, time.Since(start))
		}
		h.do("POST", "/v1/actors/board/room/update", `{}`).want(t, 200, `{"ok":true}`)
		updates++
		peakQueued = max(peakQueued, slowSession.queued.Load())
		heap, _ := memInUse()
		peak = max(peak, memGrowth(heap0, heap))
		if updates%10 == 0 {
			normal.served(fmt.Sprintf("during the attack, update %d", updates))
		}
	}
	dropped := time.Since(start)
	// What the router holds for the slow session: its queue, the message being written, and the
	// other subscriber's message in flight.
	bound := int64(wsSendQueueBytes + 2*(stateBytes+64<<10))
	t.Logf("never-reading subscriber dropped after %d updates of %d KiB (%v); its queue held at most %d B; router heap grew at most %d B (bound %d)",
		updates, stateBytes>>10, dropped, peakQueued, peak, bound)
	if peakQueued > wsSendQueueBytes {
		t.Fatalf("the never-reading session queued %d B, over wsSendQueueBytes (%d)", peakQueued, wsSendQueueBytes)
	}
	byBudget := testutil.ToFloat64(h.r.metrics.refused.WithLabelValues(refusedWSBudget))
	if budget < wsSendQueueBytes && (byBudget != 1 || peakQueued > budget) {
		t.Fatalf("with a budget of %d B for all sessions: the slow session queued up to %d B, %v refusals by the budget; want it dropped by the budget (1) within it",
			budget, peakQueued, byBudget)
	}
	if peak > bound {
		t.Fatalf("the router held %d B more while a subscriber did not read, over the bound of %d", peak, bound)
	}

	// The other subscriber got every change and still works.
	proctest.EventuallyWithin(t, 10*time.Second, "every change at the reading subscriber", func() bool { return received.Load() == int64(updates) })
	select {
	case err := <-goodDone:
		t.Fatalf("the reading subscriber was disconnected: %v", err)
	default:
	}
	normal.served("after the attack")
	proctest.EventuallyWithin(t, 10*time.Second, "nothing counted as queued for the sessions", func() bool { return h.r.hub.queued.Load() == 0 })

	// The slow client finds what the socket held, then 1008 or, when the router had to cut a
	// message short, the connection dropped (1006): either way the connection ends.
	_ = slow.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		_, _, err := slow.ReadMessage()
		if err == nil {
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatal("the connection of a subscriber that never read stayed open")
		}
		if !websocket.IsCloseError(err, websocket.ClosePolicyViolation, websocket.CloseAbnormalClosure) &&
			!websocket.IsUnexpectedCloseError(err) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("the subscriber that never read ended with %v, want close 1008 or a dropped connection", err)
		}
		t.Logf("the subscriber that never read ended with: %v", err)
		break
	}
}

// TestAbuseNewActorFlood: 50 000 distinct actors called at once over 8 connections all
// succeed (or get a documented overload answer), a normal caller is served meanwhile, no
// mailbox outlives its calls, and the router's memory afterwards stays within the state cache's
// MaxBytes plus floodActorBudget per actor. The store discards the flood's state, so that only
// the router and its cache are measured.
func TestAbuseNewActorFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("heavy: 50 000 actor calls (skipped with -short)")
	}
	const (
		actors   = 50_000
		cacheMax = 1 << 20
	)
	store := &discardStore{discard: "flood"}
	cache, err := statecache.NewCache(store, statecache.Config{MaxBytes: cacheMax})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cache.Close(context.Background()) })
	h := newAbuseHarness(t, Config{}, store, func(o *Options) { o.State = cache })
	// The flood's pod and client are fasthttp's: the router's work, not theirs, should fill the
	// time (and -race makes net/http's slow).
	podLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pod := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("application/json")
		ctx.SetBodyString(`{"state":{"n":1},"reply":{"ok":true}}`)
	}}
	podDone := make(chan error, 1)
	go func() { podDone <- pod.Serve(podLn) }()
	t.Cleanup(func() { _ = pod.Shutdown(); <-podDone })
	h.backends.Set(routing.Function{Name: "flood"}, placement.Pod{Name: podLn.Addr().String(), Addr: podLn.Addr().String()})
	normal := newAbuseCaller(t, h, "")
	normal.served("before the flood")
	h.do("POST", "/v1/actors/flood/warm-up/add", `{}`).want(t, 200, `{"ok":true}`)
	heap0, _ := memInUse()

	client := &fasthttp.Client{MaxConnsPerHost: 8, MaxConnWaitTimeout: 30 * time.Second}
	defer client.CloseIdleConnections()
	var (
		next     atomic.Int64
		mu       sync.Mutex
		statuses = map[int]int{}
		failures []string
		wg       sync.WaitGroup
	)
	start := time.Now()
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > actors {
					return
				}
				req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
				req.SetRequestURI(h.url + "/v1/actors/flood/a-" + strconv.FormatInt(i, 36) + "/add")
				req.Header.SetMethod("POST")
				req.SetBodyString(`{}`)
				err := client.DoTimeout(req, resp, 30*time.Second)
				status := -1
				if err == nil {
					status = resp.StatusCode()
				}
				fasthttp.ReleaseRequest(req)
				fasthttp.ReleaseResponse(resp)
				mu.Lock()
				statuses[status]++
				if err != nil && len(failures) < 5 {
					failures = append(failures, err.Error())
				}
				mu.Unlock()
			}
		}()
	}
	floodDone := make(chan struct{})
	go func() { wg.Wait(); close(floodDone) }()
	// The normal caller calls every 20 ms, not flat out: it is the flood's bystander.
	pace := time.NewTicker(20 * time.Millisecond)
	defer pace.Stop()
	calls := 0
	for running := true; running; {
		select {
		case <-floodDone:
			running = false
		case <-pace.C:
			normal.served(fmt.Sprintf("during the flood (%d actors called)", min(next.Load(), actors)))
			calls++
		}
	}
	took := time.Since(start)
	for status, n := range statuses {
		if status != 200 && status != 429 && status != 503 {
			t.Fatalf("flood: %d calls got %d (failures %v); want 200, or 429/503 with Retry-After", n, status, failures)
		}
	}
	proctest.EventuallyWithin(t, 5*time.Second, "every mailbox to go", func() bool { return h.r.mailboxes.Active() == 0 })
	heap1, _ := memInUse()
	perActor := float64(memGrowth(heap0, heap1)-cacheMax) / actors
	bound := int64(cacheMax + actors*floodActorBudget)
	t.Logf("%d new actors in %v (%v); %d normal calls meanwhile; heap +%d B with a %d B cache: %.1f B per actor beyond it (budget %d)",
		actors, took, statuses, calls, memGrowth(heap0, heap1), cacheMax, perActor, floodActorBudget)
	if memGrowth(heap0, heap1) > bound {
		t.Fatalf("after %d new actors the router holds %d B more, over the bound of %d (cache %d + %d B per actor)",
			actors, memGrowth(heap0, heap1), bound, cacheMax, floodActorBudget)
	}
	if calls == 0 {
		t.Fatal("no normal call ran during the flood")
	}
	normal.served("after the flood")
}

// discardStore keeps nothing of function discard: its reads find no state, its writes succeed.
// Other functions' state it keeps in memory.
type discardStore struct {
	statecache.MemStore
	discard string
	seq     atomic.Uint64
}

func (s *discardStore) Get(ctx context.Context, key statecache.Key) (statecache.Entry, error) {
	if key.Function == s.discard {
		return statecache.Entry{}, nil
	}
	return s.MemStore.Get(ctx, key)
}

func (s *discardStore) Put(ctx context.Context, key statecache.Key, value []byte, expect statecache.Version, commit statecache.Commit) (statecache.Version, error) {
	if key.Function == s.discard {
		return statecache.Version("d" + strconv.FormatUint(s.seq.Add(1), 10)), nil
	}
	return s.MemStore.Put(ctx, key, value, expect, commit)
}

func (s *discardStore) Delete(ctx context.Context, key statecache.Key, expect statecache.Version, commit statecache.Commit) (statecache.Version, error) {
	if key.Function == s.discard {
		return statecache.Version("d" + strconv.FormatUint(s.seq.Add(1), 10)), nil
	}
	return s.MemStore.Delete(ctx, key, expect, commit)
}

// TestAbuseConnectionCaps: past MaxConns a new connection gets 503, past MaxConnsPerIP one
// from the same address 429 while other addresses are served, past MaxWebSocketSessions an
// upgrade gets 503; each with the JSON error too_many_connections and Retry-After, and each
// cap frees its place when a connection closes.
func TestAbuseConnectionCaps(t *testing.T) {
	hold := func(t *testing.T, h *harness, n int) []net.Conn {
		t.Helper()
		base := h.r.openConns()
		var cs []net.Conn
		for range n {
			cs = append(cs, dialRaw(t, h))
		}
		proctest.EventuallyWithin(t, 5*time.Second, "the held connections accepted", func() bool { return h.r.openConns() == base+n })
		return cs
	}

	t.Run("max conns", func(t *testing.T) {
		h := newAbuseHarness(t, Config{MaxConns: 8}, nil)
		held := hold(t, h, 8)
		c := dialRaw(t, h)
		readAnswer(c, time.Now(), 5*time.Second).wantJSONError(t, "connection 9 of 8", 503, CodeTooManyConnections)
		if got := testutil.ToFloat64(h.r.metrics.refused.WithLabelValues(refusedConns)); got != 1 {
			t.Errorf("knactor_router_refused_total{reason=%q} = %v, want 1", refusedConns, got)
		}
		held[0].Close()
		proctest.EventuallyWithin(t, 5*time.Second, "a place to free", func() bool { return h.r.openConns() < 8 })
		newAbuseCaller(t, h, "").served("once a connection closed")
	})

	t.Run("max conns per ip", func(t *testing.T) {
		h := newAbuseHarness(t, Config{MaxConnsPerIP: 4}, nil)
		held := hold(t, h, 4)
		c := dialRaw(t, h)
		readAnswer(c, time.Now(), 5*time.Second).wantJSONError(t, "connection 5 of 4 from one address", 429, CodeTooManyConnections)
		if got := testutil.ToFloat64(h.r.metrics.refused.WithLabelValues(refusedConnsPerIP)); got != 1 {
			t.Errorf("knactor_router_refused_total{reason=%q} = %v, want 1", refusedConnsPerIP, got)
		}
		newAbuseCaller(t, h, "127.0.0.2").served("another address")
		held[0].Close()
		proctest.EventuallyWithin(t, 5*time.Second, "a place to free", func() bool {
			h.r.limits.mu.Lock()
			defer h.r.limits.mu.Unlock()
			return h.r.limits.perClient[netip.MustParseAddr("127.0.0.1")] < 4
		})
		newAbuseCaller(t, h, "").served("once a connection closed")
	})

	t.Run("ipv6 clients count by /64", func(t *testing.T) {
		addr := func(s string) net.Addr { return net.TCPAddrFromAddrPort(netip.MustParseAddrPort(s)) }
		for _, tt := range []struct{ a, b string }{
			{"[2001:db8:1:2:aaaa::1]:1000", "[2001:db8:1:2:bbbb::2]:2000"},
			{"[::ffff:192.0.2.7]:1000", "192.0.2.7:2000"},
		} {
			if clientOf(addr(tt.a)) != clientOf(addr(tt.b)) {
				t.Fatalf("%s and %s count as different clients", tt.a, tt.b)
			}
		}
		if clientOf(addr("[2001:db8:1:2::1]:1")) == clientOf(addr("[2001:db8:1:3::1]:1")) ||
			clientOf(addr("192.0.2.7:1")) == clientOf(addr("192.0.2.8:1")) {
			t.Fatal("different clients count as one")
		}
	})

	t.Run("max websocket sessions", func(t *testing.T) {
		h := newAbuseHarness(t, Config{MaxWebSocketSessions: 2}, nil)
		first := dialWS(t, h, "/v1/actors/counter/a/ws", nil)
		dialWS(t, h, "/v1/actors/counter/b/ws?subscribe=1", nil)
		_, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(h.url, "http")+"/v1/actors/counter/c/ws", nil)
		if err == nil || resp == nil {
			t.Fatalf("session 3 of 2: err %v, want a refused upgrade", err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(body), `"code":"`+CodeTooManyConnections+`"`) {
			t.Fatalf("session 3 of 2: %d %s, want 503 %s with Retry-After", resp.StatusCode, body, CodeTooManyConnections)
		}
		if got := testutil.ToFloat64(h.r.metrics.refused.WithLabelValues(refusedSessions)); got != 1 {
			t.Errorf("knactor_router_refused_total{reason=%q} = %v, want 1", refusedSessions, got)
		}
		newAbuseCaller(t, h, "").served("with the sessions full")
		first.Close()
		proctest.EventuallyWithin(t, 5*time.Second, "the closed session's place", func() bool { return h.r.hub.slots.n.Load() < 2 })
		dialWS(t, h, "/v1/actors/counter/c/ws", nil)
	})

	t.Run("config", func(t *testing.T) {
		var c Config
		c.SetDefaults()
		if c.MaxConns != DefaultMaxConns || c.MaxWebSocketSessions != DefaultMaxWebSocketSessions || c.MaxConnsPerIP != 0 {
			t.Fatalf("defaults: %d conns, %d per IP, %d sessions", c.MaxConns, c.MaxConnsPerIP, c.MaxWebSocketSessions)
		}
		for _, bad := range []Config{{MaxConns: -1}, {MaxConnsPerIP: -1}, {MaxWebSocketSessions: -1}} {
			bad.SetDefaults()
			if err := bad.Validate(); err == nil {
				t.Fatalf("Validate accepts %+v", bad)
			}
		}
	})
}

// logCapture keeps the messages logged to it.
// TestAbuseOutOfFileDescriptorsDoesNotStopServing is the regression test of a router that
// stopped serving for good when an accept failed for want of file descriptors (fasthttp returns
// from Serve on any accept error but a timeout): a flood of connections could take the router
// down. It now waits and accepts again.
func TestAbuseOutOfFileDescriptorsDoesNotStopServing(t *testing.T) {
	logs := &logCapture{}
	h := newAbuseHarness(t, Config{}, &statecache.MemStore{}, func(o *Options) { o.Logger = slog.New(logs) })
	normal := newAbuseCaller(t, h, "")
	normal.served("before")

	// Fill the process's file table but one descriptor; a connection to the router takes that
	// one, so the router's accept finds none.
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("counting open files needs /proc: %v", err)
	}
	low := lim
	low.Cur = uint64(len(entries) + 64)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	restore := sync.OnceFunc(func() {
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			t.Error(err)
		}
	})
	t.Cleanup(restore)
	var fillers []*os.File
	closeFillers := func() {
		for _, f := range fillers {
			f.Close()
		}
		fillers = nil
	}
	t.Cleanup(closeFillers)
	for {
		f, err := os.Open(os.DevNull)
		if err != nil {
			if !errors.Is(err, syscall.EMFILE) {
				t.Fatal(err)
			}
			break
		}
		fillers = append(fillers, f)
	}
	fillers[len(fillers)-1].Close()
	fillers = fillers[:len(fillers)-1]
	pending, err := net.DialTimeout("tcp", h.hostPort(), 5*time.Second) // queued by the kernel: the router cannot take it
	if err != nil {
		closeFillers()
		t.Fatal(err)
	}
	defer pending.Close()
	var found string
	deadline := time.Now().Add(10 * time.Second)
	for found == "" && time.Now().Before(deadline) {
		found = logs.find("accepting a connection failed")
		if found == "" {
			found = logs.find("Permanent error when accepting")
		}
		time.Sleep(5 * time.Millisecond)
	}
	closeFillers()
	restore()
	if found == "" {
		t.Fatal("the router's accept did not run out of file descriptors: the test did not test it")
	}
	t.Logf("the router logged: %s", found)
	select {
	case err := <-h.served:
		h.served <- err // for the harness's shutdown
		t.Fatalf("the router stopped serving when it ran out of file descriptors: %v", err)
	default:
	}
	// The connection that waited is served, and so are new ones.
	if _, err := io.WriteString(pending, "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	_ = pending.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(pending), nil)
	if err != nil {
		t.Fatalf("the connection accepted late: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("the connection accepted late: %d", resp.StatusCode)
	}
	newAbuseCaller(t, h, "").served("after the file descriptors came back")
}
