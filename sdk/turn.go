package sdk

import (
	"encoding/json"
	"fmt"
	"time"
)

// Turn is one invocation of an actor: its state, which the handler may change in place, and the
// invocation's details.
type Turn[S any] struct {
	// State is the actor's state: the stored state, or the zero value for a new actor. Changes are
	// stored when the turn commits. A new actor whose state is still the zero value after the turn
	// is not stored.
	State S

	// Function, Actor and Action name the function, the actor id and the action being invoked.
	Function, Actor, Action string
	// Version is the opaque version of the stored state; "" for a new actor.
	Version string
	// Metadata holds the router's metadata (request_id, attempt, deadline, the trace context's
	// traceparent, tracestate and baggage, ...) and the caller's X-Knactor-Meta-* headers,
	// keyed by lowercased name.
	Metadata map[string]string

	exists   bool
	deleted  bool
	effects  []Effect
	timers   []TimerInfo
	timerOps []timerChange

	contract    int
	channels    []string
	hop         *Target
	pipe        bool
	broadcasts  []Broadcast
	subscribe   []string
	unsubscribe []string
}

// Exists reports whether the actor had stored state when the turn began.
func (t *Turn[S]) Exists() bool { return t.exists }

// Delete deletes the actor's state when the turn commits; changes to State are then ignored.
// The actor's timers and channel subscriptions go with it; effects still run.
func (t *Turn[S]) Delete() { t.deleted = true }

// Effect asks the router to invoke e after the turn commits. Effects run at most once, and only for
// the run of the turn that commits.
func (t *Turn[S]) Effect(e Effect) { t.effects = append(t.effects, e) }

// Effect is an invocation that the router runs, as an ordinary call of the target actor, after the
// turn that emitted it commits.
type Effect struct {
	// Function is the target function; "" means the current function.
	Function string
	// Actor is the target actor id; required.
	Actor string
	// Action is the target action; required.
	Action string
	// Payload is the target's payload, encoded with encoding/json; nil sends null.
	Payload any
	// Delay postpones the invocation; 0 to MaxEffectDelay, in whole milliseconds.
	Delay time.Duration
}

// wireEffects validates and encodes the turn's effects.
func (t *Turn[S]) wireEffects() ([]wireEffect, error) {
	if len(t.effects) > MaxEffects {
		return nil, fmt.Errorf("%d effects, at most %d are allowed", len(t.effects), MaxEffects)
	}
	var out []wireEffect
	for i, e := range t.effects {
		we, err := e.wire()
		if err != nil {
			return nil, fmt.Errorf("effect %d: %w", i, err)
		}
		out = append(out, we)
	}
	return out, nil
}

// wire validates and encodes e.
func (e Effect) wire() (wireEffect, error) {
	switch {
	case !validActor(e.Actor):
		return wireEffect{}, fmt.Errorf("actor id must be 1 to %d bytes of UTF-8, got %q", maxActorBytes, e.Actor)
	case !validAction(e.Action):
		return wireEffect{}, fmt.Errorf("invalid action name %q", e.Action)
	case e.Delay < 0 || e.Delay > MaxEffectDelay:
		return wireEffect{}, fmt.Errorf("delay %v is outside 0 to %v", e.Delay, MaxEffectDelay)
	}
	payload, err := json.Marshal(e.Payload)
	if err != nil {
		return wireEffect{}, fmt.Errorf("encode payload: %w", err)
	}
	return wireEffect{
		Function: e.Function,
		Actor:    e.Actor,
		Action:   e.Action,
		Payload:  payload,
		DelayMS:  e.Delay.Milliseconds(),
	}, nil
}
