package graph

import (
	"context"

	"github.com/99designs/gqlgen/graphql"

	"github.com/ordergateway/gateway/domain"
	"github.com/ordergateway/gateway/graph/model"
	"github.com/ordergateway/gateway/view"
)

// orderModel turns a view document into the GraphQL Order. Orders from the
// write side go through view.FromOrder first, so both paths render alike.
func orderModel(d view.OrderDoc) *model.Order {
	m := &model.Order{
		ID: d.ID, CustomerID: d.CustomerID, Status: model.OrderStatus(d.Status),
		Items: make([]*model.OrderItem, len(d.Items)), ItemCount: d.ItemCount,
		Total:              money(d.Total, d.Currency),
		TrackingNumber:     optional(d.TrackingNumber),
		CancellationReason: optional(d.CancellationReason),
		History:            make([]*model.StatusChange, len(d.History)),
		Version:            d.Version, CreatedAt: d.CreatedAt, UpdatedAt: d.UpdatedAt,
	}
	if d.Status == string(domain.StatusCancelled) {
		// A view written before schema version 2 (not rebuilt since) has no
		// code: its cancellation is one of version 1, which upcasts to OTHER.
		code := model.CancellationReasonCode(d.CancellationReasonCode)
		if code == "" {
			code = model.CancellationReasonCode(domain.ReasonOther)
		}
		m.CancellationReasonCode = &code
	}
	for i, it := range d.Items {
		m.Items[i] = &model.OrderItem{Sku: it.SKU, Name: it.Name, Quantity: it.Quantity,
			UnitPrice: money(it.UnitPrice, d.Currency), LineTotal: money(it.LineTotal, d.Currency)}
	}
	for i, h := range d.History {
		m.History[i] = &model.StatusChange{Status: model.OrderStatus(h.Status), At: h.At, Reason: optional(h.Reason)}
	}
	if a := d.ShippingAddress; a != nil {
		m.ShippingAddress = &model.Address{Name: a.Name, Line1: a.Line1, Line2: optional(a.Line2), City: a.City, PostalCode: a.PostalCode, Country: a.Country}
	}
	return m
}

func customerModel(d view.CustomerDoc) *model.CustomerSummary {
	m := &model.CustomerSummary{CustomerID: d.ID, OrderCount: d.OrderCount, OpenOrderCount: d.OpenOrderCount,
		CountsByStatus: make([]*model.StatusCount, len(d.CountsByStatus)), LifetimeValue: make([]*model.Money, len(d.LifetimeValue))}
	for i, c := range d.CountsByStatus {
		m.CountsByStatus[i] = &model.StatusCount{Status: model.OrderStatus(c.Status), Count: c.Count}
	}
	for i, v := range d.LifetimeValue {
		m.LifetimeValue[i] = money(v.Amount, v.Currency)
	}
	return m
}

func money(minor int64, currency string) *model.Money {
	return &model.Money{Amount: domain.FormatMinor(minor, currency), CurrencyCode: currency}
}

func optional(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

func itemInput(in *model.OrderItemInput) domain.ItemInput {
	if in == nil {
		return domain.ItemInput{}
	}
	return domain.ItemInput{SKU: in.Sku, Name: in.Name, Quantity: in.Quantity, UnitPrice: in.UnitPrice}
}

func addressInput(in *model.AddressInput) *domain.Address {
	if in == nil {
		return nil
	}
	return &domain.Address{Name: in.Name, Line1: in.Line1, Line2: deref(in.Line2), City: in.City, PostalCode: in.PostalCode, Country: in.Country}
}

func filterInput(in *model.OrderFilter) view.OrderFilter {
	if in == nil {
		return view.OrderFilter{}
	}
	f := view.OrderFilter{CustomerID: deref(in.CustomerID), CreatedAfter: in.CreatedAfter, CreatedBefore: in.CreatedBefore}
	for _, s := range in.Status {
		f.Statuses = append(f.Statuses, string(s))
	}
	return f
}

// selects reports whether the query asks for the named field directly under
// the field being resolved (fragments included), so that work only that
// field needs can be skipped when it is not asked for.
func selects(ctx context.Context, name string) bool {
	for _, f := range graphql.CollectFieldsCtx(ctx, nil) {
		if f.Name == name {
			return true
		}
	}
	return false
}
