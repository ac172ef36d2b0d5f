package sdk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime/debug"
)

// Actor is a stateful function: a set of named actions over an actor state of type S.
//
// An Actor is an http.Handler serving the function contract: POST /v1/invoke and GET /healthz.
// Create one with NewActor and register every action with Handle before serving it.
type Actor[S any] struct {
	mux     *http.ServeMux
	actions map[string]action[S]
}

// action runs one invocation: it decodes the payload, calls the handler and encodes its reply.
type action[S any] func(ctx context.Context, t *Turn[S], env *envelope) (value, error)

// NewActor returns an Actor with state type S and no actions.
func NewActor[S any]() *Actor[S] {
	a := &Actor[S]{mux: http.NewServeMux(), actions: make(map[string]action[S])}
	a.mux.HandleFunc("POST /v1/invoke", a.invoke)
	a.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusOK)
	})
	return a
}

// Handle registers fn as the handler of the named action of a. The payload is decoded into P from
// JSON (or, when P is []byte, receives the caller's bytes), and the reply R is encoded as JSON (or,
// when R is []byte, sent as raw bytes). The ctx passed to fn is done when the router's deadline
// for the turn passes or the router hangs up, and carries the router's trace context (see
// "Tracing" in the package documentation).
//
// Handle panics if the name is not 1 to 128 characters of [A-Za-z0-9_.-], if the action is already
// registered or if fn is nil. It must not be called while a is serving.
func Handle[S, P, R any](a *Actor[S], name string, fn func(ctx context.Context, t *Turn[S], payload P) (R, error)) {
	switch {
	case !validAction(name):
		panic(fmt.Sprintf("sdk: invalid action name %q", name))
	case a.actions[name] != nil:
		panic(fmt.Sprintf("sdk: action %q registered twice", name))
	case fn == nil:
		panic(fmt.Sprintf("sdk: nil handler for action %q", name))
	}
	a.actions[name] = func(ctx context.Context, t *Turn[S], env *envelope) (value, error) {
		var p P
		if err := decodeValue(env.Payload, env.PayloadB64, &p); err != nil {
			return value{}, Errorf(http.StatusBadRequest, "bad_payload", "payload of action %q: %w", name, err)
		}
		r, err := fn(ctx, t, p)
		if err != nil {
			return value{}, err
		}
		v, err := encodeValue(r)
		if err != nil {
			return value{}, fmt.Errorf("encode reply of action %q: %w", name, err)
		}
		return v, nil
	}
}

// ServeHTTP serves the function contract.
func (a *Actor[S]) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mux.ServeHTTP(w, r)
}

// invoke serves POST /v1/invoke.
func (a *Actor[S]) invoke(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxEnvelopeBytes))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		writeError(w, Errorf(http.StatusRequestEntityTooLarge, "too_large", "envelope exceeds %d bytes", tooLarge.Limit), nil)
		return
	case err != nil:
		writeError(w, Errorf(http.StatusBadRequest, "bad_envelope", "read envelope: %w", err), nil)
		return
	}
	env, err := parseEnvelope(body)
	if err != nil {
		writeError(w, Errorf(http.StatusBadRequest, "bad_envelope", "%w", err), nil)
		return
	}
	act := a.actions[env.Action]
	if act == nil {
		writeError(w, Errorf(http.StatusNotFound, "unknown_action", "unknown action %q", env.Action), env)
		return
	}
	ans, err := a.run(r.Context(), env, act)
	if err != nil {
		writeError(w, err, env)
		return
	}
	writeJSON(w, http.StatusOK, ans, env)
}

// run runs one turn and builds its answer.
func (a *Actor[S]) run(ctx context.Context, env *envelope, act action[S]) (*answer, error) {
	t := &Turn[S]{
		Function: env.Function,
		Actor:    env.Actor,
		Action:   env.Action,
		Version:  env.Version,
		Metadata: env.Metadata,
		exists:   env.exists(),
		timers:   env.Timers,
		channels: env.Channels,
		contract: max(env.Contract, 1),
	}
	if err := decodeValue(env.State, env.StateB64, &t.State); err != nil {
		return nil, Errorf(http.StatusUnprocessableEntity, "bad_state", "stored state does not fit the actor's state type: %w", err)
	}
	before, err := encodeValue(t.State)
	if err != nil {
		return nil, fmt.Errorf("encode state: %w", err)
	}
	if deadline, ok := env.deadline(); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline)
		defer cancel()
	}
	ctx = continueTrace(ctx, env.Metadata)
	reply, err := call(ctx, t, env, act)
	if err != nil {
		return nil, err
	}
	effects, err := t.wireEffects()
	if err != nil {
		return nil, err
	}
	timers, err := t.wireTimers()
	if err != nil {
		return nil, err
	}
	ans := &answer{Reply: reply.json, ReplyB64: reply.binary, Effects: effects, Timers: timers}
	if err := t.wireWorkflow(ans); err != nil {
		return nil, err
	}
	if t.deleted {
		ans.Delete = true
		return ans, nil
	}
	after, err := encodeValue(t.State)
	if err != nil {
		return nil, fmt.Errorf("encode state: %w", err)
	}
	if !after.equal(before) {
		ans.State, ans.StateB64 = after.json, after.binary
	}
	return ans, nil
}

// call runs act, turning a panic into an error.
func call[S any](ctx context.Context, t *Turn[S], env *envelope, act action[S]) (v value, err error) {
	defer func() {
		if r := recover(); r != nil {
			slog.Error("sdk: handler panicked", env.logArgs("panic", r, "stack", string(debug.Stack()))...)
			err = fmt.Errorf("action %q panicked: %v", env.Action, r)
		}
	}()
	return act(ctx, t, env)
}

// writeError answers with the error form of err: its own status for a valid *Error, else 500.
// env is the call's envelope, nil before one was read (its request id and actor go into the log).
func writeError(w http.ResponseWriter, err error, env *envelope) {
	var e *Error
	if !errors.As(err, &e) || !e.valid() {
		slog.Error("sdk: function failed", env.logArgs("err", err)...)
		e = &Error{Status: http.StatusInternalServerError, Code: "internal_error", Message: err.Error()}
	}
	writeJSON(w, e.Status, errorAnswer{Error: errorBody{Status: e.Status, Code: e.Code, Message: e.Message}}, env)
}

// writeJSON answers with status and the JSON encoding of v, for the call of env if one.
func writeJSON(w http.ResponseWriter, status int, v any, env *envelope) {
	body, err := json.Marshal(v)
	if err != nil {
		slog.Error("sdk: encode answer", env.logArgs("err", err)...)
		status = http.StatusInternalServerError
		body = []byte(`{"error":{"status":500,"code":"internal_error","message":"encode answer"}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
