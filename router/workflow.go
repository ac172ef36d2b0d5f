package router

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"sync"

	"github.com/knactor/knactor/router/record"
	"github.com/knactor/knactor/statecache"
	"github.com/valyala/fasthttp"
)

// Workflows (docs/protocol.md, "Workflows"): a turn may hand its call on to another actor
// (forward, pipe), and broadcast to the actors subscribed to a channel.

// flowKeyPrefix starts the idempotency key of a hop: "flow:{commit of the turn that handed the
// call on}". It is the same on every try and every replay of the hop, so the next actor applies
// it once.
const flowKeyPrefix = "flow:"

// HeaderChain, on a call one router forwards to another, lists the actors a chain of forwards
// and pipes has passed through (their object names, comma-separated), so the owner router goes
// on counting hops and finding cycles.
const HeaderChain = "X-Knactor-Chain"

// HeaderChannel, on a broadcast's turn one router forwards to the subscriber's owner router,
// names the channel: the owner runs the turn only if the actor still subscribes to it.
const HeaderChannel = "X-Knactor-Channel"

// broadcastConcurrency bounds the subscriber turns one broadcast runs at once.
const broadcastConcurrency = 32

// membersPage is how many subscribers one listing of a channel returns.
const membersPage = 256

// hop is a forward or a pipe: the call goes on to another actor's action, whose answer becomes
// the caller's.
type hop struct {
	pipe   bool
	target hopTarget
	// payload is what the next actor gets: the call's payload (forward) or the turn's reply
	// (pipe); raw when it is bytes.
	payload []byte
	raw     bool
	key     string // the next call's idempotency key
}

// wireHop is a hop as an idempotency entry remembers it.
type wireHop struct {
	Pipe     bool   `json:"pipe,omitzero"`
	Function string `json:"function"`
	Actor    string `json:"actor"`
	Action   string `json:"action"`
	Payload  []byte `json:"payload"`
	Raw      bool   `json:"raw,omitzero"`
	Key      string `json:"key"`
}

func (h *hop) encode() []byte {
	b, _ := json.Marshal(wireHop{Pipe: h.pipe, Function: h.target.Function, Actor: h.target.Actor,
		Action: h.target.Action, Payload: h.payload, Raw: h.raw, Key: h.key})
	return b
}

func decodeHop(b []byte) (*hop, error) {
	var w wireHop
	if err := json.Unmarshal(b, &w); err != nil {
		return nil, err
	}
	return &hop{pipe: w.Pipe, target: hopTarget{Function: w.Function, Actor: w.Actor, Action: w.Action},
		payload: w.Payload, raw: w.Raw, key: w.Key}, nil
}

// prepareHop completes the answer's hop once the turn's commit id is known.
func prepareHop(h *hop, call *actorCall, out *outcome, commit statecache.Commit) {
	h.key = flowKeyPrefix + string(commit)
	if h.pipe {
		h.payload, h.raw = out.reply, out.replyIsRaw
	} else {
		h.payload = call.payload
	}
}

// run runs call as a turn and then every hop its answers ask for, up to MaxHops, and returns the
// last turn's answer. A hop to an actor the chain has passed through is a cycle: 508.
func (r *Router) run(ctx context.Context, call *actorCall) (*turnResult, error) {
	res, err := r.invoke(ctx, call)
	if err != nil || res.hop == nil {
		return res, err
	}
	chain := append(slices.Clone(call.chain), chainName(call.key))
	for err == nil && res.hop != nil {
		h := res.hop
		next := statecache.Key{Function: h.target.Function, ID: h.target.Actor}
		name := chainName(next)
		switch {
		case len(chain) > MaxHops:
			return nil, errorf(fasthttp.StatusLoopDetected, CodeWorkflowTooLong, "the chain of forwards and pipes is longer than %d hops (%s)", MaxHops, strings.Join(chain, " → "))
		case slices.Contains(chain, name):
			return nil, errorf(fasthttp.StatusLoopDetected, CodeWorkflowCycle, "forward/pipe cycle: %s → %s", strings.Join(chain, " → "), name)
		}
		fn, ok := r.backends.Function(next.Function)
		if !ok {
			return nil, errorf(fasthttp.StatusNotFound, CodeUnknownFunction, "%s to function %q: no such function is deployed", hopKind(h), next.Function)
		}
		c := &actorCall{fn: fn, key: next, action: h.target.Action, payload: h.payload, requestID: call.requestID,
			idemKey: h.key, metadata: []metaPair{{"caused_by", call.requestID}}, chain: chain, trace: call.trace}
		res, err = r.invokeRetrying(ctx, c)
		chain = append(chain, name)
	}
	return res, err
}

func hopKind(h *hop) string {
	if h.pipe {
		return "pipe"
	}
	return "forward"
}

// chainName is how a chain names an actor: its object name (escaped; never holds a comma).
func chainName(k statecache.Key) string {
	name, err := k.ObjectName()
	if err != nil {
		return k.String()
	}
	return name
}

// parseChain reads HeaderChain.
func parseChain(v []byte) []string {
	if len(v) == 0 {
		return nil
	}
	return strings.Split(string(v), ",")
}

// invokeRetrying runs call (a hop or an effect, which carry idempotency keys) and the hops after
// it, trying again a few times while it fails in a way that may pass.
func (r *Router) invokeRetrying(ctx context.Context, call *actorCall) (*turnResult, error) {
	backoff := effectRetryBackoff
	for attempt := 1; ; attempt++ {
		call.fn = r.current(call.fn) // the function may have moved on since the call was asked for
		res, err := r.run(ctx, call)
		if err == nil || attempt >= effectAttempts || !retryable(err) || ctx.Err() != nil {
			return res, err
		}
		select {
		case <-r.clock.After(backoff):
			backoff *= 2
		case <-r.stopping:
			return res, err
		case <-ctx.Done():
			return res, err
		}
	}
}

// subscriptions applies an answer's subscribe and unsubscribe lists (and a delete, which leaves
// every channel) to next, and reports the channels joined and left compared with prev.
func subscriptions(prev, next *record.Record, out *outcome) (joined, left []string, err error) {
	if out.delete {
		for _, c := range next.Channels() {
			next.Unsubscribe(c)
		}
	}
	for _, c := range out.leave {
		next.Unsubscribe(c)
	}
	for _, c := range out.subscribe {
		next.Subscribe(c)
	}
	if n := len(next.Channels()); n > MaxChannels {
		return nil, nil, badReply("the actor would subscribe to %d channels, over the limit of %d", n, MaxChannels)
	}
	for _, c := range next.Channels() {
		if !slices.Contains(prev.Channels(), c) {
			joined = append(joined, c)
		}
	}
	for _, c := range prev.Channels() {
		if !slices.Contains(next.Channels(), c) {
			left = append(left, c)
		}
	}
	return joined, left, nil
}

// errNotSubscribed reports a broadcast turn for an actor that is not (any more) subscribed to
// the channel: nothing runs.
var errNotSubscribed = errorf(fasthttp.StatusConflict, CodeNotSubscribed, "the actor is not subscribed to the channel")

// broadcast delivers a broadcast outbox entry: its action runs as a turn of every member of its
// channel (at most broadcastConcurrency at once), each with the entry's idempotency key, so a
// broadcast dispatched again is applied once per member. WebSocket clients of the channel get
// the message on its first dispatch. It returns an error that may pass when some member could
// not be reached: the entry is dispatched again later, and the members done answer from their
// records.
func (r *Router) broadcast(parent context.Context, o record.Outgoing) error {
	if o.Attempts == 0 {
		r.hub.publishChannel(o)
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.StoreTimeout)
	defer cancel()
	var (
		mu      sync.Mutex
		retry   error
		wg      sync.WaitGroup
		sem     = make(chan struct{}, broadcastConcurrency)
		after   statecache.Key
		members []statecache.Key
		err     error
	)
	for {
		members, err = r.state.Members(ctx, o.Channel, after, membersPage)
		if err != nil {
			break
		}
		for _, m := range members {
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				err := r.deliverToMember(parent, o, m)
				if err != nil && retryable(err) {
					mu.Lock()
					retry = err
					mu.Unlock()
				}
			}()
		}
		if len(members) < membersPage {
			break
		}
		after = members[len(members)-1]
	}
	wg.Wait()
	if err != nil {
		return storeError(err, r.cfg.StoreTimeout)
	}
	return retry
}

// deliverToMember runs a broadcast as a turn of one subscriber.
func (r *Router) deliverToMember(ctx context.Context, o record.Outgoing, m statecache.Key) error {
	fn, ok := r.backends.Function(m.Function)
	if !ok {
		return nil // the function is gone: nothing to deliver to
	}
	call := &actorCall{fn: fn, key: m, action: o.Action, payload: o.Payload, requestID: r.newRequestID(),
		idemKey: o.Key, channel: o.Channel,
		metadata: []metaPair{{"caused_by", o.CausedBy}, {"channel", o.Channel}}}
	_, err := r.invokeRetrying(ctx, call)
	switch {
	case err == nil:
		r.metrics.effect(m.Function, "ok")
	case asAPIError(err).code == CodeNotSubscribed:
		return nil
	case !retryable(err):
		r.log.Warn("broadcast turn failed", call.logArgs("channel", o.Channel, "action", o.Action,
			"caused_by", o.CausedBy, "idempotency_key", o.Key, "err", err)...)
		r.metrics.effect(m.Function, "failed")
	}
	return err
}
