package graph

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"
)

// The extensions.code of requests the HTTP transport refuses before any
// GraphQL work. Each comes with its HTTP status, whatever the response's
// media type.
const (
	CodeBadRequest           = "BAD_REQUEST"            // 400: not a GraphQL request (JSON, UTF-8, query)
	CodeRequestTooLarge      = "REQUEST_TOO_LARGE"      // 413 (body), 414 (GET query string)
	CodeMethodNotAllowed     = "METHOD_NOT_ALLOWED"     // 405, with Allow
	CodeUnsupportedMediaType = "UNSUPPORTED_MEDIA_TYPE" // 415: a POST body that is not JSON
	CodeMutationOverGET      = "MUTATION_OVER_GET"      // 405, with Allow: POST
	CodeNotAcceptable        = "NOT_ACCEPTABLE"         // 406: a subscription over plain GET or POST
)

// The media types of GraphQL over HTTP responses.
const (
	mediaJSON            = "application/json"
	mediaGraphQLResponse = "application/graphql-response+json"
)

// allowedMethods is the Allow header of the /graphql endpoint.
const allowedMethods = "GET, POST, OPTIONS"

// MaxGETQueryBytes bounds a GET request's query string (the HTTP server
// itself refuses a request line and headers over 1 MiB with 431).
const MaxGETQueryBytes = MaxRequestBytes

// httpTransport serves GraphQL over HTTP (graphql-over-http): GET for
// queries, POST of JSON for queries and mutations, OPTIONS; anything else
// that reaches it (other methods and media types) is refused with a code.
// It replaces gqlgen's GET, POST and Options transports, whose refusals
// carry no code, echo the body and Go types, and whose statuses follow
// neither media type of the spec:
//
//   - application/json (also without Accept, or with none we serve): a
//     well-formed request is answered 200, request errors (parse,
//     validation, variables, limits) included;
//   - application/graphql-response+json: request errors are answered 400.
//
// Either way a request error has no "data" entry, and a request that is not
// a GraphQL request at all gets 400, 405, 406, 413, 414 or 415 with one of
// the codes above. It must be the last transport: it takes every request.
type httpTransport struct{}

var _ graphql.Transport = httpTransport{}

func (httpTransport) Supports(*http.Request) bool { return true }

func (t httpTransport) Do(w http.ResponseWriter, r *http.Request, exec graphql.GraphExecutor) {
	media := negotiate(r)
	switch r.Method {
	case http.MethodGet:
		t.get(w, r, exec, media)
	case http.MethodPost:
		mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if cs, ok := params["charset"]; err != nil || mt != mediaJSON || ok && !strings.EqualFold(cs, "utf-8") {
			w.Header().Set("Accept-Post", mediaJSON)
			refuse(w, media, http.StatusUnsupportedMediaType, CodeUnsupportedMediaType,
				"the request body must be JSON (Content-Type: application/json) in UTF-8")
			return
		}
		t.post(w, r, exec, media)
	case http.MethodOptions:
		w.Header().Set("Allow", allowedMethods)
		w.WriteHeader(http.StatusOK)
	default:
		w.Header().Set("Allow", allowedMethods)
		refuse(w, media, http.StatusMethodNotAllowed, CodeMethodNotAllowed,
			"/graphql accepts GET (queries) and POST (application/json), and websockets")
	}
}

func (t httpTransport) post(w http.ResponseWriter, r *http.Request, exec graphql.GraphExecutor, media string) {
	start := graphql.Now()
	body, ok := r.Context().Value(bodyKey{}).([]byte)
	if !ok { // not read by Server.ServeHTTP
		var err error
		if body, err = io.ReadAll(io.LimitReader(r.Body, MaxRequestBytes+1)); err != nil || len(body) > MaxRequestBytes {
			refuse(w, media, http.StatusBadRequest, CodeBadRequest, "the request body could not be read")
			return
		}
	}
	params, e := decodeParams(body)
	if e != nil {
		refuse(w, media, http.StatusBadRequest, e.Extensions["code"].(string), e.Message)
		return
	}
	params.ReadTime = graphql.TraceTiming{Start: start, End: graphql.Now()}
	execute(w, r, exec, media, params)
}

func (t httpTransport) get(w http.ResponseWriter, r *http.Request, exec graphql.GraphExecutor, media string) {
	start := graphql.Now()
	if len(r.URL.RawQuery) > MaxGETQueryBytes {
		refuse(w, media, http.StatusRequestURITooLong, CodeRequestTooLarge,
			fmt.Sprintf("the query string is longer than %d bytes; send the request with POST", MaxGETQueryBytes))
		return
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		refuse(w, media, http.StatusBadRequest, CodeBadRequest, notGraphQLQuery("it is malformed"))
		return
	}
	for _, vs := range q {
		for _, v := range vs {
			if !validText([]byte(v)) {
				refuse(w, media, http.StatusBadRequest, CodeBadRequest, msgNotUTF8)
				return
			}
		}
	}
	params := &graphql.RawParams{Query: q.Get("query"), OperationName: q.Get("operationName")}
	for _, f := range []struct {
		name string
		into *map[string]any
	}{{"variables", &params.Variables}, {"extensions", &params.Extensions}} {
		if v := q.Get(f.name); v != "" {
			dec := json.NewDecoder(strings.NewReader(v))
			dec.UseNumber()
			if dec.Decode(f.into) != nil || dec.Decode(new(json.RawMessage)) != io.EOF || *f.into == nil {
				refuse(w, media, http.StatusBadRequest, CodeBadRequest, notGraphQLQuery(fmt.Sprintf("%q must be a JSON object", f.name)))
				return
			}
		}
	}
	if q.Has(documentIDKey) {
		params.Extensions = withDocumentID(params.Extensions, q.Get(documentIDKey))
	}
	if params.Query == "" && !hasPersisted(params.Extensions) {
		refuse(w, media, http.StatusBadRequest, CodeBadRequest, notGraphQLQuery("it has no query"))
		return
	}
	params.ReadTime = graphql.TraceTiming{Start: start, End: graphql.Now()}
	execute(w, r, exec, media, params)
}

// withDocumentID puts a request's top-level documentId among its
// extensions, where PersistedQueries looks for it.
func withDocumentID(ext map[string]any, id any) map[string]any {
	if ext == nil {
		ext = map[string]any{}
	}
	ext[documentIDKey] = id
	return ext
}

// execute runs a decoded request and answers it.
func execute(w http.ResponseWriter, r *http.Request, exec graphql.GraphExecutor, media string, params *graphql.RawParams) {
	ctx := r.Context()
	params.Headers = r.Header
	rc, errs := exec.CreateOperationContext(ctx, params)
	if errs != nil {
		// A request error: nothing was executed, and the response has no
		// data entry.
		status := http.StatusOK
		if media == mediaGraphQLResponse {
			status = http.StatusBadRequest
		}
		if s, noCache, ok := persistedStatus(errs); ok {
			status = s
			if noCache {
				w.Header().Set("Cache-Control", "private, no-cache, must-revalidate")
			}
		}
		resp := exec.DispatchError(graphql.WithOperationContext(ctx, rc), errs)
		resp.Data = nil
		writeResponse(w, media, status, resp)
		return
	}
	switch rc.Operation.Operation {
	case ast.Mutation:
		if r.Method == http.MethodGet {
			w.Header().Set("Allow", http.MethodPost)
			refuse(w, media, http.StatusMethodNotAllowed, CodeMutationOverGET, "a mutation must be sent with POST")
			return
		}
	case ast.Subscription:
		refuse(w, media, http.StatusNotAcceptable, CodeNotAcceptable,
			"a subscription needs a websocket, or a POST that accepts text/event-stream")
		return
	}
	responses, ctx := exec.DispatchOperation(ctx, rc)
	resp := responses(ctx)
	if resp == nil { // the request's context ended
		refuse(w, media, http.StatusServiceUnavailable, "UNAVAILABLE", "the request was cancelled or timed out")
		return
	}
	status := http.StatusOK
	if len(resp.Data) == 0 && media == mediaGraphQLResponse {
		status = http.StatusInternalServerError // not executed, yet not a request error
	}
	writeResponse(w, media, status, resp)
}

// response is graphql.Response without a data entry when there is no data.
type response struct {
	Errors     gqlerror.List   `json:"errors,omitempty"`
	Data       json.RawMessage `json:"data,omitempty"`
	Label      string          `json:"label,omitempty"`
	Path       ast.Path        `json:"path,omitempty"`
	HasNext    *bool           `json:"hasNext,omitempty"`
	Extensions map[string]any  `json:"extensions,omitempty"`
}

func writeResponse(w http.ResponseWriter, media string, status int, r *graphql.Response) {
	b, err := json.Marshal(response{Errors: r.Errors, Data: r.Data, Label: r.Label, Path: r.Path, HasNext: r.HasNext, Extensions: r.Extensions})
	if err != nil {
		refuse(w, media, http.StatusInternalServerError, "INTERNAL_SERVER_ERROR", "internal server error")
		return
	}
	w.Header().Set("Content-Type", media)
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// refuse answers status with one error carrying code, and no data entry.
func refuse(w http.ResponseWriter, media string, status int, code, message string) {
	b, _ := json.Marshal(response{Errors: gqlerror.List{{Message: message, Extensions: map[string]any{"code": code}}}})
	w.Header().Set("Content-Type", media)
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// negotiate is the response's media type: the one of application/json and
// application/graphql-response+json that Accept prefers (the first listed
// among equal weights); application/json without Accept, for */* and
// application/*, and when Accept names neither (the spec lets the server
// disregard it then).
func negotiate(r *http.Request) string {
	accept := r.Header.Get("Accept")
	if accept == "" {
		return mediaJSON
	}
	best, bestQ := mediaJSON, 0.0
	for part := range strings.SplitSeq(accept, ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		q := 1.0
		if s, ok := params["q"]; ok {
			if q, err = strconv.ParseFloat(s, 64); err != nil {
				continue
			}
		}
		var m string
		switch mt {
		case mediaGraphQLResponse:
			m = mediaGraphQLResponse
		case mediaJSON, "application/*", "*/*":
			m = mediaJSON
		default:
			continue
		}
		if q > bestQ {
			best, bestQ = m, q
		}
	}
	return best
}

type bodyKey struct{}

// withBody hands the body Server.ServeHTTP read to the transports.
func withBody(ctx context.Context, body []byte) context.Context {
	return context.WithValue(ctx, bodyKey{}, body)
}

const msgNotUTF8 = "the request is not valid UTF-8"

func notGraphQL(reason string) string { return "the request body is not a GraphQL request: " + reason }

func notGraphQLQuery(reason string) string {
	return "the query string is not a GraphQL request: " + reason
}

func badRequest(message string) *gqlerror.Error {
	return &gqlerror.Error{Message: message, Extensions: map[string]any{"code": CodeBadRequest}}
}

// decodeParams decodes a POST body, or says in a short message, without
// quoting the body or naming Go types, why it is not a GraphQL request.
func decodeParams(body []byte) (*graphql.RawParams, *gqlerror.Error) {
	if !validText(body) {
		return nil, badRequest(msgNotUTF8)
	}
	var req struct {
		graphql.RawParams
		DocumentID any `json:"documentId"` // persisted documents (GraphQL over HTTP)
	}
	params := &req.RawParams
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	err := dec.Decode(&req)
	if err == nil && dec.Decode(new(json.RawMessage)) != io.EOF {
		return nil, badRequest(notGraphQL("it holds more than one JSON value"))
	}
	if err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			te.Field = strings.TrimPrefix(te.Field, "RawParams.") // the embedded struct's fields
		}
		switch {
		case errors.Is(err, io.EOF):
			return nil, badRequest(notGraphQL("it is empty"))
		case errors.As(err, &te) && (te.Field == "query" || te.Field == "operationName"):
			return nil, badRequest(notGraphQL(fmt.Sprintf("%q must be a string", te.Field)))
		case errors.As(err, &te) && (te.Field == "variables" || te.Field == "extensions"):
			return nil, badRequest(notGraphQL(fmt.Sprintf("%q must be an object", te.Field)))
		case errors.As(err, &te) && te.Field == "":
			return nil, badRequest(notGraphQL("it is not a JSON object"))
		case errors.As(err, &te):
			return nil, badRequest(notGraphQL("a field has the wrong type"))
		default:
			return nil, badRequest(notGraphQL("it is not valid JSON"))
		}
	}
	if req.DocumentID != nil {
		params.Extensions = withDocumentID(params.Extensions, req.DocumentID)
	}
	if params.Query == "" && !hasPersisted(params.Extensions) {
		return nil, badRequest(notGraphQL("it has no query"))
	}
	return params, nil
}

// validText reports whether b is UTF-8 whose \u escapes (JSON's) encode
// no lone surrogate: encoding/json would turn either into U+FFFD, silently.
func validText(b []byte) bool {
	if !utf8.Valid(b) {
		return false
	}
	for i := bytes.IndexByte(b, '\\'); i >= 0; {
		// b[i] is a backslash that starts an escape.
		if i+1 >= len(b) {
			return true // malformed: the decoder says so
		}
		next := i + 2
		if b[i+1] == 'u' {
			r, ok := hex4(b[i+2:])
			next = i + 6
			switch {
			case !ok:
				next = i + 2 // malformed: the decoder says so
			case r >= 0xD800 && r < 0xDC00: // must be followed by a trailing surrogate
				lo, ok := rune(0), false
				if len(b) >= i+12 && b[i+6] == '\\' && b[i+7] == 'u' {
					lo, ok = hex4(b[i+8:])
				}
				if !ok || lo < 0xDC00 || lo > 0xDFFF {
					return false
				}
				next = i + 12
			case r >= 0xDC00 && r <= 0xDFFF:
				return false
			}
		}
		j := bytes.IndexByte(b[min(next, len(b)):], '\\')
		if j < 0 {
			break
		}
		i = min(next, len(b)) + j
	}
	return true
}

func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case '0' <= c && c <= '9':
			r = r<<4 | rune(c-'0')
		case 'a' <= c && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case 'A' <= c && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}
