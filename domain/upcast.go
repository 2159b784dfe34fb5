package domain

import (
	"encoding/json"
	"fmt"
)

// SchemaVersion is the version of the wire shapes this code writes: the
// data of every event type and the order state in snapshots. Readers take
// every version from 1 up to it, older ones through the upcasters below, so
// that Decide, Evolve and the projector only ever see today's shapes; a
// newer version is a *SchemaVersionError (a build that is older than the
// data must not misread it).
//
// Version 2: OrderCancelled has a reasonCode, and so has a cancelled
// order's state (cancellationReasonCode).
//
// To change a shape: raise SchemaVersion, append the upcaster from the
// previous version to upcasters (with a unit test), and add the new
// version's golden records (docs/design.md, "Event versions").
const SchemaVersion = 2

// SchemaVersionError is a record of a schema version this build cannot
// read: newer than SchemaVersion (written by a newer build), or negative.
// The projector sets such an event aside with reason kafka.ReasonNewerSchema;
// the command handler refuses to start on such a snapshot.
type SchemaVersionError struct {
	What    string // "event OrderCancelled", "order state"
	Version int
}

func (e *SchemaVersionError) Error() string {
	return fmt.Sprintf("%s has schema version %d; this build reads 1 to %d", e.What, e.Version, SchemaVersion)
}

// upcaster turns the wire shapes of schema version from into those of
// version from+1. Both functions are pure and get and return JSON: an
// event's data (with its type) and an order state. They leave what they do
// not know unchanged.
type upcaster struct {
	from  int
	event func(eventType string, data json.RawMessage) (json.RawMessage, error)
	order func(order json.RawMessage) (json.RawMessage, error)
}

// upcasters holds one upcaster per version before SchemaVersion, in order:
// upcasters[i] is from version i+1.
var upcasters = []upcaster{
	{from: 1, event: cancellationReasonCodeEvent, order: cancellationReasonCodeOrder},
}

func upcastEvent(version int, eventType string, data json.RawMessage) (json.RawMessage, error) {
	var err error
	for _, u := range upcasters[version-1:] {
		if data, err = u.event(eventType, data); err != nil {
			return nil, err
		}
	}
	return data, nil
}

// UnmarshalOrder decodes an order state (the order of a snapshot) written
// with schema version (0: none recorded, that is 1), upcasting it to
// today's shape. A version newer than SchemaVersion is a
// *SchemaVersionError.
func UnmarshalOrder(version int, b []byte) (Order, error) {
	if version == 0 {
		version = 1
	}
	if version < 0 || version > SchemaVersion {
		return Order{}, &SchemaVersionError{What: "order state", Version: version}
	}
	var err error
	for _, u := range upcasters[version-1:] {
		if b, err = u.order(b); err != nil {
			return Order{}, fmt.Errorf("order state of schema version %d: %w", version, err)
		}
	}
	var o Order
	if err := json.Unmarshal(b, &o); err != nil {
		return Order{}, fmt.Errorf("order state is not valid JSON: %w", err)
	}
	return o, nil
}

// withDefault returns the JSON object obj with key set to value when key
// is absent (a null or absent object becomes {key: value}).
func withDefault(obj json.RawMessage, key string, value any) (json.RawMessage, error) {
	var m map[string]json.RawMessage
	if len(obj) > 0 {
		if err := json.Unmarshal(obj, &m); err != nil {
			return nil, err
		}
	}
	if _, ok := m[key]; ok {
		return obj, nil
	}
	if m == nil {
		m = map[string]json.RawMessage{}
	}
	v, err := json.Marshal(value)
	if err != nil {
		return nil, err
	}
	m[key] = v
	return json.Marshal(m)
}

// cancellationReasonCodeEvent (v1 -> v2): a cancellation of version 1 has
// its free-text reason only; it gets reasonCode OTHER (the text is kept:
// guessing a code from it would put words in the customer's mouth).
func cancellationReasonCodeEvent(eventType string, data json.RawMessage) (json.RawMessage, error) {
	if eventType != "OrderCancelled" {
		return data, nil
	}
	return withDefault(data, "reasonCode", ReasonOther)
}

// cancellationReasonCodeOrder (v1 -> v2): a cancelled order's state gets
// cancellationReasonCode OTHER, as its cancellation event does.
func cancellationReasonCodeOrder(order json.RawMessage) (json.RawMessage, error) {
	var probe struct {
		Status Status `json:"status"`
	}
	if err := json.Unmarshal(order, &probe); err != nil {
		return nil, err
	}
	if probe.Status != StatusCancelled {
		return order, nil
	}
	return withDefault(order, "cancellationReasonCode", ReasonOther)
}
