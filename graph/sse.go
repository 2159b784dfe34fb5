package graph

import (
	"context"
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/ordergateway/gateway/metrics"
)

// SSE is the server-sent events transport: graphql-sse's "distinct
// connections" mode (POST with Accept: text/event-stream; each result is an
// "event: next", the end an "event: complete"), the events and headers of
// gqlgen's SSE transport.
//
// A subscription is pulled as over a websocket: the hub wakes the stream,
// and the request's own goroutine pulls each update through the executor
// and writes it, sharing each update's encoded result with every
// subscription (websocket or SSE) that asked the same. So a stream costs
// its request goroutine and a timer, not a goroutine per subscription and
// one for keep-alives, and 1,000 SSE subscribers of one order cost one
// GraphQL execution per update.
type SSE struct {
	// KeepAlive is how often an idle stream gets a comment line (": ping"),
	// which keeps it open through proxies; 0: never.
	KeepAlive time.Duration
	shared    *sharedResults
	metrics   *metrics.GraphQL
	push      pushTracer
}

var _ graphql.Transport = (*SSE)(nil)

// countedNowhere is the metrics of a transport built without any.
var countedNowhere = metrics.NewGraphQL(nil)

func (t *SSE) m() *metrics.GraphQL {
	if t.metrics == nil {
		return countedNowhere
	}
	return t.metrics
}

// Supports takes a POST of JSON that accepts an event stream.
func (t *SSE) Supports(r *http.Request) bool {
	if r.Method != http.MethodPost || !strings.Contains(r.Header.Get("Accept"), "text/event-stream") {
		return false
	}
	mediaType, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return err == nil && mediaType == "application/json"
}

// Do answers one request with an event stream: a query's or mutation's
// result, or a subscription's results until it ends (complete), its token
// expires (a result with the error TOKEN_EXPIRED, then complete), the
// client goes away or the server shuts down (the stream is cut, without
// complete).
func (t *SSE) Do(w http.ResponseWriter, r *http.Request, exec graphql.GraphExecutor) {
	ctx := r.Context()
	flusher, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("Connection", "keep-alive")
	w.Header().Set("Content-Type", "application/json")
	start := graphql.Now()
	body, ok := r.Context().Value(bodyKey{}).([]byte) // read by Server.ServeHTTP
	var err error
	if !ok {
		body, err = io.ReadAll(io.LimitReader(r.Body, MaxRequestBytes))
	}
	params, e := decodeParams(body)
	if err != nil {
		e = badRequest("the request body could not be read")
	}
	if e != nil {
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write(errorsPayloadObjectOf(e))
		return
	}
	params.Headers = r.Header
	params.ReadTime = graphql.TraceTiming{Start: start, End: graphql.Now()}
	rc, opErr := exec.CreateOperationContext(ctx, params)
	ctx = graphql.WithOperationContext(ctx, rc)

	s := &sseStream{w: w, f: flusher, ready: make(chan struct{}, 1)}
	w.Header().Set("Content-Type", "text/event-stream")
	if !s.write([]byte(":\n\n")) {
		return
	}
	if opErr != nil {
		s.next(responsePayload(exec.DispatchError(ctx, opErr)))
		s.complete()
		return
	}
	if rc.Operation.Operation != ast.Subscription {
		respond, ctx := exec.DispatchOperation(ctx, rc)
		if resp := respond(ctx); resp != nil {
			s.next(responsePayload(resp))
		}
		s.complete()
		return
	}
	respond, dctx := exec.DispatchOperation(withPullTarget(ctx, s), rc)
	if s.stream == nil { // an error result, or a stream that pushes
		for {
			resp := respond(dctx)
			if resp == nil || !s.next(responsePayload(resp)) {
				break
			}
		}
		s.complete()
		return
	}
	defer s.stream.close()
	t.m().SSEStreams.Inc()
	defer t.m().SSEStreams.Dec()
	group := t.shared.join(shareKey(params.Query, params.OperationName, rc.Variables))
	defer t.shared.leave(group)
	var keepAlive <-chan time.Time
	var timer *time.Timer
	if t.KeepAlive > 0 {
		timer = time.NewTimer(t.KeepAlive)
		defer timer.Stop()
		keepAlive = timer.C
	}
	var expired <-chan time.Time // the token's expiry ends the stream
	if exp, ok := expiryFrom(ctx); ok {
		expiry := time.NewTimer(time.Until(exp))
		defer expiry.Stop()
		expired = expiry.C
	}
	for {
		sent, ended, ok := t.pull(s, group, respond, dctx)
		if !ok {
			return
		}
		if ended {
			if e := s.stream.endErr(); e != nil {
				s.next(errorsPayloadObjectOf(e))
			}
			s.complete()
			return
		}
		if sent && timer != nil {
			timer.Reset(t.KeepAlive)
		}
		select {
		case <-s.ready:
		case <-keepAlive:
			if !s.write([]byte(": ping\n\n")) {
				return
			}
			timer.Reset(t.KeepAlive)
		case <-expired:
			s.next(errorsPayloadObjectOf(tokenExpired()))
			s.complete()
			return
		case <-dctx.Done():
			return
		}
	}
}

// pull writes the stream's pending updates. ok is false when the client is
// gone or the operation's context ended; ended when the subscription is
// over (the hub closed it).
func (t *SSE) pull(s *sseStream, group *resultGroup, respond graphql.ResponseHandler, ctx context.Context) (sent, ended, ok bool) {
	for {
		d, more, over := s.stream.next()
		if !more {
			return sent, over, true
		}
		payload := t.shared.result(group, d, s.stream, respond, ctx)
		if payload == nil { // the operation's context ended
			return sent, false, false
		}
		span := t.push.start(d.ID, d.Version, "sse")
		ok := s.next(payload)
		span.End()
		if !ok {
			return sent, false, false
		}
		t.m().UpdatesSentSSE.Inc()
		sent = true
	}
}

// sseStream is one request's stream: the pull target its subscription
// attaches to, and the response it writes.
type sseStream struct {
	w      http.ResponseWriter
	f      http.Flusher
	ready  chan struct{} // capacity 1: something to pull
	stream pullStream    // set by the resolver, on the request's goroutine
}

var _ pullTarget = (*sseStream)(nil)

func (s *sseStream) attach(p pullStream) { s.stream = p }

func (s *sseStream) attached() bool { return s.stream != nil }

// wake is the hub's callback; it must not block.
func (s *sseStream) wake() {
	select {
	case s.ready <- struct{}{}:
	default:
	}
}

func (s *sseStream) next(payload []byte) bool {
	b := make([]byte, 0, len("event: next\ndata: \n\n")+len(payload))
	b = append(b, "event: next\ndata: "...)
	b = append(b, payload...)
	return s.write(append(b, "\n\n"...))
}

func (s *sseStream) complete() { s.write([]byte("event: complete\n\n")) }

// write writes and flushes; false when the client is gone.
func (s *sseStream) write(b []byte) bool {
	if _, err := s.w.Write(b); err != nil {
		return false
	}
	s.f.Flush()
	return true
}

// errorsPayloadObjectOf is a result that holds only e.
func errorsPayloadObjectOf(e *gqlerror.Error) []byte {
	b, _ := json.Marshal(map[string]any{"errors": gqlerror.List{e}})
	return b
}
