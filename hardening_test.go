package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/ordergateway/gateway/kafka"
	"github.com/ordergateway/gateway/view"
)

// maxMessageLength bounds what a refusal may say: it names the field and the
// limit, never the offending value in full.
const maxMessageLength = 300

// TestOversizedInputIsRefused: values over their limits (a 300 KB
// idempotency key, a unit price padded with thousands of zeros, a 300 KB
// currency code or country) are refused by the gateway with INVALID_INPUT
// naming the field, in a short message that does not echo the value.
func TestOversizedInputIsRefused(t *testing.T) {
	g := startGateway(t, testConfig(t))
	huge := strings.Repeat("k", 300<<10)
	cases := []struct {
		name  string
		input map[string]any
		field string
	}{
		{"idempotency key", withKey(placeInput("c-big", item("A", 1, "1")), huge), "input.idempotencyKey"},
		{"padded unit price", placeInput("c-big", item("A", 1, strings.Repeat("0", 5000)+"1")), "input.items.0.unitPrice"},
		{"currency", func() map[string]any {
			in := placeInput("c-big", item("A", 1, "1"))
			in["currencyCode"] = huge
			return in
		}(), "input.currencyCode"},
		{"country", func() map[string]any {
			in := placeInput("c-big", item("A", 1, "1"))
			in["shippingAddress"] = map[string]any{"name": "N", "line1": "L", "city": "C", "postalCode": "P", "country": huge}
			return in
		}(), "input.shippingAddress.country"},
		{"customer id", placeInput(huge, item("A", 1, "1")), "input.customerId"},
		{"item name", placeInput("c-big", map[string]any{"sku": "A", "name": huge, "quantity": 1, "unitPrice": "1"}), "input.items.0.name"},
	}
	for _, c := range cases {
		p := g.mutate(t, "placeOrder", c.input)
		if len(p.UserErrors) != 1 || p.UserErrors[0].Code != "INVALID_INPUT" || strings.Join(p.UserErrors[0].Field, ".") != c.field {
			t.Errorf("%s: userErrors %.300v, want one INVALID_INPUT on %s", c.name, p.UserErrors, c.field)
			continue
		}
		if msg := p.UserErrors[0].Message; len(msg) > maxMessageLength {
			t.Errorf("%s: the message is %d bytes long: %.100s…", c.name, len(msg), msg)
		}
		t.Logf("%s: %s", c.name, p.UserErrors[0].Message)
	}
	// A key at the limit is fine, and a retry with it is recognised.
	atLimit := strings.Repeat("é", 64) // 128 bytes
	first := g.mustMutate(t, "placeOrder", withKey(placeInput("c-big", item("A", 1, "1")), atLimit))
	again := g.mustMutate(t, "placeOrder", withKey(placeInput("c-big", item("A", 1, "1")), atLimit))
	if again.ID != first.ID || again.Version != 1 {
		t.Errorf("retry with a 128-byte key: order %s at version %d, want %s at 1", again.ID, again.Version, first.ID)
	}
	reused := g.mutate(t, "placeOrder", withKey(placeInput("c-big", item("B", 1, "1")), atLimit))
	if len(reused.UserErrors) != 1 || reused.UserErrors[0].Code != "IDEMPOTENCY_KEY_REUSED" || strings.Contains(reused.UserErrors[0].Message, atLimit) {
		t.Errorf("reused key: %+v, want IDEMPOTENCY_KEY_REUSED without the key", reused.UserErrors)
	}
}

func withKey(input map[string]any, key string) map[string]any {
	input["idempotencyKey"] = key
	return input
}

// TestOversizedCommandsDoNotStopAPartition reproduces the partition wedge of
// issue 15: commands written straight to the commands topic (past the
// gateway's checks) with 300 KB idempotency keys, one placeOrder and three
// confirmOrder on one order, used to make its snapshot larger than the
// broker's message limit: every transaction of the partition failed, for
// good and across restarts. The handler refuses such keys itself; mutations
// on the same partition keep being answered, also after a restart.
func TestOversizedCommandsDoNotStopAPartition(t *testing.T) {
	cfg := testConfig(t)
	cfg.Partitions = 1 // every order on the partition of the oversized commands
	g := startGateway(t, cfg)
	topics := kafka.NewTopics(cfg.TopicPrefix)
	const orderID = "ord_wedge"
	raw := func(typ, key string, data map[string]any) *sarama.ProducerMessage {
		d, _ := json.Marshal(data)
		v, _ := json.Marshal(map[string]any{"commandId": "cmd_" + key[:8] + typ, "type": typ, "orderId": orderID, "idempotencyKey": key, "data": json.RawMessage(d)})
		return &sarama.ProducerMessage{Topic: topics.Commands, Key: sarama.StringEncoder(orderID), Value: sarama.ByteEncoder(v)}
	}
	var poison []*sarama.ProducerMessage
	poison = append(poison, raw("PlaceOrder", "a"+strings.Repeat("x", 300<<10), map[string]any{
		"orderId": orderID, "customerId": "c-wedge", "currencyCode": "EUR",
		"items": []map[string]any{{"sku": "A", "name": "A", "quantity": 1, "unitPrice": "1"}}}))
	for _, k := range []string{"b", "c", "d"} {
		poison = append(poison, raw("ConfirmOrder", k+strings.Repeat("y", 300<<10), map[string]any{"orderId": orderID}))
	}
	sc := kafka.Config("test-wedge", 20*time.Millisecond)
	sc.Producer.Return.Successes = true
	prod, err := sarama.NewSyncProducer(testBrokers, sc)
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	if err := prod.SendMessages(poison); err != nil {
		t.Fatalf("write the oversized commands: %v", err)
	}
	flowing := func(g *gateway, when string) {
		t.Helper()
		t0 := time.Now()
		o := g.mustMutate(t, "placeOrder", placeInput("c-after", item("A", 1, "1")))
		c := g.mustMutate(t, "confirmOrder", map[string]any{"orderId": o.ID})
		t.Logf("%s: placeOrder and confirmOrder answered in %v", when, time.Since(t0).Round(time.Millisecond))
		if c.Status != "CONFIRMED" {
			t.Fatalf("%s: order %s is %s", when, o.ID, c.Status)
		}
	}
	flowing(g, "after the oversized commands")
	if o := g.orderAt(t, orderID, ""); o != nil {
		t.Errorf("the placeOrder with a 300 KB key was applied: %+v", o.Status)
	}
	g.stop()
	flowing(startGateway(t, cfg), "after a restart")
}

// TestCommandRefusedByTheBrokerIsSetAside: a command within every field
// limit whose event the broker refuses for its size (the events topic is
// created with max.message.bytes of 4 KB) is answered LIMIT_EXCEEDED and
// set aside in the dead-letter topic; the commands committed with it and
// after it are handled.
func TestCommandRefusedByTheBrokerIsSetAside(t *testing.T) {
	cfg := testConfig(t)
	cfg.Partitions = 1
	topics := kafka.NewTopics(cfg.TopicPrefix)
	admin := newAdmin(t)
	small := "4096"
	if err := admin.CreateTopic(topics.Events, &sarama.TopicDetail{NumPartitions: 1, ReplicationFactor: 1,
		ConfigEntries: map[string]*string{"max.message.bytes": &small}}, false); err != nil {
		t.Fatalf("create %s: %v", topics.Events, err)
	}
	admin.Close()
	g := startGateway(t, cfg)

	var bigItems []map[string]any
	for i := range 30 {
		bigItems = append(bigItems, map[string]any{"sku": "S" + string(rune('a'+i%26)) + string(rune('a'+i/26)), "name": strings.Repeat("n", 200), "quantity": 1, "unitPrice": "1"})
	}
	// The big order and small ones at once, so that some share its batch.
	type result struct {
		big bool
		p   Payload
	}
	results := make(chan result, 7)
	for i := range 7 {
		go func() {
			in := placeInput("c-small", item("A", 1, "1"))
			if i == 3 {
				in = placeInput("c-big", bigItems...)
			}
			results <- result{i == 3, g.mutate(t, "placeOrder", in)}
		}()
	}
	for range 7 {
		r := <-results
		switch {
		case r.big && (len(r.p.UserErrors) != 1 || r.p.UserErrors[0].Code != "LIMIT_EXCEEDED" || r.p.Order != nil):
			t.Errorf("the big order: %+v, want LIMIT_EXCEEDED and no order", r.p.UserErrors)
		case r.big:
			t.Logf("the big order: %s: %s", r.p.UserErrors[0].Code, r.p.UserErrors[0].Message)
		case len(r.p.UserErrors) > 0 || r.p.Order == nil:
			t.Errorf("a small order: %+v", r.p.UserErrors)
		}
	}
	o := g.mustMutate(t, "placeOrder", placeInput("c-small", item("B", 1, "1")))
	g.mustMutate(t, "confirmOrder", map[string]any{"orderId": o.ID})

	dead := readTopic(t, topics.DeadLetter, time.Second)
	if len(dead) != 1 {
		t.Fatalf("dead-letter topic holds %d records, want 1", len(dead))
	}
	if why := kafka.Header(dead[0], kafka.HeaderDLError); !strings.Contains(why, "too large") && !strings.Contains(why, "MaxMessageBytes") {
		t.Errorf("dead letter's reason: %q", why)
	} else {
		t.Logf("dead letter: the command's %d bytes, reason %q", len(dead[0].Value), why)
	}
	if code := kafka.Header(dead[0], kafka.HeaderDLReason); code != kafka.ReasonTooLarge {
		t.Errorf("dead letter's reason code %q, want %s", code, kafka.ReasonTooLarge)
	}
	if len(dead[0].Value) == 0 || kafka.Header(dead[0], kafka.HeaderDLTopic) != topics.Commands {
		t.Errorf("dead letter lacks the command: %d bytes from %s", len(dead[0].Value), kafka.Header(dead[0], kafka.HeaderDLTopic))
	}
	resp, err := http.Get(g.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := `order_gateway_dead_letters_total{source="commands"} 1`; !strings.Contains(string(metrics), want) {
		t.Errorf("/metrics lacks %q:\n%s", want, metrics)
	}
}

// TestHostileQueriesAreRefusedCheaply: documents that cost a GraphQL server
// far more than their size (fragments that double at each level, hundreds
// of aliased pages, thousands of repeated fields, a megabyte of tokens) are
// refused with QUERY_TOO_COMPLEX and no 5xx, over POST and GET, and a
// normal mutation is answered right after each.
func TestHostileQueriesAreRefusedCheaply(t *testing.T) {
	g := startGateway(t, testConfig(t))
	var frags strings.Builder
	frags.WriteString("query { order(id: \"x\") { ...F0 } }\n")
	for i := range 30 {
		fmt.Fprintf(&frags, "fragment F%d on Order { id ...F%d ...F%d }\n", i, i+1, i+1)
	}
	frags.WriteString("fragment F30 on Order { id }\n")
	var aliases strings.Builder
	aliases.WriteString("{")
	for i := range 333 {
		fmt.Fprintf(&aliases, " a%d: orders(first: 100) { edges { node { id status } } }", i)
	}
	aliases.WriteString(" }")
	probes := map[string]string{
		"fragments spread twice, 30 levels": frags.String(),
		"333 aliases of orders(first: 100)": aliases.String(),
		"50,000 repeated fields":            "{ order(id: \"x\") { " + strings.Repeat("id ", 50_000) + "} }",
		"750 KB of aliases":                 "{ " + strings.Repeat("o: order(id: \"x\") { id } ", 30_000) + "}",
		"over the body limit":               "{ " + strings.Repeat("o: order(id: \"x\") { id } ", 45_000) + "}",
	}
	for name, q := range probes {
		for _, method := range []string{http.MethodPost, http.MethodGet} {
			if method == http.MethodGet && len(q) > 4000 {
				continue // too long for a URL
			}
			t0 := time.Now()
			var resp *http.Response
			var err error
			if method == http.MethodPost {
				body, _ := json.Marshal(map[string]any{"query": q})
				resp, err = http.Post(g.url+"/graphql", "application/json", bytes.NewReader(body))
			} else {
				resp, err = http.Get(g.url + "/graphql?query=" + url.QueryEscape(q))
			}
			if err != nil {
				t.Fatalf("%s over %s: %v", name, method, err)
			}
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var r gqlResponse
			_ = json.Unmarshal(raw, &r)
			took := time.Since(t0)
			want, wantStatus := "QUERY_TOO_COMPLEX", http.StatusOK
			if len(q) > 1<<20 {
				want, wantStatus = "REQUEST_TOO_LARGE", http.StatusRequestEntityTooLarge
			}
			if resp.StatusCode != wantStatus || len(r.Errors) == 0 || r.Errors[0].Extensions["code"] != want {
				t.Errorf("%s over %s (%d bytes): HTTP %d %.300s", name, method, len(q), resp.StatusCode, raw)
			}
			t.Logf("%s over %s (%d bytes): HTTP %d in %v: %.120s", name, method, len(q), resp.StatusCode, took.Round(time.Millisecond), firstMessage(r))
			t1 := time.Now()
			g.mustMutate(t, "placeOrder", placeInput("c-after-probe", item("A", 1, "1")))
			if d := time.Since(t1); d > 5*time.Second {
				t.Errorf("after %s: a mutation took %v", name, d)
			}
		}
	}
}

func firstMessage(r gqlResponse) string {
	if len(r.Errors) == 0 {
		return ""
	}
	return r.Errors[0].Message
}

// TestConnectionsAreBounded: a client that sends its body slowly, an idle
// keep-alive connection and a connection past MAX_CONNECTIONS are all
// closed by the server, and the gateway keeps answering.
func TestConnectionsAreBounded(t *testing.T) {
	cfg := testConfig(t)
	cfg.HTTPReadTimeout, cfg.HTTPIdleTimeout, cfg.MaxConnections = time.Second, time.Second, 30
	g := startGateway(t, cfg)
	addr := strings.TrimPrefix(g.url, "http://")
	dial := func() net.Conn {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	// closedWithin reads c until the server closes it, or fails after d.
	closedWithin := func(what string, c net.Conn, d time.Duration) {
		t.Helper()
		t0 := time.Now()
		_ = c.SetReadDeadline(t0.Add(d))
		buf := make([]byte, 4096)
		for {
			if _, err := c.Read(buf); err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					t.Errorf("%s: the server kept the connection open for %v", what, d)
				} else {
					t.Logf("%s: closed by the server after %v", what, time.Since(t0).Round(10*time.Millisecond))
				}
				return
			}
		}
	}

	slow := dial()
	defer slow.Close()
	fmt.Fprintf(slow, "POST /graphql HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"qu", staffToken)
	closedWithin("a body sent slowly", slow, 5*time.Second)

	idle := dial()
	defer idle.Close()
	fmt.Fprintf(idle, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	closedWithin("an idle keep-alive connection after a request", idle, 5*time.Second)

	var held []net.Conn
	for range 30 {
		held = append(held, dial())
	}
	time.Sleep(100 * time.Millisecond)
	extra := dial()
	closedWithin("a connection past MAX_CONNECTIONS", extra, time.Second)
	extra.Close()
	for _, c := range held {
		c.Close()
	}
	time.Sleep(200 * time.Millisecond)
	g.mustMutate(t, "placeOrder", placeInput("c-after-conns", item("A", 1, "1")))
}

// TestSlowSubscriberIsToldSo: an ordersUpdated subscriber that stops
// reading while thousands of orders change falls more than 256 orders
// behind; its subscription ends with SUBSCRIBER_TOO_SLOW (before, the
// oldest pending orders were forgotten without a word). Once it reads
// again it gets what was sent, then the error, then complete.
func TestSlowSubscriberIsToldSo(t *testing.T) {
	cfg := testConfig(t)
	g := startGateway(t, cfg)
	body, _ := json.Marshal(map[string]any{"query": "subscription { ordersUpdated { id version customerId items { sku name } } }"})
	req, _ := http.NewRequest(http.MethodPost, g.url+"/graphql", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	time.Sleep(300 * time.Millisecond) // registered

	// Thousands of order changes, straight to the views topic, each about
	// 2 KB once rendered: far more than the sockets' buffers hold.
	sc := kafka.Config("test-views", 20*time.Millisecond)
	sc.Producer.Return.Successes = true
	prod, err := sarama.NewSyncProducer(testBrokers, sc)
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	var msgs []*sarama.ProducerMessage
	for i := range 6000 {
		d := view.OrderDoc{ID: fmt.Sprintf("ord_slow_%05d", i), CustomerID: "c-slow", Status: "PENDING", Currency: "EUR", Version: 1}
		for j := range 8 {
			d.Items = append(d.Items, view.ItemDoc{SKU: fmt.Sprintf("S%d", j), Name: strings.Repeat("n", 200), Quantity: 1})
		}
		v, _ := json.Marshal(view.Change{Order: d})
		msgs = append(msgs, &sarama.ProducerMessage{Topic: kafka.NewTopics(cfg.TopicPrefix).Views, Key: sarama.StringEncoder(d.ID), Value: sarama.ByteEncoder(v)})
	}
	if err := prod.SendMessages(msgs); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // the feed has published them all while nobody read

	// Read again: the updates that made it, then the error and complete.
	var updates int
	var tooSlow, complete bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		event := ""
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				event = strings.TrimPrefix(line, "event: ")
				if event == "complete" {
					complete = true
					return
				}
			case strings.HasPrefix(line, "data: ") && event == "next":
				if strings.Contains(line, "SUBSCRIBER_TOO_SLOW") {
					tooSlow = true
				} else {
					updates++
				}
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		resp.Body.Close()
		<-done
	}
	t.Logf("read %d updates, then too slow %v, complete %v", updates, tooSlow, complete)
	if !tooSlow || !complete {
		t.Fatalf("a subscriber 6,000 orders behind: SUBSCRIBER_TOO_SLOW %v, complete %v (after %d updates)", tooSlow, complete, updates)
	}
	if updates >= 6000 {
		t.Fatalf("the subscriber got all %d updates: it never fell behind (the test did not test)", updates)
	}
}
