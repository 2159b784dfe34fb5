package graph

import (
	"context"

	"github.com/ordergateway/gateway/domain"
	"github.com/ordergateway/gateway/graph/model"
	"github.com/ordergateway/gateway/view"
)

// send runs a command and renders its outcome. Business-rule rejections
// become userErrors; system failures become GraphQL errors, and so does a
// command the caller may not send whatever the order (FORBIDDEN: nothing is
// sent). The command carries the caller (ctx's principal) to the handler,
// which refuses it if the order is another customer's (NOT_FOUND, as for a
// missing order).
func (r *Resolver) send(ctx context.Context, cmd domain.Command, idempotencyKey *string) (*model.OrderPayload, error) {
	if err := r.authorize(ctx, cmd); err != nil {
		return nil, err
	}
	reply, err := r.Commands.Send(ctx, cmd, deref(idempotencyKey))
	if err != nil {
		return nil, r.internal(ctx, err)
	}
	if reply.Error != nil && !domain.IsUserError(reply.Error.Code) {
		return nil, reply.Error
	}
	payload := &model.OrderPayload{UserErrors: []*model.UserError{}}
	if reply.Order != nil {
		payload.Order = orderModel(view.FromOrder(*reply.Order))
	}
	if reply.Version > 0 {
		v := reply.Version
		token := consistencyToken(reply.OrderID, v)
		payload.Version, payload.ConsistencyToken = &v, &token
	}
	if e := reply.Error; e != nil {
		noteUserError(ctx, e.Code)
		payload.UserErrors = append(payload.UserErrors, &model.UserError{Code: model.UserErrorCode(e.Code), Message: e.Message, Field: e.Field})
	}
	return payload, nil
}

func items(in []*model.OrderItemInput) []domain.ItemInput {
	out := make([]domain.ItemInput, len(in))
	for i, it := range in {
		out[i] = itemInput(it)
	}
	return out
}
