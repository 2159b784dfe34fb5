package graph

import (
	"context"
	"errors"
	"log/slog"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/ordergateway/gateway/command"
	"github.com/ordergateway/gateway/domain"
)

// ErrorPresenter is the one place where errors become GraphQL errors.
// Domain errors keep their message and put their code in extensions.code
// (with extensions.field and, for timeouts, extensions.commandId). Errors
// gqlgen raised about the request itself keep gqlgen's message and get the
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
	return gerr
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
			r.logger().Warn("resolver failed", "code", de.Code, "err", err, "path", graphql.GetPath(ctx))
		}
		return err
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return &domain.Error{Code: domain.CodeUnavailable, Message: "the request was cancelled or timed out"}
	}
	r.logger().Error("resolver failed", "err", err, "path", graphql.GetPath(ctx))
	return &domain.Error{Code: domain.CodeInternal, Message: "internal server error"}
}

func (r *Resolver) logger() *slog.Logger {
	if r.Logger == nil {
		return slog.Default()
	}
	return r.Logger
}
