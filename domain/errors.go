package domain

import (
	"errors"
	"fmt"
)

// Code classifies an Error. The codes that a client can act on are part of the
// public API (they become GraphQL userErrors or extensions.code), so they never
// change spelling.
type Code string

// Business-rule codes: returned to clients as userErrors with HTTP 200.
const (
	CodeInvalidInput         Code = "INVALID_INPUT"
	CodeNotFound             Code = "NOT_FOUND"
	CodeInvalidTransition    Code = "INVALID_TRANSITION"
	CodeVersionConflict      Code = "VERSION_CONFLICT"
	CodeIdempotencyKeyReused Code = "IDEMPOTENCY_KEY_REUSED"
	// CodeLimitExceeded: the request is within every field limit, but what
	// it would make (a message on the broker, the order's snapshot) is over
	// a size limit. Retrying the same request fails the same way.
	CodeLimitExceeded Code = "LIMIT_EXCEEDED"
)

// System codes: returned to clients as top-level GraphQL errors.
const (
	CodeUnavailable    Code = "UNAVAILABLE"
	CodeCommandTimeout Code = "COMMAND_TIMEOUT"
	CodeInternal       Code = "INTERNAL_SERVER_ERROR"
)

// Error is the one error type that crosses package boundaries. Field, when
// set, is the path of the offending input field relative to the mutation's
// arguments, e.g. ["input", "items", "0", "quantity"].
type Error struct {
	Code    Code     `json:"code"`
	Message string   `json:"message"`
	Field   []string `json:"field,omitempty"`
}

func (e *Error) Error() string {
	if len(e.Field) > 0 {
		return fmt.Sprintf("%s: %s (field %v)", e.Code, e.Message, e.Field)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

// Errorf returns an *Error with the given code and a formatted message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// invalid returns an INVALID_INPUT error naming field.
func invalid(field []string, format string, args ...any) *Error {
	return &Error{Code: CodeInvalidInput, Message: fmt.Sprintf(format, args...), Field: field}
}

// ErrorCode returns the code of err if it is (or wraps) an *Error, and
// CodeInternal for any other non-nil error.
func ErrorCode(err error) Code {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeInternal
}

// IsUserError reports whether code is a business-rule rejection (a userError)
// rather than a system failure.
func IsUserError(code Code) bool {
	switch code {
	case CodeInvalidInput, CodeNotFound, CodeInvalidTransition, CodeVersionConflict, CodeIdempotencyKeyReused, CodeLimitExceeded:
		return true
	}
	return false
}

// Hidden is an error whose client-facing part is Public and whose detail
// (driver or broker text, addresses) is Cause: errors.As finds Public, so
// clients get its code and message; Error, for logs, says both.
type Hidden struct {
	Public *Error
	Cause  error
}

// Hide returns an error that shows clients code and message and keeps
// cause for the logs.
func Hide(code Code, message string, cause error) error {
	return &Hidden{Public: &Error{Code: code, Message: message}, Cause: cause}
}

func (h *Hidden) Error() string   { return h.Public.Error() + ": " + h.Cause.Error() }
func (h *Hidden) Unwrap() []error { return []error{h.Public, h.Cause} }
