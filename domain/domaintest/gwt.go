// Package domaintest holds the given/when/then form of the domain's and the
// projection's rules, shared by the domain tests, the upcaster golden tests
// (through the projector, and through a views rebuild:
// TestViewsRebuildFollowsTheProjectionRules) and any test that states a
// rule: a new rule is one row of a table.
//
//   - Case: given these events, when this command, then these events or
//     this user error (Run).
//   - ViewCase: given these events, then this order view (RunViews).
//
// It is imported by tests only.
package domaintest

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ordergateway/gateway/domain"
	"github.com/ordergateway/gateway/view"
)

var (
	// Now is the fixed clock Decide is called with.
	Now = time.Date(2025, time.March, 4, 12, 30, 0, 0, time.UTC)
	// Start is when the first given event occurred; later given events
	// follow one minute apart.
	Start = time.Date(2025, time.March, 1, 9, 0, 0, 0, time.UTC)
)

// OrderID is the order the given events and the commands of a Case address.
const OrderID = "order-1"

// History turns event payloads into the events of order id, with versions
// 1..n and times one minute apart from Start.
func History(id string, data ...domain.EventData) []domain.Event {
	evs := make([]domain.Event, len(data))
	for i, d := range data {
		evs[i] = domain.Event{OrderID: id, Version: i + 1, OccurredAt: At(i), Data: d}
	}
	return evs
}

// At is the time of the i-th (0-based) event History makes.
func At(i int) time.Time { return Start.Add(time.Duration(i) * time.Minute) }

// Case is one rule of Decide: given events (of OrderID, versions 1..n),
// when a command is decided at Now, then these events, or this error.
type Case struct {
	Name      string
	Given     []domain.EventData
	When      domain.Command
	Then      []domain.EventData
	WantErr   domain.Code
	WantField []string // checked when WantErr is set; required for INVALID_INPUT
	WantMsg   string   // substring of the error message, when it matters
}

// Run checks each case as a subtest. Besides Then or WantErr it checks that
// Decide leaves its state alone, that the events carry the next versions,
// the order id, Now and no command id, and that they apply on top of the
// given ones.
func Run(t *testing.T, cases []Case) {
	t.Helper()
	names := map[string]bool{}
	for _, tc := range cases {
		if names[tc.Name] {
			t.Fatalf("duplicate case name %q", tc.Name)
		}
		names[tc.Name] = true
		if tc.WantErr == domain.CodeInvalidInput && tc.WantField == nil {
			t.Fatalf("case %q: INVALID_INPUT cases must name WantField", tc.Name)
		}
		if tc.WantErr == "" && tc.Then == nil {
			t.Fatalf("case %q: neither Then nor WantErr", tc.Name)
		}
		t.Run(tc.Name, func(t *testing.T) {
			given := History(OrderID, tc.Given...)
			state := domain.Fold(given)
			pristine := domain.Fold(given)
			got, err := domain.Decide(state, tc.When, Now)
			if !reflect.DeepEqual(state, pristine) {
				t.Errorf("Decide modified the state it was given:\n got  %+v\n want %+v", state, pristine)
			}
			if tc.WantErr != "" {
				if got != nil {
					t.Errorf("events = %+v, want none with an error", got)
				}
				CheckError(t, err, tc.WantErr, tc.WantField, tc.WantMsg)
				return
			}
			if err != nil {
				t.Fatalf("Decide: unexpected error %v", err)
			}
			CheckEvents(t, state, tc.When, got, tc.Then)
			after := domain.Fold(append(given, got...))
			if after.Version != state.Version+len(got) {
				t.Errorf("version after applying = %d, want %d", after.Version, state.Version+len(got))
			}
		})
	}
}

// CheckError fails t unless err is a *domain.Error with code, field (when
// not nil), a message, containing msg (when not empty).
func CheckError(t *testing.T, err error, code domain.Code, field []string, msg string) {
	t.Helper()
	var de *domain.Error
	if !errors.As(err, &de) {
		t.Fatalf("error = %v (%T), want *Error with code %s", err, err, code)
	}
	if de.Code != code {
		t.Errorf("code = %s, want %s (message %q, field %v)", de.Code, code, de.Message, de.Field)
	}
	if field != nil && !reflect.DeepEqual(de.Field, field) {
		t.Errorf("field = %q, want %q (message %q)", de.Field, field, de.Message)
	}
	if de.Message == "" {
		t.Errorf("error has an empty message")
	}
	if msg != "" && !strings.Contains(de.Message, msg) {
		t.Errorf("message = %q, want it to contain %q", de.Message, msg)
	}
}

// CheckEvents fails t unless got, decided for cmd on state at Now, are the
// events of want.
func CheckEvents(t *testing.T, state domain.Order, cmd domain.Command, got []domain.Event, want []domain.EventData) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d events %+v, want %d %+v", len(got), got, len(want), want)
	}
	for i, e := range got {
		if e.Data == nil {
			t.Fatalf("event %d has nil Data", i)
		}
		if e.Data.EventType() != want[i].EventType() {
			t.Errorf("event %d type = %s, want %s", i, e.Data.EventType(), want[i].EventType())
		}
		if !reflect.DeepEqual(e.Data, want[i]) {
			t.Errorf("event %d data = %#v, want %#v", i, e.Data, want[i])
		}
		if e.Version != state.Version+1+i {
			t.Errorf("event %d version = %d, want %d", i, e.Version, state.Version+1+i)
		}
		if e.OrderID != cmd.TargetOrderID() {
			t.Errorf("event %d order id = %q, want %q", i, e.OrderID, cmd.TargetOrderID())
		}
		if !e.OccurredAt.Equal(Now) {
			t.Errorf("event %d occurredAt = %v, want %v", i, e.OccurredAt, Now)
		}
		if e.CommandID != "" {
			t.Errorf("event %d command id = %q; Decide leaves it to the handler", i, e.CommandID)
		}
	}
}

// ViewCase is one rule of the projection: given these events (of one
// order, in version order), then this order view.
type ViewCase struct {
	Name  string
	Given []domain.Event
	Then  view.OrderDoc
}

// RunViews checks each case as a subtest: the given events, through the
// wire (domain.MarshalEvent, domain.UnmarshalEvent) and domain.Fold, make
// view.FromOrder's document Then.
func RunViews(t *testing.T, cases []ViewCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.Name, func(t *testing.T) {
			decoded := make([]domain.Event, len(tc.Given))
			for i, e := range tc.Given {
				b, err := domain.MarshalEvent(e)
				if err != nil {
					t.Fatal(err)
				}
				if decoded[i], err = domain.UnmarshalEvent(b); err != nil {
					t.Fatal(err)
				}
			}
			CheckView(t, Project(decoded), tc.Then)
		})
	}
}

// Project is the view of the order the events make.
func Project(events []domain.Event) view.OrderDoc { return view.FromOrder(domain.Fold(events)) }

// CheckView fails t unless got is want.
func CheckView(t *testing.T, got, want view.OrderDoc) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("view:\n got  %+v\n want %+v", got, want)
	}
}
