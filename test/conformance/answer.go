package conformance

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"regexp"
	"time"
	"unicode/utf8"
)

// Contract limits checked by the kit.
const (
	maxAnswerBytes = 4 << 20
	maxEffects     = 64
	maxDelayMS     = 86_400_000
	maxActorBytes  = 1024
)

var (
	actionRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,128}$`)
	codeRE   = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)
)

// Limits of contract version 2 (timers and workflows).
const (
	maxTimers        = 64
	minTimerEveryMS  = 100
	maxTimerDelayMS  = 366 * 24 * 3600 * 1000
	maxTimerPayload  = 64 << 10
	maxChannels      = 64
	maxChannelLength = 128
)

var channelRE = regexp.MustCompile(`^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$`)

// Answer is a function's answer to one invocation, checked against the contract's schema.
type Answer struct {
	// Status is the HTTP status and Body the raw body of the answer.
	Status int
	Body   []byte

	// Error is the error form; nil for a success answer, whose fields follow.
	Error *ErrorForm

	// State is the new state when the answer has a "state" field (JSON null included); nil when it
	// has none.
	State json.RawMessage
	// StateB64 is the decoded new binary state; nil when the answer has no state_b64.
	StateB64 []byte
	// Reply is the reply when the answer has a "reply" field; nil when it has none.
	Reply json.RawMessage
	// ReplyB64 is the decoded binary reply; nil when the answer has no reply_b64.
	ReplyB64 []byte
	// Delete reports whether the answer deletes the actor's state.
	Delete bool
	// Effects are the invocations the answer asks for after the turn commits.
	Effects []Effect
	// Timers are the timer changes the answer asks for, in order.
	Timers []TimerChange
	// Forward and Pipe hand the call on to another actor (at most one is set).
	Forward, Pipe *Target
	// Broadcasts are the messages to channels' subscribers.
	Broadcasts []Broadcast
	// Subscribe and Unsubscribe are the channels the actor joins and leaves.
	Subscribe, Unsubscribe []string
}

// TimerChange is one entry of an answer's timers: a set, or a cancel.
type TimerChange struct {
	Name    string          `json:"name"`
	Cancel  bool            `json:"cancel"`
	Action  string          `json:"action"`
	Payload json.RawMessage `json:"payload"`
	InMS    *int64          `json:"in_ms"`
	At      *string         `json:"at"`
	EveryMS int64           `json:"every_ms"`
}

// Target is the actor and action of a forward or a pipe.
type Target struct {
	Function string `json:"function"`
	Actor    string `json:"actor"`
	Action   string `json:"action"`
}

// Broadcast is one entry of an answer's broadcast list.
type Broadcast struct {
	Channel string          `json:"channel"`
	Action  string          `json:"action"`
	Payload json.RawMessage `json:"payload"`
}

// ErrorForm is the error form of an answer: {"error":{"status","code","message"}}.
type ErrorForm struct {
	Status  int    `json:"status"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Effect is one entry of an answer's effects.
type Effect struct {
	Function string          `json:"function"`
	Actor    string          `json:"actor"`
	Action   string          `json:"action"`
	Payload  json.RawMessage `json:"payload"`
	DelayMS  int64           `json:"delay_ms"`
}

// parseAnswer checks an HTTP answer against the contract's schema and decodes it.
func parseAnswer(status int, header http.Header, body []byte) (*Answer, error) {
	if status >= http.StatusInternalServerError {
		return nil, fmt.Errorf("function failure: HTTP %d: %s", status, clip(body))
	}
	if len(body) > maxAnswerBytes {
		return nil, fmt.Errorf("answer of %d bytes exceeds %d", len(body), maxAnswerBytes)
	}
	if mt, _, err := mime.ParseMediaType(header.Get("Content-Type")); err != nil || mt != "application/json" {
		return nil, fmt.Errorf("Content-Type %q, want application/json", header.Get("Content-Type"))
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil || fields == nil {
		return nil, fmt.Errorf("body is not a JSON object: %s", clip(body))
	}
	a := &Answer{Status: status, Body: body}
	if raw := fields["error"]; !isNull(raw) {
		e, err := parseErrorForm(raw)
		if err != nil {
			return nil, fmt.Errorf("error form: %w", err)
		}
		if status != http.StatusOK && status != e.Status {
			return nil, fmt.Errorf("HTTP status %d differs from the error form's status %d", status, e.Status)
		}
		a.Error = e
		return a, nil
	}
	if status != http.StatusOK {
		return nil, fmt.Errorf("HTTP status %d without the error form: %s", status, clip(body))
	}
	if err := a.parseSuccess(fields); err != nil {
		return nil, err
	}
	return a, nil
}

// parseSuccess checks and decodes the fields of a success answer into a.
func (a *Answer) parseSuccess(fields map[string]json.RawMessage) error {
	a.State, a.Reply = fields["state"], fields["reply"]
	var errs []error
	errs = append(errs,
		decodeField(fields, "state_b64", &a.StateB64),
		decodeField(fields, "reply_b64", &a.ReplyB64),
		decodeField(fields, "delete", &a.Delete),
		decodeField(fields, "effects", &a.Effects),
		decodeField(fields, "timers", &a.Timers),
		decodeField(fields, "forward", &a.Forward),
		decodeField(fields, "pipe", &a.Pipe),
		decodeField(fields, "broadcast", &a.Broadcasts),
		decodeField(fields, "subscribe", &a.Subscribe),
		decodeField(fields, "unsubscribe", &a.Unsubscribe),
	)
	if err := errors.Join(errs...); err != nil {
		return err
	}
	switch {
	case a.State != nil && a.StateB64 != nil:
		return errors.New("both state and state_b64 are set")
	case a.Reply != nil && a.ReplyB64 != nil:
		return errors.New("both reply and reply_b64 are set")
	case a.Delete && (a.State != nil || a.StateB64 != nil):
		return errors.New("delete is true and a new state is set")
	case len(a.Effects) > maxEffects:
		return fmt.Errorf("%d effects, at most %d are allowed", len(a.Effects), maxEffects)
	}
	for i, e := range a.Effects {
		if err := e.check(); err != nil {
			return fmt.Errorf("effect %d: %w", i, err)
		}
	}
	return a.checkWorkflow()
}

// checkWorkflow checks the fields of contract version 2: timers, forward and pipe, broadcasts
// and subscriptions.
func (a *Answer) checkWorkflow() error {
	if len(a.Timers) > maxTimers {
		return fmt.Errorf("%d timer changes, at most %d are allowed", len(a.Timers), maxTimers)
	}
	for i, t := range a.Timers {
		if err := t.check(); err != nil {
			return fmt.Errorf("timer %d: %w", i, err)
		}
	}
	if a.Forward != nil && a.Pipe != nil {
		return errors.New("both forward and pipe are set")
	}
	for kind, t := range map[string]*Target{"forward": a.Forward, "pipe": a.Pipe} {
		if t == nil {
			continue
		}
		if err := (Effect{Function: t.Function, Actor: t.Actor, Action: t.Action}).check(); err != nil {
			return fmt.Errorf("%s: %w", kind, err)
		}
	}
	if n := len(a.Effects) + len(a.Broadcasts); n > maxEffects {
		return fmt.Errorf("%d effects and broadcasts, at most %d are allowed", n, maxEffects)
	}
	for i, b := range a.Broadcasts {
		if !channelRE.MatchString(b.Channel) || !actionRE.MatchString(b.Action) {
			return fmt.Errorf("broadcast %d: invalid channel %q or action %q", i, b.Channel, b.Action)
		}
	}
	if len(a.Subscribe) > maxChannels || len(a.Unsubscribe) > maxChannels {
		return fmt.Errorf("more than %d channels joined or left", maxChannels)
	}
	for _, c := range append(append([]string(nil), a.Subscribe...), a.Unsubscribe...) {
		if !channelRE.MatchString(c) {
			return fmt.Errorf("invalid channel name %q (1 to %d characters of [A-Za-z0-9_.-], not starting with '.')", c, maxChannelLength)
		}
	}
	return nil
}

// check checks one timer change.
func (t TimerChange) check() error {
	switch {
	case !actionRE.MatchString(t.Name):
		return fmt.Errorf("invalid timer name %q", t.Name)
	case t.Cancel:
		return nil
	case !actionRE.MatchString(t.Action):
		return fmt.Errorf("timer %q: invalid action %q", t.Name, t.Action)
	case t.InMS != nil && t.At != nil:
		return fmt.Errorf("timer %q: in_ms and at are exclusive", t.Name)
	case t.InMS == nil && t.At == nil && t.EveryMS == 0:
		return fmt.Errorf("timer %q: needs in_ms, at or every_ms", t.Name)
	case t.InMS != nil && (*t.InMS < 0 || *t.InMS > maxTimerDelayMS):
		return fmt.Errorf("timer %q: in_ms %d is outside 0..%d", t.Name, *t.InMS, maxTimerDelayMS)
	case t.EveryMS != 0 && (t.EveryMS < minTimerEveryMS || t.EveryMS > maxTimerDelayMS):
		return fmt.Errorf("timer %q: every_ms %d is outside %d..%d", t.Name, t.EveryMS, minTimerEveryMS, maxTimerDelayMS)
	case len(t.Payload) > maxTimerPayload:
		return fmt.Errorf("timer %q: payload over %d bytes", t.Name, maxTimerPayload)
	}
	if t.At != nil {
		if _, err := time.Parse(time.RFC3339Nano, *t.At); err != nil {
			return fmt.Errorf("timer %q: at is not an RFC 3339 time: %v", t.Name, err)
		}
	}
	return nil
}

// check checks an effect's fields.
func (e Effect) check() error {
	switch {
	case e.Actor == "" || len(e.Actor) > maxActorBytes || !utf8.ValidString(e.Actor):
		return fmt.Errorf("actor id must be 1 to %d bytes of UTF-8, got %q", maxActorBytes, e.Actor)
	case !actionRE.MatchString(e.Action):
		return fmt.Errorf("invalid action name %q", e.Action)
	case e.DelayMS < 0 || e.DelayMS > maxDelayMS:
		return fmt.Errorf("delay_ms %d is outside 0..%d", e.DelayMS, maxDelayMS)
	}
	return nil
}

// parseErrorForm decodes and checks the value of an answer's "error" field.
func parseErrorForm(raw json.RawMessage) (*ErrorForm, error) {
	var e struct {
		Status  *int    `json:"status"`
		Code    *string `json:"code"`
		Message *string `json:"message"`
	}
	if err := json.Unmarshal(raw, &e); err != nil {
		return nil, err
	}
	switch {
	case e.Status == nil:
		return nil, errors.New("status is missing")
	case *e.Status < http.StatusBadRequest || *e.Status >= http.StatusInternalServerError:
		return nil, fmt.Errorf("status %d is outside 400..499", *e.Status)
	case e.Code == nil || !codeRE.MatchString(*e.Code):
		return nil, fmt.Errorf("code must be 1 to 64 characters of [a-z0-9_] starting with a letter, got %s", clip(raw))
	}
	f := &ErrorForm{Status: *e.Status, Code: *e.Code}
	if e.Message != nil {
		f.Message = *e.Message
	}
	return f, nil
}

// decodeField decodes fields[name] into dst unless it is absent or null.
func decodeField(fields map[string]json.RawMessage, name string, dst any) error {
	raw := fields[name]
	if isNull(raw) {
		return nil
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		return fmt.Errorf("field %q: %w", name, err)
	}
	return nil
}

// isNull reports whether raw is absent or the JSON literal null.
func isNull(raw json.RawMessage) bool {
	return raw == nil || string(raw) == "null"
}

// canonical returns the JSON body with object keys sorted and whitespace removed, so that equal
// answers compare equal as bytes.
func canonical(body []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return json.Marshal(v)
}

// clip shortens body for an error message.
func clip(body []byte) string {
	const limit = 200
	body = bytes.TrimSpace(body)
	if len(body) > limit {
		return string(body[:limit]) + "..."
	}
	return string(body)
}
