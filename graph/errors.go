package graph

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"unicode/utf8"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/ordergateway/gateway/command"
	"github.com/ordergateway/gateway/domain"
)

// ErrorPresenter is the one place where errors become GraphQL errors.
// Domain errors keep their message and put their code in extensions.code
// (with extensions.field and, for timeouts, extensions.commandId). Errors
// gqlgen raised about the request itself keep gqlgen's message, cut to
// maxMessageBytes (it may quote a name from the document), and get the
// code BAD_USER_INPUT unless they carry one. Resolvers return nothing else:
// they pass other failures through internal, which logs them and hides the
// detail.
func ErrorPresenter(ctx context.Context, err error) *gqlerror.Error {
	gerr := graphql.DefaultErrorPresenter(ctx, err)
	if gerr.Extensions == nil {
		gerr.Extensions = map[string]any{}
	}
	var de *domain.Error
	if errors.As(err, &de) {
		gerr.Message = de.Message
		gerr.Extensions["code"] = string(de.Code)
		if len(de.Field) > 0 {
			gerr.Extensions["field"] = de.Field
		}
		var te *command.TimeoutError
		if errors.As(err, &te) {
			gerr.Extensions["commandId"] = te.CommandID
		}
		return gerr
	}
	if _, ok := gerr.Extensions["code"]; !ok {
		gerr.Extensions["code"] = "BAD_USER_INPUT"
	}
	gerr.Message = truncate(gerr.Message, maxMessageBytes)
	return gerr
}

// maxMessageBytes bounds the message of an error gqlgen raised.
const maxMessageBytes = 300

// truncate cuts s to at most n bytes of whole UTF-8 characters, ending
// with "…" when it cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// MaxErrors is the most errors one response carries; the ones after it are
// replaced by one error that says how many were left out.
const MaxErrors = 20

// CodeTooManyErrors is the extensions.code of that last error.
const CodeTooManyErrors = "TOO_MANY_ERRORS"

// errorCap is the extension that applies MaxErrors to every response (a
// document can hold thousands of mistakes, and each would cost an error
// of about 150 bytes), over every transport.
type errorCap struct{ max int }

var (
	_ graphql.HandlerExtension    = errorCap{}
	_ graphql.ResponseInterceptor = errorCap{}
)

func (errorCap) ExtensionName() string                   { return "ErrorCap" }
func (errorCap) Validate(graphql.ExecutableSchema) error { return nil }

func (c errorCap) InterceptResponse(ctx context.Context, next graphql.ResponseHandler) *graphql.Response {
	resp := next(ctx)
	if resp != nil && len(resp.Errors) > c.max {
		left := len(resp.Errors) - c.max
		resp.Errors = append(resp.Errors[:c.max:c.max], &gqlerror.Error{
			Message:    fmt.Sprintf("%d more errors were left out (a response carries at most %d)", left, c.max),
			Extensions: map[string]any{"code": CodeTooManyErrors},
		})
	}
	return resp
}

// RecoverFunc turns a panic in a resolver into an INTERNAL_SERVER_ERROR
// that names no internals; the panic is logged.
func RecoverFunc(logger *slog.Logger) graphql.RecoverFunc {
	return func(ctx context.Context, p any) error {
		logger.Error("panic in resolver", "panic", p, "path", graphql.GetPath(ctx))
		return &domain.Error{Code: domain.CodeInternal, Message: "internal server error"}
	}
}

// internal passes domain errors through and logs and hides anything else.
func (r *Resolver) internal(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	var de *domain.Error
	if errors.As(err, &de) {
		var h *domain.Hidden
		if errors.As(err, &h) {
			r.logger().WarnContext(ctx, "resolver failed", "code", de.Code, "err", err, "path", graphql.GetPath(ctx))
		}
		return err
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return &domain.Error{Code: domain.CodeUnavailable, Message: "the request was cancelled or timed out"}
	}
	r.logger().ErrorContext(ctx, "resolver failed", "err", err, "path", graphql.GetPath(ctx))
	return &domain.Error{Code: domain.CodeInternal, Message: "internal server error"}
}

func (r *Resolver) logger() *slog.Logger {
	if r.Logger == nil {
		return slog.Default()
	}
	return r.Logger
}
