package router

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/knactor/knactor/activator"
	"github.com/knactor/knactor/router/record"
	"github.com/knactor/knactor/router/routing"
	"github.com/knactor/knactor/statecache"
	"github.com/valyala/fasthttp"
)

// Headers of idempotent calls (docs/api.md, "Idempotency keys").
const (
	// HeaderIdempotencyKey names a call so that a repeat of it is answered from the actor's
	// record instead of running again.
	HeaderIdempotencyKey = "Idempotency-Key"
	// HeaderReplayed marks an answer that repeats a committed call's, without running it.
	HeaderReplayed = "Idempotent-Replayed"
)

// effectKeyPrefix starts the idempotency keys of effects (effectKey); callers may not use it, so
// a caller's key can never take an effect's place.
const effectKeyPrefix = "effect:"

// checkIdempotencyKey validates a caller's key ("" for none). Keys of effects are accepted only
// on calls forwarded by another router, which is how an effect reaches its actor's owner.
func checkIdempotencyKey(key string, forwarded bool) error {
	switch {
	case key == "":
		return nil
	case !record.ValidKey(key):
		return errorf(fasthttp.StatusBadRequest, CodeBadRequest, "%s must be 1-%d printable ASCII characters", HeaderIdempotencyKey, record.MaxKeyLen)
	case !forwarded && strings.HasPrefix(key, effectKeyPrefix):
		return errorf(fasthttp.StatusBadRequest, CodeBadRequest, "%s %q: keys starting with %q are the router's own (effects)", HeaderIdempotencyKey, key, effectKeyPrefix)
	case !forwarded && strings.HasPrefix(key, flowKeyPrefix):
		return errorf(fasthttp.StatusBadRequest, CodeBadRequest, "%s %q: keys starting with %q are the router's own (forwards and pipes)", HeaderIdempotencyKey, key, flowKeyPrefix)
	case strings.HasPrefix(key, timerKeyPrefix):
		return errorf(fasthttp.StatusBadRequest, CodeBadRequest, "%s %q: keys starting with %q are the router's own (timers)", HeaderIdempotencyKey, key, timerKeyPrefix)
	}
	return nil
}

// invoke runs one call as a turn of its actor: wait for the actor's mailbox, load the actor's
// record, answer a remembered idempotency key from it, else send the envelope to the owner pod
// and commit the answer's state (and the key) conditionally, in one write. A version conflict
// (another router wrote the actor) re-runs the turn on the fresh record, which may then hold the
// key and answer the call as a replay. On any error nothing was stored, except when the store
// could not say: then a retry with the same key finds out.
func (r *Router) invoke(parent context.Context, call *actorCall) (res *turnResult, err error) {
	keyStr := call.key.String()
	// The actor's target (revision) is its route's pick, the same on every router: a fixed hash
	// of its key. Turns stay one at a time whichever target runs them, since the mailbox below
	// is the actor's, not the target's.
	call.fn = r.target(call.fn, call.host, func(rt *routing.Route) *routing.Split { return rt.ForActor(keyStr) })
	timeout := call.fn.Timeout
	if timeout <= 0 {
		timeout = r.cfg.CallTimeout
	}
	// The call's deadline, timed only once something waits on it (a queued turn, no ready pod,
	// the store): a cache-hit turn on a warm pod pays for no timer.
	cctx := &callCtx{storeCtx: storeCtx{Context: parent, deadline: time.Now().Add(timeout)}}
	defer cctx.stop()
	var ctx context.Context = cctx
	if r.peers != nil && !call.forwarded {
		if addr, remote := r.peers.Owner(keyStr); remote {
			deadline, _ := ctx.Deadline()
			// The owner counts the call in its statistics; counting it here too would double it.
			if res, handled, err := r.forward(ctx, addr, call, deadline); handled {
				return res, err
			}
		}
	}
	if r.tracer != nil {
		var span trace.Span
		ctx, span = r.startTurn(ctx, call)
		defer func() { endTurn(span, res, err) }()
	}
	inStats := r.stats.Enter(call.fn.Target(), call.key.ID)
	defer inStats.End()

	wait := r.child(ctx, spanMailbox)
	turn, err := r.acquireTurn(ctx, keyStr, timeout)
	end(wait, err)
	if err != nil {
		return nil, err
	}
	defer turn.Release()

	maxState := call.fn.MaxStateBytes
	if maxState <= 0 {
		maxState = r.cfg.MaxStateBytes
	}
	var digest record.Digest
	if call.idemKey != "" {
		digest = record.DigestOf(call.action, call.payload)
	}
	commits := turnCommits{r: r}
	deadline, _ := ctx.Deadline()
	lostPods := 0
	for attempt := 1; ; attempt++ {
		load := r.startLoad(ctx, attempt)
		cur, rec, err := r.loadRecord(ctx, call.key)
		endLoad(load, cur, err)
		if err != nil {
			return nil, err
		}
		if call.timer != nil {
			if err := call.timer.load(call, &rec, r.clock.Now()); err != nil {
				return nil, err
			}
			if call.timer.skip {
				return r.commitOnly(ctx, call, cur, rec, &commits, attempt)
			}
		}
		if call.idemKey != "" {
			if res, err := r.replay(call, &rec, digest, cur.Version); res != nil || err != nil {
				return res, err
			}
		}
		if call.channel != "" && !slices.Contains(rec.Channels(), call.channel) {
			return nil, errNotSubscribed
		}
		claim, err := r.pick(ctx, deadline, call.fn, activator.OwnerOf(keyStr))
		if err != nil {
			return nil, err
		}
		pod := claim.Pod
		ictx, ispan := r.startInvoke(ctx, call, pod, attempt)
		env := envelope{
			function: call.fn.Name, actor: call.key.ID, action: call.action, payload: call.payload,
			state:    statecache.Entry{Value: rec.State, Exists: rec.HasState, Version: cur.Version},
			timers:   rec.Timers(),
			channels: rec.Channels(),
		}
		r.turnMetadata(ictx, call, attempt, deadline, &env, cctx.meta[:0])
		out, err := r.send(pod.Addr, &env, deadline, maxState, ispan, call.answer)
		if err == nil && out.fnErr != nil {
			end(ispan, out.fnErr)
		} else {
			end(ispan, err)
		}
		claim.Release()
		if errors.Is(err, errUnreachable) && lostPods < maxLostPods {
			// The owner broke off or refused before answering: nothing committed, so the turn
			// runs again, on the new owner if the pod has gone.
			lostPods++
			r.awaitPodGone(ctx, call.fn.Target(), pod, err)
			continue
		}
		if err != nil {
			if errors.Is(err, errUnreachable) {
				r.log.Warn("function pod unreachable", call.logArgs("pod", pod.Name, "followed", lostPods, "err", err)...)
			}
			return nil, err
		}
		if out.fnErr != nil && call.timer == nil {
			return nil, out.fnErr
		}
		if out.fnErr != nil {
			// The function refused the timer's turn: that is its answer, so the firing is
			// consumed (nothing else of the answer counts).
			out = outcome{fnErr: out.fnErr}
		}
		cspan := r.startCommit(ctx, attempt, &out)
		version, changed, immediate, err := r.commit(ctx, call, cur, rec, &out, &commits, attempt, digest)
		endCommit(cspan, version, changed, err)
		if errors.Is(err, statecache.ErrConflict) {
			conflictEvent(ctx, attempt)
			r.metrics.conflict(call.fn.Name)
			if attempt > r.cfg.ConflictRetries {
				return nil, errorf(fasthttp.StatusConflict, CodeVersionConflict, "actor state kept changing under %d attempts; retry", attempt)
			}
			continue
		}
		if err != nil {
			return nil, err
		}
		if changed {
			r.hub.publish(keyStr, version, out.newState, out.delete)
		}
		r.dispatchNow(ctx, call.key, immediate)
		if out.fnErr != nil {
			return nil, out.fnErr
		}
		if !rec.HasState && !changed {
			version = statecache.NoVersion
		}
		res = &cctx.result // the call's allocation holds its answer
		*res = turnResult{reply: out.reply, replyIsRaw: out.replyIsRaw, version: version, pod: pod.Name, hop: out.hop}
		return res, nil
	}
}

// turnMetadata sets env's metadata: the router's keys first (the deadline goes in env.deadline),
// then the caller's (which hold none of the router's: serveInvoke drops them). It sets the trace
// context's keys (traceparent, tracestate, baggage) apart as well in env.trace, a part of the
// metadata: the function continues the trace of ctx, the span of the function call (or the
// caller's, when the router does not trace). The metadata goes in room (empty) when it fits.
func (r *Router) turnMetadata(ctx context.Context, call *actorCall, attempt int, deadline time.Time, env *envelope, room []metaPair) {
	n := 2 + len(call.metadata)
	if call.idemKey != "" || call.timer != nil {
		n += 4
	}
	if r.tracer != nil || call.trace.parent != "" {
		n += 3
	}
	md := room
	if cap(md) < n {
		md = make([]metaPair, 0, n)
	}
	md = append(md,
		metaPair{"request_id", call.requestID},
		metaPair{"attempt", strconv.Itoa(attempt)})
	env.deadline = deadline
	if call.idemKey != "" {
		md = append(md, metaPair{"idempotency_key", call.idemKey})
	}
	if t := call.timer; t != nil {
		md = append(md,
			metaPair{"idempotency_key", t.key()},
			metaPair{"timer", t.name},
			metaPair{"timer_due", t.due.UTC().Format(time.RFC3339Nano)},
			metaPair{"timer_fired", t.fired.UTC().Format(time.RFC3339Nano)})
	}
	i := len(md)
	md = r.injectMeta(ctx, call, md)
	env.trace = md[i:len(md):len(md)]
	env.metadata = append(md, call.metadata...)
}

// loadRecord reads the actor's stored value and decodes its record, waiting out a store that does
// not answer for up to Config.StoreTimeout.
func (r *Router) loadRecord(ctx context.Context, key statecache.Key) (statecache.Entry, record.Record, error) {
	sctx := r.newStoreCtx(ctx)
	defer sctx.stop()
	cur, err := r.state.Get(sctx, key)
	if err != nil {
		cur, err = r.getRetrying(sctx, key, err)
	}
	if err != nil {
		return cur, record.Record{}, err
	}
	rec, err := record.Decode(cur.Value, cur.Exists)
	if err != nil {
		return cur, rec, errorf(fasthttp.StatusInternalServerError, CodeInternal, "actor %q of function %q: stored state is unreadable: %v", key.ID, key.Function, err)
	}
	return cur, rec, nil
}

// getRetrying retries a read that failed with err (withStore).
func (r *Router) getRetrying(sctx *storeCtx, key statecache.Key, err error) (statecache.Entry, error) {
	var cur statecache.Entry
	err = r.withStore(sctx, key.Function, "get", err, func(ctx context.Context) (err error) {
		cur, err = r.state.Get(ctx, key)
		return err
	})
	return cur, err
}

// replay answers a call whose idempotency key the actor's record remembers: the committed
// call's reply, or 422 when the key was used for a different call. It returns nil, nil for a key
// the record does not hold (or holds expired).
func (r *Router) replay(call *actorCall, rec *record.Record, digest record.Digest, version statecache.Version) (*turnResult, error) {
	e, ok := rec.Find(call.idemKey, r.clock.Now(), r.cfg.IdempotencyTTL)
	if !ok {
		return nil, nil
	}
	if e.Hop && e.Digest == digest {
		// The call was handed on: follow it, and the next actor answers from its own record.
		h, err := decodeHop(e.Reply)
		if err != nil {
			return nil, errorf(fasthttp.StatusInternalServerError, CodeInternal, "actor %q: remembered hop is unreadable: %v", call.key.ID, err)
		}
		r.metrics.replay(call.fn.Name)
		return &turnResult{hop: h, version: version, replayed: true}, nil
	}
	if e.Digest != digest {
		return nil, errorf(fasthttp.StatusUnprocessableEntity, CodeIdempotencyKeyReused,
			"idempotency key %q was already used for a different call of actor %q (another action or payload); use a new key for a new call",
			call.idemKey, call.key.ID)
	}
	r.metrics.replay(call.fn.Name)
	if !rec.HasState {
		version = statecache.NoVersion // as the call's own answer said: the actor has no state
	}
	return &turnResult{reply: e.Reply, replyIsRaw: e.RawReply, version: version, replayed: true}, nil
}

// turnCommits names the writes of one turn: a turn number, drawn on first use (a turn that
// writes nothing needs none), and the attempt. Unique to this router process (newTurnSeq), and
// the same when one write is retried after the store failed to answer.
type turnCommits struct {
	r   *Router
	seq uint64 // 0: not drawn yet
}

func (t *turnCommits) of(attempt int) statecache.Commit {
	if t.seq == 0 {
		t.seq = t.r.newTurnSeq()
	}
	var buf [64]byte
	b := appendSeqID(buf[:0], t.r.commitPrefix, t.seq)
	b = append(b, '.')
	return statecache.Commit(strconv.AppendInt(b, int64(attempt), 10))
}

// write stores value (nil: deletes the key) conditionally on expect, retried under the same
// commit while the store is unavailable (withStore): the store recognises a retry whose earlier
// try landed. ambiguous reports that a try failed without an answer.
func (r *Router) write(ctx context.Context, key statecache.Key, value []byte, expect statecache.Version, commit statecache.Commit) (
	version statecache.Version, ambiguous bool, err error) {
	sctx := r.newStoreCtx(ctx)
	defer sctx.stop()
	do := func(ctx context.Context) (err error) {
		if value == nil {
			version, err = r.state.Delete(ctx, key, expect, commit)
		} else {
			version, err = r.state.Put(ctx, key, value, expect, commit)
		}
		ambiguous = ambiguous || errors.Is(err, statecache.ErrUnavailable)
		return err
	}
	err = r.withStore(sctx, key.Function, "write", do(sctx), do)
	return version, ambiguous, err
}

// commit makes a turn's outcome durable: the new state, the call's idempotency key with its
// reply, the answer's timers and effects (the outbox) and a fired timer's next due time, in one
// conditional write named by the attempt's commit id. A turn that changes nothing and carries no
// key writes nothing. It reports the actor's version afterwards, whether the state changed, and
// the outbox entries to dispatch at once (the answer's effects without a delay, its broadcasts).
func (r *Router) commit(ctx context.Context, call *actorCall, cur statecache.Entry, rec record.Record, out *outcome,
	commits *turnCommits, attempt int, digest record.Digest) (statecache.Version, bool, []record.Outgoing, error) {
	changed := out.newState != nil || (out.delete && rec.HasState)
	next := rec
	switch {
	case out.newState != nil:
		next.State, next.HasState = out.newState, true
	case out.delete:
		next.State, next.HasState = nil, false
	}
	now := r.clock.Now()
	scheduled, err := r.schedule(&next, call, out, now)
	if err != nil {
		return cur.Version, false, nil, err
	}
	joined, left, err := subscriptions(&rec, &next, out)
	if err != nil {
		return cur.Version, false, nil, err
	}
	scheduled = scheduled || len(joined) > 0 || len(left) > 0
	var immediate []record.Outgoing
	if len(out.effects)+len(out.broadcasts) > 0 {
		var entries []record.Outgoing
		entries, immediate = outgoing(out.effects, out.broadcasts, commits.of(attempt), call.requestID, now)
		if n := len(next.Outbox()) + len(entries); n > MaxOutbox {
			return cur.Version, false, nil, errorf(fasthttp.StatusServiceUnavailable, CodeNoCapacity,
				"actor %q would have %d effects waiting in its outbox, at most %d: retry once deliveries have made room", call.key.ID, n, MaxOutbox)
		}
		next.AddOutgoing(entries...)
		scheduled = true
	}
	if out.hop != nil {
		prepareHop(out.hop, call, out, commits.of(attempt))
	}
	if !changed && call.idemKey == "" && !scheduled {
		return cur.Version, false, nil, nil
	}
	if call.idemKey != "" {
		e := record.Entry{Key: call.idemKey, Digest: digest, At: now, Status: fasthttp.StatusOK, Reply: out.reply, RawReply: out.replyIsRaw}
		if out.hop != nil {
			e.Reply, e.RawReply, e.Hop = out.hop.encode(), false, true
		}
		next.Remember(e, r.idemLimits)
	} else {
		next.Prune(now, r.idemLimits)
	}
	version, ambiguous, err := r.writeRecord(ctx, call.key, cur, &rec, &next, commits.of(attempt))
	if err != nil && call.idemKey == "" && call.timer == nil && lostToConflict(err, ambiguous) {
		// A try whose answer was lost may have landed before another writer's write, which
		// now hides it. Re-running could apply the call twice; only the caller can settle it.
		// (With a key, the re-run settles it: the reloaded record holds the key if it landed;
		// a timer's firing is settled by the reloaded timer.)
		return version, changed, nil, errorf(fasthttp.StatusServiceUnavailable, CodeStoreUnavailable,
			"the outcome of the state write is unknown: a try got no answer and the actor has changed since, so the call may or may not have taken effect; send an %s to retry safely", HeaderIdempotencyKey)
	}
	return version, changed, immediate, err
}

// lostToConflict reports a write that conflicted after a try of it got no answer (ambiguous,
// or the store saw it): the lost try may have landed under the other writer's write.
func lostToConflict(err error, ambiguous bool) bool {
	var conflict *statecache.ConflictError
	return errors.As(err, &conflict) && (ambiguous || conflict.AfterAmbiguous)
}

// writeRecord stores next, the record that follows prev (the one read at cur), and keeps the
// store's due-time index in step: an entry at next's due time is added before the write (so a
// committed timer or outbox entry is always listed), and prev's entry is removed after it. A
// record left Empty deletes the key.
func (r *Router) writeRecord(ctx context.Context, key statecache.Key, cur statecache.Entry, prev, next *record.Record,
	commit statecache.Commit) (version statecache.Version, ambiguous bool, err error) {
	if next.Empty() && !cur.Exists {
		return cur.Version, false, nil
	}
	prevDue, had := prev.NextDue()
	nextDue, has := next.NextDue()
	if has && !(had && prevDue.Equal(nextDue)) {
		if err := r.addDue(ctx, key, nextDue); err != nil {
			return cur.Version, false, err
		}
	}
	for _, c := range next.Channels() {
		if !slices.Contains(prev.Channels(), c) {
			if err := r.join(ctx, c, key); err != nil {
				return cur.Version, false, err
			}
		}
	}
	var value []byte // nil: delete
	if !next.Empty() {
		value = next.Value()
	}
	version, ambiguous, err = r.write(ctx, key, value, cur.Version, commit)
	if err != nil {
		return version, ambiguous, err
	}
	if had && !(has && prevDue.Equal(nextDue)) {
		r.removeDue(key, prevDue)
	}
	for _, c := range prev.Channels() {
		if !slices.Contains(next.Channels(), c) {
			r.leave(c, key)
		}
	}
	if has {
		r.sched.push(key, nextDue, false)
	}
	return version, ambiguous, nil
}

// updateRecord changes an actor's record outside a call (the outbox after a delivery, the API's
// DELETE), as a turn of its own: it holds the actor's mailbox, and re-reads and re-applies
// change after a version conflict. change reports whether it changed anything.
func (r *Router) updateRecord(parent context.Context, key statecache.Key, change func(rec *record.Record) bool) error {
	ctx, cancel := context.WithTimeout(parent, r.cfg.CallTimeout)
	defer cancel()
	turn, err := r.acquireTurn(ctx, key.String(), r.cfg.CallTimeout)
	if err != nil {
		return err
	}
	defer turn.Release()
	commits := turnCommits{r: r}
	for attempt := 1; ; attempt++ {
		cur, rec, err := r.loadRecord(ctx, key)
		if err != nil {
			return err
		}
		next := rec
		if !change(&next) {
			return nil
		}
		v, _, err := r.writeRecord(ctx, key, cur, &rec, &next, commits.of(attempt))
		if errors.Is(err, statecache.ErrConflict) && attempt <= r.cfg.ConflictRetries {
			continue
		}
		if errors.Is(err, statecache.ErrConflict) {
			return errorf(fasthttp.StatusConflict, CodeVersionConflict, "actor state kept changing; retry")
		}
		if err == nil && rec.HasState && !next.HasState {
			r.hub.publish(key.String(), v, nil, true)
		}
		return err
	}
}
