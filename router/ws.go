package router

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"
	"go.opentelemetry.io/otel/trace"

	"github.com/knactor/knactor/router/record"
	"github.com/knactor/knactor/router/routing"
	"github.com/knactor/knactor/statecache"
)

// WebSocket sessions run gorilla/websocket behind fasthttp's net/http adaptor, on the router's
// own port. The adaptor's ResponseWriter implements http.Hijacker through fasthttp's own Hijack,
// so gorilla's Upgrader (the ecosystem's standard, already a dependency) takes over the
// connection after fasthttp has parsed the request, and every other request keeps fasthttp's
// zero-allocation path. fasthttp/websocket would do the same with one more module to trust.
const (
	// wsPingInterval is how often the router pings an idle client; wsPongWait is how long it
	// waits for any frame before it declares the client gone (two missed pings).
	wsPingInterval = 30 * time.Second
	wsPongWait     = 2 * wsPingInterval
	// wsWriteWait bounds writing one frame to a client.
	wsWriteWait = 10 * time.Second
	// wsSendQueue is how many outgoing messages a session buffers, and wsSendQueueBytes how
	// many bytes of them (a message into an empty queue is taken whatever its size). A client
	// that falls further behind is closed (1008, "slow consumer") so one slow reader can't hold
	// router memory: 64 pushes of a 1 MiB state would be 64 MiB.
	wsSendQueue      = 64
	wsSendQueueBytes = 4 << 20
	// wsQueueBudget bounds the bytes queued for all of a router's sessions together: with the
	// default 10,000 sessions each could hold wsSendQueueBytes, 40 GiB. Past it, a session that
	// is behind (has a message waiting already) is closed as a slow consumer; a session whose
	// queue is empty still gets its message, so readers that keep up are never cut off.
	wsQueueBudget = 256 << 20
	// wsFrameOverhead is what a message may add around the payload limit (id, action, JSON).
	wsFrameOverhead = 64 << 10
)

// wsRequest is one invocation sent over a WebSocket.
type wsRequest struct {
	ID      json.RawMessage `json:"id"`
	Action  string          `json:"action"`
	Payload json.RawMessage `json:"payload"`
	// IdempotencyKey is the message's Idempotency-Key: a repeat is answered "replayed":true
	// from the actor's record, also on another connection or router.
	IdempotencyKey string `json:"idempotency_key"`
	// Traceparent and Tracestate continue the client's W3C trace in this message's turn
	// (docs/observability.md); without them the turn continues the upgrade request's trace
	// headers, if it had any.
	Traceparent string `json:"traceparent"`
	Tracestate  string `json:"tracestate"`
}

// hub tracks WebSocket sessions and which actors they subscribe to.
//
// mu guards sessions, subs, relays (with each relay link's relayKeys) and closed. Each session
// has a reader goroutine (the upgraded request's, which runs the invocations) and a writer
// goroutine (owns the connection's writes); wg counts both so Shutdown can wait for them.
type hub struct {
	r        *Router
	upgrader websocket.Upgrader
	handler  fasthttp.RequestHandler

	mu       sync.Mutex
	sessions map[*wsSession]struct{}
	subs     map[string]map[*wsSession]struct{}
	relays   map[string]map[*wsSession]struct{} // actor key → other routers' relay links (relay.go)
	closed   bool

	// relay keeps this router's links to the other routers, which relay their commits of the
	// actors subscribed here (relay.go); nil with one router.
	relay *relay

	wg    sync.WaitGroup
	slots sessionSlots // sessions against Config.MaxWebSocketSessions

	// queued is the bytes queued for all sessions (each session's queued, summed as it
	// changes); budget bounds it (wsQueueBudget; tests lower it).
	queued atomic.Int64
	budget int64
}

func newHub(r *Router) *hub {
	h := &hub{
		r:        r,
		sessions: make(map[*wsSession]struct{}),
		subs:     make(map[string]map[*wsSession]struct{}),
		relays:   make(map[string]map[*wsSession]struct{}),
		budget:   wsQueueBudget,
	}
	h.relay = newRelay(h)
	h.upgrader = websocket.Upgrader{
		HandshakeTimeout: r.cfg.ReadTimeout,
		ReadBufferSize:   4 << 10,
		WriteBufferSize:  4 << 10,
		CheckOrigin:      h.checkOrigin,
		Error: func(w http.ResponseWriter, _ *http.Request, status int, reason error) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			_, _ = w.Write(errorBody(CodeBadRequest, "websocket: "+reason.Error()))
		},
	}
	h.handler = fasthttpadaptor.NewFastHTTPHandlerFunc(h.serve)
	return h
}

// checkOrigin accepts the configured origins ("*" for any); without configuration, requests
// with no Origin (non-browser clients) or one whose host is the request's host.
func (h *hub) checkOrigin(req *http.Request) bool {
	origin := req.Header.Get("Origin")
	if allowed := h.r.cfg.AllowedOrigins; len(allowed) > 0 {
		return slices.Contains(allowed, "*") || slices.Contains(allowed, origin)
	}
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	return err == nil && strings.EqualFold(u.Host, req.Host)
}

type wsTarget struct {
	fn        routing.Function
	key       statecache.Key
	host      string // the Host whose route the session came by; empty for the main route
	subscribe bool
	channel   string // a channel's session (GET /v1/channels/{channel}/ws): receives broadcasts only
	readOnly  bool   // opened with a read-only token: receives state, runs no turn
	relay     bool   // another router's relay link (relay.go): takes interest, gets commits
	// trace is the upgrade request's trace context (tracing.go): its headers as they came with
	// tracing off, else the span context they hold.
	trace     traceHeaders
	traceSpan trace.SpanContext
}

// subKey is what the session subscribes to in hub.subs: its actor's key, or its channel's name
// after '#' (a function name never starts with '#', so the two never meet).
func (t *wsTarget) subKey() string {
	if t.channel != "" {
		return "#" + t.channel
	}
	return t.key.String()
}

type wsTargetKey struct{}

func (r *Router) serveWebSocket(ctx *fasthttp.RequestCtx, a access, fn routing.Function, key statecache.Key, host string) {
	sub := string(ctx.QueryArgs().Peek("subscribe"))
	t := &wsTarget{fn: fn, key: key, host: host, subscribe: sub == "1" || sub == "true", readOnly: a.mayWrite() != nil}
	r.traceSession(ctx, t)
	ctx.SetUserValue(wsTargetKey{}, t)
	r.hub.handler(ctx)
}

// serve upgrades the request and runs the session's reader loop until the client leaves.
func (h *hub) serve(w http.ResponseWriter, req *http.Request) {
	t, _ := req.Context().Value(wsTargetKey{}).(*wsTarget)
	if t == nil {
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	if !h.slots.take(h.r.cfg.MaxWebSocketSessions) {
		h.r.metrics.refusal(refusedSessions)
		refuseSession(w)
		return
	}
	defer h.slots.give()
	if t.subscribe && t.channel == "" && h.relay != nil {
		// The other routers learn of the subscriber before the client does: every change
		// committed after the upgrade reaches it, whichever router commits it.
		key := t.key.String()
		h.relay.subscribe(key)
		defer h.relay.unsubscribe(key)
	}
	conn, err := h.upgrader.Upgrade(w, req, nil)
	if err != nil {
		return // the upgrader answered the client
	}
	queue, queueBytes := wsSendQueue, int64(wsSendQueueBytes)
	if t.relay {
		queue, queueBytes = relayQueue, relayQueueBytes
	}
	s := &wsSession{hub: h, conn: conn, target: t, send: make(chan []byte, queue), maxQueued: queueBytes, done: make(chan struct{})}
	if !h.add(s) {
		s.closeWith(websocket.CloseGoingAway, "router is shutting down; reconnect")
		s.writeLoop()
		return
	}
	h.wg.Add(1)
	go func() { defer h.wg.Done(); s.writeLoop() }()
	if t.relay {
		s.relayLoop()
	} else {
		s.readLoop()
	}
	h.remove(s)
}

func (h *hub) add(s *wsSession) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return false
	}
	h.wg.Add(1) // the reader, done in remove
	h.sessions[s] = struct{}{}
	if s.target.subscribe {
		k := s.target.subKey()
		if h.subs[k] == nil {
			h.subs[k] = make(map[*wsSession]struct{})
		}
		h.subs[k][s] = struct{}{}
	}
	return true
}

func (h *hub) remove(s *wsSession) {
	h.mu.Lock()
	delete(h.sessions, s)
	for k := range s.relayKeys {
		h.forgetRelayLocked(s, k)
	}
	k := s.target.subKey()
	if subs := h.subs[k]; subs != nil {
		delete(subs, s)
		if len(subs) == 0 {
			delete(h.subs, k)
		}
	}
	h.mu.Unlock()
	h.wg.Done()
}

// publish pushes a committed state change of actor key to its subscribers.
func (h *hub) publish(key string, version statecache.Version, state []byte, deleted bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	subs, links := h.subs[key], h.relays[key]
	if len(subs) == 0 && len(links) == 0 {
		return
	}
	msg := make([]byte, 0, 64+len(state))
	if deleted {
		msg = append(msg, `{"event":"deleted","version":`...)
		msg = appendJSONString(msg, string(version))
	} else {
		msg = append(msg, `{"event":"state","version":`...)
		msg = appendJSONString(msg, string(version))
		msg = appendValue(msg, "state", state)
	}
	msg = append(msg, '}')
	for s := range subs {
		s.enqueue(msg)
	}
	if len(links) > 0 {
		framed := relayEvent(key, msg)
		for s := range links {
			s.enqueue(framed)
		}
	}
}

// publishChannel pushes a broadcast to the WebSocket sessions of its channel, here and on the
// other routers (see pushToPeers): {"event":"broadcast","channel","action","payload","caused_by"}.
func (h *hub) publishChannel(o record.Outgoing) {
	msg := make([]byte, 0, 96+len(o.Payload))
	msg = append(msg, `{"event":"broadcast","channel":`...)
	msg = appendJSONString(msg, o.Channel)
	msg = append(msg, `,"action":`...)
	msg = appendJSONString(msg, o.Action)
	msg = append(msg, `,"payload":`...)
	if o.Payload == nil {
		msg = append(msg, "null"...)
	} else {
		msg = append(msg, o.Payload...)
	}
	msg = append(msg, `,"caused_by":`...)
	msg = appendJSONString(msg, o.CausedBy)
	msg = append(msg, '}')
	h.pushTo("#"+o.Channel, msg)
	h.r.pushToPeers(o.Channel, msg)
}

// pushTo sends msg to this router's WebSocket sessions subscribed to subKey (wsTarget.subKey):
// an actor's key, or "#" and a channel's name.
func (h *hub) pushTo(subKey string, msg []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs[subKey] {
		s.enqueue(msg)
	}
}

// peerPushTimeout bounds the push of a broadcast to another router's WebSocket clients: the
// push is best effort, and a router that does not take it in this long is likely going away.
const peerPushTimeout = 2 * time.Second

// pushToPeers sends a channel's WebSocket message to the other routers (when Peers can list
// them), each of which pushes it to its own clients of the channel: POST
// /v1/channels/{channel}/push, a call between routers (HeaderForwarded and the router's token).
func (r *Router) pushToPeers(channel string, msg []byte) {
	lister, ok := r.peers.(routing.PeerLister)
	if !ok {
		return
	}
	var wg sync.WaitGroup
	for _, addr := range lister.Others() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			req.SetRequestURI("http://" + addr + "/v1/channels/" + url.PathEscape(channel) + "/push")
			req.Header.SetMethod(fasthttp.MethodPost)
			req.Header.SetContentTypeBytes(contentJSON)
			r.setPeerAuth(req)
			req.SetBody(msg)
			if err := r.peerClient.DoTimeout(req, resp, peerPushTimeout); err != nil || resp.StatusCode() != fasthttp.StatusNoContent {
				r.log.Debug("pushing a broadcast to another router's WebSocket clients failed", "router", addr, "channel", channel, "err", err, "status", resp.StatusCode())
			}
		}()
	}
	wg.Wait()
}

// serveChannel serves GET /v1/channels/{channel}/ws, a WebSocket session that receives the
// channel's broadcasts and sends nothing, and, between routers, POST
// /v1/channels/{channel}/push (see pushToPeers).
func (r *Router) serveChannel(ctx *fasthttp.RequestCtx, a access, rest []byte) {
	channel, op, _ := bytes.Cut(rest, []byte("/"))
	switch {
	case string(op) == "push" && !a.peer:
		writeError(ctx, errInternalRoute)
		return
	case string(op) == "push" && ctx.IsPost():
	case a.mayUseAll() != nil:
		writeError(ctx, a.mayUseAll())
		return
	case string(op) != wsAction:
		writeError(ctx, errorf(fasthttp.StatusNotFound, CodeNotFound, "want GET /v1/channels/{channel}/ws"))
		return
	case !ctx.IsGet():
		writeError(ctx, errorf(fasthttp.StatusMethodNotAllowed, CodeMethodNotAllowed, "%s on a channel: use GET .../ws", ctx.Method()))
		return
	}
	if err := statecache.ValidateChannel(string(channel)); err != nil {
		writeError(ctx, errorf(fasthttp.StatusBadRequest, CodeBadRequest, "%v", err))
		return
	}
	if string(op) == "push" {
		body, err := readLimited(ctx, r.cfg.MaxPayloadBytes+4<<10)
		if err != nil {
			writeError(ctx, err)
			return
		}
		if !json.Valid(body) {
			writeError(ctx, errorf(fasthttp.StatusBadRequest, CodeBadRequest, "a channel push is one JSON message"))
			return
		}
		r.hub.pushTo("#"+string(channel), bytes.Clone(body))
		ctx.SetStatusCode(fasthttp.StatusNoContent)
		return
	}
	ctx.SetUserValue(wsTargetKey{}, &wsTarget{channel: string(channel), subscribe: true})
	r.hub.handler(ctx)
}

// closeAll tells every session to go away (1001) and refuses new ones.
func (h *hub) closeAll() {
	h.mu.Lock()
	h.closed = true
	sessions := make([]*wsSession, 0, len(h.sessions))
	for s := range h.sessions {
		sessions = append(sessions, s)
	}
	h.mu.Unlock()
	for _, s := range sessions {
		s.closeWith(websocket.CloseGoingAway, "router is shutting down; reconnect")
	}
}

// wait blocks until every session's goroutines have ended.
func (h *hub) wait() { h.wg.Wait() }

// wsSession is one client connection pinned to one actor.
type wsSession struct {
	hub    *hub
	conn   *websocket.Conn
	target *wsTarget

	send      chan []byte   // outgoing messages; the writer goroutine owns conn's writes
	maxQueued int64         // bytes send may hold: wsSendQueueBytes, relayQueueBytes for a relay link
	queued    atomic.Int64  // bytes of the messages in send and being written (also in hub.queued)
	done      chan struct{} // closed by closeWith: the writer sends closeFrame and ends
	// retired is set when the writer has ended: a message queued since is nobody's to send, and
	// whoever queued it takes it out again (drain), so that hub.queued counts only what waits.
	retired atomic.Bool
	// relayKeys are the actors a relay link is interested in (relay.go); guarded by hub.mu.
	relayKeys map[string]struct{}

	once       sync.Once
	closeFrame []byte
}

// enqueue queues msg for the client without blocking; a full queue, or a session behind while
// the router's budget is spent, closes the session.
func (s *wsSession) enqueue(msg []byte) {
	n := int64(len(msg))
	q, all := s.addQueued(n)
	switch {
	case q > s.maxQueued && q != n:
		s.addQueued(-n)
		s.dropSlow()
		return
	case all > s.hub.budget && q != n:
		s.addQueued(-n)
		s.hub.r.metrics.refusal(refusedWSBudget)
		s.dropSlow()
		return
	}
	select {
	case <-s.done:
		s.addQueued(-n)
	case s.send <- msg:
		if s.retired.Load() {
			s.drain() // the writer is gone: nobody else takes msg out
		}
	default:
		s.addQueued(-n)
		s.dropSlow()
	}
}

// addQueued counts n more bytes queued (negative: fewer) for the session and for the router,
// and returns both totals.
func (s *wsSession) addQueued(n int64) (session, all int64) {
	return s.queued.Add(n), s.hub.queued.Add(n)
}

// drain takes the messages left in send out, uncounting them: they are never sent. Each message
// is taken out once, by the writer (sent) or by a drain, so each is uncounted once.
func (s *wsSession) drain() {
	for {
		select {
		case msg := <-s.send:
			s.addQueued(-int64(len(msg)))
		default:
			return
		}
	}
}

// dropSlow ends the session of a client that does not read what it is sent.
func (s *wsSession) dropSlow() {
	// The client reads slower than it is sent to: end the session. A close frame goes out
	// if the socket takes it; a writer blocked on a full socket is cut off now rather than
	// at its write deadline, so the session's memory is freed at once.
	s.closeWith(websocket.ClosePolicyViolation, "slow consumer: too many unread messages")
	_ = s.conn.UnderlyingConn().SetWriteDeadline(time.Now())
}

// closeWith ends the session with a close frame carrying code and reason.
func (s *wsSession) closeWith(code int, reason string) {
	s.once.Do(func() {
		s.closeFrame = websocket.FormatCloseMessage(code, reason)
		close(s.done)
	})
}

func (s *wsSession) writeLoop() {
	ping := time.NewTicker(wsPingInterval)
	defer ping.Stop()
	defer func() { s.retired.Store(true); s.drain() }() // what is left in send goes unsent
	defer s.conn.Close()                                // unblocks the reader
	for {
		select {
		case msg := <-s.send:
			_ = s.conn.SetWriteDeadline(time.Now().Add(wsWriteWait))
			err := s.conn.WriteMessage(websocket.TextMessage, msg)
			s.addQueued(-int64(len(msg)))
			if err != nil {
				s.closeWith(websocket.CloseAbnormalClosure, "")
				return
			}
		case <-ping.C:
			if err := s.conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(wsWriteWait)); err != nil {
				s.closeWith(websocket.CloseAbnormalClosure, "")
				return
			}
		case <-s.done:
			_ = s.conn.WriteControl(websocket.CloseMessage, s.closeFrame, time.Now().Add(time.Second))
			return
		}
	}
}

func (s *wsSession) readLoop() {
	s.readMessages(int64(s.hub.r.cfg.MaxPayloadBytes)+wsFrameOverhead, func(data []byte) bool {
		s.enqueue(s.invoke(data))
		return true
	})
}

// readMessages hands each message of up to limit bytes to handle until the client leaves, a
// message breaks the limit, the client stays silent past wsPongWait or handle returns false.
func (s *wsSession) readMessages(limit int64, handle func(data []byte) bool) {
	s.conn.SetReadLimit(limit)
	_ = s.conn.SetReadDeadline(time.Now().Add(wsPongWait))
	s.conn.SetPongHandler(func(string) error { return s.conn.SetReadDeadline(time.Now().Add(wsPongWait)) })
	for {
		_, data, err := s.conn.ReadMessage()
		if err != nil {
			switch {
			case errors.Is(err, websocket.ErrReadLimit):
				s.closeWith(websocket.CloseMessageTooBig, "message over the size limit")
			case websocket.IsCloseError(err, websocket.CloseNormalClosure, websocket.CloseGoingAway):
				s.closeWith(websocket.CloseNormalClosure, "")
			default:
				s.closeWith(websocket.CloseAbnormalClosure, "")
			}
			return
		}
		_ = s.conn.SetReadDeadline(time.Now().Add(wsPongWait))
		if !handle(data) {
			return
		}
	}
}

// invoke runs one message as a turn of the session's actor and returns the answer message.
func (s *wsSession) invoke(data []byte) []byte {
	r := s.hub.r
	start := time.Now()
	var m wsRequest
	if err := json.Unmarshal(data, &m); err != nil {
		return wsError(nil, errorf(fasthttp.StatusBadRequest, CodeBadRequest, `message must be {"id","action","payload"}: %v`, err))
	}
	if s.target.channel != "" {
		return wsError(m.ID, errorf(fasthttp.StatusBadRequest, CodeBadRequest, "a channel's WebSocket only receives broadcasts; call actors on /v1/actors/{function}/{id}/ws"))
	}
	if s.target.readOnly {
		return wsError(m.ID, errReadOnly)
	}
	if !validAction(m.Action) {
		return wsError(m.ID, errorf(fasthttp.StatusBadRequest, CodeBadRequest, "action %q must be 1-%d characters of [A-Za-z0-9_.-]", m.Action, maxActionLen))
	}
	if err := checkIdempotencyKey(m.IdempotencyKey, false); err != nil {
		return wsError(m.ID, err)
	}
	payload := []byte(m.Payload)
	if !isSet(m.Payload) {
		payload = nil
	}
	call := &actorCall{fn: r.current(s.target.fn), key: s.target.key, action: m.Action, payload: payload, host: s.target.host,
		requestID: r.newRequestID(), idemKey: m.IdempotencyKey, metadata: []metaPair{{"transport", "websocket"}}}
	ctx, span := r.startWSMessage(s.target, &m, call)
	res, err := r.run(ctx, call)
	endWSMessage(span, res, err)
	if err != nil {
		r.metrics.observe(s.target.fn.Name, kindWebSocket, statusOf(err), start)
		return wsError(m.ID, err)
	}
	r.metrics.observe(s.target.fn.Name, kindWebSocket, fasthttp.StatusOK, start)
	msg := make([]byte, 0, 48+len(m.ID)+len(res.reply))
	msg = appendID(msg, m.ID)
	msg = append(msg, `,"version":`...)
	msg = appendJSONString(msg, string(res.version))
	if res.replayed {
		msg = append(msg, `,"replayed":true`...)
	}
	if res.replyIsRaw {
		msg = append(msg, `,"reply_b64":"`...)
		msg = base64.StdEncoding.AppendEncode(msg, res.reply)
		msg = append(msg, '"')
	} else {
		msg = append(msg, `,"reply":`...)
		msg = append(msg, res.reply...)
	}
	return append(msg, '}')
}

func appendID(b []byte, id json.RawMessage) []byte {
	b = append(b, `{"id":`...)
	if len(id) == 0 {
		return append(b, "null"...)
	}
	return append(b, id...)
}

func wsError(id json.RawMessage, err error) []byte {
	ae := asAPIError(err)
	b := appendID(nil, id)
	b = append(b, `,"error":{"status":`...)
	b = strconv.AppendInt(b, int64(ae.status), 10)
	b = append(b, `,"code":`...)
	b = appendJSONString(b, ae.code)
	b = append(b, `,"message":`...)
	b = appendJSONString(b, ae.message)
	return append(b, "}}"...)
}
