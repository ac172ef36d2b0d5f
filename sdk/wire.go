package sdk

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"
)

// Contract limits enforced by the SDK.
const (
	// MaxEnvelopeBytes is the largest invocation body an Actor accepts; a larger one is answered
	// with status 413.
	MaxEnvelopeBytes = 4 << 20
	// MaxEffects is the largest number of effects one turn may emit.
	MaxEffects = 64
	// MaxEffectDelay is the longest delay of an effect.
	MaxEffectDelay = 24 * time.Hour
	// maxActorBytes is the longest actor id, in bytes.
	maxActorBytes = 1024
	// maxActionLen is the longest action name.
	maxActionLen = 128
	// maxCodeLen is the longest error code.
	maxCodeLen = 64
)

// envelope is the body of POST /v1/invoke.
type envelope struct {
	Function   string            `json:"function"`
	Actor      string            `json:"actor"`
	Action     string            `json:"action"`
	State      json.RawMessage   `json:"state"`
	StateB64   []byte            `json:"state_b64"`
	Version    string            `json:"version"`
	Payload    json.RawMessage   `json:"payload"`
	PayloadB64 []byte            `json:"payload_b64"`
	Metadata   map[string]string `json:"metadata"`
	Timers     []TimerInfo       `json:"timers"`
	Channels   []string          `json:"channels"`
	Contract   int               `json:"contract"`
}

// logArgs are the attributes of a log line about this call: its request id, function and
// actor first (docs/observability.md, Logs), then more. A nil e (no envelope read yet) adds none.
func (e *envelope) logArgs(more ...any) []any {
	if e == nil {
		return more
	}
	return append([]any{"request_id", e.Metadata["request_id"], "function", e.Function, "actor", e.Actor, "action", e.Action}, more...)
}

// parseEnvelope decodes and validates an invocation body.
func parseEnvelope(body []byte) (*envelope, error) {
	var env envelope
	if err := json.Unmarshal(body, &env); err != nil {
		return nil, fmt.Errorf("decode envelope: %w", err)
	}
	switch {
	case !validActor(env.Actor):
		return nil, fmt.Errorf("actor id must be 1 to %d bytes of UTF-8, got %q", maxActorBytes, env.Actor)
	case !validAction(env.Action):
		return nil, fmt.Errorf("invalid action name %q", env.Action)
	case !isNull(env.State) && env.StateB64 != nil:
		return nil, errors.New("both state and state_b64 are set")
	case !isNull(env.Payload) && env.PayloadB64 != nil:
		return nil, errors.New("both payload and payload_b64 are set")
	}
	return &env, nil
}

// exists reports whether the envelope carries stored state.
func (e *envelope) exists() bool {
	return e.Version != "" || !isNull(e.State) || e.StateB64 != nil
}

// deadline returns the router's deadline from the metadata, if it has a valid one.
func (e *envelope) deadline() (time.Time, bool) {
	d, err := time.Parse(time.RFC3339, e.Metadata["deadline"])
	return d, err == nil
}

// answer is the success form of a function's answer.
type answer struct {
	State       json.RawMessage `json:"state,omitzero"`
	StateB64    []byte          `json:"state_b64,omitzero"`
	Reply       json.RawMessage `json:"reply,omitzero"`
	ReplyB64    []byte          `json:"reply_b64,omitzero"`
	Delete      bool            `json:"delete,omitzero"`
	Effects     []wireEffect    `json:"effects,omitzero"`
	Timers      []wireTimer     `json:"timers,omitzero"`
	Forward     *wireTarget     `json:"forward,omitzero"`
	Pipe        *wireTarget     `json:"pipe,omitzero"`
	Broadcast   []wireBroadcast `json:"broadcast,omitzero"`
	Subscribe   []string        `json:"subscribe,omitzero"`
	Unsubscribe []string        `json:"unsubscribe,omitzero"`
}

// wireEffect is an effect as the contract encodes it.
type wireEffect struct {
	Function string          `json:"function,omitzero"`
	Actor    string          `json:"actor"`
	Action   string          `json:"action"`
	Payload  json.RawMessage `json:"payload"`
	DelayMS  int64           `json:"delay_ms,omitzero"`
}

// errorAnswer is the error form of a function's answer.
type errorAnswer struct {
	Error errorBody `json:"error"`
}

// errorBody is the content of the error form.
type errorBody struct {
	Status  int    `json:"status"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

// value is an encoded state, payload or reply: JSON, or raw bytes for values of type []byte.
type value struct {
	json   json.RawMessage // set for JSON values
	binary []byte          // set, and non-nil, for []byte values
}

// encodeValue encodes v for the wire.
func encodeValue[T any](v T) (value, error) {
	if b, ok := any(v).([]byte); ok {
		if b == nil {
			b = []byte{}
		}
		return value{binary: b}, nil
	}
	js, err := json.Marshal(v)
	if err != nil {
		return value{}, err
	}
	return value{json: js}, nil
}

// equal reports whether v and w encode the same value.
func (v value) equal(w value) bool {
	return (v.binary == nil) == (w.binary == nil) && bytes.Equal(v.binary, w.binary) && bytes.Equal(v.json, w.json)
}

// errBinary reports binary data for a value that is not of type []byte.
var errBinary = errors.New("binary data (base64 field) needs a value of type []byte")

// decodeValue stores in dst the value carried by js (JSON) or b64 (decoded base64 bytes). A []byte
// dst receives the bytes of either; any other dst is decoded from JSON and cannot take bytes. An
// absent or null value leaves dst unchanged.
func decodeValue[T any](js json.RawMessage, b64 []byte, dst *T) error {
	if p, ok := any(dst).(*[]byte); ok {
		switch {
		case b64 != nil:
			*p = b64
		case !isNull(js):
			*p = bytes.Clone(js)
		}
		return nil
	}
	if b64 != nil {
		return errBinary
	}
	if isNull(js) {
		return nil
	}
	return json.Unmarshal(js, dst)
}

// isNull reports whether js is absent or the JSON literal null.
func isNull(js json.RawMessage) bool {
	return len(js) == 0 || string(js) == "null"
}

// validActor reports whether id is a valid actor id: 1 to 1024 bytes of UTF-8.
func validActor(id string) bool {
	return id != "" && len(id) <= maxActorBytes && utf8.ValidString(id)
}

// validAction reports whether name is a valid action name: 1 to 128 characters of [A-Za-z0-9_.-],
// other than "." and ".." (the router refuses those: they are path segments with a meaning).
func validAction(name string) bool {
	if name == "" || len(name) > maxActionLen || name == "." || name == ".." {
		return false
	}
	for _, c := range []byte(name) {
		if !isAlnum(c) && c != '_' && c != '.' && c != '-' {
			return false
		}
	}
	return true
}

// validCode reports whether code is a valid error code: 1 to 64 characters of [a-z0-9_], starting
// with a letter.
func validCode(code string) bool {
	if code == "" || len(code) > maxCodeLen || code[0] < 'a' || code[0] > 'z' {
		return false
	}
	for _, c := range []byte(code) {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// isAlnum reports whether c is an ASCII letter or digit.
func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}
