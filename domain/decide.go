package domain

import (
	"fmt"
	"time"
)

// Decide returns the events that cmd causes on an order in state, stamped
// with now. It is pure. A rejected command returns an *Error:
// INVALID_INPUT (with Field) for bad input, NOT_FOUND when the order does not
// exist, VERSION_CONFLICT when cmd's expected version is not state.Version,
// and INVALID_TRANSITION when the order's status does not allow cmd.
func Decide(state Order, cmd Command, now time.Time) ([]Event, error) {
	if err := Validate(cmd); err != nil {
		return nil, err
	}
	if _, placing := cmd.(PlaceOrder); !placing && !state.Exists() {
		return nil, NotFound(cmd.TargetOrderID())
	}
	if v := cmd.Expected(); v != nil && *v != state.Version {
		return nil, Errorf(CodeVersionConflict, "order %q is at version %d, not the expected %d", state.ID, state.Version, *v)
	}
	emit := func(data EventData) ([]Event, error) {
		return []Event{{OrderID: cmd.TargetOrderID(), Version: state.Version + 1, OccurredAt: now, Data: data}}, nil
	}

	switch c := cmd.(type) {
	case PlaceOrder:
		if state.Exists() {
			return nil, AlreadyExists(c.OrderID)
		}
		items := make([]Item, len(c.Items))
		for i, in := range c.Items {
			items[i], _ = validateItem(in, c.Currency, nil) // validated above
		}
		return emit(OrderPlaced{CustomerID: c.CustomerID, Currency: c.Currency, Items: items, ShippingAddress: c.ShippingAddress})

	case AddOrderItem:
		if err := requireStatus(state, "add items to", StatusPending); err != nil {
			return nil, err
		}
		item, err := validateItem(c.Item, state.Currency, path("input", "item"))
		if err != nil {
			return nil, err
		}
		if state.itemIndex(item.SKU) >= 0 {
			return nil, invalid(path("input", "item", "sku"), "sku %q is already in order %q", item.SKU, state.ID)
		}
		if len(state.Items) >= MaxItems {
			return nil, invalid(path("input", "item"), "order %q already holds the maximum of %d items", state.ID, MaxItems)
		}
		return emit(OrderItemAdded{Item: item})

	case RemoveOrderItem:
		if err := requireStatus(state, "remove items from", StatusPending); err != nil {
			return nil, err
		}
		if state.itemIndex(c.SKU) < 0 {
			return nil, &Error{Code: CodeNotFound, Message: fmt.Sprintf("sku %q is not in order %q", c.SKU, state.ID), Field: path("input", "sku")}
		}
		return emit(OrderItemRemoved{SKU: c.SKU})

	case ConfirmOrder:
		if err := requireStatus(state, "confirm", StatusPending); err != nil {
			return nil, err
		}
		if len(state.Items) == 0 {
			return nil, Errorf(CodeInvalidTransition, "cannot confirm order %q: it has no items", state.ID)
		}
		return emit(OrderConfirmed{})

	case ShipOrder:
		if err := requireStatus(state, "ship", StatusConfirmed); err != nil {
			return nil, err
		}
		return emit(OrderShipped{TrackingNumber: c.TrackingNumber})

	case DeliverOrder:
		if err := requireStatus(state, "deliver", StatusShipped); err != nil {
			return nil, err
		}
		return emit(OrderDelivered{})

	case CancelOrder:
		if err := requireStatus(state, "cancel", StatusPending, StatusConfirmed); err != nil {
			return nil, err
		}
		code := c.ReasonCode
		if code == "" {
			code = ReasonOther
		}
		return emit(OrderCancelled{Reason: c.Reason, ReasonCode: code})
	}
	return nil, invalid(nil, "unknown command %s", cmd.CommandType())
}

func requireStatus(state Order, verb string, allowed ...Status) error {
	for _, s := range allowed {
		if state.Status == s {
			return nil
		}
	}
	return Errorf(CodeInvalidTransition, "cannot %s an order that is %s", verb, state.Status)
}
