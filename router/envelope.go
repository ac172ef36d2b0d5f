package router

import (
	"encoding/base64"
	"encoding/json"
	"regexp"
	"strconv"
	"time"

	"github.com/knactor/knactor/statecache"
)

// Limits of the function contract (docs/protocol.md).
const (
	maxActionLen = 128
	// maxEffectDelay bounds a delayed effect: delays live in the router's memory, so a day is
	// already generous for something that is lost on a router restart.
	maxEffectDelay = 24 * time.Hour
)

var errorCodeRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)

// validAction reports whether name is an action name: 1-128 of [A-Za-z0-9_.-].
func validAction(name string) bool {
	if name == "" || len(name) > maxActionLen {
		return false
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
}

type metaPair struct{ key, value string }

// appendJSON appends the envelope's JSON to b. State and payload go as JSON when they are valid
// JSON and as base64 otherwise; the version is sent only for an actor that has state.
func (e *envelope) appendJSON(b []byte) []byte {
	b = append(b, `{"function":`...)
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
	b = append(b, `,"metadata":{`...)
	for i, m := range e.metadata {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, m.key)
		b = append(b, ':')
		b = appendJSONString(b, m.value)
	}
	return append(b, "}}"...)
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
	Error     *functionError  `json:"error"`
	Forward   json.RawMessage `json:"forward"`
	Pipe      json.RawMessage `json:"pipe"`
	Broadcast json.RawMessage `json:"broadcast"`
}

// effect is a follow-up invocation that runs once the turn that asked for it commits.
type effect struct {
	Function string          `json:"function"`
	Actor    string          `json:"actor"`
	Action   string          `json:"action"`
	Payload  json.RawMessage `json:"payload"`
	DelayMS  int64           `json:"delay_ms"`
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
	fnErr      *apiError // the function answered with the error form
}

// parseAnswer validates a function's answer body. Anything that breaks the contract is a 502
// bad_function_reply; the error form becomes the status and code the function chose.
func parseAnswer(body []byte, self string, maxState, maxEffects int) (outcome, error) {
	var a answer
	if err := json.Unmarshal(body, &a); err != nil {
		return outcome{}, badReply("answer is not a JSON object of the contract: %v", err)
	}
	if isSet(a.Forward) || isSet(a.Pipe) || isSet(a.Broadcast) {
		return outcome{}, badReply("forward, pipe and broadcast are reserved and not supported yet")
	}
	if a.Error != nil {
		e := a.Error
		if e.Status < 400 || e.Status > 499 || !errorCodeRE.MatchString(e.Code) {
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
		o.reply = []byte("null")
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
	return o, nil
}

func isSet(m json.RawMessage) bool { return m != nil && string(m) != "null" }

func badReply(format string, args ...any) *apiError {
	return errorf(502, CodeBadFunctionReply, format, args...)
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
	return errorf(502, CodeFunctionFailed, "function answered HTTP %s%s", strconv.Itoa(status), detail)
}
