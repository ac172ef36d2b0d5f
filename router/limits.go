package router

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
)

// What one client can hold open, and what the router does about a client that is slow on
// purpose (docs/api.md, "Slow and abusive clients"). fasthttp's ReadTimeout (a whole request,
// body included, from the connection's start or the request's first byte), WriteTimeout and
// IdleTimeout bound the time; the caps here bound the number:
//
//   - Config.MaxConns bounds the router's open client connections, WebSocket sessions included,
//     so that a flood of connections runs into a cap with an answer (503) before it runs the
//     process out of file descriptors or memory;
//   - Config.MaxConnsPerIP, when set, bounds those of one client address (an IPv6 client's /64,
//     which one host usually has whole) so that one client cannot take all of MaxConns;
//   - Config.MaxWebSocketSessions bounds the sessions, each of which holds three goroutines
//     (reader, writer, fasthttp's hijack handler) and up to wsSendQueueBytes of queued messages.
//
// fasthttp's own Server.Concurrency and MaxConnsPerIP are not used: neither counts a hijacked
// (WebSocket) connection, the per-IP count ignores IPv6 clients, and both answer in plain text.

// CodeTooManyConnections is the error code of a connection or WebSocket session refused by a cap.
const CodeTooManyConnections = "too_many_connections"

const (
	// refuseWriteWait bounds writing the refusal to a connection over a cap: it goes into the
	// empty send buffer of a new socket, so only a broken connection takes longer.
	refuseWriteWait = 100 * time.Millisecond
	// maxAcceptBackoff bounds the pause after a failed accept (out of file descriptors, say).
	maxAcceptBackoff = time.Second
	// maxUnreadDrain is what the router reads of a request body a handler left unread before it
	// decides the connection can carry another request: only what is already in memory.
	maxUnreadDrain = 64 << 10
	// fdReserve is the file descriptors the router needs beside its clients' connections:
	// connections to pods, to the store and to other routers, and the store's files.
	fdReserve = 1024
)

// connLimits counts the router's open connections, in total and per client. mu guards open and
// perClient.
type connLimits struct {
	mu        sync.Mutex
	open      int
	perClient map[netip.Addr]int
}

// admit counts a new connection from client (invalid: unknown, not counted per client), or
// returns the error that refuses it.
func (l *connLimits) admit(cfg *Config, client netip.Addr) *apiError {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open >= cfg.MaxConns {
		return errTooManyConns
	}
	if cfg.MaxConnsPerIP > 0 && client.IsValid() {
		if l.perClient[client] >= cfg.MaxConnsPerIP {
			return errTooManyConnsFromClient
		}
		if l.perClient == nil {
			l.perClient = make(map[netip.Addr]int)
		}
		l.perClient[client]++
	}
	l.open++
	return nil
}

func (l *connLimits) release(cfg *Config, client netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open--
	if cfg.MaxConnsPerIP > 0 && client.IsValid() {
		if l.perClient[client]--; l.perClient[client] <= 0 {
			delete(l.perClient, client)
		}
	}
}

// openConns returns the number of client connections the router has open, WebSocket sessions
// included.
func (r *Router) openConns() int {
	r.limits.mu.Lock()
	defer r.limits.mu.Unlock()
	return r.limits.open
}

var (
	errTooManyConns = errorf(fasthttp.StatusServiceUnavailable, CodeTooManyConnections,
		"the router serves as many connections as it may (--max-conns); retry later")
	errTooManyConnsFromClient = errorf(fasthttp.StatusTooManyRequests, CodeTooManyConnections,
		"too many connections from your address (--max-conns-per-ip); reuse one or retry later")
	errTooManySessions = errorf(fasthttp.StatusServiceUnavailable, CodeTooManyConnections,
		"the router serves as many WebSocket sessions as it may (--max-websocket-sessions); retry later")
)

// clientOf returns what MaxConnsPerIP counts a connection from addr against: its IPv4 address,
// or the /64 of its IPv6 address. Invalid for an address that is not IP.
func clientOf(addr net.Addr) netip.Addr {
	ta, ok := addr.(*net.TCPAddr)
	if !ok {
		return netip.Addr{}
	}
	ip := ta.AddrPort().Addr().Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.Addr()
	}
	return ip
}

// limitListener serves the router's caps on connections: Accept refuses a connection over a
// cap with its JSON error, and rides out accept errors that pass (the process out of file
// descriptors) instead of returning them — fasthttp stops serving for good on any accept
// error but a timeout.
type limitListener struct {
	net.Listener
	r         *Router
	closed    chan struct{}
	closeOnce sync.Once
}

func (r *Router) limitListener(ln net.Listener) net.Listener {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && lim.Cur < uint64(r.cfg.MaxConns)+fdReserve {
		r.log.Warn("the open-file limit leaves less room than --max-conns: past it, connections wait unanswered until others close instead of getting 503",
			"open_file_limit", lim.Cur, "max_conns", r.cfg.MaxConns)
	}
	return &limitListener{Listener: ln, r: r, closed: make(chan struct{})}
}

func (l *limitListener) Accept() (net.Conn, error) {
	var backoff time.Duration
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			if !isTemporaryAcceptError(err) {
				return nil, err
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), maxAcceptBackoff)
			l.r.log.Warn("accepting a connection failed; retrying", "err", err, "retry_in", backoff,
				"open_conns", l.r.openConns())
			select {
			case <-l.closed:
				return nil, net.ErrClosed
			case <-time.After(backoff):
			}
			continue
		}
		backoff = 0
		client := clientOf(c.RemoteAddr())
		if ae := l.r.limits.admit(&l.r.cfg, client); ae != nil {
			if ae == errTooManyConnsFromClient {
				l.r.metrics.refusal(refusedConnsPerIP)
			} else {
				l.r.metrics.refusal(refusedConns)
			}
			refuse(c, ae)
			continue
		}
		return &limitedConn{Conn: c, r: l.r, client: client}, nil
	}
}

func (l *limitListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

// isTemporaryAcceptError reports an accept error that a later accept may not have: the process
// or the system out of file descriptors or buffers, or a connection that went away while queued.
func isTemporaryAcceptError(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	for _, e := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM,
		syscall.ECONNABORTED, syscall.ECONNRESET, syscall.EINTR, syscall.EAGAIN, syscall.EPROTO, syscall.EPERM} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// refuse answers a connection over a cap with ae and closes it. The answer is written before the
// request is read, as fasthttp's own refusals are: a client that sent its request before the
// router accepted it may see the connection reset instead.
func refuse(c net.Conn, ae *apiError) {
	body := errorBody(ae.code, ae.message)
	b := make([]byte, 0, 160+len(body))
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(ae.status), 10)
	b = append(b, ' ')
	b = append(b, fasthttp.StatusMessage(ae.status)...)
	b = append(b, "\r\nContent-Type: application/json\r\nRetry-After: "...)
	b = strconv.AppendInt(b, retryAfterSeconds, 10)
	b = append(b, "\r\nConnection: close\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(body)), 10)
	b = append(b, "\r\n\r\n"...)
	b = append(b, body...)
	_ = c.SetWriteDeadline(time.Now().Add(refuseWriteWait))
	_, _ = c.Write(b)
	_ = c.Close()
}

// limitedConn is an admitted connection: closing it frees its place under the caps.
type limitedConn struct {
	net.Conn
	r      *Router
	client netip.Addr
	once   sync.Once
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.r.limits.release(&c.r.cfg, c.client) })
	return err
}

// sessionSlots counts the WebSocket sessions against Config.MaxWebSocketSessions.
type sessionSlots struct{ n atomic.Int64 }

// take claims a session's slot; false when all limit are taken.
func (s *sessionSlots) take(limit int) bool {
	if s.n.Add(1) > int64(limit) {
		s.n.Add(-1)
		return false
	}
	return true
}

func (s *sessionSlots) give() { s.n.Add(-1) }

// serveRequest serves one request, then makes sure that what the handler left unread of the
// request's body is not parsed as the connection's next request. fasthttp streams bodies
// (StreamRequestBody) and reads, before the handler runs, only their first 8 KiB: a handler that
// answered without reading the rest (an error, a redirect, a pass-through pod that answered
// early) would otherwise leave it on the connection, where it is read as a request of its own
// (request smuggling behind a proxy that reuses connections), and a body that a client trickles
// past ReadTimeout would keep its connection. What is already in memory is read and dropped;
// when more is owed, the connection closes after the answer.
func (r *Router) serveRequest(ctx *fasthttp.RequestCtx) {
	r.handle(ctx)
	if ctx.Hijacked() {
		return
	}
	if errorNoted(ctx.Response.StatusCode()) {
		r.noteError(ctx) // for the status page
	}
	body := ctx.RequestBodyStream()
	if body == nil {
		return
	}
	if n := ctx.Request.Header.ContentLength(); n == 0 || n == -2 {
		return
	}
	// Nothing more is waited for: a read the connection would have to answer fails at once.
	// fasthttp sets the next request's deadline before it reads again.
	_ = ctx.Conn().SetReadDeadline(time.Now())
	if !drain(body, maxUnreadDrain) {
		ctx.SetConnectionClose()
	}
}

// drainBuffers recycles drain's buffers (one on the stack would escape through io.Reader).
var drainBuffers = sync.Pool{New: func() any { return new([512]byte) }}

// drain reads and drops what is left of body, up to limit bytes, and reports whether it reached
// the end. A request whose body was read in full costs one Read and no allocation.
func drain(body io.Reader, limit int64) bool {
	buf := drainBuffers.Get().(*[512]byte)
	defer drainBuffers.Put(buf)
	for limit >= 0 {
		n, err := body.Read(buf[:])
		limit -= int64(n)
		switch {
		case err == io.EOF:
			return limit >= 0
		case err != nil:
			return false
		}
	}
	return false
}

// bodyReadError is the answer to a request whose body could not be read: 408 when the client
// did not send it within ReadTimeout, 400 otherwise. Either way the connection closes: where the
// body ended is unknown.
func bodyReadError(ctx *fasthttp.RequestCtx, err error) *apiError {
	ctx.SetConnectionClose()
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return errorf(fasthttp.StatusRequestTimeout, CodeBadRequest, "timed out reading the request body")
	}
	return errorf(fasthttp.StatusBadRequest, CodeBadRequest, "reading the request body: %v", err)
}

// refuseSession answers a WebSocket upgrade over MaxWebSocketSessions, before upgrading.
func refuseSession(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds))
	w.WriteHeader(errTooManySessions.status)
	_, _ = w.Write(errorBody(errTooManySessions.code, errTooManySessions.message))
}

// clientBody is a request body the router streams to a pod (pass-through). It remembers why
// reading it failed, so that a client that did not send its body is answered 408 and the pod is
// not blamed. It has no Close: releasing the pod's request must not release the server's stream.
type clientBody struct {
	r   io.Reader
	err error
}

func (b *clientBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err != nil && err != io.EOF {
		b.err = err
	}
	return n, err
}
