package graph

import (
	"context"
	"encoding/json"
	"sync"
	"sync/atomic"

	"github.com/99designs/gqlgen/graphql"
	"github.com/ordergateway/gateway/view"
)

// sharedResults lets subscriptions that ask the same thing share each
// update's marshalled result: with many subscribers of one order (a
// popular order page, a support dashboard) the executor runs once per
// update, not once per subscriber.
//
// Subscriptions share when their query, operation name and variables are
// the same. That is only sound because an Order's fields are a function of
// the view document alone: no field resolvers, nothing that depends on who
// asks. A field that did would have to become part of the key.
type sharedResults struct {
	mu     sync.Mutex
	groups map[string]*resultGroup
}

// resultGroup is the results of one query; its fields are guarded by
// sharedResults.mu.
type resultGroup struct {
	key     string
	refs    int
	byOrder map[string]sharedResult
	// last is the result put last, read without the lock: the subscribers
	// of one order all ask for the same one.
	last atomic.Pointer[sharedResult]
}

type sharedResult struct {
	orderID string
	version int
	payload []byte
}

// maxSharedOrders bounds one group's memory (an ordersUpdated query sees
// many orders); past it the group starts again.
const maxSharedOrders = 1024

// shareKey identifies what an operation asks for.
func shareKey(query, operationName string, variables map[string]any) string {
	vars, err := json.Marshal(variables) // map keys come out sorted
	if err != nil {
		return ""
	}
	return query + "\x00" + operationName + "\x00" + string(vars)
}

// join returns the group of key for a new subscription; leave gives it
// back. A group lives while a subscription uses it. An empty key joins
// nothing (nil).
func (s *sharedResults) join(key string) *resultGroup {
	if key == "" {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.groups == nil {
		s.groups = map[string]*resultGroup{}
	}
	g := s.groups[key]
	if g == nil {
		g = &resultGroup{key: key, byOrder: map[string]sharedResult{}}
		s.groups[key] = g
	}
	g.refs++
	return g
}

func (s *sharedResults) leave(g *resultGroup) {
	if g == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if g.refs--; g.refs == 0 {
		delete(s.groups, g.key)
	}
}

// get returns the group's result for the order at version, or nil.
func (s *sharedResults) get(g *resultGroup, orderID string, version int) []byte {
	if g == nil {
		return nil
	}
	if r := g.last.Load(); r != nil && r.orderID == orderID && r.version == version {
		return r.payload
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := g.byOrder[orderID]; ok && r.version == version {
		return r.payload
	}
	return nil
}

// result is the encoded result of d for a subscription of group: the
// shared one if another subscription already has it, else the executor's
// (stream loads d, respond marshals it), which is then shared. It is nil
// when the operation's context has ended.
func (s *sharedResults) result(g *resultGroup, d view.OrderDoc, stream pullStream, respond graphql.ResponseHandler, ctx context.Context) []byte {
	if payload := s.get(g, d.ID, d.Version); payload != nil {
		return payload
	}
	stream.load(d)
	resp := respond(ctx)
	if resp == nil {
		return nil
	}
	payload := responsePayload(resp)
	s.put(g, d.ID, d.Version, payload)
	return payload
}

// put records the result for the order at version, replacing an older
// version's; the payload must not change afterwards.
func (s *sharedResults) put(g *resultGroup, orderID string, version int, payload []byte) {
	if g == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := g.byOrder[orderID]; ok && r.version > version {
		return
	}
	if len(g.byOrder) >= maxSharedOrders {
		clear(g.byOrder)
	}
	r := sharedResult{orderID: orderID, version: version, payload: payload}
	g.byOrder[orderID] = r
	g.last.Store(&r)
}
