package sdk

import (
	"fmt"
	"net/http"
)

// Error is an error a handler reports to the caller: the caller receives Status and a JSON body
// {"error":{"code":Code,"message":Message}}, and the actor's state is left unchanged.
//
// Status must be in 400..499 and Code must be 1 to 64 characters of [a-z0-9_] starting with a
// letter; an Error that breaks these rules is answered as a function failure (HTTP 500).
type Error struct {
	Status  int
	Code    string
	Message string

	err error // the formatted message, kept for Unwrap
}

// Errorf returns an *Error with the given status and code and a message formatted as by
// fmt.Errorf; errors wrapped with %w remain visible to errors.Is and errors.As.
func Errorf(status int, code, format string, args ...any) error {
	err := fmt.Errorf(format, args...)
	return &Error{Status: status, Code: code, Message: err.Error(), err: err}
}

// Error returns the status, code and message.
func (e *Error) Error() string {
	return fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Message)
}

// Unwrap returns the formatted message made by Errorf, so that errors.Is and errors.As see the
// errors it wraps.
func (e *Error) Unwrap() error { return e.err }

// valid reports whether e follows the contract's rules for the error form.
func (e *Error) valid() bool {
	return e.Status >= http.StatusBadRequest && e.Status < http.StatusInternalServerError && validCode(e.Code)
}
