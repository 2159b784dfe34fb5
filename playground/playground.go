// Package playground serves GraphiQL from the binary: the page at / and its
// scripts and styles under /playground/, all same-origin, so the playground
// works offline. The vendored files (assets/, see README.md and
// scripts/update-playground.sh) are GraphiQL's and React's UMD builds, served
// verbatim; the example operations in tabs/ open as the page's tabs.
package playground

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"html"
	"io/fs"
	"net/http"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/executor"
	"github.com/99designs/gqlgen/graphql/handler/extension"
	"github.com/99designs/gqlgen/graphql/introspection"
)

//go:embed page.js page.css assets/PACKAGES assets/*/LICENSE assets/*/*.js assets/*/*.css tabs
var files embed.FS

// Prefix is the path the assets are served under; route it (and /) to the
// Handler.
const Prefix = "/playground/"

// Options configure the page.
type Options struct {
	// Title is the page's title ("GraphiQL" if empty).
	Title string
	// Endpoint is the GraphQL endpoint's path, for queries and mutations
	// (POST) and subscriptions (graphql-transport-ws on the same origin).
	Endpoint string
	// Headers, if set, gives the request headers the page's tabs start with
	// (e.g. {"Authorization": "Bearer …"}); nil or empty: none.
	Headers func(r *http.Request) map[string]string
	// Schema, if set, is introspected once, in process, and the page
	// carries the result (as schema.js): GraphiQL's Docs pane and
	// autocompletion then need no request, so neither a token nor the
	// endpoint's query limits (GraphiQL's introspection query nests deeper
	// than they allow) stand in their way. nil: GraphiQL introspects the
	// endpoint.
	Schema graphql.ExecutableSchema
}

// asset is one file served under Prefix.
type asset struct {
	body        []byte
	contentType string
}

// Handler serves the page (GET /) and the assets (GET /playground/…).
type Handler struct {
	opts   Options
	tabs   []tab
	assets map[string]asset // by the path served, e.g. /playground/3f…/graphiql/graphiql.min.js
	urls   map[string]string
}

// tab is one of GraphiQL's defaultTabs.
type tab struct {
	Query     string `json:"query"`
	Variables string `json:"variables,omitempty"`
	Headers   string `json:"headers,omitempty"`
}

// types are the media types of what is served.
var types = map[string]string{
	".js":  "text/javascript; charset=utf-8",
	".css": "text/css; charset=utf-8",
	"":     "text/plain; charset=utf-8", // LICENSE, PACKAGES
}

// New returns the playground's handler.
func New(opts Options) (*Handler, error) {
	if opts.Endpoint == "" {
		opts.Endpoint = "/graphql"
	}
	if opts.Title == "" {
		opts.Title = "GraphiQL"
	}
	h := &Handler{opts: opts, assets: map[string]asset{}, urls: map[string]string{}}
	err := fs.WalkDir(files, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasPrefix(name, "tabs/") {
			return err
		}
		if _, ok := types[path.Ext(name)]; !ok {
			return fmt.Errorf("playground: no media type for %s", name)
		}
		body, err := files.ReadFile(name)
		if err != nil {
			return err
		}
		h.addAsset(name, body)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if h.tabs, err = loadTabs(); err != nil {
		return nil, err
	}
	if opts.Schema != nil {
		data, err := introspect(opts.Schema)
		if err != nil {
			return nil, fmt.Errorf("playground: introspecting the schema: %w", err)
		}
		h.addAsset("schema.js", append(append([]byte("window.playgroundSchema = "), data...), ";\n"...))
	}
	return h, nil
}

// addAsset serves body at a path naming its hash.
func (h *Handler) addAsset(name string, body []byte) {
	// The path names the content's hash: a changed file has a new URL, so
	// every asset can be cached for good.
	sum := sha256.Sum256(body)
	served := Prefix + hex.EncodeToString(sum[:6]) + "/" + strings.TrimPrefix(name, "assets/")
	h.assets[served] = asset{body: body, contentType: types[path.Ext(name)]}
	h.urls[name] = served
}

// introspect runs the full introspection query against es, without the
// HTTP transport (no token, no limits), and returns its data.
func introspect(es graphql.ExecutableSchema) (json.RawMessage, error) {
	exec := executor.New(es)
	exec.Use(extension.Introspection{})
	ctx := graphql.StartOperationTrace(context.Background())
	now := graphql.Now()
	oc, errs := exec.CreateOperationContext(ctx, &graphql.RawParams{Query: introspection.Query,
		ReadTime: graphql.TraceTiming{Start: now, End: now}})
	if errs != nil {
		return nil, errs
	}
	respond, ctx := exec.DispatchOperation(ctx, oc)
	resp := respond(ctx)
	if resp == nil {
		return nil, fmt.Errorf("no response")
	}
	if len(resp.Errors) > 0 {
		return nil, resp.Errors
	}
	return resp.Data, nil
}

// loadTabs reads tabs/: NAME.graphql, with NAME.json as its variables if
// there is one, in the order of their names.
func loadTabs() ([]tab, error) {
	entries, err := fs.ReadDir(files, "tabs")
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".graphql") {
			names = append(names, strings.TrimSuffix(e.Name(), ".graphql"))
		}
	}
	sort.Strings(names)
	var tabs []tab
	for _, n := range names {
		q, err := files.ReadFile("tabs/" + n + ".graphql")
		if err != nil {
			return nil, err
		}
		t := tab{Query: string(q)}
		if v, err := files.ReadFile("tabs/" + n + ".json"); err == nil {
			if !json.Valid(v) {
				return nil, fmt.Errorf("playground: tabs/%s.json is not JSON", n)
			}
			t.Variables = string(v)
		}
		tabs = append(tabs, t)
	}
	return tabs, nil
}

// URL is the path an embedded file (e.g. "assets/graphiql/graphiql.min.js")
// is served at, or "" for none.
func (h *Handler) URL(name string) string { return h.urls[name] }

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if r.URL.Path == "/" {
		h.page(w, r)
		return
	}
	a, ok := h.assets[r.URL.Path]
	if !ok {
		http.NotFound(w, r)
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", a.contentType)
	hd.Set("Cache-Control", "public, max-age=31536000, immutable")
	hd.Set("X-Content-Type-Options", "nosniff")
	// ServeContent answers Range and HEAD requests; without a modification
	// time it sets no Last-Modified (the URL changes with the content).
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(a.body))
}

// page writes the HTML page. It has no inline script or style: the
// configuration is a JSON data block page.js reads, and the one <style>
// element GraphiQL makes (react-remove-scroll, while a dialog is open)
// carries the per-response nonce page.js hands it.
func (h *Handler) page(w http.ResponseWriter, r *http.Request) {
	nonce := make([]byte, 18)
	rand.Read(nonce)
	styleNonce := base64.StdEncoding.EncodeToString(nonce)

	tabs := h.tabs
	var headers string
	if h.opts.Headers != nil {
		if m := h.opts.Headers(r); len(m) > 0 {
			b, _ := json.MarshalIndent(m, "", "  ")
			headers = string(b)
			tabs = make([]tab, len(h.tabs))
			for i, t := range h.tabs {
				t.Headers = headers
				tabs[i] = t
			}
		}
	}
	// json.Marshal escapes <, > and &, so the data cannot end the
	// <script> element it sits in.
	config, err := json.Marshal(map[string]any{
		"endpoint": h.opts.Endpoint, "tabs": tabs, "headers": headers, "styleNonce": styleNonce,
	})
	if err != nil {
		http.Error(w, "playground: "+err.Error(), http.StatusInternalServerError)
		return
	}
	schemaScript := ""
	if u := h.urls["schema.js"]; u != "" {
		schemaScript = `<script src="` + u + `" defer></script>` + "\n"
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>%s</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="%s">
<link rel="stylesheet" href="%s">
<script type="application/json" id="playground-config">%s</script>
<script src="%s" defer></script>
<script src="%s" defer></script>
<script src="%s" defer></script>
%s<script src="%s" defer></script>
</head>
<body>
<div id="graphiql">Loading the playground…<noscript> It needs JavaScript.</noscript></div>
</body>
</html>
`, html.EscapeString(h.opts.Title),
		h.urls["assets/graphiql/graphiql.min.css"], h.urls["page.css"], config,
		h.urls["assets/react/react.production.min.js"], h.urls["assets/react-dom/react-dom.production.min.js"],
		h.urls["assets/graphiql/graphiql.min.js"], schemaScript, h.urls["page.js"])

	hd := w.Header()
	hd.Set("Content-Type", "text/html; charset=utf-8")
	hd.Set("Cache-Control", "no-store") // a fresh nonce, and new asset URLs after an upgrade
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("Content-Security-Policy", ContentSecurityPolicy(styleNonce))
	if r.Method == http.MethodHead {
		return
	}
	w.Write([]byte(b.String()))
}

// ContentSecurityPolicy is the page's policy: scripts, styles and
// connections (fetch, and the websocket, which 'self' covers in CSP 3) of
// this origin only; images and fonts also from data: URLs (GraphiQL's CSS
// embeds its fonts and icons); the one <style> element GraphiQL adds needs
// the nonce.
func ContentSecurityPolicy(styleNonce string) string {
	return "default-src 'none'; script-src 'self'; style-src 'self' 'nonce-" + styleNonce + "'; " +
		"img-src 'self' data:; font-src 'self' data:; connect-src 'self'; " +
		"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
}
