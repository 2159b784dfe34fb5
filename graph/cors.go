package graph

import (
	"net/http"
	"strconv"
	"time"
)

// CORS headers of /graphql: what a page of an allowed origin may send.
// Authorization carries the bearer token and Content-Type the JSON body
// (neither is CORS-safelisted, so a browser preflights every POST and
// every authenticated request); the Apollo headers are those Apollo
// Client sends.
const (
	corsAllowMethods = "GET, POST"
	corsAllowHeaders = "Authorization, Content-Type, Accept, X-Apollo-Operation-Name, Apollo-Require-Preflight, Apollographql-Client-Name, Apollographql-Client-Version"
	// CORSMaxAge is how long a browser may reuse a preflight's answer: a
	// removed origin keeps sending requests for this long.
	CORSMaxAge = 10 * time.Minute
)

// CodeOriginNotAllowed refuses the preflight of a page whose origin
// CORS_ALLOWED_ORIGINS does not name (403).
const CodeOriginNotAllowed = "ORIGIN_NOT_ALLOWED"

// CORS wraps the /graphql handler with Cross-Origin Resource Sharing for
// the pages whose origin's host matches one of patterns (path.Match syntax,
// case-insensitive, as the websocket's AllowedOrigins; the server's own
// host always matches):
//
//   - a preflight (OPTIONS with Access-Control-Request-Method) from such a
//     page is answered 204 with Access-Control-Allow-Origin (its origin),
//     -Methods (GET, POST), -Headers (Authorization, Content-Type, …) and
//     -Max-Age; from any other page 403 without them, so the browser sends
//     nothing more;
//   - other requests from such a page get Access-Control-Allow-Origin, so
//     the page may read the answer; from any other page they get no CORS
//     header (a browser then keeps the answer from the page).
//
// Every answer carries Vary: Origin. No Access-Control-Allow-Credentials:
// the gateway takes bearer tokens, not cookies. CORS lets pages read
// answers; it is not what keeps cross-site pages from running mutations
// (see README, "Cross-site requests").
func CORS(patterns []string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Add("Vary", "Origin")
		origin := r.Header.Get("Origin")
		if origin == "" {
			next.ServeHTTP(w, r)
			return
		}
		allowed := originAllowed(r, patterns)
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			if !allowed {
				refuse(w, negotiate(r), http.StatusForbidden, CodeOriginNotAllowed, "this origin may not call /graphql (CORS_ALLOWED_ORIGINS)")
				return
			}
			h.Set("Access-Control-Allow-Origin", origin)
			h.Set("Access-Control-Allow-Methods", corsAllowMethods)
			h.Set("Access-Control-Allow-Headers", corsAllowHeaders)
			h.Set("Access-Control-Max-Age", strconv.Itoa(int(CORSMaxAge/time.Second)))
			w.WriteHeader(http.StatusNoContent)
			return
		}
		if allowed {
			h.Set("Access-Control-Allow-Origin", origin)
		}
		next.ServeHTTP(w, r)
	})
}
