package domain

import (
	"encoding/json"
	"fmt"
)

// EventVersion is the schema version of eventType's data this code writes
// (1 for an unknown type). Each event type has its own: a change of one
// type's shape raises that type's version only, so that a build that does
// not know the change still reads every other type (in a rolling deploy an
// older projector sets aside the changed type's new events, not all of the
// newer build's). Readers take every version from 1 up to it, older ones
// through eventUpcasters, so that Decide, Evolve and the projector only ever
// see today's shapes; a newer version is a *SchemaVersionError (a build that
// is older than the data must not misread it).
//
// To change a type's shape: append the upcaster from its current version
// to eventUpcasters (that raises the version), with a unit test, and add
// golden records (docs/design.md, "Event versions").
func EventVersion(eventType string) int {
	return 1 + len(eventUpcasters[eventType])
}

// OrderVersion is the schema version of the order state (domain.Order's
// JSON) in snapshots. Version 2: a cancelled order's cancellationReasonCode.
const OrderVersion = 2

// SchemaVersionError is a record of a schema version this build cannot
// read: newer than the build knows (written by a newer build), or negative.
// The projector sets such an event aside with reason kafka.ReasonNewerSchema;
// the command handler refuses to start on such a snapshot.
type SchemaVersionError struct {
	What    string // "event OrderCancelled", "order state"
	Version int    // the record's
	Known   int    // the newest this build reads
}

func (e *SchemaVersionError) Error() string {
	return fmt.Sprintf("%s has schema version %d; this build reads 1 to %d", e.What, e.Version, e.Known)
}

// upcaster turns JSON of one schema version into that of the next. It is
// pure and leaves what it does not know unchanged.
type upcaster func(json.RawMessage) (json.RawMessage, error)

// eventUpcasters holds, per event type, one upcaster per version before
// its EventVersion, in order: [i] is from version i+1 to i+2. A type
// without an entry is at version 1.
var eventUpcasters = map[string][]upcaster{
	"OrderCancelled": {cancellationReasonCodeEvent}, // 1 -> 2: reasonCode
}

// orderUpcasters holds one upcaster of the order state per version before
// OrderVersion, in order.
var orderUpcasters = []upcaster{
	cancellationReasonCodeOrder, // 1 -> 2: cancellationReasonCode
}

// upcastEvent turns the data of an event of eventType at schema version
// (1 to EventVersion(eventType)) into today's shape.
func upcastEvent(version int, eventType string, data json.RawMessage) (json.RawMessage, error) {
	var err error
	for _, u := range eventUpcasters[eventType][version-1:] {
		if data, err = u(data); err != nil {
			return nil, err
		}
	}
	return data, nil
}

// UnmarshalOrder decodes an order state (the order of a snapshot) written
// with schema version (0: none recorded, that is 1), upcasting it to
// today's shape. A version newer than OrderVersion is a
// *SchemaVersionError.
func UnmarshalOrder(version int, b []byte) (Order, error) {
	if version == 0 {
		version = 1
	}
	if version < 0 || version > OrderVersion {
		return Order{}, &SchemaVersionError{What: "order state", Version: version, Known: OrderVersion}
	}
	var err error
	for _, u := range orderUpcasters[version-1:] {
		if b, err = u(b); err != nil {
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

// cancellationReasonCodeEvent (OrderCancelled v1 -> v2): a cancellation of
// version 1 has its free-text reason only; it gets reasonCode OTHER (the
// text is kept: guessing a code from it would put words in the customer's
// mouth).
func cancellationReasonCodeEvent(data json.RawMessage) (json.RawMessage, error) {
	return withDefault(data, "reasonCode", ReasonOther)
}

// cancellationReasonCodeOrder (order state v1 -> v2): a cancelled order's state gets
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
