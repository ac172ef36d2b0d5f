package router

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/valyala/fasthttp"

	"github.com/knactor/knactor/router/routing"
	"github.com/knactor/knactor/statecache"
)

// Subscriptions across routers.
//
// A session subscribed to an actor (GET /v1/actors/{function}/{id}/ws?subscribe=1) lives on the
// router the client connected to, while the actor's turns commit on its owner router (or, for a
// moment while routers disagree or an owner cannot be dialed, on another). So that a subscriber
// gets every commit whichever router makes it, each router keeps one relay link to every other
// router (routing.PeerLister) and tells it which actors have subscribers here; a router that
// commits a change of such an actor sends the change down the link, and the subscribers' router
// pushes it to its sessions as if it had committed it.
//
// A link is a WebSocket on GET /v1/peers/relay, dialed by the subscribers' router (the
// interested side) with the routers' shared secret. Its messages:
//
//	interested → committer: {"seq":n,"add":["function/id",...]}, {"seq":n,"remove":[...]}
//	committer → interested: {"ack":n} once the change applies, and
//	                        {"key":"function/id","event":{...}}: what a local subscriber gets
//
// A new subscriber's upgrade waits (at most relayAckWait) for every connected link to
// acknowledge its actor, so a commit after the upgrade answered reaches it. Interest lives as
// long as its link: the committer forgets it when the link ends, and the interested side redials
// and sends its whole set again. What a subscriber can miss is documented in docs/api.md
// ("WebSocket"): changes a router commits while the link to it is down (a router that just
// became ready is dialed as soon as Peers tells of it, a routing.PeerWatcher, else within
// relayReconcile; a broken link is redialed after relayRedial),
// and the changes of a link that fell relayQueue messages behind (it is closed and redialed).
const (
	// relayPathString is the relay link's route, open to the actor system's routers only.
	relayPathString = "/v1/peers/relay"
	// relayReconcile is how often a router compares its links with the routers it knows of:
	// the longest a router that just became ready goes without the others' interest when Peers
	// does not say at once (routing.PeerWatcher; pods/kube.Peers does).
	relayReconcile = time.Second
	// relayRedial is the pause before a failed link is dialed again.
	relayRedial = time.Second
	// relayAckWait bounds how long a new subscriber's upgrade waits for the other routers to
	// take its interest: a router that does not answer in this long is likely going away.
	relayAckWait = 2 * time.Second
	// relayBatch is how many actors one interest message names (a link's first message names
	// all of this router's subscribed actors, in batches).
	relayBatch = 1000
	// relayQueue and relayQueueBytes bound what a committer queues on one link: every
	// subscribed actor's changes share it, so it is larger than a client session's queue.
	relayQueue      = 4096
	relayQueueBytes = 64 << 20
	// relayReadLimit bounds one interest message: relayBatch keys, each a function name and an
	// id that JSON may escape to six times its bytes.
	relayReadLimit = relayBatch * (6*statecache.MaxIDBytes + 96)
)

var pathRelay = []byte(relayPathString)

// relayInterest is an interest message: the actors to add to or remove from a link's set.
type relayInterest struct {
	Seq    uint64   `json:"seq"`
	Add    []string `json:"add,omitempty"`
	Remove []string `json:"remove,omitempty"`
}

// relayMessage is what a committer sends down a link: an ack, or an event for Key's subscribers.
type relayMessage struct {
	Ack   uint64          `json:"ack"`
	Key   string          `json:"key"`
	Event json.RawMessage `json:"event"`
}

// The committer's side: a link is a wsSession whose target is a relay (wsTarget.relay). Its
// interests are hub.relays (actor → links) and wsSession.relayKeys (link → actors), both guarded
// by hub.mu.

// serveRelay upgrades GET /v1/peers/relay, a peer's relay link.
func (r *Router) serveRelay(ctx *fasthttp.RequestCtx, a access) {
	if !a.peer {
		writeError(ctx, errInternalRoute)
		return
	}
	ctx.SetUserValue(wsTargetKey{}, &wsTarget{relay: true})
	r.hub.handler(ctx)
}

// relayLoop reads a link's interest messages until the link ends, and acknowledges each.
func (s *wsSession) relayLoop() {
	s.readMessages(relayReadLimit, func(data []byte) bool {
		var m relayInterest
		if err := json.Unmarshal(data, &m); err != nil {
			s.closeWith(websocket.CloseUnsupportedData, "relay: want {\"seq\",\"add\"|\"remove\"}")
			return false
		}
		if err := s.hub.interest(s, &m); err != nil {
			s.closeWith(websocket.ClosePolicyViolation, "relay: "+err.Error())
			return false
		}
		ack := make([]byte, 0, 32)
		ack = append(ack, `{"ack":`...)
		ack = strconv.AppendUint(ack, m.Seq, 10)
		s.enqueue(append(ack, '}'))
		return true
	})
}

// interest applies a link's interest message. A link names at most as many actors as its
// router may have sessions: each subscribed session adds one.
func (h *hub) interest(s *wsSession, m *relayInterest) error {
	for _, k := range append(m.Add, m.Remove...) {
		if key, ok := statecache.ParseName(k); !ok || key.Validate() != nil {
			return errors.New("not an actor key: " + strconv.Quote(truncate(k, 64)))
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if s.relayKeys == nil {
		s.relayKeys = make(map[string]struct{})
	}
	for _, k := range m.Add {
		if _, ok := s.relayKeys[k]; ok {
			continue
		}
		if len(s.relayKeys) >= h.r.cfg.MaxWebSocketSessions {
			return errors.New("more actors than a router has sessions")
		}
		s.relayKeys[k] = struct{}{}
		if h.relays[k] == nil {
			h.relays[k] = make(map[*wsSession]struct{})
		}
		h.relays[k][s] = struct{}{}
	}
	for _, k := range m.Remove {
		h.forgetRelayLocked(s, k)
	}
	return nil
}

// forgetRelayLocked drops link s's interest in actor k. h.mu is held.
func (h *hub) forgetRelayLocked(s *wsSession, k string) {
	delete(s.relayKeys, k)
	if links := h.relays[k]; links != nil {
		delete(links, s)
		if len(links) == 0 {
			delete(h.relays, k)
		}
	}
}

// relayEvent frames msg, a subscriber's message about actor key, for a link.
func relayEvent(key string, msg []byte) []byte {
	b := make([]byte, 0, 24+len(key)+len(msg))
	b = append(b, `{"key":`...)
	b = appendJSONString(b, key)
	b = append(b, `,"event":`...)
	b = append(b, msg...)
	return append(b, '}')
}

// The interested side.

// relay keeps this router's links to the other routers and the actors it has subscribers of.
//
// Goroutines: run (the reconciler) and one per link (dial, send the set, read), all counted by
// wg and ended by cancel (a link's own cancel when its router leaves). mu guards keys, links and every link's conn, seq and acks; every write
// to a link's connection happens under mu, so each connection has one writer at a time (pongs
// are control frames, which gorilla/websocket lets run beside it).
type relay struct {
	h      *hub
	lister routing.PeerLister
	dialer websocket.Dialer
	header http.Header

	mu    sync.Mutex
	keys  map[string]int        // actor key → this router's sessions subscribed to it
	links map[string]*relayLink // peer address → its link

	ctx    context.Context // done at shutdown; every link's context derives from it
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// relayLink is the link to one other router.
type relayLink struct {
	addr   string
	ctx    context.Context          // done when the router left the peers, or at shutdown
	cancel context.CancelFunc       // called by reconcile under relay.mu
	conn   *websocket.Conn          // nil while the link is down
	seq    uint64                   // the latest interest message's number
	acks   map[uint64]chan struct{} // interest messages awaiting their ack
}

// newRelay returns the relay of a router whose Peers can list the other routers, else nil.
func newRelay(h *hub) *relay {
	lister, ok := h.r.peers.(routing.PeerLister)
	if !ok {
		return nil
	}
	header := http.Header{}
	header.Set(HeaderPeerToken, string(h.r.peerToken))
	ctx, cancel := context.WithCancel(context.Background())
	return &relay{
		h: h, lister: lister, header: header,
		dialer: websocket.Dialer{HandshakeTimeout: dialTimeout + relayAckWait, ReadBufferSize: 4 << 10, WriteBufferSize: 4 << 10},
		keys:   make(map[string]int),
		links:  make(map[string]*relayLink),
		ctx:    ctx,
		cancel: cancel,
	}
}

// start starts the reconciler; shutdown ends it and every link.
func (rl *relay) start() {
	rl.wg.Add(1)
	go rl.run()
}

func (rl *relay) shutdown() {
	rl.cancel()
	rl.wg.Wait()
}

// run reconciles the links with the routers Peers lists: now, every relayReconcile, and at once
// when a routing.PeerWatcher says they changed.
func (rl *relay) run() {
	defer rl.wg.Done()
	var changed <-chan struct{} // nil, never ready, without a watcher
	if w, ok := rl.lister.(routing.PeerWatcher); ok {
		changed = w.Changed()
	}
	for {
		rl.reconcile()
		select {
		case <-rl.ctx.Done():
			return
		case <-changed:
		case <-rl.h.r.clock.After(relayReconcile):
		}
	}
}

// reconcile starts a link to every router that has none and ends the links of routers gone.
func (rl *relay) reconcile() {
	others := rl.lister.Others()
	rl.mu.Lock()
	defer rl.mu.Unlock()
	seen := make(map[string]bool, len(others))
	for _, addr := range others {
		seen[addr] = true
		if _, ok := rl.links[addr]; ok {
			continue
		}
		l := &relayLink{addr: addr, acks: make(map[uint64]chan struct{})}
		l.ctx, l.cancel = context.WithCancel(rl.ctx)
		rl.links[addr] = l
		rl.wg.Add(1)
		go rl.keep(l)
	}
	for addr, l := range rl.links {
		if !seen[addr] {
			l.cancel()
			delete(rl.links, addr)
		}
	}
}

// keep dials l's router, sends it this router's interest and reads what it relays, again after
// each break, until the link is stopped.
func (rl *relay) keep(l *relayLink) {
	defer rl.wg.Done()
	ctx := l.ctx
	for ctx.Err() == nil {
		conn, resp, err := rl.dialer.DialContext(ctx, "ws://"+l.addr+relayPathString, rl.header)
		if resp != nil && resp.Body != nil {
			_ = resp.Body.Close()
		}
		if err != nil {
			rl.h.r.log.Debug("relay: dialing another router failed", "router", l.addr, "err", err)
			select {
			case <-ctx.Done():
			case <-rl.h.r.clock.After(relayRedial):
			}
			continue
		}
		stopRead := context.AfterFunc(ctx, func() { _ = conn.Close() })
		if rl.attach(l, conn) {
			rl.read(l, conn)
		}
		stopRead()
		rl.detach(l, conn)
		if ctx.Err() == nil {
			select {
			case <-ctx.Done():
			case <-rl.h.r.clock.After(relayRedial):
			}
		}
	}
}

// attach makes conn l's connection and sends it every actor this router has subscribers of.
func (rl *relay) attach(l *relayLink, conn *websocket.Conn) bool {
	rl.mu.Lock()
	defer rl.mu.Unlock()
	l.conn = conn
	keys := make([]string, 0, len(rl.keys))
	for k := range rl.keys {
		keys = append(keys, k)
	}
	for len(keys) > 0 {
		n := min(len(keys), relayBatch)
		if _, err := rl.sendLocked(l, relayInterest{Add: keys[:n]}, false); err != nil {
			return false
		}
		keys = keys[n:]
	}
	return true
}

// detach ends conn's part in l: waiters on its acks stop waiting.
func (rl *relay) detach(l *relayLink, conn *websocket.Conn) {
	_ = conn.Close()
	rl.mu.Lock()
	defer rl.mu.Unlock()
	if l.conn == conn {
		l.conn = nil
	}
	for seq, ch := range l.acks {
		close(ch)
		delete(l.acks, seq)
	}
}

// read reads conn's messages: acks end their waits, events go to this router's subscribers.
func (rl *relay) read(l *relayLink, conn *websocket.Conn) {
	// An event carries a state, base64 when it is not JSON (4/3 of its bytes), and its key.
	conn.SetReadLimit(int64(2*rl.h.r.cfg.MaxStateBytes) + wsFrameOverhead)
	_ = conn.SetReadDeadline(time.Now().Add(wsPongWait))
	conn.SetPingHandler(func(data string) error {
		_ = conn.SetReadDeadline(time.Now().Add(wsPongWait))
		return conn.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(wsWriteWait))
	})
	for {
		_, data, err := conn.ReadMessage()
		if err != nil {
			rl.h.r.log.Debug("relay: link to another router ended", "router", l.addr, "err", err)
			return
		}
		_ = conn.SetReadDeadline(time.Now().Add(wsPongWait))
		var m relayMessage
		if err := json.Unmarshal(data, &m); err != nil {
			rl.h.r.log.Warn("relay: another router sent a message that does not parse", "router", l.addr, "err", err)
			return
		}
		if m.Key != "" {
			rl.h.pushTo(m.Key, m.Event)
			continue
		}
		rl.mu.Lock()
		if ch, ok := l.acks[m.Ack]; ok {
			close(ch)
			delete(l.acks, m.Ack)
		}
		rl.mu.Unlock()
	}
}

// sendLocked writes an interest message to l's connection, numbered, and returns the channel
// its ack closes when wait is set. rl.mu is held.
func (rl *relay) sendLocked(l *relayLink, m relayInterest, wait bool) (chan struct{}, error) {
	if l.conn == nil {
		return nil, errors.New("relay: link down")
	}
	l.seq++
	m.Seq = l.seq
	b, _ := json.Marshal(m)
	_ = l.conn.SetWriteDeadline(time.Now().Add(relayAckWait))
	if err := l.conn.WriteMessage(websocket.TextMessage, b); err != nil {
		_ = l.conn.Close() // its reader ends, and keep redials
		return nil, err
	}
	if !wait {
		return nil, nil
	}
	ch := make(chan struct{})
	l.acks[m.Seq] = ch
	return ch, nil
}

// subscribe counts one more session subscribed to key. For the first, it tells every connected
// link and waits for their acks (at most relayAckWait): changes committed after subscribe
// returns reach this router.
func (rl *relay) subscribe(key string) {
	rl.mu.Lock()
	rl.keys[key]++
	var waits []chan struct{}
	if rl.keys[key] == 1 {
		for _, l := range rl.links {
			if ch, err := rl.sendLocked(l, relayInterest{Add: []string{key}}, true); err == nil {
				waits = append(waits, ch)
			}
		}
	}
	rl.mu.Unlock()
	if len(waits) == 0 {
		return
	}
	timeout := rl.h.r.clock.After(relayAckWait)
	for _, ch := range waits {
		select {
		case <-ch:
		case <-timeout:
			rl.h.r.log.Warn("relay: another router did not take a subscriber's interest in time; the subscriber may miss its changes", "actor", key)
			return
		case <-rl.ctx.Done():
			return
		}
	}
}

// unsubscribe counts one session fewer subscribed to key; after the last, the links drop it.
func (rl *relay) unsubscribe(key string) {
	rl.mu.Lock()
	defer rl.mu.Unlock()
	if rl.keys[key]--; rl.keys[key] > 0 {
		return
	}
	delete(rl.keys, key)
	for _, l := range rl.links {
		_, _ = rl.sendLocked(l, relayInterest{Remove: []string{key}}, false)
	}
}

// connected counts the links that are up (knactor_router_relay_links).
func (rl *relay) connected() int {
	if rl == nil {
		return 0
	}
	rl.mu.Lock()
	defer rl.mu.Unlock()
	n := 0
	for _, l := range rl.links {
		if l.conn != nil {
			n++
		}
	}
	return n
}
