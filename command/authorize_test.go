package command

import (
	"encoding/json"
	"log/slog"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/ordergateway/gateway/domain"
	"github.com/ordergateway/gateway/kafka"
)

// TestHandlerAuthorizes: the handler applies domain.Authorize to each
// command's principal header and the order's state, before it looks at the
// order's recorded outcomes. A refused command writes nothing; a customer
// naming another customer's order gets what a missing order gets; a command
// without a valid principal is set aside (unless AuthDisabled lets one
// without a principal through).
func TestHandlerAuthorizes(t *testing.T) {
	topics := kafka.NewTopics("authz")
	h := &Handler{cfg: HandlerConfig{Topics: topics, Logger: slog.New(slog.DiscardHandler),
		Now: func() time.Time { return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) }}}
	c1 := domain.Principal{Role: domain.RoleCustomer, CustomerID: "c-1"}
	c2 := domain.Principal{Role: domain.RoleCustomer, CustomerID: "c-2"}
	staff := domain.Principal{Role: domain.RoleStaff, Subject: "ops"}
	states := partitionStates{}
	offset := int64(0)
	// run decides one command (principal nil: no header; raw: the header's
	// bytes) and keeps the state it leads to.
	run := func(h *Handler, p *domain.Principal, raw []byte, cmd domain.Command, key string) (Reply, decided) {
		t.Helper()
		typ, data, err := domain.MarshalCommand(cmd)
		if err != nil {
			t.Fatal(err)
		}
		env := envelope{CommandID: newID("cmd_"), Type: typ, OrderID: cmd.TargetOrderID(), IdempotencyKey: key, Data: data}
		value, _ := json.Marshal(env)
		headers := []*sarama.RecordHeader{{Key: []byte(HeaderReplyTo), Value: []byte("bus")}, {Key: []byte(HeaderReplyPartition), Value: []byte("0")},
			{Key: []byte(HeaderCommandID), Value: []byte(env.CommandID)}}
		if p != nil {
			raw = domain.MarshalPrincipal(*p)
		}
		if raw != nil {
			headers = append(headers, &sarama.RecordHeader{Key: []byte(HeaderPrincipal), Value: raw})
		}
		offset++
		d, err := h.decideBatch(states, []*sarama.ConsumerMessage{{Topic: topics.Commands, Offset: offset, Key: []byte(env.OrderID), Value: value, Headers: headers}})
		if err != nil || len(d.replies) != 1 {
			t.Fatalf("decide: %v, %d replies", err, len(d.replies))
		}
		for id, s := range d.changed[0] {
			if states[0] == nil {
				states[0] = map[string]*orderState{}
			}
			states[0][id] = s
		}
		return d.replies[0].reply, d
	}
	place := func(orderID, customer string) domain.PlaceOrder {
		return domain.PlaceOrder{OrderID: orderID, CustomerID: customer, Currency: "EUR", Items: []domain.ItemInput{{SKU: "A", Name: "A", Quantity: 1, UnitPrice: "1"}}}
	}
	applied := func(what string, r Reply, d decided, version int) {
		t.Helper()
		if r.Error != nil || r.Version != version || len(d.records) == 0 || d.dead != 0 {
			t.Errorf("%s: got %+v (%d records, %d dead), want applied at version %d", what, r.Error, len(d.records), d.dead, version)
		}
	}
	refused := func(what string, r Reply, d decided, code domain.Code, dead int64) {
		t.Helper()
		if r.Error == nil || r.Error.Code != code || r.Version != 0 || r.Order != nil || d.dead != dead || int64(len(d.records)) != dead {
			t.Errorf("%s: got %+v, version %d, order %v, %d records, %d dead; want %s, nothing but %d dead letters", what, r.Error, r.Version, r.Order != nil, len(d.records), d.dead, code, dead)
		}
	}

	r, d := run(h, &c1, nil, place("ord_1", "c-1"), "k1")
	applied("c-1 places an order for c-1", r, d, 1)
	r, d = run(h, &c2, nil, place("ord_2", "c-1"), "k2")
	refused("c-2 places an order for c-1", r, d, domain.CodeForbidden, 0)
	r, d = run(h, &c2, nil, place("ord_1", "c-2"), "k3")
	if r.Error == nil || r.Error.Code != domain.CodeInvalidTransition || r.Order != nil || r.Version != 0 || len(d.records) != 0 {
		t.Errorf("c-2 places an order under c-1's order id: %+v, version %d; want already exists and nothing of c-1's order", r.Error, r.Version)
	}
	r, d = run(h, &c2, nil, domain.ConfirmOrder{OrderID: "ord_1"}, "k4")
	refused("c-2 confirms c-1's order", r, d, domain.CodeNotFound, 0)
	missing, _ := run(h, &c2, nil, domain.ConfirmOrder{OrderID: "ord_missing"}, "k4b")
	if r.Error.Message != domain.NotFound("ord_1").Message || missing.Error == nil || missing.Error.Code != domain.CodeNotFound {
		t.Errorf("another customer's order (%+v) must look like a missing one (%+v)", r.Error, missing.Error)
	}
	r, d = run(h, &c1, nil, domain.ConfirmOrder{OrderID: "ord_1"}, "k5")
	applied("c-1 confirms c-1's order", r, d, 2)
	r, d = run(h, &c2, nil, domain.ConfirmOrder{OrderID: "ord_1"}, "k5")
	refused("c-2 replays c-1's idempotency key", r, d, domain.CodeNotFound, 0)
	r, d = run(h, &c1, nil, domain.ShipOrder{OrderID: "ord_1", TrackingNumber: "T"}, "k6")
	refused("c-1 ships c-1's order", r, d, domain.CodeForbidden, 0)
	r, d = run(h, &c2, nil, domain.DeliverOrder{OrderID: "ord_1"}, "k7")
	refused("c-2 delivers c-1's order", r, d, domain.CodeForbidden, 0)
	r, d = run(h, &staff, nil, domain.ShipOrder{OrderID: "ord_1", TrackingNumber: "T"}, "k8")
	applied("staff ships c-1's order", r, d, 3)
	r, d = run(h, nil, nil, domain.DeliverOrder{OrderID: "ord_1"}, "k9")
	refused("no principal", r, d, domain.CodeForbidden, 1)
	if reason := string(d.records[0].Headers[len(d.records[0].Headers)-4].Value); reason == "" {
		t.Error("the dead letter says nothing of why")
	}
	for _, bad := range []string{"", "{}", `{"role":"customer"}`, `{"role":"admin"}`, "not json"} {
		r, d = run(h, nil, []byte(bad), domain.DeliverOrder{OrderID: "ord_1"}, "k10")
		refused("principal header "+bad, r, d, domain.CodeForbidden, 1)
	}
	if o := states.get(0, "ord_1"); o == nil || o.Order.Version != 3 || o.Order.CustomerID != "c-1" {
		t.Fatalf("c-1's order after the refusals: %+v", o)
	}

	open := &Handler{cfg: h.cfg}
	open.cfg.AuthDisabled = true
	r, d = run(open, nil, nil, domain.DeliverOrder{OrderID: "ord_1"}, "k11")
	applied("AuthDisabled, no principal", r, d, 4)
	r, d = run(open, &c2, nil, domain.CancelOrder{OrderID: "ord_1", Reason: "x"}, "k12")
	refused("AuthDisabled, c-2 cancels c-1's order", r, d, domain.CodeNotFound, 0)
	r, d = run(open, nil, []byte("{}"), domain.CancelOrder{OrderID: "ord_1", Reason: "x"}, "k13")
	refused("AuthDisabled, a principal header that is not valid", r, d, domain.CodeForbidden, 1)
}
