package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// batching is what the gateway's own metrics say about how it batched the
// load: the handler's commands per Kafka transaction and the projector's
// events per batch. The broker's work per order falls as they grow, so
// they explain much of the difference between two runs.
type batching struct {
	transactions, commands float64 // handler: transactions, commands in them
	batches, events        float64 // projector: batches, events in them
}

// readBatching reads the gateway's /metrics (beside its GraphQL endpoint);
// a gateway whose metrics are elsewhere or off reads as zeros.
func readBatching(ctx context.Context, graphqlURL string) batching {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(graphqlURL, "/graphql")+"/metrics", nil)
	if err != nil {
		return batching{}
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return batching{}
	}
	defer res.Body.Close()
	var b batching
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok || strings.HasPrefix(name, "#") {
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			continue
		}
		// The projection's series are by views generation (two during a
		// rebuild): summed.
		name, _, _ = strings.Cut(name, "{")
		switch name {
		case "order_gateway_handler_batch_size_commands_count":
			b.transactions = v
		case "order_gateway_handler_batch_size_commands_sum":
			b.commands = v
		case "order_gateway_projection_batch_size_events_count":
			b.batches += v
		case "order_gateway_projection_batch_size_events_sum":
			b.events += v
		}
	}
	return b
}

// since is what happened between an earlier reading and b.
func (b batching) since(a batching) batching {
	return batching{b.transactions - a.transactions, b.commands - a.commands, b.batches - a.batches, b.events - a.events}
}

// String: "commands per transaction 12.3, events per projector batch 45.6"
// (— where nothing was counted).
func (b batching) String() string {
	ratio := func(n, d float64) string {
		if d <= 0 {
			return "—"
		}
		return fmt.Sprintf("%.1f", n/d)
	}
	return fmt.Sprintf("commands per transaction %s, events per projector batch %s", ratio(b.commands, b.transactions), ratio(b.events, b.batches))
}
