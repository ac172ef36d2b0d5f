package router

import (
	"context"
	"errors"
	"strconv"
	"time"

	"k8s.io/utils/clock"

	"github.com/knactor/knactor/statecache"
)

// Retries of an effect whose call failed for a reason that may pass (store or pods unavailable,
// a timeout, a busy actor). Each try carries the same idempotency key, so one that committed
// although its answer was lost is answered from the target's record, not applied again.
const (
	effectAttempts     = 4
	effectRetryBackoff = 200 * time.Millisecond
)

// effectKey is the idempotency key of the index-th effect of the turn that committed as commit:
// the same on every dispatch of that effect, and unique to it.
func effectKey(commit statecache.Commit, index int) string {
	return effectKeyPrefix + string(commit) + ":" + strconv.Itoa(index)
}

// runEffects starts the effects of a committed turn, each as a turn of its target actor, in
// order. Each carries an idempotency key derived from the turn's commit and its index, so it is
// applied once however often it is dispatched. A failure that may pass is retried a few times;
// then it is logged and counted. Delayed effects wait on the clock and are dropped if the router
// shuts down first (see docs/protocol.md).
func (r *Router) runEffects(cause *actorCall, commit statecache.Commit, effects []effect) {
	for i, e := range effects {
		fn, ok := r.backends.Function(e.Function)
		if !ok {
			r.log.Warn("effect dropped: unknown function", "function", e.Function, "cause", cause.requestID)
			r.metrics.effect(e.Function, "dropped")
			continue
		}
		payload := []byte(e.Payload)
		if !isSet(e.Payload) {
			payload = nil
		}
		call := &actorCall{
			fn: fn, key: statecache.Key{Function: e.Function, ID: e.Actor}, action: e.Action,
			payload: payload, requestID: r.newRequestID(), idemKey: effectKey(commit, i),
			metadata: []metaPair{{"caused_by", cause.requestID}},
		}
		delay := time.Duration(e.DelayMS) * time.Millisecond
		if delay == 0 {
			r.effects.Add(1)
			go r.runEffect(call)
			continue
		}
		r.timersMu.Lock()
		if r.closing.Load() {
			r.timersMu.Unlock()
			r.log.Warn("delayed effect dropped: router is shutting down", "function", e.Function, "actor", e.Actor, "cause", cause.requestID)
			r.metrics.effect(e.Function, "dropped")
			continue
		}
		r.effects.Add(1)
		var t clock.Timer
		t = r.clock.AfterFunc(delay, func() {
			r.timersMu.Lock()
			delete(r.timers, t)
			r.timersMu.Unlock()
			r.runEffect(call)
		})
		r.timers[t] = struct{}{}
		r.timersMu.Unlock()
	}
}

func (r *Router) runEffect(call *actorCall) {
	defer r.effects.Done()
	backoff := effectRetryBackoff
	for attempt := 1; ; attempt++ {
		call.fn = r.current(call.fn) // a delayed effect's function may have moved on meanwhile
		_, err := r.invoke(context.Background(), call)
		if err == nil {
			r.metrics.effect(call.fn.Name, "ok")
			return
		}
		if attempt < effectAttempts && retryable(err) {
			select {
			case <-r.clock.After(backoff):
				backoff *= 2
				continue
			case <-r.stopping:
			}
		}
		r.log.Warn("effect failed", "function", call.fn.Name, "actor", call.key.ID, "action", call.action,
			"request_id", call.requestID, "idempotency_key", call.idemKey, "attempts", attempt, "err", err)
		r.metrics.effect(call.fn.Name, "failed")
		return
	}
}

// retryable reports a call failure that may pass: a busy actor, no capacity or store, a
// timeout, a pod that could not be reached.
func retryable(err error) bool {
	switch statusOf(err) {
	case 429, 503, 504:
		return true
	}
	return errors.Is(err, errUnreachable)
}
