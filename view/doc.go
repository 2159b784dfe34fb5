// Package view is the MongoDB read model: the order and customer-summary
// documents, their indexes and queries, and the writes the projector makes.
// Only this package imports the MongoDB driver.
package view

import (
	"slices"
	"strings"
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
	History            []ChangeDoc `bson:"history" json:"history"`
	Version            int         `bson:"version" json:"version"`
	CreatedAt          time.Time   `bson:"createdAt" json:"createdAt"`
	UpdatedAt          time.Time   `bson:"updatedAt" json:"updatedAt"`
}

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
		TrackingNumber: o.TrackingNumber, CancellationReason: o.CancellationReason,
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
		CancellationReason: d.CancellationReason, Version: d.Version,
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

// CustomerDoc is the customer summary, one document per customer in the
// "customers" collection. Orders holds one entry per order of the customer
// (so re-applying an order's change is idempotent); the counts are derived
// from it on every write.
type CustomerDoc struct {
	ID             string         `bson:"_id" json:"customerId"`
	Orders         CustomerOrders `bson:"orders" json:"-"`
	OrderCount     int            `bson:"orderCount" json:"orderCount"`
	OpenOrderCount int            `bson:"openOrderCount" json:"openOrderCount"`
	CountsByStatus []StatusCount  `bson:"countsByStatus" json:"countsByStatus"`
	LifetimeValue  []Money        `bson:"lifetimeValue" json:"lifetimeValue"`
	// Rev is the sum of the order versions in Orders. It grows with every
	// change, so it guards concurrent writers (a write replaces only the
	// revision it read), and, unlike a write counter, it does not depend on
	// how the events were batched: a replay rebuilds identical documents.
	Rev int64 `bson:"rev" json:"-"`
}

type CustomerOrder struct {
	OrderID  string `bson:"orderId"`
	Status   string `bson:"status"`
	Total    int64  `bson:"total"`
	Currency string `bson:"currency"`
	Version  int    `bson:"version"`
}

type StatusCount struct {
	Status string `bson:"status" json:"status"`
	Count  int    `bson:"count" json:"count"`
}

type Money struct {
	Amount   int64  `bson:"amount" json:"amount"`
	Currency string `bson:"currency" json:"currency"`
}

// Apply records order o in the summary if it is newer than what the summary
// has, and recomputes the derived fields. It reports whether anything changed.
func (c *CustomerDoc) Apply(o OrderDoc) bool {
	entry := CustomerOrder{OrderID: o.ID, Status: o.Status, Total: o.Total, Currency: o.Currency, Version: o.Version}
	// Orders stays sorted by id, so the document does not depend on the
	// order in which partitions were projected.
	i, found := c.find(o.ID)
	if found {
		if c.Orders[i].Version >= o.Version {
			return false
		}
		c.Orders[i] = entry
	} else {
		c.Orders = slices.Insert(c.Orders, i, entry)
	}
	c.recompute()
	return true
}

// Includes reports whether the summary records order orderID at version or
// later (a nil summary records nothing).
func (c *CustomerDoc) Includes(orderID string, version int) bool {
	if c == nil {
		return false
	}
	i, found := c.find(orderID)
	return found && c.Orders[i].Version >= version
}

// find is the position of orderID in Orders (sorted by id), or where it
// would go.
func (c *CustomerDoc) find(orderID string) (int, bool) {
	return slices.BinarySearchFunc(c.Orders, orderID, func(e CustomerOrder, id string) int { return strings.Compare(e.OrderID, id) })
}

func (c *CustomerDoc) recompute() {
	c.OrderCount = len(c.Orders)
	c.Rev = 0
	for _, o := range c.Orders {
		c.Rev += int64(o.Version)
	}
	c.OpenOrderCount = 0
	counts := map[string]int{}
	value := map[string]int64{}
	var currencies []string
	for _, o := range c.Orders {
		counts[o.Status]++
		if domain.Status(o.Status).IsOpen() {
			c.OpenOrderCount++
		}
		if o.Status == string(domain.StatusDelivered) {
			if _, ok := value[o.Currency]; !ok {
				currencies = append(currencies, o.Currency)
			}
			value[o.Currency] += o.Total
		}
	}
	c.CountsByStatus = []StatusCount{}
	for _, s := range domain.AllStatuses {
		if n := counts[string(s)]; n > 0 {
			c.CountsByStatus = append(c.CountsByStatus, StatusCount{Status: string(s), Count: n})
		}
	}
	slices.Sort(currencies)
	c.LifetimeValue = []Money{}
	for _, cur := range currencies {
		c.LifetimeValue = append(c.LifetimeValue, Money{Amount: value[cur], Currency: cur})
	}
}

// Change is one message of the views topic: an order's view after a
// projector write, and its status before that write, so that a filtered
// subscription can tell that an order left its filter.
type Change struct {
	Order          OrderDoc `json:"order"`
	PreviousStatus string   `json:"previousStatus,omitempty"`
}
