package router

import (
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"

	"github.com/valyala/fasthttp"
)

// Error codes of the public API's JSON error body {"error":{"code","message"}}.
const (
	CodeBadRequest       = "bad_request"
	CodeUnauthorized     = "unauthorized"
	CodeForbidden        = "forbidden"
	CodeNotFound         = "not_found"
	CodeUnknownFunction  = "unknown_function"
	CodeActorNotFound    = "actor_not_found"
	CodeMethodNotAllowed = "method_not_allowed"
	CodeVersionConflict  = "version_conflict"
	// CodeIdempotencyKeyReused (422): the key names another call of the actor.
	CodeIdempotencyKeyReused = "idempotency_key_reused"
	CodeConflict             = "conflict"
	CodeTooLarge             = "too_large"
	CodeActorBusy            = "actor_busy"
	CodeFunctionFailed       = "function_failed"
	CodeBadFunctionReply     = "bad_function_reply"
	CodeNoCapacity           = "no_capacity"
	CodeStoreUnavailable     = "store_unavailable"
	CodeFunctionTimeout      = "function_timeout"
	CodeShuttingDown         = "shutting_down"
	CodeInternal             = "internal"
	// CodeWorkflowCycle and CodeWorkflowTooLong (508): a chain of forwards and pipes came back
	// to an actor it had passed through, or grew past MaxHops.
	CodeWorkflowCycle   = "workflow_cycle"
	CodeWorkflowTooLong = "workflow_too_long"
	// CodeNotSubscribed (409): a broadcast reached an actor that has left the channel; nothing
	// ran (between routers only).
	CodeNotSubscribed = "not_subscribed"
	// CodeEncryptionKeyMissing (503): the actor's stored state is sealed with an encryption key
	// this router is not configured with; the message names the key id.
	CodeEncryptionKeyMissing = "encryption_key_missing"
	// CodeStateUnreadable (503): the actor's stored state is sealed but does not decrypt
	// (tampered with, truncated, or copied from another actor).
	CodeStateUnreadable = "state_unreadable"
)

// retryAfterSeconds is the Retry-After of 429 and 503 answers: long enough for a queue to drain
// or a pod to start, short enough that a client does not give up on a blip.
const retryAfterSeconds = 1

// apiError is a failure with the status and code the caller will see.
type apiError struct {
	status  int
	code    string
	message string
}

func (e *apiError) Error() string { return e.code + ": " + e.message }

func errorf(status int, code, format string, args ...any) *apiError {
	return &apiError{status: status, code: code, message: fmt.Sprintf(format, args...)}
}

// asAPIError returns err's apiError, or a 500 for an error nobody classified.
func asAPIError(err error) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	return &apiError{status: fasthttp.StatusInternalServerError, code: CodeInternal, message: err.Error()}
}

// writeError answers with the JSON error body; 429 and 503 carry Retry-After.
func writeError(ctx *fasthttp.RequestCtx, err error) {
	ae := asAPIError(err)
	ctx.Response.ResetBody()
	ctx.SetStatusCode(ae.status)
	ctx.SetContentType("application/json")
	if ae.status == fasthttp.StatusTooManyRequests || ae.status == fasthttp.StatusServiceUnavailable {
		ctx.Response.Header.Set("Retry-After", strconv.Itoa(retryAfterSeconds))
	}
	if ae.status == fasthttp.StatusUnauthorized {
		ctx.Response.Header.Set("WWW-Authenticate", `Bearer realm="knactor"`)
	}
	ctx.SetBody(errorBody(ae.code, ae.message))
}

// errorBody is the JSON error form {"error":{"code":...,"message":...}}.
func errorBody(code, message string) []byte {
	b := make([]byte, 0, 48+len(code)+len(message))
	b = append(b, `{"error":{"code":`...)
	b = appendJSONString(b, code)
	b = append(b, `,"message":`...)
	b = appendJSONString(b, message)
	return append(b, "}}"...)
}

// appendJSONString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD, as encoding/json does.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b = append(b, '\\', byte(r))
		case r < 0x20:
			switch r {
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[r>>4], hex[r&15])
			}
		case r == 0x2028 || r == 0x2029: // valid JSON, but break JavaScript string literals
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&15])
		default:
			b = utf8.AppendRune(b, r)
		}
	}
	return append(b, '"')
}
