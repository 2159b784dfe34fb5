package domain

import "time"

// Event is a fact about one order, named in the past tense. Version is the
// order's version after the event (the first event of an order is version 1).
type Event struct {
	OrderID    string
	Version    int
	OccurredAt time.Time
	// CommandID is the command that caused the event; stamped by the handler.
	CommandID string
	Data      EventData
}

// EventData is the type-specific payload of an Event.
type EventData interface {
	// EventType is the event's wire name, e.g. "OrderPlaced".
	EventType() string
}

type OrderPlaced struct {
	CustomerID      string   `json:"customerId"`
	Currency        string   `json:"currency"`
	Items           []Item   `json:"items"`
	ShippingAddress *Address `json:"shippingAddress,omitempty"`
}

type OrderItemAdded struct {
	Item Item `json:"item"`
}

type OrderItemRemoved struct {
	SKU string `json:"sku"`
}

type OrderConfirmed struct{}

type OrderShipped struct {
	TrackingNumber string `json:"trackingNumber"`
}

type OrderDelivered struct{}

// OrderCancelled carries why the order was cancelled: a code a shop can
// count and act on, and the free text the customer or staff gave. Schema
// version 1 had the text only; its cancellations upcast to ReasonOther.
type OrderCancelled struct {
	Reason     string                 `json:"reason"`
	ReasonCode CancellationReasonCode `json:"reasonCode"`
}

func (OrderPlaced) EventType() string      { return "OrderPlaced" }
func (OrderItemAdded) EventType() string   { return "OrderItemAdded" }
func (OrderItemRemoved) EventType() string { return "OrderItemRemoved" }
func (OrderConfirmed) EventType() string   { return "OrderConfirmed" }
func (OrderShipped) EventType() string     { return "OrderShipped" }
func (OrderDelivered) EventType() string   { return "OrderDelivered" }
func (OrderCancelled) EventType() string   { return "OrderCancelled" }
