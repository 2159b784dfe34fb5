package graph

import (
	"context"
	"fmt"

	"github.com/ordergateway/gateway/domain"
	"github.com/ordergateway/gateway/graph/model"
	"github.com/ordergateway/gateway/view"
)

// PlaceOrder is the resolver for the placeOrder field.
func (r *mutationResolver) PlaceOrder(ctx context.Context, input model.PlaceOrderInput) (*model.OrderPayload, error) {
	return r.send(ctx, domain.PlaceOrder{
		OrderID: deref(input.OrderID), CustomerID: input.CustomerID, Currency: input.CurrencyCode,
		Items: items(input.Items), ShippingAddress: addressInput(input.ShippingAddress),
	}, input.IdempotencyKey)
}

// AddOrderItem is the resolver for the addOrderItem field.
func (r *mutationResolver) AddOrderItem(ctx context.Context, input model.AddOrderItemInput) (*model.OrderPayload, error) {
	return r.send(ctx, domain.AddOrderItem{OrderID: input.OrderID, Item: itemInput(input.Item), ExpectedVersion: input.ExpectedVersion}, input.IdempotencyKey)
}

// RemoveOrderItem is the resolver for the removeOrderItem field.
func (r *mutationResolver) RemoveOrderItem(ctx context.Context, input model.RemoveOrderItemInput) (*model.OrderPayload, error) {
	return r.send(ctx, domain.RemoveOrderItem{OrderID: input.OrderID, SKU: input.Sku, ExpectedVersion: input.ExpectedVersion}, input.IdempotencyKey)
}

// ConfirmOrder is the resolver for the confirmOrder field.
func (r *mutationResolver) ConfirmOrder(ctx context.Context, input model.ConfirmOrderInput) (*model.OrderPayload, error) {
	return r.send(ctx, domain.ConfirmOrder{OrderID: input.OrderID, ExpectedVersion: input.ExpectedVersion}, input.IdempotencyKey)
}

// ShipOrder is the resolver for the shipOrder field.
func (r *mutationResolver) ShipOrder(ctx context.Context, input model.ShipOrderInput) (*model.OrderPayload, error) {
	return r.send(ctx, domain.ShipOrder{OrderID: input.OrderID, TrackingNumber: input.TrackingNumber, ExpectedVersion: input.ExpectedVersion}, input.IdempotencyKey)
}

// DeliverOrder is the resolver for the deliverOrder field.
func (r *mutationResolver) DeliverOrder(ctx context.Context, input model.DeliverOrderInput) (*model.OrderPayload, error) {
	return r.send(ctx, domain.DeliverOrder{OrderID: input.OrderID, ExpectedVersion: input.ExpectedVersion}, input.IdempotencyKey)
}

// CancelOrder is the resolver for the cancelOrder field.
func (r *mutationResolver) CancelOrder(ctx context.Context, input model.CancelOrderInput) (*model.OrderPayload, error) {
	cmd := domain.CancelOrder{OrderID: input.OrderID, Reason: input.Reason, ExpectedVersion: input.ExpectedVersion}
	if input.ReasonCode != nil {
		cmd.ReasonCode = domain.CancellationReasonCode(*input.ReasonCode)
	}
	return r.send(ctx, cmd, input.IdempotencyKey)
}

// Order is the resolver for the order field.
func (r *queryResolver) Order(ctx context.Context, id string, consistencyToken *string) (*model.Order, error) {
	ctx = view.Pin(ctx) // the wait and the read on one generation of the views
	if err := r.awaitToken(ctx, consistencyToken); err != nil {
		return nil, r.internal(ctx, err)
	}
	own, err := r.ownCustomer(ctx)
	if err != nil {
		return nil, err
	}
	d, err := r.Views.Order(ctx, id)
	if err != nil || d == nil || own != "" && d.CustomerID != own { // another customer's order is a missing one
		return nil, r.internal(ctx, err)
	}
	return orderModel(*d), nil
}

// Orders is the resolver for the orders field.
func (r *queryResolver) Orders(ctx context.Context, filter *model.OrderFilter, first *int, after *string, consistencyToken *string) (*model.OrderConnection, error) {
	ctx = view.Pin(ctx) // the wait and the read on one generation of the views
	if err := r.awaitToken(ctx, consistencyToken); err != nil {
		return nil, r.internal(ctx, err)
	}
	size := 20 // the schema's default, also for an explicit null
	if first != nil {
		size = *first
	}
	f := filterInput(filter)
	own, err := r.ownCustomer(ctx)
	if err != nil {
		return nil, err
	}
	var page view.Page
	switch {
	case own != "" && f.CustomerID != "" && f.CustomerID != own: // a customer sees their own orders only
		page = view.Page{Orders: []view.OrderDoc{}}
	default:
		if own != "" {
			f.CustomerID = own
		}
		if page, err = r.Views.Orders(ctx, f, size, deref(after), selects(ctx, "totalCount")); err != nil {
			return nil, r.internal(ctx, err)
		}
	}
	conn := &model.OrderConnection{Edges: make([]*model.OrderEdge, len(page.Orders)), TotalCount: int(page.TotalCount),
		PageInfo: &model.PageInfo{HasNextPage: page.HasNext, HasPreviousPage: page.HasPrevious}}
	for i, d := range page.Orders {
		conn.Edges[i] = &model.OrderEdge{Node: orderModel(d), Cursor: page.Cursors[i]}
	}
	if n := len(page.Cursors); n > 0 {
		conn.PageInfo.StartCursor, conn.PageInfo.EndCursor = &page.Cursors[0], &page.Cursors[n-1]
	}
	return conn, nil
}

// Customer is the resolver for the customer field.
func (r *queryResolver) Customer(ctx context.Context, id string, consistencyToken *string) (*model.CustomerSummary, error) {
	own, err := r.ownCustomer(ctx)
	if err != nil {
		return nil, err
	}
	if own != "" && id != own {
		return nil, &domain.Error{Code: domain.CodeForbidden, Message: "a customer may read only their own summary", Field: []string{"id"}}
	}
	d, err := r.customerSummary(ctx, id, consistencyToken)
	if err != nil || d == nil {
		return nil, r.internal(ctx, err)
	}
	return customerModel(*d), nil
}

// Node is the resolver for the node field.
func (r *queryResolver) Node(ctx context.Context, id string, consistencyToken *string) (model.Node, error) {
	nodes, err := r.Nodes(ctx, []string{id}, consistencyToken)
	if err != nil {
		return nil, err
	}
	return nodes[0], nil
}

// Nodes is the resolver for the nodes field.
func (r *queryResolver) Nodes(ctx context.Context, ids []string, consistencyToken *string) ([]model.Node, error) {
	if len(ids) > MaxNodes {
		return nil, &domain.Error{Code: domain.CodeInvalidInput, Field: []string{"ids"},
			Message: fmt.Sprintf("nodes takes at most %d ids, not %d", MaxNodes, len(ids))}
	}
	ctx = view.Pin(ctx) // the wait and the read on one generation of the views
	if err := r.awaitToken(ctx, consistencyToken); err != nil {
		return nil, r.internal(ctx, err)
	}
	own, err := r.ownCustomer(ctx)
	if err != nil {
		return nil, err
	}
	return r.readNodes(ctx, ids, own)
}

// OrderUpdated is the resolver for the orderUpdated field.
func (r *subscriptionResolver) OrderUpdated(ctx context.Context, id string) (<-chan *model.Order, error) {
	own, err := r.ownCustomer(ctx)
	if err != nil {
		return nil, err
	}
	return r.subscribeOrder(ctx, id, own)
}

// OrdersUpdated is the resolver for the ordersUpdated field.
func (r *subscriptionResolver) OrdersUpdated(ctx context.Context, customerID *string, status []model.OrderStatus) (<-chan *model.Order, error) {
	own, err := r.ownCustomer(ctx)
	if err != nil {
		return nil, err
	}
	return r.subscribeOrders(ctx, deref(customerID), own, status)
}

// Mutation returns MutationResolver implementation.
func (r *Resolver) Mutation() MutationResolver { return &mutationResolver{r} }

// Query returns QueryResolver implementation.
func (r *Resolver) Query() QueryResolver { return &queryResolver{r} }

// Subscription returns SubscriptionResolver implementation.
func (r *Resolver) Subscription() SubscriptionResolver { return &subscriptionResolver{r} }

type (
	mutationResolver     struct{ *Resolver }
	queryResolver        struct{ *Resolver }
	subscriptionResolver struct{ *Resolver }
)
