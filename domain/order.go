// Package domain is the order model: commands, events, the pure Decide and
// Evolve functions, validation and errors. It does no I/O and reads no clock:
// time is passed in.
package domain

import "time"

// Status is an order's lifecycle state.
type Status string

const (
	StatusPending   Status = "PENDING"
	StatusConfirmed Status = "CONFIRMED"
	StatusShipped   Status = "SHIPPED"
	StatusDelivered Status = "DELIVERED"
	StatusCancelled Status = "CANCELLED"
)

// AllStatuses lists every status in lifecycle order.
var AllStatuses = []Status{StatusPending, StatusConfirmed, StatusShipped, StatusDelivered, StatusCancelled}

// IsOpen reports whether an order in status s still awaits fulfilment.
func (s Status) IsOpen() bool {
	return s == StatusPending || s == StatusConfirmed || s == StatusShipped
}

// Valid reports whether s is one of the known statuses.
func (s Status) Valid() bool {
	for _, v := range AllStatuses {
		if s == v {
			return true
		}
	}
	return false
}

// CancellationReasonCode classifies why an order was cancelled.
type CancellationReasonCode string

const (
	ReasonCustomerRequest CancellationReasonCode = "CUSTOMER_REQUEST"
	ReasonOutOfStock      CancellationReasonCode = "OUT_OF_STOCK"
	ReasonPaymentFailed   CancellationReasonCode = "PAYMENT_FAILED"
	ReasonFraudSuspected  CancellationReasonCode = "FRAUD_SUSPECTED"
	// ReasonOther: none of the above, or not recorded (every cancellation
	// of schema version 1, and a CancelOrder that names no code).
	ReasonOther CancellationReasonCode = "OTHER"
)

// AllCancellationReasonCodes lists every cancellation reason code.
var AllCancellationReasonCodes = []CancellationReasonCode{ReasonCustomerRequest, ReasonOutOfStock, ReasonPaymentFailed, ReasonFraudSuspected, ReasonOther}

// Valid reports whether c is one of the known codes.
func (c CancellationReasonCode) Valid() bool {
	for _, v := range AllCancellationReasonCodes {
		if c == v {
			return true
		}
	}
	return false
}

// Item is one order line. UnitPrice is in the order currency's minor units.
type Item struct {
	SKU       string `json:"sku"`
	Name      string `json:"name"`
	Quantity  int    `json:"quantity"`
	UnitPrice int64  `json:"unitPrice"`
}

// LineTotal is UnitPrice × Quantity in minor units.
func (i Item) LineTotal() int64 { return i.UnitPrice * int64(i.Quantity) }

// Address is a shipping address.
type Address struct {
	Name       string `json:"name"`
	Line1      string `json:"line1"`
	Line2      string `json:"line2,omitempty"`
	City       string `json:"city"`
	PostalCode string `json:"postalCode"`
	Country    string `json:"country"`
}

// StatusChange records when an order entered a status, and why if a reason
// was given (cancellations).
type StatusChange struct {
	Status Status    `json:"status"`
	At     time.Time `json:"at"`
	Reason string    `json:"reason,omitempty"`
}

// Order is the aggregate state. The zero Order (Version 0) is an order that
// does not exist yet.
type Order struct {
	ID                 string   `json:"id"`
	CustomerID         string   `json:"customerId"`
	Status             Status   `json:"status"`
	Currency           string   `json:"currency"`
	Items              []Item   `json:"items"`
	ShippingAddress    *Address `json:"shippingAddress,omitempty"`
	TrackingNumber     string   `json:"trackingNumber,omitempty"`
	CancellationReason string   `json:"cancellationReason,omitempty"`
	// CancellationReasonCode is set when the order is cancelled.
	CancellationReasonCode CancellationReasonCode `json:"cancellationReasonCode,omitempty"`
	History                []StatusChange         `json:"history"`
	Version                int                    `json:"version"`
	CreatedAt              time.Time              `json:"createdAt"`
	UpdatedAt              time.Time              `json:"updatedAt"`
}

// Exists reports whether the order has been placed.
func (o Order) Exists() bool { return o.Version > 0 }

// Total is the sum of the line totals in minor units.
func (o Order) Total() int64 {
	var t int64
	for _, it := range o.Items {
		t += it.LineTotal()
	}
	return t
}

// ItemCount is the total quantity over all lines.
func (o Order) ItemCount() int {
	n := 0
	for _, it := range o.Items {
		n += it.Quantity
	}
	return n
}

func (o Order) itemIndex(sku string) int {
	for i, it := range o.Items {
		if it.SKU == sku {
			return i
		}
	}
	return -1
}
