package router

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/knactor/knactor/router/record"
	"github.com/knactor/knactor/statecache"
	"github.com/valyala/fasthttp"
)

// Retries of an effect whose call failed for a reason that may pass (store or pods unavailable,
// a timeout, a busy actor). Each try carries the same idempotency key, so one that committed
// although its answer was lost is answered from the target's record, not applied again.
const (
	effectAttempts     = 4
	effectRetryBackoff = 200 * time.Millisecond
)

// The durable outbox (docs/protocol.md, "Effects"). A turn's effects are stored in its actor's
// record by the turn's own write and removed once delivered, so a router that dies in between
// leaves them for the actor's owner to dispatch again (with the same keys: applied once).
const (
	// dispatchGrace is how far ahead an immediate effect is due in the outbox. The router that
	// committed it dispatches it at once; only if that router dies does the due time matter:
	// the effect is dispatched by the scheduler that far after its commit.
	dispatchGrace = 5 * time.Second
	// outboxBackoff and outboxBackoffMax space the dispatches of an effect whose target keeps
	// failing in a way that may pass (each dispatch itself tries effectAttempts times).
	outboxBackoff    = time.Second
	outboxBackoffMax = 5 * time.Minute
	// maxOutboxAttempts bounds those dispatches: about an hour of trying, then the effect is
	// dropped and logged (knactor_effects_total{outcome="dropped"}).
	maxOutboxAttempts = 20
)

// effectKey is the idempotency key of the index-th effect of the turn that committed as commit:
// the same on every dispatch of that effect, and unique to it.
func effectKey(commit statecache.Commit, index int) string {
	return effectKeyPrefix + string(commit) + ":" + strconv.Itoa(index)
}

// outgoing turns the effects and broadcasts of an answer into outbox entries of the turn
// committing as commit, and returns them with those to dispatch at once (no delay).
func outgoing(effects []effect, broadcasts []broadcastOp, commit statecache.Commit, causedBy string, now time.Time) (all, immediate []record.Outgoing) {
	out := make([]record.Outgoing, len(effects), len(effects)+len(broadcasts))
	for _, b := range broadcasts {
		o := record.Outgoing{Key: effectKey(commit, len(out)), Channel: b.Channel, Action: b.Action,
			CausedBy: causedBy, Due: now.Add(dispatchGrace)}
		if isSet(b.Payload) {
			o.Payload = b.Payload
		}
		out = append(out, o)
	}
	immediate = make([]record.Outgoing, 0, len(out))
	for i, e := range effects {
		o := record.Outgoing{
			Key: effectKey(commit, i), Function: e.Function, Actor: e.Actor, Action: e.Action,
			CausedBy: causedBy, Due: now.Add(time.Duration(e.DelayMS) * time.Millisecond),
		}
		if e.DelayMS == 0 {
			o.Due = now.Add(dispatchGrace)
		}
		if isSet(e.Payload) {
			o.Payload = e.Payload
		}
		out[i] = o
		if e.DelayMS == 0 {
			immediate = append(immediate, o)
		}
	}
	// Effects first, in list order, then broadcasts.
	return out, append(immediate, out[len(effects):]...)
}

// dispatchNow starts the delivery of a committed turn's immediate effects and broadcasts on a
// goroutine counted by r.effects. Delayed ones wait in the outbox for the scheduler. The
// delivery is traced under the turn's span (ctx's), in the turn's trace.
func (r *Router) dispatchNow(ctx context.Context, src statecache.Key, immediate []record.Outgoing) {
	if len(immediate) == 0 {
		return
	}
	dctx := r.detached(ctx)
	r.effects.Add(1)
	go func() {
		defer r.effects.Done()
		r.deliver(dctx, src, immediate)
	}()
}

// deliver dispatches outbox entries of actor src, in order, each as a turn of its target with
// its idempotency key, then removes from src's outbox the ones that are done (delivered, or
// failed for good) and pushes back the ones to try again later. Entries another goroutine of
// this router is dispatching are skipped. ctx carries no deadline, only the trace the delivery
// belongs to (none: it starts one).
func (r *Router) deliver(ctx context.Context, src statecache.Key, entries []record.Outgoing) {
	entries = r.sched.claim(entries)
	if len(entries) == 0 {
		return
	}
	defer r.sched.unclaim(entries)
	ctx, span := r.startRoot(ctx, spanEffects, attrFunction.String(src.Function), attrActor.String(src.ID),
		attrEffects.Int(len(entries)))
	if span != nil {
		defer span.End()
	}
	done := make(map[string]bool, len(entries))
	var later []record.Outgoing
	for _, o := range entries {
		var err error
		// requestID is the effect's own turn's; a broadcast's turns have one each, and its
		// lines carry the request id of the turn that sent it.
		requestID := o.CausedBy
		if o.Channel != "" {
			err = r.broadcast(ctx, o)
		} else {
			requestID = r.newRequestID()
			err = r.dispatch(ctx, o, requestID)
		}
		switch {
		case err == nil:
			done[o.Key] = true
		case !retryable(err):
			done[o.Key] = true
			r.log.Warn("effect failed", "request_id", requestID, "function", o.Function, "actor", o.Actor,
				"action", o.Action, "caused_by", o.CausedBy, "idempotency_key", o.Key, "err", err)
			r.metrics.effect(o.Function, "failed")
		case o.Attempts+1 >= maxOutboxAttempts:
			done[o.Key] = true
			r.log.Error("effect dropped after repeated failures", "request_id", requestID, "function", o.Function,
				"actor", o.Actor, "action", o.Action, "caused_by", o.CausedBy, "idempotency_key", o.Key, "dispatches", o.Attempts+1, "err", err)
			r.metrics.effect(o.Function, "dropped")
		default:
			o.Attempts++
			o.Due = r.clock.Now().Add(min(outboxBackoff<<(o.Attempts-1), outboxBackoffMax))
			later = append(later, o)
			r.metrics.effect(o.Function, "retry")
		}
	}
	err := r.updateRecord(context.Background(), src, func(rec *record.Record) bool {
		changed := rec.RemoveOutgoing(done) > 0
		for _, o := range later {
			changed = rec.UpdateOutgoing(o) || changed
		}
		return changed
	})
	if err != nil {
		// The entries stay in the outbox: the scheduler dispatches them again at their due time,
		// with the same keys, so the ones delivered now are not applied twice.
		r.log.Warn("effects delivered, but removing them from the outbox failed; they will be dispatched again (and applied once)",
			"function", src.Function, "actor", src.ID, "err", err)
	}
}

// dispatch runs one outbox entry as a turn of its target actor, with request id requestID,
// trying again a few times while it fails in a way that may pass.
func (r *Router) dispatch(ctx context.Context, o record.Outgoing, requestID string) error {
	fn, ok := r.backends.Function(o.Function)
	if !ok {
		return errorf(fasthttp.StatusNotFound, CodeUnknownFunction, "no function %q is deployed", o.Function)
	}
	call := &actorCall{
		fn: fn, key: statecache.Key{Function: o.Function, ID: o.Actor}, action: o.Action,
		payload: o.Payload, requestID: requestID, idemKey: o.Key,
		metadata: []metaPair{{"caused_by", o.CausedBy}},
	}
	_, err := r.invokeRetrying(ctx, call)
	if err == nil {
		r.metrics.effect(call.fn.Name, "ok")
	}
	return err
}

// retryable reports a call failure that may pass: a busy actor, no capacity or store, a
// timeout, a pod that could not be reached.
func retryable(err error) bool {
	switch statusOf(err) {
	case fasthttp.StatusTooManyRequests, fasthttp.StatusServiceUnavailable, fasthttp.StatusGatewayTimeout:
		return true
	}
	return errors.Is(err, errUnreachable)
}
