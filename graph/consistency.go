package graph

import (
	"context"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"

	"github.com/99designs/gqlgen/graphql"

	"github.com/ordergateway/gateway/domain"
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
	wctx, cancel := context.WithTimeout(ctx, r.ConsistencyTimeout)
	defer cancel()
	if !r.Waiter.WaitForOrder(wctx, orderID, version) {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		graphql.RegisterExtension(ctx, "consistency", map[string]any{
			"reached": false,
			"message": fmt.Sprintf("the views did not include version %d of order %s within %s; this answer may not include that write", version, orderID, r.ConsistencyTimeout),
		})
	}
	return nil
}
