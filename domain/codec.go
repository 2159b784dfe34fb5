package domain

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"
)

// eventEnvelope is the wire form of an Event on the events topic.
type eventEnvelope struct {
	OrderID       string          `json:"orderId"`
	Version       int             `json:"version"`
	Type          string          `json:"type"`
	SchemaVersion int             `json:"schemaVersion"` // absent: 1
	OccurredAt    time.Time       `json:"occurredAt"`
	CommandID     string          `json:"commandId,omitempty"`
	Data          json.RawMessage `json:"data"`
}

var eventFactories = map[string]func() EventData{
	"OrderPlaced":      func() EventData { return &OrderPlaced{} },
	"OrderItemAdded":   func() EventData { return &OrderItemAdded{} },
	"OrderItemRemoved": func() EventData { return &OrderItemRemoved{} },
	"OrderConfirmed":   func() EventData { return &OrderConfirmed{} },
	"OrderShipped":     func() EventData { return &OrderShipped{} },
	"OrderDelivered":   func() EventData { return &OrderDelivered{} },
	"OrderCancelled":   func() EventData { return &OrderCancelled{} },
}

// EventTypes returns the wire names of every event type, sorted.
func EventTypes() []string {
	types := make([]string, 0, len(eventFactories))
	for t := range eventFactories {
		types = append(types, t)
	}
	slices.Sort(types)
	return types
}

// MarshalEvent encodes e as its wire envelope.
func MarshalEvent(e Event) ([]byte, error) {
	data, err := json.Marshal(e.Data)
	if err != nil {
		return nil, err
	}
	return json.Marshal(eventEnvelope{
		OrderID: e.OrderID, Version: e.Version, Type: e.Data.EventType(), SchemaVersion: EventVersion(e.Data.EventType()),
		OccurredAt: e.OccurredAt.UTC(), CommandID: e.CommandID, Data: data,
	})
}

// UnmarshalEvent decodes a wire envelope of any schema version up to its
// type's EventVersion, upcasting older data to today's shape (an envelope without
// a schema version is version 1). It returns a *SchemaVersionError for a
// newer version, and an error naming what is wrong for malformed JSON, an
// unknown type, a missing order id or a version below 1.
func UnmarshalEvent(b []byte) (Event, error) {
	var env eventEnvelope
	if err := json.Unmarshal(b, &env); err != nil {
		return Event{}, fmt.Errorf("event is not valid JSON: %w", err)
	}
	newData, ok := eventFactories[env.Type]
	if !ok {
		return Event{}, fmt.Errorf("unknown event type %q", env.Type)
	}
	if env.SchemaVersion == 0 {
		env.SchemaVersion = 1
	}
	if known := EventVersion(env.Type); env.SchemaVersion < 0 || env.SchemaVersion > known {
		return Event{}, &SchemaVersionError{What: "event " + env.Type, Version: env.SchemaVersion, Known: known}
	}
	if env.OrderID == "" {
		return Event{}, fmt.Errorf("event %s has no orderId", env.Type)
	}
	if env.Version < 1 {
		return Event{}, fmt.Errorf("event %s for order %q has version %d; versions start at 1", env.Type, env.OrderID, env.Version)
	}
	raw, err := upcastEvent(env.SchemaVersion, env.Type, env.Data)
	if err != nil {
		return Event{}, fmt.Errorf("event %s of schema version %d: %w", env.Type, env.SchemaVersion, err)
	}
	env.Data = raw
	data := newData()
	if len(env.Data) > 0 && string(env.Data) != "null" {
		if err := json.Unmarshal(env.Data, data); err != nil {
			return Event{}, fmt.Errorf("event %s data: %w", env.Type, err)
		}
	}
	return Event{OrderID: env.OrderID, Version: env.Version, OccurredAt: env.OccurredAt, CommandID: env.CommandID, Data: deref(data)}, nil
}

// deref turns the *T the factories return into the T that Evolve switches on.
func deref(d EventData) EventData {
	switch v := d.(type) {
	case *OrderPlaced:
		return *v
	case *OrderItemAdded:
		return *v
	case *OrderItemRemoved:
		return *v
	case *OrderConfirmed:
		return *v
	case *OrderShipped:
		return *v
	case *OrderDelivered:
		return *v
	case *OrderCancelled:
		return *v
	}
	return d
}

// MarshalCommand encodes a command's payload; its type travels beside it.
func MarshalCommand(c Command) (string, []byte, error) {
	b, err := json.Marshal(c)
	return c.CommandType(), b, err
}

// UnmarshalCommand decodes a command payload of the given type. It returns an
// error for an unknown type or malformed JSON.
func UnmarshalCommand(typ string, b []byte) (Command, error) {
	var (
		c   Command
		err error
	)
	switch typ {
	case "PlaceOrder":
		c, err = decodeAs[PlaceOrder](b)
	case "AddOrderItem":
		c, err = decodeAs[AddOrderItem](b)
	case "RemoveOrderItem":
		c, err = decodeAs[RemoveOrderItem](b)
	case "ConfirmOrder":
		c, err = decodeAs[ConfirmOrder](b)
	case "ShipOrder":
		c, err = decodeAs[ShipOrder](b)
	case "DeliverOrder":
		c, err = decodeAs[DeliverOrder](b)
	case "CancelOrder":
		c, err = decodeAs[CancelOrder](b)
	default:
		return nil, fmt.Errorf("unknown command type %q", typ)
	}
	if err != nil {
		return nil, fmt.Errorf("command %s is not valid JSON: %w", typ, err)
	}
	return c, nil
}

func decodeAs[T Command](b []byte) (Command, error) {
	var v T
	err := json.Unmarshal(b, &v)
	return v, err
}
