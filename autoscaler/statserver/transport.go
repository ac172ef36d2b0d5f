package statserver

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"
)

// Timeouts on the network. They use real time: they bound waiting on a socket, they are not
// a schedule.
const (
	// handshakeTimeout bounds the WebSocket upgrade.
	handshakeTimeout = 10 * time.Second
	// writeWait bounds writing a close frame: the server writes nothing else.
	writeWait = time.Second
	// closeWait is how long the server waits for the router's answer to its close frame (or
	// for the router to hang up) before it drops the connection.
	closeWait = time.Second
)

// Disconnect reasons: the "reason" label of knactor_autoscaler_router_disconnects_total.
const (
	reasonClosed   = "closed"    // the router closed the connection with a close frame
	reasonError    = "error"     // the connection failed without a close frame
	reasonStale    = "stale"     // the router sent nothing for StaleAfter
	reasonReplaced = "replaced"  // the router connected again under the same name
	reasonInvalid  = "invalid"   // the router broke the wire format
	reasonTooLarge = "too_large" // a message exceeded MaxMessageBytes
	reasonShutdown = "shutdown"  // the server closed
)

// Message kinds: the "kind" label of knactor_autoscaler_stat_messages_total.
const (
	kindStats   = "stats"   // a valid message without a poke (stats or a heartbeat)
	kindPoke    = "poke"    // a valid message with a poke
	kindInvalid = "invalid" // a message that broke the wire format (the connection is closed)
)

// conn is one router connection.
type conn struct {
	ws     *websocket.Conn
	remote string
	since  time.Time
	// closeOnce makes end write one close frame.
	closeOnce sync.Once

	// Guarded by Server.mu:
	// router is the router's name, "" until its first message.
	router string
	// last is when the latest message arrived (since, before the first).
	last time.Time
	// messages counts the messages that arrived.
	messages uint64
	// functions holds what the router reported, per function.
	functions map[string]*routerFunc
	// gone is set when the connection is removed from the server; its reader ignores any
	// further message.
	gone bool
}

// ServeHTTP upgrades a router's request to a WebSocket and reads its messages until the
// connection ends.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		http.Error(w, "the autoscaler is shutting down", http.StatusServiceUnavailable)
		return
	}
	if !s.authorized(r) {
		s.log.Warn("refused a stats connection without the routers' secret", "remote", r.RemoteAddr)
		w.Header().Set("WWW-Authenticate", "Bearer")
		http.Error(w, "stats connections need the routers' shared secret as a bearer token", http.StatusUnauthorized)
		return
	}
	ws, err := s.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader answered with an HTTP error
	}
	now := s.cfg.Clock.Now()
	c := &conn{ws: ws, remote: r.RemoteAddr, since: now, last: now}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		c.end(websocket.CloseGoingAway, "autoscaler shutting down; reconnect")
		_ = ws.Close()
		return
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1) // under mu with closed false, so never after Close's Wait began
	s.mu.Unlock()
	defer s.wg.Done()
	s.read(c)
}

// read is a connection's reader loop. It returns when the connection ends, and removes it.
func (s *Server) read(c *conn) {
	defer c.ws.Close()
	c.ws.SetReadLimit(s.cfg.MaxMessageBytes)
	reason := "" // set when this loop ends the connection
	for {
		typ, data, err := c.ws.ReadMessage()
		if err != nil {
			switch {
			case reason != "":
				// Our close frame was answered, or the router hung up, or closeWait passed.
			case errors.Is(err, websocket.ErrReadLimit):
				// gorilla/websocket has sent the close frame (1009). Drain what the router
				// still sends, so that closing the socket does not reset the connection
				// before the router has read the close frame.
				reason = reasonTooLarge
				s.messages.WithLabelValues(kindInvalid).Inc()
				_ = c.ws.UnderlyingConn().SetReadDeadline(time.Now().Add(closeWait))
				_, _ = io.Copy(io.Discard, c.ws.UnderlyingConn())
			case websocket.IsCloseError(err, websocket.CloseNormalClosure, websocket.CloseGoingAway):
				reason = reasonClosed
			default:
				reason = reasonError
			}
			s.remove(c, reason, err)
			return
		}
		if reason != "" {
			continue // draining after our close frame
		}
		if typ != websocket.TextMessage {
			reason = reasonInvalid
			s.reject(c, websocket.CloseUnsupportedData, errors.New("messages must be JSON text frames"))
			continue
		}
		msg, err := decode(data)
		if err == nil {
			err = s.receive(c, &msg)
		}
		if err != nil {
			reason = reasonInvalid
			s.reject(c, websocket.ClosePolicyViolation, err)
		}
	}
}

// reject ends c because it broke the wire format.
func (s *Server) reject(c *conn, code int, err error) {
	s.messages.WithLabelValues(kindInvalid).Inc()
	s.mu.Lock()
	router := c.router
	s.mu.Unlock()
	s.log.Warn("statserver: invalid message; closing the connection",
		"router", router, "remote", c.remote, "error", err)
	c.end(code, err.Error())
}

// receive applies one valid message from c.
func (s *Server) receive(c *conn, m *Message) error {
	now := s.cfg.Clock.Now()
	var replaced *conn
	s.mu.Lock()
	if c.gone {
		s.mu.Unlock()
		return nil // dropped (stale, replaced, shut down): the close frame is on its way
	}
	first := c.router == ""
	if first {
		if old := s.routers[m.Router]; old != nil && s.drop(old, reasonReplaced, now) {
			replaced = old
		}
		c.router = m.Router
		s.routers[m.Router] = c
	} else if m.Router != c.router {
		s.mu.Unlock()
		return fmt.Errorf("%w: a message names router %q on the connection of router %q", errInvalid, m.Router, c.router)
	}
	c.last = now
	c.messages++
	if len(m.Stats) > 0 || len(c.functions) > 0 {
		s.apply(c, m)
	}
	s.mu.Unlock()

	if replaced != nil {
		s.noticeGone(replaced, reasonReplaced, nil, now)
		replaced.end(websocket.ClosePolicyViolation, "replaced by a newer connection of router "+m.Router)
	}
	if first {
		s.log.Info("statserver: router connected", "router", m.Router, "remote", c.remote)
	}
	if m.Poke != "" {
		s.messages.WithLabelValues(kindPoke).Inc()
		if s.cfg.Poke != nil {
			s.cfg.Poke(m.Poke)
		}
	} else {
		s.messages.WithLabelValues(kindStats).Inc()
	}
	return nil
}

// remove is the end of c's reader: it drops c, unless something else did, and forgets it.
func (s *Server) remove(c *conn, reason string, err error) {
	now := s.cfg.Clock.Now()
	s.mu.Lock()
	counted := s.drop(c, reason, now)
	delete(s.conns, c)
	s.mu.Unlock()
	if counted {
		s.noticeGone(c, reason, err, now)
	}
}

// noticeGone logs that c's router left for reason.
func (s *Server) noticeGone(c *conn, reason string, err error, now time.Time) {
	s.mu.Lock()
	router, last := c.router, c.last
	s.mu.Unlock()
	attrs := []any{"router", router, "remote", c.remote, "reason", reason,
		"connected_for", now.Sub(c.since), "silent_for", now.Sub(last)}
	if err != nil && reason != reasonClosed {
		attrs = append(attrs, "error", err)
	}
	switch reason {
	case reasonClosed, reasonReplaced, reasonShutdown:
		s.log.Info("statserver: router disconnected", attrs...)
	case reasonStale:
		s.log.Warn("statserver: router stale; dropped", attrs...)
	default:
		s.log.Warn("statserver: router disconnected", attrs...)
	}
}

// end writes a close frame (once) and makes c's reader stop within closeWait. The server
// writes nothing else, so the socket's send buffer is empty and the frame does not wait even
// for a router that stopped reading; writeWait bounds the exception.
func (c *conn) end(code int, text string) {
	c.closeOnce.Do(func() {
		_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, closeText(text)),
			time.Now().Add(writeWait))
		_ = c.ws.UnderlyingConn().SetReadDeadline(time.Now().Add(closeWait))
	})
}

// maxCloseText is the longest reason a close frame carries: a control frame's payload is at
// most 125 bytes, two of them the code.
const maxCloseText = 123

// closeText cuts text to fit a close frame, at a character boundary.
func closeText(text string) string {
	if len(text) <= maxCloseText {
		return text
	}
	text = text[:maxCloseText]
	for len(text) > 0 && !utf8.ValidString(text) {
		text = text[:len(text)-1]
	}
	return text
}

// sweep drops the connections that sent nothing for longer than StaleAfter, and departures
// no Snapshot took within StaleAfter (functions the autoscaler does not scale). It returns
// the dropped connections and whether each was a router's current one. Called with mu held.
func (s *Server) sweep(now time.Time) (stale []*conn, counted []bool) {
	for c := range s.conns {
		if !c.gone && now.Sub(c.last) > s.cfg.StaleAfter {
			counted = append(counted, s.drop(c, reasonStale, now))
			stale = append(stale, c)
		}
	}
	for name, d := range s.departed {
		if now.Sub(d.at) > s.cfg.StaleAfter {
			delete(s.departed, name)
		}
	}
	return stale, counted
}

// endStale notices and closes what sweep dropped. Called without mu.
func (s *Server) endStale(stale []*conn, counted []bool, now time.Time) {
	for i, c := range stale {
		if counted[i] {
			s.noticeGone(c, reasonStale, nil, now)
		} else {
			s.log.Info("statserver: connection sent nothing; closed", "remote", c.remote)
		}
		c.end(websocket.ClosePolicyViolation, "no message for "+s.cfg.StaleAfter.String())
	}
}

// authorized checks a connection's bearer token against Config.Token, in constant time.
func (s *Server) authorized(r *http.Request) bool {
	if s.cfg.Token == "" {
		return true
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(got), []byte(s.cfg.Token)) == 1
}
