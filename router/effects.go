package router

import (
	"context"
	"time"

	"k8s.io/utils/clock"

	"github.com/knactor/knactor/statecache"
)

// runEffects starts the effects of a committed turn, each as a turn of its target actor, in
// order. They run at most once: a failure is logged and counted, never retried. Delayed effects
// wait on the clock and are dropped if the router shuts down first (see docs/protocol.md).
func (r *Router) runEffects(cause *actorCall, effects []effect) {
	for _, e := range effects {
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
			payload: payload, requestID: r.newRequestID(),
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
	call.fn = r.current(call.fn) // a delayed effect's function may have moved on meanwhile
	if _, err := r.invoke(context.Background(), call); err != nil {
		r.log.Warn("effect failed", "function", call.fn.Name, "actor", call.key.ID, "action", call.action,
			"request_id", call.requestID, "err", err)
		r.metrics.effect(call.fn.Name, "failed")
		return
	}
	r.metrics.effect(call.fn.Name, "ok")
}
