package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// chromiumPath is the browser the playground test drives: $CHROMIUM, or
// the first of Debian's chromium and the usual names found on PATH.
func chromiumPath() string {
	if p := os.Getenv("CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// pgBrowserLog keeps what the page did that the test checks afterwards.
type pgBrowserLog struct {
	mu         sync.Mutex
	requests   []string // every URL the page requested but data: URLs
	graphql    []string // the Authorization header of each POST to /graphql
	websockets []string // every websocket's URL
	wsSent     []string // every websocket message the page sent
	problems   []string // exceptions, console and log errors
}

func (b *pgBrowserLog) add(list *[]string, s string) {
	b.mu.Lock()
	*list = append(*list, s)
	b.mu.Unlock()
}

func (b *pgBrowserLog) snapshot() (requests, websockets, problems []string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.requests...), append([]string(nil), b.websockets...), append([]string(nil), b.problems...)
}

func (b *pgBrowserLog) sent() (graphql, wsSent []string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.graphql...), append([]string(nil), b.wsSent...)
}

// TestPlaygroundInBrowser opens the playground (GET /) in headless
// Chromium, offline, against a started gateway: the GraphiQL editor renders
// with the example tabs from assets of this origin only, the Docs pane holds
// the schema, and with a customer token in Headers running the PlaceOrder
// tab shows the new order in the result pane, the Order tab's query reads it
// back, and the WatchCustomer tab's subscription (graphql-transport-ws on
// this origin) shows changes the test makes over HTTP. No script error, no
// Content-Security-Policy violation, no request to another origin.
func TestPlaygroundInBrowser(t *testing.T) {
	bin := chromiumPath()
	if bin == "" {
		t.Skip("no chromium binary found (looked for $CHROMIUM, chromium, chromium-browser, google-chrome on PATH): " +
			"the playground's browser test is skipped; install one (Debian: apt-get install chromium) to run it")
	}
	g := startGateway(t, testConfig(t))
	// What a user pastes into GraphiQL's Headers: a token for customer c-1,
	// signed with the tests' secret (authclient_test.go). The test's own
	// requests over HTTP go as staff.
	headers := `{"Authorization": "Bearer ` + customerToken("c-1") + `"}`

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin), chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1400, 1000),
		// Offline: no host name resolves, only 127.0.0.1 is reachable.
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"))
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox) // Chromium refuses to run as root with its sandbox
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(allocCtx)
	defer cancel()

	var bl pgBrowserLog
	if err := chromedp.Listen(ctx, func(ev any) {
		switch ev := ev.(type) {
		case *network.EventRequestWillBeSent:
			if !strings.HasPrefix(ev.Request.URL, "data:") {
				bl.add(&bl.requests, ev.Request.URL)
			}
			if ev.Request.Method == "POST" && strings.HasSuffix(ev.Request.URL, "/graphql") {
				a, _ := ev.Request.Headers["Authorization"].(string)
				bl.add(&bl.graphql, a)
			}
		case *network.EventWebSocketFrameSent:
			bl.add(&bl.wsSent, string(ev.Response.PayloadData))
		case *network.EventWebSocketCreated:
			bl.add(&bl.websockets, ev.URL)
		case *runtime.EventExceptionThrown:
			bl.add(&bl.problems, "exception: "+(&chromedp.ExceptionError{ExceptionDetails: ev.ExceptionDetails}).Error())
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeAssert {
				var args []string
				for _, a := range ev.Args {
					args = append(args, string(a.Value)+a.Description)
				}
				bl.add(&bl.problems, "console."+string(ev.Type)+": "+strings.Join(args, " "))
			}
		case *log.EventEntryAdded:
			if ev.Entry.Level == log.EntryLevelError {
				bl.add(&bl.problems, fmt.Sprintf("log (%s): %s %s", ev.Entry.Source, ev.Entry.Text, ev.Entry.URL))
			}
		}
	}); err != nil {
		t.Fatalf("start chromium (%s): %v", bin, err)
	}
	// The page's Content-Security-Policy violations, as the page sees them.
	if err := chromedp.Do(ctx, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: `
			window.__csp = [];
			document.addEventListener('securitypolicyviolation', e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));`})
		return err
	})); err != nil {
		t.Fatal(err)
	}

	// step runs actions with a time limit, and on failure reports the page.
	step := func(what string, timeout time.Duration, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx, scancel := context.WithTimeout(ctx, timeout)
		defer scancel()
		if err := chromedp.Do(sctx, actions...); err != nil {
			t.Fatalf("%s: %v\n%s", what, err, pgPageState(ctx, &bl))
		}
	}
	// response waits until the result pane matches re, and returns the
	// pane's text.
	response := func(what string, re *regexp.Regexp, timeout time.Duration) string {
		t.Helper()
		if !pgPaneShows(ctx, re, timeout) {
			t.Fatalf("%s: the result pane does not match %s after %v; it shows:\n%s\n%s", what, re, timeout, pgResultPane(ctx), pgPageState(ctx, &bl))
		}
		return pgResultPane(ctx)
	}

	step("open the playground", 60*time.Second,
		chromedp.Navigate(g.url+"/"),
		chromedp.WaitVisible(chromedp.CSS(".graphiql-container")),
		chromedp.WaitVisible(chromedp.CSS(".graphiql-query-editor .CodeMirror")),
		chromedp.WaitVisible(chromedp.CSS(".graphiql-execute-button")))
	tabs := pgEval(ctx, `[...document.querySelectorAll('.graphiql-tab')].map(e => e.innerText.trim()).join('|')`)
	if tabs != "PlaceOrder|WatchCustomer|ConfirmOrder|Order" {
		t.Errorf("tabs %q, want PlaceOrder|WatchCustomer|ConfirmOrder|Order\n%s", tabs, pgPageState(ctx, &bl))
	}
	if q := pgEditorText(ctx, ".graphiql-query-editor"); !strings.Contains(q, "mutation PlaceOrder($input: PlaceOrderInput!)") {
		t.Errorf("the first tab's editor shows:\n%s", q)
	}

	// The schema comes with the page (schema.js): the Docs pane lists the
	// root types before any request or token.
	step("open the Docs pane", 20*time.Second,
		chromedp.Click(chromedp.CSS(`[aria-label="Show Documentation Explorer"]`)),
		chromedp.WaitVisible(chromedp.CSS(`.graphiql-doc-explorer`)),
		chromedp.Poll[chromedp.Void](`(document.querySelector('.graphiql-doc-explorer') || {innerText: ''}).innerText.includes('Subscription')`,
			chromedp.WithPollingTimeout(15*time.Second)))
	if before, _ := bl.sent(); len(before) > 0 {
		t.Errorf("the page sent %d requests to /graphql before any operation ran", len(before))
	}

	// A mutation and a query from the page (POST /graphql), with the token.
	pgSetHeaders(t, ctx, &bl, headers)
	step("run PlaceOrder", 10*time.Second, chromedp.Click(chromedp.CSS(".graphiql-execute-button")))
	text := response("PlaceOrder's result", regexp.MustCompile(`"id": "(ord_[^"]+)"[\s\S]*"status": "PENDING"[\s\S]*"consistencyToken": "[^"]+"`), 20*time.Second)
	orderID := regexp.MustCompile(`"id": "(ord_[^"]+)"`).FindStringSubmatch(text)[1]
	token := regexp.MustCompile(`"consistencyToken": "([^"]+)"`).FindStringSubmatch(text)[1]

	pgSelectTab(t, ctx, &bl, "Order")
	pgSetHeaders(t, ctx, &bl, headers)
	vars, _ := json.Marshal(map[string]string{"id": orderID, "consistencyToken": token})
	pgSetVariables(t, ctx, &bl, string(vars))
	step("run Order", 10*time.Second, chromedp.Click(chromedp.CSS(".graphiql-execute-button")))
	response("Order's result", regexp.MustCompile(`"id": "`+regexp.QuoteMeta(orderID)+`"[\s\S]*"customerId": "c-1"[\s\S]*"status": "PENDING"[\s\S]*"orderCount": [1-9]`), 20*time.Second)

	// A subscription from the page, and a change made over HTTP.
	pgSelectTab(t, ctx, &bl, "WatchCustomer")
	pgSetHeaders(t, ctx, &bl, headers)
	step("start WatchCustomer", 10*time.Second, chromedp.Click(chromedp.CSS(".graphiql-execute-button")))
	// The subscription starts asynchronously (a websocket, connection_init,
	// subscribe): until an update shows, the server may not have it yet, so
	// place orders over HTTP until one shows up live; after that, every
	// change must.
	placeOrder := func() string {
		var placed struct {
			PlaceOrder struct{ Order struct{ ID string } }
		}
		g.data(t, `mutation { placeOrder(input: {customerId: "c-1", currencyCode: "EUR", items: [{sku: "CUP", name: "Cup", quantity: 1, unitPrice: "3.00"}]}) { order { id } } }`, nil, &placed)
		return placed.PlaceOrder.Order.ID
	}
	for try := 1; ; try++ {
		id := placeOrder()
		if try == 5 {
			response("the live update of an order placed over HTTP", regexp.MustCompile(`"id": "`+regexp.QuoteMeta(id)+`"[\s\S]*"status": "PENDING"`), 20*time.Second)
			break
		}
		if pgPaneShows(ctx, regexp.MustCompile(`"id": "`+regexp.QuoteMeta(id)+`"[\s\S]*"status": "PENDING"`), 3*time.Second) {
			t.Logf("the subscription showed the order placed over HTTP at try %d", try)
			break
		}
	}
	var confirmed struct {
		ConfirmOrder struct {
			Order      struct{ Status string }
			UserErrors []struct{ Code, Message string }
		}
	}
	g.data(t, `mutation($id: ID!) { confirmOrder(input: {orderId: $id}) { order { status } userErrors { code message } } }`,
		map[string]any{"id": orderID}, &confirmed)
	if confirmed.ConfirmOrder.Order.Status != "CONFIRMED" {
		t.Fatalf("confirmOrder over HTTP: %+v", confirmed.ConfirmOrder)
	}
	response("the live update of the order the page placed, confirmed over HTTP",
		regexp.MustCompile(`"id": "`+regexp.QuoteMeta(orderID)+`"[\s\S]*"status": "CONFIRMED"`), 20*time.Second)

	// A dialog adds GraphiQL's one <style> element (with the page's nonce).
	step("open the settings dialog", 10*time.Second,
		chromedp.Click(chromedp.CSS(`[aria-label="Open settings dialog"]`)),
		chromedp.WaitVisible(chromedp.CSS(`.graphiql-dialog`)))

	requests, websockets, problems := bl.snapshot()
	for _, u := range requests {
		if !strings.HasPrefix(u, g.url+"/") {
			t.Errorf("the page requested %s, not of %s", u, g.url)
		}
	}
	wsURL := "ws://" + strings.TrimPrefix(g.url, "http://") + "/graphql"
	if len(websockets) == 0 {
		t.Error("the page opened no websocket")
	}
	for _, u := range websockets {
		if u != wsURL {
			t.Errorf("websocket to %s, want %s", u, wsURL)
		}
	}
	// The Headers editor's token went with every request and in the
	// websocket's connection_init.
	graphql, wsSent := bl.sent()
	if len(graphql) < 2 {
		t.Errorf("%d POSTs to /graphql from the page, want 2 or more", len(graphql))
	}
	for i, a := range graphql {
		if a == "" || !strings.Contains(headers, `"`+a+`"`) {
			t.Errorf("POST /graphql %d from the page had Authorization %q", i, a)
		}
	}
	initWithToken := false
	for _, m := range wsSent {
		var msg struct {
			Type    string            `json:"type"`
			Payload map[string]string `json:"payload"`
		}
		if json.Unmarshal([]byte(m), &msg) == nil && msg.Type == "connection_init" &&
			msg.Payload["Authorization"] != "" && strings.Contains(headers, `"`+msg.Payload["Authorization"]+`"`) {
			initWithToken = true
		}
	}
	if !initWithToken {
		t.Errorf("no connection_init carried the Headers' Authorization; the page sent %q", wsSent)
	}
	for _, p := range problems {
		t.Errorf("in the page: %s", p)
	}
	if csp := pgEval(ctx, `JSON.stringify(window.__csp)`); csp != "[]" {
		t.Errorf("Content-Security-Policy violations: %s", csp)
	}
	t.Logf("chromium %s: %d requests, websockets %v, order %s confirmed live", bin, len(requests), websockets, orderID)
}

// pgResultPane is the text of GraphiQL's result pane, as the page shows it.
func pgResultPane(ctx context.Context) string {
	return pgEval(ctx, `(document.querySelector('.graphiql-response') || {}).innerText || ''`)
}

// pgPaneShows reports whether the result pane matches re within timeout.
func pgPaneShows(ctx context.Context, re *regexp.Regexp, timeout time.Duration) bool {
	for deadline := time.Now().Add(timeout); ; {
		if re.MatchString(pgResultPane(ctx)) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// pgEval evaluates a JavaScript expression that yields a string ("" on
// error).
func pgEval(ctx context.Context, expr string) string {
	ectx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	s, err := chromedp.Run(ectx, chromedp.Evaluate[string](expr))
	if err != nil {
		return ""
	}
	return s
}

// pgEditorText is the text of the CodeMirror editor under selector.
func pgEditorText(ctx context.Context, selector string) string {
	return pgEval(ctx, `(document.querySelector('`+selector+` .CodeMirror') || {}).innerText || ''`)
}

// pgSelectTab clicks the tab named name and waits for its editor.
func pgSelectTab(t *testing.T, ctx context.Context, bl *pgBrowserLog, name string) {
	t.Helper()
	js := `(() => { const tab = [...document.querySelectorAll('.graphiql-tab')].find(e => e.innerText.trim() === ` + pgJSString(name) + `);
		if (!tab) return 'no tab';
		(tab.querySelector('.graphiql-tab-button') || tab.querySelector('button') || tab).click(); return 'ok'; })()`
	if r := pgEval(ctx, js); r != "ok" {
		t.Fatalf("select tab %s: %s\n%s", name, r, pgPageState(ctx, bl))
	}
	for i := 0; ; i++ {
		if q := pgEditorText(ctx, ".graphiql-query-editor"); strings.Contains(q, " "+name) {
			// GraphiQL works out the operation (its name, its variables)
			// from the editor's text after a debounce of 100-150 ms.
			time.Sleep(500 * time.Millisecond)
			return
		}
		if i == 100 {
			t.Fatalf("tab %s: its operation does not show\n%s", name, pgPageState(ctx, bl))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// pgSetHeaders replaces the current tab's request headers (GraphiQL's
// Headers editor, the second of the editor tools).
func pgSetHeaders(t *testing.T, ctx context.Context, bl *pgBrowserLog, headers string) {
	t.Helper()
	js := `(() => { const eds = document.querySelectorAll('.graphiql-editor-tool .graphiql-editor .CodeMirror');
		if (eds.length !== 2 || !eds[1].CodeMirror) return 'no headers editor (' + eds.length + ' editors)';
		eds[1].CodeMirror.setValue(` + pgJSString(headers) + `); return 'ok'; })()`
	if r := pgEval(ctx, js); r != "ok" {
		t.Fatalf("set headers: %s\n%s", r, pgPageState(ctx, bl))
	}
	time.Sleep(500 * time.Millisecond) // GraphiQL's debounce, as in pgSelectTab
}

// pgSetVariables replaces the current tab's variables (typed as a user would
// paste them: through the editor's own API, so GraphiQL sees the change).
func pgSetVariables(t *testing.T, ctx context.Context, bl *pgBrowserLog, vars string) {
	t.Helper()
	js := `(() => { const ed = document.querySelector('.graphiql-editor-tool .graphiql-editor:not(.hidden) .CodeMirror');
		if (!ed || !ed.CodeMirror) return 'no variables editor';
		ed.CodeMirror.setValue(` + pgJSString(vars) + `); return 'ok'; })()`
	if r := pgEval(ctx, js); r != "ok" {
		t.Fatalf("set variables: %s\n%s", r, pgPageState(ctx, bl))
	}
	time.Sleep(500 * time.Millisecond) // GraphiQL's debounce, as above
}

func pgJSString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// pgPageState describes the page for a failure message.
func pgPageState(ctx context.Context, bl *pgBrowserLog) string {
	requests, websockets, problems := bl.snapshot()
	body := pgEval(ctx, `document.body ? document.body.innerText.slice(0, 3000) : '(no body)'`)
	return fmt.Sprintf("page text:\n%s\nrequests: %q\nwebsockets: %q\nproblems: %q", body, requests, websockets, problems)
}
