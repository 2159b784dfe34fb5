// Package view is the MongoDB read model: the order and customer-summary
// documents, their indexes and queries, and the writes the projector makes.
// Only this package imports the MongoDB driver.
package view

import (
	"time"

	"github.com/ordergateway/gateway/domain"
)

// OrderDoc is the denormalised order view, one document per order in the
// "orders" collection. Amounts are minor units of Currency.
type OrderDoc struct {
	ID                 string      `bson:"_id" json:"id"`
	CustomerID         string      `bson:"customerId" json:"customerId"`
	Status             string      `bson:"status" json:"status"`
	Currency           string      `bson:"currency" json:"currency"`
	Items              []ItemDoc   `bson:"items" json:"items"`
	ItemCount          int         `bson:"itemCount" json:"itemCount"`
	Total              int64       `bson:"total" json:"total"`
	ShippingAddress    *AddressDoc `bson:"shippingAddress,omitempty" json:"shippingAddress,omitempty"`
	TrackingNumber     string      `bson:"trackingNumber,omitempty" json:"trackingNumber,omitempty"`
	CancellationReason string      `bson:"cancellationReason,omitempty" json:"cancellationReason,omitempty"`
	// CancellationReasonCode is set on cancelled orders (a view written
	// before schema version 2 has none; the API shows OTHER then).
	CancellationReasonCode string      `bson:"cancellationReasonCode,omitempty" json:"cancellationReasonCode,omitempty"`
	History                []ChangeDoc `bson:"history" json:"history"`
	Version                int         `bson:"version" json:"version"`
	CreatedAt              time.Time   `bson:"createdAt" json:"createdAt"`
	UpdatedAt              time.Time   `bson:"updatedAt" json:"updatedAt"`
	// Uncounted are the transitions of this order's latest events that its
	// customer's summary may not count yet (at most MaxUncounted): the
	// projector writes order views before it counts their events in the
	// summaries, and a projector that replays events already in this view
	// (after a crash) counts them from here. Not part of the API.
	Uncounted []Transition `bson:"uncounted,omitempty" json:"-"`
}

// MaxUncounted bounds OrderDoc.Uncounted: the projector counts a batch in
// the summaries before it writes its order views when an order would carry
// more.
const MaxUncounted = 64

type ItemDoc struct {
	SKU       string `bson:"sku" json:"sku"`
	Name      string `bson:"name" json:"name"`
	Quantity  int    `bson:"quantity" json:"quantity"`
	UnitPrice int64  `bson:"unitPrice" json:"unitPrice"`
	LineTotal int64  `bson:"lineTotal" json:"lineTotal"`
}

type AddressDoc struct {
	Name       string `bson:"name" json:"name"`
	Line1      string `bson:"line1" json:"line1"`
	Line2      string `bson:"line2,omitempty" json:"line2,omitempty"`
	City       string `bson:"city" json:"city"`
	PostalCode string `bson:"postalCode" json:"postalCode"`
	Country    string `bson:"country" json:"country"`
}

type ChangeDoc struct {
	Status string    `bson:"status" json:"status"`
	At     time.Time `bson:"at" json:"at"`
	Reason string    `bson:"reason,omitempty" json:"reason,omitempty"`
}

// FromOrder builds the view document of an order state.
func FromOrder(o domain.Order) OrderDoc {
	d := OrderDoc{
		ID: o.ID, CustomerID: o.CustomerID, Status: string(o.Status), Currency: o.Currency,
		Items: make([]ItemDoc, len(o.Items)), ItemCount: o.ItemCount(), Total: o.Total(),
		TrackingNumber: o.TrackingNumber, CancellationReason: o.CancellationReason, CancellationReasonCode: string(o.CancellationReasonCode),
		History: make([]ChangeDoc, len(o.History)), Version: o.Version,
		CreatedAt: o.CreatedAt.UTC(), UpdatedAt: o.UpdatedAt.UTC(),
	}
	for i, it := range o.Items {
		d.Items[i] = ItemDoc{SKU: it.SKU, Name: it.Name, Quantity: it.Quantity, UnitPrice: it.UnitPrice, LineTotal: it.LineTotal()}
	}
	for i, h := range o.History {
		d.History[i] = ChangeDoc{Status: string(h.Status), At: h.At.UTC(), Reason: h.Reason}
	}
	if a := o.ShippingAddress; a != nil {
		d.ShippingAddress = &AddressDoc{Name: a.Name, Line1: a.Line1, Line2: a.Line2, City: a.City, PostalCode: a.PostalCode, Country: a.Country}
	}
	return d
}

// ToOrder is the inverse of FromOrder: the aggregate state the view holds.
func (d OrderDoc) ToOrder() domain.Order {
	o := domain.Order{
		ID: d.ID, CustomerID: d.CustomerID, Status: domain.Status(d.Status), Currency: d.Currency,
		Items: make([]domain.Item, len(d.Items)), TrackingNumber: d.TrackingNumber,
		CancellationReason: d.CancellationReason, CancellationReasonCode: domain.CancellationReasonCode(d.CancellationReasonCode), Version: d.Version,
		CreatedAt: d.CreatedAt.UTC(), UpdatedAt: d.UpdatedAt.UTC(),
	}
	for i, it := range d.Items {
		o.Items[i] = domain.Item{SKU: it.SKU, Name: it.Name, Quantity: it.Quantity, UnitPrice: it.UnitPrice}
	}
	if len(d.History) > 0 {
		o.History = make([]domain.StatusChange, len(d.History))
		for i, h := range d.History {
			o.History[i] = domain.StatusChange{Status: domain.Status(h.Status), At: h.At.UTC(), Reason: h.Reason}
		}
	}
	if a := d.ShippingAddress; a != nil {
		o.ShippingAddress = &domain.Address{Name: a.Name, Line1: a.Line1, Line2: a.Line2, City: a.City, PostalCode: a.PostalCode, Country: a.Country}
	}
	return o
}

// Change is one message of the views topic: an order's view after a
// projector write, and its status before that write, so that a filtered
// subscription can tell that an order left its filter.
type Change struct {
	Order          OrderDoc `json:"order"`
	PreviousStatus string   `json:"previousStatus,omitempty"`
}
