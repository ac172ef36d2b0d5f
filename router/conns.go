package router

import (
	"net"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// shutdownReadGrace is how long, once Shutdown begins, a connection may still take to send (the
// rest of) a request. Without it a client that opened a connection, or sent part of a request,
// holds the shutdown for the whole ReadTimeout (30 s) while nothing runs. Requests already being
// served are not cut: their turns do not read from the connection, and their answers are written
// under the write deadline.
const shutdownReadGrace = 2 * time.Second

// conns tracks the server's open connections (fasthttp's ConnState hook) so that Shutdown can
// bound how long each still waits on its client. mu guards open and hurry.
type conns struct {
	mu    sync.Mutex
	open  map[net.Conn]struct{}
	hurry time.Time // once set (Shutdown began): the read deadline of every connection
}

// state is the server's ConnState hook. It runs on the connection's goroutine.
func (cs *conns) state(c net.Conn, st fasthttp.ConnState) {
	switch st {
	case fasthttp.StateNew:
		cs.mu.Lock()
		if cs.open == nil {
			cs.open = make(map[net.Conn]struct{})
		}
		cs.open[c] = struct{}{}
		hurry := cs.hurry
		cs.mu.Unlock()
		if !hurry.IsZero() {
			_ = c.SetReadDeadline(hurry)
		}
	case fasthttp.StateClosed, fasthttp.StateHijacked: // a WebSocket is the hub's to close
		cs.mu.Lock()
		delete(cs.open, c)
		cs.mu.Unlock()
	}
}

// shutdown gives every open connection shutdownReadGrace to send what it still has to send.
func (cs *conns) shutdown() {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cs.hurry = time.Now().Add(shutdownReadGrace)
	for c := range cs.open {
		_ = c.SetReadDeadline(cs.hurry)
	}
}
