package domain

import "slices"

// Evolve returns state with e applied. It is pure: it never modifies the
// slices of the state it was given. Evolve trusts its input: callers apply
// events in version order (the handler produces them so; the projector guards
// by version).
func Evolve(state Order, e Event) Order {
	o := state
	o.Version = e.Version
	o.UpdatedAt = e.OccurredAt
	switch d := e.Data.(type) {
	case OrderPlaced:
		o.ID = e.OrderID
		o.CustomerID = d.CustomerID
		o.Currency = d.Currency
		o.Items = slices.Clone(d.Items)
		if d.ShippingAddress != nil {
			a := *d.ShippingAddress
			o.ShippingAddress = &a
		}
		o.CreatedAt = e.OccurredAt
		o = withStatus(o, StatusPending, e, "")
	case OrderItemAdded:
		o.Items = append(slices.Clone(o.Items), d.Item)
	case OrderItemRemoved:
		if i := o.itemIndex(d.SKU); i >= 0 {
			o.Items = slices.Delete(slices.Clone(o.Items), i, i+1)
		}
	case OrderConfirmed:
		o = withStatus(o, StatusConfirmed, e, "")
	case OrderShipped:
		o.TrackingNumber = d.TrackingNumber
		o = withStatus(o, StatusShipped, e, "")
	case OrderDelivered:
		o = withStatus(o, StatusDelivered, e, "")
	case OrderCancelled:
		o.CancellationReason = d.Reason
		o.CancellationReasonCode = d.ReasonCode
		o = withStatus(o, StatusCancelled, e, d.Reason)
	}
	if o.Items == nil {
		o.Items = []Item{}
	}
	return o
}

func withStatus(o Order, s Status, e Event, reason string) Order {
	o.Status = s
	o.History = append(slices.Clone(o.History), StatusChange{Status: s, At: e.OccurredAt, Reason: reason})
	return o
}

// Fold applies events to the zero Order in order.
func Fold(events []Event) Order {
	var o Order
	for _, e := range events {
		o = Evolve(o, e)
	}
	return o
}

// ChangesStatus reports whether e moves its order to a status (and adds an
// entry to its History): every event but item changes does.
func ChangesStatus(e Event) bool {
	return len(Evolve(Order{}, e).History) > 0
}
