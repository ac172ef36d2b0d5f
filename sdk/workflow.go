package sdk

import (
	"encoding/json"
	"errors"
	"fmt"
)

// MaxChannels is the most channels one actor may subscribe to.
const MaxChannels = 64

// maxChannelLen is the longest channel name.
const maxChannelLen = 128

// Target names an actor's action that a turn hands its call on to (Forward, Pipe).
type Target struct {
	// Function is the target function; "" means the current function.
	Function string
	// Actor is the target actor id; required.
	Actor string
	// Action is the target action; required.
	Action string
}

// Forward hands the call on when the turn commits: the target runs with the caller's payload,
// and its reply (or error) is the caller's reply; the turn's own reply is dropped. State changes,
// effects and timers of the turn commit as usual. A chain of forwards and pipes may be at most
// 8 hops long and must not come back to an actor it passed through.
func (t *Turn[S]) Forward(to Target) { t.hop, t.pipe = &to, false }

// Pipe hands the turn's reply on when it commits: the target runs with the reply as its
// payload, and its reply (or error) is the caller's reply.
func (t *Turn[S]) Pipe(to Target) { t.hop, t.pipe = &to, true }

// Broadcast is a message to the actors subscribed to a channel: Action runs with Payload as a
// turn of every subscriber, once each (at least once delivered, applied once), after the turn
// commits; WebSocket clients of the channel receive it too.
type Broadcast struct {
	// Channel is the channel's name: 1 to 128 characters of [A-Za-z0-9_.-], not starting with '.'.
	Channel string
	// Action is the action each subscriber runs; required.
	Action string
	// Payload is the action's payload, encoded with encoding/json; nil sends null.
	Payload any
}

// Broadcast sends b when the turn commits. Broadcasts count towards MaxEffects with effects.
func (t *Turn[S]) Broadcast(b Broadcast) { t.broadcasts = append(t.broadcasts, b) }

// Subscribe subscribes the actor to channel when the turn commits.
func (t *Turn[S]) Subscribe(channel string) { t.subscribe = append(t.subscribe, channel) }

// Unsubscribe leaves channel when the turn commits.
func (t *Turn[S]) Unsubscribe(channel string) { t.unsubscribe = append(t.unsubscribe, channel) }

// Channels returns the channels the actor subscribed to when the turn began.
func (t *Turn[S]) Channels() []string { return t.channels }

// Contract returns the version of the function contract the router speaks (1 before timers and
// workflows existed; see docs/protocol.md).
func (t *Turn[S]) Contract() int { return t.contract }

// wireTarget is a forward or pipe target as the contract encodes it.
type wireTarget struct {
	Function string `json:"function,omitzero"`
	Actor    string `json:"actor"`
	Action   string `json:"action"`
}

// wireBroadcast is a broadcast as the contract encodes it.
type wireBroadcast struct {
	Channel string          `json:"channel"`
	Action  string          `json:"action"`
	Payload json.RawMessage `json:"payload"`
}

// validChannel reports whether name is a channel name.
func validChannel(name string) bool {
	if name == "" || len(name) > maxChannelLen || name[0] == '.' {
		return false
	}
	for _, c := range []byte(name) {
		if !isAlnum(c) && c != '_' && c != '.' && c != '-' {
			return false
		}
	}
	return true
}

// wireWorkflow validates the turn's hop, broadcasts and subscriptions and puts them in ans.
func (t *Turn[S]) wireWorkflow(ans *answer) error {
	if h := t.hop; h != nil {
		if !validActor(h.Actor) || !validAction(h.Action) {
			return fmt.Errorf("forward/pipe target %+v: needs an actor id and a valid action", *h)
		}
		w := &wireTarget{Function: h.Function, Actor: h.Actor, Action: h.Action}
		if t.pipe {
			ans.Pipe = w
		} else {
			ans.Forward = w
		}
	}
	if len(t.broadcasts)+len(t.effects) > MaxEffects {
		return fmt.Errorf("%d effects and broadcasts, at most %d are allowed", len(t.broadcasts)+len(t.effects), MaxEffects)
	}
	for i, b := range t.broadcasts {
		if !validChannel(b.Channel) || !validAction(b.Action) {
			return fmt.Errorf("broadcast %d: invalid channel %q or action %q", i, b.Channel, b.Action)
		}
		payload, err := json.Marshal(b.Payload)
		if err != nil {
			return fmt.Errorf("broadcast %d: encode payload: %w", i, err)
		}
		ans.Broadcast = append(ans.Broadcast, wireBroadcast{Channel: b.Channel, Action: b.Action, Payload: payload})
	}
	for _, c := range append(append([]string(nil), t.subscribe...), t.unsubscribe...) {
		if !validChannel(c) {
			return fmt.Errorf("invalid channel name %q", c)
		}
	}
	if len(t.subscribe) > MaxChannels || len(t.unsubscribe) > MaxChannels {
		return errors.New("too many channels in one turn")
	}
	ans.Subscribe, ans.Unsubscribe = t.subscribe, t.unsubscribe
	return nil
}
