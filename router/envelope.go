package router

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"time"

	"github.com/knactor/knactor/router/record"
	"github.com/knactor/knactor/statecache"
	"github.com/valyala/fasthttp"
)

// Limits of the function contract (docs/protocol.md).
const (
	maxActionLen = 128
	// maxEffectDelay bounds a delayed effect. It waits in the actor's durable outbox; anything
	// further off is a timer's job (a timer can be cancelled and is shown with the actor).
	maxEffectDelay = 24 * time.Hour

	// MaxTimers bounds the timers of one actor: each is carried in every write of its record,
	// and a few dozen named schedules is what an actor (an auction, a session, a reminder list)
	// needs; more is a sign the schedule belongs in the state.
	MaxTimers = 64
	// MaxOutbox bounds the effects and broadcasts waiting in one actor's outbox (delayed, or not
	// delivered yet): each is carried in every write of its record and held with it in the
	// cache. Sixteen turns of the most effects a turn may send; a turn that would go past it is
	// refused (503 no_capacity) until deliveries make room.
	MaxOutbox = 1024
	// MinTimerInterval is the shortest period of a repeating timer: each firing is a turn and a
	// durable write, and ten a second per actor is plenty for anything that should be a timer.
	MinTimerInterval = 100 * time.Millisecond
	// MaxTimerDelay is the furthest a timer may be set ahead, and its longest period.
	MaxTimerDelay = 366 * 24 * time.Hour
	// MaxTimerPayloadBytes bounds a timer's payload, stored with the actor's record.
	MaxTimerPayloadBytes = 64 << 10

	// MaxChannels bounds the channels one actor subscribes to: each is carried in every write
	// of its record and is an index entry in the store.
	MaxChannels = 64
	// MaxHops bounds a chain of forwards and pipes: each hop is a turn the caller waits for, and
	// eight is more than any workflow that should answer one request needs.
	MaxHops = 8
)

var errorCodeRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)

// validAction reports whether name is an action name: 1-128 of [A-Za-z0-9_.-].
func validAction(name string) bool {
	if name == "" || len(name) > maxActionLen || name == "." || name == ".." {
		return false // "." and "..": path segments with a meaning of their own to every URL parser
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

// envelope is the input of one turn, as POST /v1/invoke sends it.
type envelope struct {
	function, actor, action string
	state                   statecache.Entry
	payload                 []byte
	metadata                []metaPair
	timers                  []record.Timer // the actor's timers, sent so the function can see them
	channels                []string       // the channels the actor subscribes to
	// trace is the part of metadata that holds the trace context (traceparent, ...), which
	// goes in the invocation's HTTP headers too.
	trace []metaPair
	// deadline is the call's deadline, sent as metadata "deadline" (formatted straight into the
	// body); zero: none.
	deadline time.Time
}

// ContractVersion is the version of the function contract the router speaks, sent in every
// envelope: 2 added timers, the durable outbox and workflows (forward, pipe, broadcast,
// channels) to version 1.
const ContractVersion = 2

type metaPair struct{ key, value string }

// appendJSON appends the envelope's JSON to b. State and payload go as JSON when they are valid
// JSON and as base64 otherwise; the version is sent only for an actor that has state.
func (e *envelope) appendJSON(b []byte) []byte {
	b = append(b, `{"contract":`...)
	b = strconv.AppendInt(b, ContractVersion, 10)
	b = append(b, `,"function":`...)
	b = appendJSONString(b, e.function)
	b = append(b, `,"actor":`...)
	b = appendJSONString(b, e.actor)
	b = append(b, `,"action":`...)
	b = appendJSONString(b, e.action)
	if e.state.Exists {
		b = appendValue(b, "state", e.state.Value)
		b = append(b, `,"version":`...)
		b = appendJSONString(b, string(e.state.Version))
	} else {
		b = append(b, `,"version":""`...)
	}
	if len(e.payload) == 0 {
		b = append(b, `,"payload":null`...)
	} else {
		b = appendValue(b, "payload", e.payload)
	}
	if len(e.timers) > 0 {
		b = append(b, `,"timers":`...)
		b = appendTimers(b, e.timers, false)
	}
	if len(e.channels) > 0 {
		b = append(b, `,"channels":`...)
		b = appendStrings(b, e.channels)
	}
	b = append(b, `,"metadata":{`...)
	if !e.deadline.IsZero() {
		b = append(b, `"deadline":"`...)
		b = e.deadline.UTC().AppendFormat(b, time.RFC3339Nano)
		b = append(b, '"')
	}
	for i, m := range e.metadata {
		if i > 0 || !e.deadline.IsZero() {
			b = append(b, ',')
		}
		b = appendJSONString(b, m.key)
		b = append(b, ':')
		b = appendJSONString(b, m.value)
	}
	return append(b, "}}"...)
}

// appendStrings appends ss as a JSON list.
func appendStrings(b []byte, ss []string) []byte {
	b = append(b, '[')
	for i, s := range ss {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, s)
	}
	return append(b, ']')
}

// appendTimers appends timers as the contract shows them: a JSON list of
// {"name","due","every_ms","action"} (and "payload" when withPayload).
func appendTimers(b []byte, timers []record.Timer, withPayload bool) []byte {
	b = append(b, '[')
	for i, t := range timers {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"name":`...)
		b = appendJSONString(b, t.Name)
		b = append(b, `,"due":`...)
		b = appendJSONString(b, t.Due.UTC().Format(time.RFC3339Nano))
		if t.Every > 0 {
			b = append(b, `,"every_ms":`...)
			b = strconv.AppendInt(b, t.Every.Milliseconds(), 10)
		}
		b = append(b, `,"action":`...)
		b = appendJSONString(b, t.Action)
		if withPayload {
			b = append(b, `,"payload":`...)
			if t.Payload == nil {
				b = append(b, "null"...)
			} else {
				b = append(b, t.Payload...)
			}
		}
		b = append(b, '}')
	}
	return append(b, ']')
}

// appendValue appends ,"name":<v> when v is valid JSON, else ,"name_b64":"<base64 of v>".
func appendValue(b []byte, name string, v []byte) []byte {
	b = append(b, ',', '"')
	b = append(b, name...)
	if json.Valid(v) {
		b = append(b, `":`...)
		return append(b, v...)
	}
	b = append(b, `_b64":"`...)
	b = base64.StdEncoding.AppendEncode(b, v)
	return append(b, '"')
}

// answer is a function's answer to one invocation, as the contract defines it. A null field
// means the same as an absent one, except state (an explicit null is stored).
type answer struct {
	State     json.RawMessage `json:"state"`
	StateB64  *string         `json:"state_b64"`
	Reply     json.RawMessage `json:"reply"`
	ReplyB64  *string         `json:"reply_b64"`
	Delete    *bool           `json:"delete"`
	Effects   []effect        `json:"effects"`
	Timers    []timerOp       `json:"timers"`
	Error     *functionError  `json:"error"`
	Forward   *hopTarget      `json:"forward"`
	Pipe      *hopTarget      `json:"pipe"`
	Broadcast []broadcastOp   `json:"broadcast"`
	Subscribe []string        `json:"subscribe"`
	Leave     []string        `json:"unsubscribe"`
}

// hopTarget names the actor and action a forward or a pipe hands the call on to.
type hopTarget struct {
	Function string `json:"function"`
	Actor    string `json:"actor"`
	Action   string `json:"action"`
}

// broadcastOp runs Action with Payload as a turn of every actor subscribed to Channel.
type broadcastOp struct {
	Channel string          `json:"channel"`
	Action  string          `json:"action"`
	Payload json.RawMessage `json:"payload"`
}

// effect is a follow-up invocation that runs once the turn that asked for it commits.
type effect struct {
	Function string          `json:"function"`
	Actor    string          `json:"actor"`
	Action   string          `json:"action"`
	Payload  json.RawMessage `json:"payload"`
	DelayMS  int64           `json:"delay_ms"`
}

// timerOp sets or cancels one of the actor's timers. A set names the action, and when it is
// first due: in_ms from now, at an RFC 3339 time, or (for a repeating timer without either)
// every_ms from now.
type timerOp struct {
	Name    string          `json:"name"`
	Cancel  bool            `json:"cancel"`
	Action  string          `json:"action"`
	Payload json.RawMessage `json:"payload"`
	InMS    *int64          `json:"in_ms"`
	At      *string         `json:"at"`
	EveryMS int64           `json:"every_ms"`

	at time.Time // At, parsed
}

// validate checks op against the contract's limits.
func (op *timerOp) validate() error {
	switch {
	case !validAction(op.Name):
		return fmt.Errorf("name %q must be 1-%d characters of [A-Za-z0-9_.-]", op.Name, maxActionLen)
	case op.Cancel:
		return nil
	case !validAction(op.Action):
		return fmt.Errorf("timer %q: invalid action %q", op.Name, op.Action)
	case op.InMS != nil && op.At != nil:
		return fmt.Errorf("timer %q: in_ms and at are exclusive", op.Name)
	case op.InMS == nil && op.At == nil && op.EveryMS == 0:
		return fmt.Errorf("timer %q: needs in_ms, at or every_ms", op.Name)
	case op.InMS != nil && (*op.InMS < 0 || time.Duration(*op.InMS)*time.Millisecond > MaxTimerDelay):
		return fmt.Errorf("timer %q: in_ms %d is outside 0..%d", op.Name, *op.InMS, MaxTimerDelay.Milliseconds())
	case op.EveryMS != 0 && (time.Duration(op.EveryMS)*time.Millisecond < MinTimerInterval || time.Duration(op.EveryMS)*time.Millisecond > MaxTimerDelay):
		return fmt.Errorf("timer %q: every_ms %d is outside %d..%d", op.Name, op.EveryMS, MinTimerInterval.Milliseconds(), MaxTimerDelay.Milliseconds())
	case len(op.Payload) > MaxTimerPayloadBytes:
		return fmt.Errorf("timer %q: payload is %d bytes, over %d", op.Name, len(op.Payload), MaxTimerPayloadBytes)
	}
	if op.At != nil {
		at, err := time.Parse(time.RFC3339Nano, *op.At)
		if err != nil {
			return fmt.Errorf("timer %q: at is not an RFC 3339 time: %v", op.Name, err)
		}
		op.at = at
	}
	return nil
}

// timer returns the timer op sets, as of now. A time further off than MaxTimerDelay is an error.
func (op *timerOp) timer(now time.Time) (record.Timer, error) {
	t := record.Timer{Name: op.Name, Action: op.Action, Every: time.Duration(op.EveryMS) * time.Millisecond}
	if isSet(op.Payload) {
		t.Payload = op.Payload
	}
	switch {
	case op.InMS != nil:
		t.Due = now.Add(time.Duration(*op.InMS) * time.Millisecond)
	case op.At != nil:
		t.Due = op.at
	default:
		t.Due = now.Add(t.Every)
	}
	if t.Due.Sub(now) > MaxTimerDelay {
		return t, fmt.Errorf("timer %q: at %s is more than %v ahead", op.Name, *op.At, MaxTimerDelay)
	}
	return t, nil
}

type functionError struct {
	Status  int    `json:"status"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

// outcome is a validated answer: what to store, what to reply, what to run next.
type outcome struct {
	newState   []byte // nil: leave the state as it is
	delete     bool
	reply      []byte
	replyIsRaw bool // reply holds bytes from reply_b64, not JSON
	effects    []effect
	timers     []timerOp // sets and cancels, in order
	hop        *hop      // forward or pipe: the call goes on to another actor
	broadcasts []broadcastOp
	subscribe  []string
	leave      []string
	fnErr      *apiError // the function answered with the error form
}

// parseAnswer validates a function's answer body. Anything that breaks the contract is a 502
// bad_function_reply; the error form becomes the status and code the function chose. The common
// answer's state and reply go in room when they fit (parseCommonAnswer).
func parseAnswer(body []byte, self string, maxState, maxEffects int, room []byte) (outcome, error) {
	if o, ok := parseCommonAnswer(body, maxState, room); ok {
		return o, nil
	}
	return parseFullAnswer(body, self, maxState, maxEffects)
}

// parseFullAnswer is parseAnswer with encoding/json, for every shape of answer.
func parseFullAnswer(body []byte, self string, maxState, maxEffects int) (outcome, error) {
	var a answer
	if err := json.Unmarshal(body, &a); err != nil {
		return outcome{}, badReply("answer is not a JSON object of the contract: %v", err)
	}
	if a.Error != nil {
		e := a.Error
		if e.Status < fasthttp.StatusBadRequest || e.Status >= fasthttp.StatusInternalServerError || !errorCodeRE.MatchString(e.Code) {
			return outcome{}, badReply("error form needs a status in 400..499 and a snake_case code, got status %d code %q", e.Status, e.Code)
		}
		msg := e.Message
		if msg == "" {
			msg = e.Code
		}
		return outcome{fnErr: &apiError{status: e.Status, code: e.Code, message: msg}}, nil
	}
	var o outcome
	switch {
	case a.State != nil && a.StateB64 != nil:
		return outcome{}, badReply("answer has both state and state_b64")
	case a.State != nil:
		o.newState = a.State
	case a.StateB64 != nil:
		s, err := base64.StdEncoding.DecodeString(*a.StateB64)
		if err != nil {
			return outcome{}, badReply("state_b64 is not standard base64: %v", err)
		}
		o.newState = s
	}
	if a.Delete != nil && *a.Delete {
		if o.newState != nil {
			return outcome{}, badReply("answer both sets state and deletes it")
		}
		o.delete = true
	}
	if len(o.newState) > maxState {
		return outcome{}, badReply("new state is %d bytes, over the limit of %d", len(o.newState), maxState)
	}
	switch {
	case isSet(a.Reply) && a.ReplyB64 != nil:
		return outcome{}, badReply("answer has both reply and reply_b64")
	case a.ReplyB64 != nil:
		r, err := base64.StdEncoding.DecodeString(*a.ReplyB64)
		if err != nil {
			return outcome{}, badReply("reply_b64 is not standard base64: %v", err)
		}
		o.reply, o.replyIsRaw = r, true
	case a.Reply != nil:
		o.reply = a.Reply
	default:
		o.reply = nullJSON
	}
	if len(a.Effects) > maxEffects {
		return outcome{}, badReply("answer asks for %d effects, over the limit of %d", len(a.Effects), maxEffects)
	}
	for i := range a.Effects {
		e := &a.Effects[i]
		if e.Function == "" {
			e.Function = self
		}
		if err := (statecache.Key{Function: e.Function, ID: e.Actor}).Validate(); err != nil {
			return outcome{}, badReply("effect %d: %v", i, err)
		}
		if !validAction(e.Action) {
			return outcome{}, badReply("effect %d: invalid action %q", i, e.Action)
		}
		if e.DelayMS < 0 || time.Duration(e.DelayMS)*time.Millisecond > maxEffectDelay {
			return outcome{}, badReply("effect %d: delay_ms %d is outside 0..%d", i, e.DelayMS, maxEffectDelay.Milliseconds())
		}
	}
	o.effects = a.Effects
	if len(a.Timers) > MaxTimers {
		return outcome{}, badReply("answer sets or cancels %d timers, over the limit of %d", len(a.Timers), MaxTimers)
	}
	for i := range a.Timers {
		if err := a.Timers[i].validate(); err != nil {
			return outcome{}, badReply("timer %d: %v", i, err)
		}
	}
	o.timers = a.Timers
	if err := o.parseWorkflow(&a, self, maxEffects); err != nil {
		return outcome{}, err
	}
	return o, nil
}

// parseWorkflow validates the answer's forward or pipe, broadcasts and subscriptions.
func (o *outcome) parseWorkflow(a *answer, self string, maxEffects int) error {
	if a.Forward != nil && a.Pipe != nil {
		return badReply("answer has both forward and pipe")
	}
	for kind, t := range map[string]*hopTarget{"forward": a.Forward, "pipe": a.Pipe} {
		if t == nil {
			continue
		}
		if t.Function == "" {
			t.Function = self
		}
		if err := (statecache.Key{Function: t.Function, ID: t.Actor}).Validate(); err != nil {
			return badReply("%s: %v", kind, err)
		}
		if !validAction(t.Action) {
			return badReply("%s: invalid action %q", kind, t.Action)
		}
		o.hop = &hop{pipe: kind == "pipe", target: *t}
	}
	if len(a.Broadcast)+len(a.Effects) > maxEffects {
		return badReply("answer asks for %d effects and broadcasts, over the limit of %d", len(a.Broadcast)+len(a.Effects), maxEffects)
	}
	for i, b := range a.Broadcast {
		if err := statecache.ValidateChannel(b.Channel); err != nil {
			return badReply("broadcast %d: %v", i, err)
		}
		if !validAction(b.Action) {
			return badReply("broadcast %d: invalid action %q", i, b.Action)
		}
	}
	o.broadcasts = a.Broadcast
	if len(a.Subscribe) > MaxChannels || len(a.Leave) > MaxChannels {
		return badReply("answer subscribes to or leaves more than %d channels", MaxChannels)
	}
	for _, c := range append(append([]string(nil), a.Subscribe...), a.Leave...) {
		if err := statecache.ValidateChannel(c); err != nil {
			return badReply("subscribe/unsubscribe: %v", err)
		}
	}
	o.subscribe, o.leave = a.Subscribe, a.Leave
	return nil
}

func isSet(m json.RawMessage) bool { return m != nil && string(m) != "null" }

func badReply(format string, args ...any) *apiError {
	return errorf(fasthttp.StatusBadGateway, CodeBadFunctionReply, format, args...)
}

// functionFailed describes a pod that did not answer with the contract's forms.
func functionFailed(status int, body []byte) *apiError {
	var a struct {
		Error *struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	detail := ""
	if json.Unmarshal(body, &a) == nil && a.Error != nil && a.Error.Message != "" {
		detail = ": " + a.Error.Message
	}
	return errorf(fasthttp.StatusBadGateway, CodeFunctionFailed, "function answered HTTP %s%s", strconv.Itoa(status), detail)
}
