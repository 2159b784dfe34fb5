package graph

import (
	"context"
	"sync"

	"github.com/ordergateway/gateway/graph/model"
)

// MaxNodes is the most ids one nodes(ids:) takes; more are refused with
// INVALID_INPUT before anything is read.
const MaxNodes = 100

// nodeReads is how many of one request's node reads run at once.
const nodeReads = 8

// readNodes reads the objects of ids for node and nodes. Order is the only
// Node, and its id is the order id as it is (already unique across the
// gateway), so each id is an order read from the views under the rules of
// order(id:): a missing order, or another customer's (own is the caller's
// customer id, "" for staff or with authentication off), is a nil entry.
// A failed read fails the whole field.
func (r *Resolver) readNodes(ctx context.Context, ids []string, own string) ([]model.Node, error) {
	nodes := make([]model.Node, len(ids))
	errs := make([]error, len(ids))
	sem := make(chan struct{}, nodeReads)
	var wg sync.WaitGroup
	for i, id := range ids {
		if j := indexOf(ids[:i], id); j >= 0 {
			continue // read once: filled in below
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			d, err := r.Views.Order(ctx, id)
			switch {
			case err != nil:
				errs[i] = err
			case d != nil && (own == "" || d.CustomerID == own):
				nodes[i] = orderModel(*d)
			}
		}()
	}
	wg.Wait()
	for i, id := range ids {
		if errs[i] != nil {
			return nil, r.internal(ctx, errs[i])
		}
		if j := indexOf(ids[:i], id); j >= 0 {
			nodes[i] = nodes[j]
		}
	}
	return nodes, nil
}

func indexOf(ids []string, id string) int {
	for i, v := range ids {
		if v == id {
			return i
		}
	}
	return -1
}
