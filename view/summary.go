package view

import (
	"cmp"
	"maps"
	"slices"
	"strconv"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/ordergateway/gateway/domain"
)

// CustomerDoc is the customer summary, one plain document per customer in
// the "customers" collection:
//
//	{_id: "c-1", orderCount: 3, openOrderCount: 1,
//	 countsByStatus: [{status: "PENDING", count: 1}, {status: "DELIVERED", count: 2}],
//	 lifetimeValue: [{amount: 2599, currency: "EUR"}],
//	 applied: {"0": 812, "4": 77}, rev: 891}
//
// Its size does not grow with the customer's orders: at most five status
// counts (zero counts are left out), one lifetime value per currency the
// customer has had an order delivered in, and one applied offset per
// partition of the events topic. applied[p] is the offset of the last
// event of partition p that the summary counts, so that the projector
// counts each event once whatever the batches, retries and replays
// (Count); rev, the sum of the applied offsets plus one each, grows with
// every write and guards concurrent writers.
type CustomerDoc struct {
	ID             string        `bson:"_id" json:"customerId"`
	OrderCount     int           `bson:"orderCount" json:"orderCount"`
	OpenOrderCount int           `bson:"openOrderCount" json:"openOrderCount"`
	CountsByStatus []StatusCount `bson:"countsByStatus" json:"countsByStatus"`
	LifetimeValue  []Money       `bson:"lifetimeValue" json:"lifetimeValue"`
	Applied        Offsets       `bson:"applied" json:"-"`
	Rev            int64         `bson:"rev" json:"-"`
	// Legacy holds the order list of a summary stored in the first format,
	// which listed every order of the customer; see IsLegacy. The next
	// write leaves it out.
	Legacy bson.RawValue `bson:"orders,omitempty" json:"-"`
}

type StatusCount struct {
	Status string `bson:"status" json:"status"`
	Count  int    `bson:"count" json:"count"`
}

type Money struct {
	Amount   int64  `bson:"amount" json:"amount"`
	Currency string `bson:"currency" json:"currency"`
}

// Offsets are offsets by partition (its number in decimal). In BSON they are
// one document with the partitions in ascending order, so that a summary
// rebuilt from the same events is the same bytes.
type Offsets map[string]int64

// MarshalBSON encodes the offsets in partition order.
func (o Offsets) MarshalBSON() ([]byte, error) {
	keys := slices.Collect(maps.Keys(o))
	slices.SortFunc(keys, func(a, b string) int {
		ai, _ := strconv.Atoi(a)
		bi, _ := strconv.Atoi(b)
		return cmp.Or(cmp.Compare(ai, bi), cmp.Compare(a, b))
	})
	d := make(bson.D, len(keys))
	for i, k := range keys {
		d[i] = bson.E{Key: k, Value: o[k]}
	}
	return bson.Marshal(d)
}

// IsLegacy reports whether the summary was stored in the first format. Its
// counts carry over, but it has no applied offsets: events the projector
// replays after an upgrade (those after its last committed offsets) may be
// counted twice. Rebuild the views to be exact (README).
func (c *CustomerDoc) IsLegacy() bool { return len(c.Legacy.Value) > 0 }

// Contribution is what one order adds to its customer's summary: one order
// in Status, and Total of Currency to the lifetime value once it is
// delivered. The zero Contribution is no order at all.
type Contribution struct {
	Status   string `bson:"status,omitempty"`
	Total    int64  `bson:"total,omitempty"`
	Currency string `bson:"currency,omitempty"`
}

// ContributionOf is what order o contributes (nothing if it does not exist).
func ContributionOf(o domain.Order) Contribution {
	if !o.Exists() {
		return Contribution{}
	}
	return Contribution{Status: string(o.Status), Total: o.Total(), Currency: o.Currency}
}

// Transition is what one event did to an order's contribution: the event
// is at Offset of Partition of the events topic; From is the order's
// contribution before it, To after it.
type Transition struct {
	Partition int32        `bson:"partition"`
	Offset    int64        `bson:"offset"`
	From      Contribution `bson:"from"`
	To        Contribution `bson:"to"`
}

// Count applies t to the summary unless the summary already counts it (its
// applied offset for t's partition is at or past t's offset), and reports
// whether it applied it. A customer's transitions from one partition must
// be counted in offset order; partitions are independent.
func (c *CustomerDoc) Count(t Transition) bool {
	key := strconv.Itoa(int(t.Partition))
	prev, ok := c.Applied[key]
	if !ok {
		prev = -1
	}
	if t.Offset <= prev {
		return false
	}
	c.add(t.From, -1)
	c.add(t.To, +1)
	if c.Applied == nil {
		c.Applied = Offsets{}
	}
	c.Applied[key] = t.Offset
	c.Rev += t.Offset - prev
	c.Legacy = bson.RawValue{}
	return true
}

// add adds (sign +1) or removes (sign -1) one order's contribution.
func (c *CustomerDoc) add(o Contribution, sign int) {
	if o.Status == "" {
		return
	}
	c.OrderCount += sign
	if domain.Status(o.Status).IsOpen() {
		c.OpenOrderCount += sign
	}
	i := slices.IndexFunc(c.CountsByStatus, func(s StatusCount) bool { return s.Status == o.Status })
	if i < 0 {
		c.CountsByStatus = append(c.CountsByStatus, StatusCount{Status: o.Status})
		i = len(c.CountsByStatus) - 1
	}
	c.CountsByStatus[i].Count += sign
	if c.CountsByStatus[i].Count == 0 {
		c.CountsByStatus = slices.Delete(c.CountsByStatus, i, i+1)
	}
	slices.SortFunc(c.CountsByStatus, func(a, b StatusCount) int { return statusRank(a.Status) - statusRank(b.Status) })
	// DELIVERED is final: an order leaves it only when a replay undoes a
	// count, so a currency's entry stays once it exists.
	if o.Status != string(domain.StatusDelivered) {
		return
	}
	j := slices.IndexFunc(c.LifetimeValue, func(m Money) bool { return m.Currency == o.Currency })
	if j < 0 {
		c.LifetimeValue = append(c.LifetimeValue, Money{Currency: o.Currency})
		slices.SortFunc(c.LifetimeValue, func(a, b Money) int { return cmp.Compare(a.Currency, b.Currency) })
		j = slices.IndexFunc(c.LifetimeValue, func(m Money) bool { return m.Currency == o.Currency })
	}
	c.LifetimeValue[j].Amount += int64(sign) * o.Total
}

func statusRank(s string) int {
	return slices.Index(domain.AllStatuses, domain.Status(s))
}

// Clone returns a copy of c that shares nothing with it.
func (c CustomerDoc) Clone() CustomerDoc {
	c.CountsByStatus = slices.Clone(c.CountsByStatus)
	c.LifetimeValue = slices.Clone(c.LifetimeValue)
	c.Applied = maps.Clone(c.Applied)
	c.normalize()
	return c
}

// SummaryOf is the summary that orders imply, without applied offsets: what
// a summary's counts must equal once every event of these orders is
// counted.
func SummaryOf(customerID string, orders []OrderDoc) CustomerDoc {
	c := CustomerDoc{ID: customerID}
	for _, d := range orders {
		c.add(ContributionOf(d.ToOrder()), +1)
	}
	c.normalize()
	return c
}

// normalize makes empty lists non-nil, as the GraphQL fields are.
func (c *CustomerDoc) normalize() {
	if c.CountsByStatus == nil {
		c.CountsByStatus = []StatusCount{}
	}
	if c.LifetimeValue == nil {
		c.LifetimeValue = []Money{}
	}
}
