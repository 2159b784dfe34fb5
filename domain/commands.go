package domain

// Command is a request to change one order. Commands are named in the
// imperative; each has a stable type name used on the wire.
type Command interface {
	// TargetOrderID is the order the command addresses (the Kafka key).
	TargetOrderID() string
	// Expected is the version the client expects the order to be at, or nil.
	Expected() *int
	// CommandType is the command's wire name, e.g. "PlaceOrder".
	CommandType() string
}

// ItemInput is an order line as a client sends it: the price is a decimal
// string, parsed against the order's currency when the command is decided.
type ItemInput struct {
	SKU       string `json:"sku"`
	Name      string `json:"name"`
	Quantity  int    `json:"quantity"`
	UnitPrice string `json:"unitPrice"`
}

type PlaceOrder struct {
	OrderID         string      `json:"orderId"`
	CustomerID      string      `json:"customerId"`
	Currency        string      `json:"currencyCode"`
	Items           []ItemInput `json:"items"`
	ShippingAddress *Address    `json:"shippingAddress,omitempty"`
}

type AddOrderItem struct {
	OrderID         string    `json:"orderId"`
	Item            ItemInput `json:"item"`
	ExpectedVersion *int      `json:"expectedVersion,omitempty"`
}

type RemoveOrderItem struct {
	OrderID         string `json:"orderId"`
	SKU             string `json:"sku"`
	ExpectedVersion *int   `json:"expectedVersion,omitempty"`
}

type ConfirmOrder struct {
	OrderID         string `json:"orderId"`
	ExpectedVersion *int   `json:"expectedVersion,omitempty"`
}

type ShipOrder struct {
	OrderID         string `json:"orderId"`
	TrackingNumber  string `json:"trackingNumber"`
	ExpectedVersion *int   `json:"expectedVersion,omitempty"`
}

type DeliverOrder struct {
	OrderID         string `json:"orderId"`
	ExpectedVersion *int   `json:"expectedVersion,omitempty"`
}

// CancelOrder cancels a pending or confirmed order. ReasonCode is optional
// (ReasonOther when empty); Reason is the free text, required.
type CancelOrder struct {
	OrderID         string                 `json:"orderId"`
	Reason          string                 `json:"reason"`
	ReasonCode      CancellationReasonCode `json:"reasonCode,omitempty"`
	ExpectedVersion *int                   `json:"expectedVersion,omitempty"`
}

func (c PlaceOrder) TargetOrderID() string      { return c.OrderID }
func (c AddOrderItem) TargetOrderID() string    { return c.OrderID }
func (c RemoveOrderItem) TargetOrderID() string { return c.OrderID }
func (c ConfirmOrder) TargetOrderID() string    { return c.OrderID }
func (c ShipOrder) TargetOrderID() string       { return c.OrderID }
func (c DeliverOrder) TargetOrderID() string    { return c.OrderID }
func (c CancelOrder) TargetOrderID() string     { return c.OrderID }

// PlaceOrder has no expected version: the order must not exist yet.
func (c PlaceOrder) Expected() *int      { return nil }
func (c AddOrderItem) Expected() *int    { return c.ExpectedVersion }
func (c RemoveOrderItem) Expected() *int { return c.ExpectedVersion }
func (c ConfirmOrder) Expected() *int    { return c.ExpectedVersion }
func (c ShipOrder) Expected() *int       { return c.ExpectedVersion }
func (c DeliverOrder) Expected() *int    { return c.ExpectedVersion }
func (c CancelOrder) Expected() *int     { return c.ExpectedVersion }

func (PlaceOrder) CommandType() string      { return "PlaceOrder" }
func (AddOrderItem) CommandType() string    { return "AddOrderItem" }
func (RemoveOrderItem) CommandType() string { return "RemoveOrderItem" }
func (ConfirmOrder) CommandType() string    { return "ConfirmOrder" }
func (ShipOrder) CommandType() string       { return "ShipOrder" }
func (DeliverOrder) CommandType() string    { return "DeliverOrder" }
func (CancelOrder) CommandType() string     { return "CancelOrder" }
