package graph

import (
	"context"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/99designs/gqlgen/graphql"

	"github.com/ordergateway/gateway/domain"
	"github.com/ordergateway/gateway/view"
)

// A consistency token names a write: an order and the version the write
// left it at. It is opaque to clients.
const tokenPrefix = "ct1."

func consistencyToken(orderID string, version int) string {
	return tokenPrefix + base64.RawURLEncoding.EncodeToString([]byte(strconv.Itoa(version)+":"+orderID))
}

func parseToken(s string) (orderID string, version int, err error) {
	bad := &domain.Error{Code: domain.CodeInvalidInput, Message: fmt.Sprintf("consistencyToken %q is not one this server issued", s), Field: []string{"consistencyToken"}}
	raw, ok := strings.CutPrefix(s, tokenPrefix)
	if !ok {
		return "", 0, bad
	}
	b, err := base64.RawURLEncoding.DecodeString(raw)
	if err != nil {
		return "", 0, bad
	}
	v, id, ok := strings.Cut(string(b), ":")
	version, err = strconv.Atoi(v)
	if !ok || err != nil || id == "" || version < 1 {
		return "", 0, bad
	}
	return id, version, nil
}

// awaitToken waits until the views include the write named by token, bounded
// by the consistency timeout. If they do not get there in time, the answer
// says so in extensions.consistency; it is never silently stale.
func (r *Resolver) awaitToken(ctx context.Context, token *string) error {
	return r.awaitTokenUntil(ctx, token, time.Now().Add(r.ConsistencyTimeout))
}

// awaitTokenUntil is awaitToken with the wait's deadline given.
func (r *Resolver) awaitTokenUntil(ctx context.Context, token *string, deadline time.Time) error {
	if token == nil || *token == "" {
		return nil
	}
	orderID, version, err := parseToken(*token)
	if err != nil {
		return err
	}
	if r.Waiter == nil {
		return nil
	}
	if !r.waits.acquire() {
		notReached(ctx, fmt.Sprintf("too many reads are waiting for their writes (%d); this answer may not include version %d of order %s", r.waits.max(), version, orderID))
		return nil
	}
	defer r.waits.release()
	wctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	reached := r.Waiter.WaitForOrder(wctx, orderID, version)
	if reached && r.othersOrder(ctx, orderID) {
		// A customer's token naming another customer's order waits as for
		// a missing order, so how long a read waits tells nothing of it.
		<-wctx.Done()
		reached = false
	}
	if !reached {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		notReached(ctx, fmt.Sprintf("the views did not include version %d of order %s within %s; this answer may not include that write", version, orderID, r.ConsistencyTimeout))
	}
	return nil
}

// othersOrder reports whether the caller is a customer and the order's view
// is another customer's (a view that cannot be read counts as theirs: the
// wait then runs out as for a missing order).
func (r *Resolver) othersOrder(ctx context.Context, orderID string) bool {
	own, err := r.ownCustomer(ctx)
	if err != nil || own == "" {
		return err != nil
	}
	d, err := r.Views.Order(ctx, orderID)
	return err != nil || d != nil && d.CustomerID != own
}

// consistencyMu serialises the check-then-register of notReached (gqlgen
// panics on a second registration of one key, and resolves the fields of
// a query concurrently).
var consistencyMu sync.Mutex

// notReached says in extensions.consistency that a wait ran out: reached
// false, and a message. A second wait that runs out in the same response
// (customer waits for the order view, then for the summary; a query may
// have several fields with tokens) adds its message to the first.
func notReached(ctx context.Context, message string) {
	consistencyMu.Lock()
	defer consistencyMu.Unlock()
	if ext, ok := graphql.GetExtension(ctx, "consistency").(map[string]any); ok {
		ext["message"] = fmt.Sprintf("%v; %s", ext["message"], message)
		return
	}
	graphql.RegisterExtension(ctx, "consistency", map[string]any{"reached": false, "message": message})
}

// customerSummary reads customer id's summary after the wait a token asks
// for. The projector writes an order's view before it counts the change in
// the summary, and the view carries what the summary may not count yet
// (view.OrderDoc.Uncounted): once the views include the token's write, the
// summary is read again (every summaryPoll, within the same deadline)
// until it counts all of that.
func (r *Resolver) customerSummary(ctx context.Context, id string, token *string) (*view.CustomerDoc, error) {
	ctx = view.Pin(ctx) // the wait and the reads on one generation of the views
	deadline := time.Now().Add(r.ConsistencyTimeout)
	if err := r.awaitTokenUntil(ctx, token, deadline); err != nil {
		return nil, err
	}
	c, err := r.Views.Customer(ctx, id)
	if err != nil || token == nil || *token == "" || r.Waiter == nil {
		return c, err
	}
	orderID, version, err := parseToken(*token)
	if err != nil {
		return nil, err
	}
	o, err := r.Views.Order(ctx, orderID)
	if err != nil || o == nil || o.CustomerID != id || counts(c, o.Uncounted) {
		return c, err // another customer's order has nothing to wait for
	}
	if !r.waits.acquire() {
		notReached(ctx, fmt.Sprintf("too many reads are waiting for their writes (%d); this summary may not include version %d of order %s", r.waits.max(), version, orderID))
		return c, nil
	}
	defer r.waits.release()
	for !counts(c, o.Uncounted) {
		if time.Now().Add(summaryPoll).After(deadline) {
			notReached(ctx, fmt.Sprintf("the customer summary did not include version %d of order %s within %s; this answer may not include that write", version, orderID, r.ConsistencyTimeout))
			return c, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(summaryPoll):
		}
		view.Repin(ctx) // a switch meanwhile: the summary of the new generation (offsets are the same)
		if c, err = r.Views.Customer(ctx, id); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// summaryPoll is how often customerSummary reads a summary again while it
// waits for it to count a write.
const summaryPoll = 20 * time.Millisecond

// counts reports whether summary c counts every transition of ts.
func counts(c *view.CustomerDoc, ts []view.Transition) bool {
	for _, t := range ts {
		if c == nil {
			return false
		}
		if applied, ok := c.Applied[strconv.Itoa(int(t.Partition))]; !ok || applied < t.Offset {
			return false
		}
	}
	return true
}

// MaxConsistencyWaits bounds the reads that wait for their consistency
// token at once, in one instance; a read past it answers at once, saying in
// extensions.consistency that it did not wait.
const MaxConsistencyWaits = 1000

// waitSlots counts the consistency waits in progress.
type waitSlots struct{ n atomic.Int64 }

func (w *waitSlots) max() int { return MaxConsistencyWaits }

func (w *waitSlots) acquire() bool {
	if w.n.Add(1) > MaxConsistencyWaits {
		w.n.Add(-1)
		return false
	}
	return true
}

func (w *waitSlots) release() { w.n.Add(-1) }
