package graph

import (
	"encoding/json"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/gorilla/websocket"
	"github.com/vektah/gqlparser/v2/gqlerror"
)

// maxPullsPerTurn bounds how many updates the writer takes from one
// subscription before it serves the connection's others.
const maxPullsPerTurn = 64

// enqueue queues whole messages for the connection's writer.
func (c *wsConn) enqueue(msgs ...[]byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	c.outbox = append(c.outbox, msgs...)
	c.startWriter()
}

// writeNow writes a message at once, bypassing the queue: for the one that
// must go out just before a close frame.
func (c *wsConn) writeNow(msg []byte) { c.send(msg) }

// startWriter starts the writer goroutine unless it runs; c.mu is held.
func (c *wsConn) startWriter() {
	if !c.writing {
		c.writing = true
		go c.write()
	}
}

// write sends the queued messages, then the woken subscriptions' updates,
// until there is nothing left; the goroutine then ends.
func (c *wsConn) write() {
	defer func() {
		if p := recover(); p != nil {
			c.t.opts.Logger.Error("websocket writer panicked", "panic", p)
			c.closeWith(closeInternalError, "internal error")
		}
	}()
	var buf []byte
	for {
		c.mu.Lock()
		msgs, ops := c.outbox, c.ready
		c.outbox, c.ready = nil, nil
		if c.closed || len(msgs)+len(ops) == 0 {
			c.writing = false
			c.mu.Unlock()
			return
		}
		for _, op := range ops {
			op.queued = false
		}
		c.mu.Unlock()
		for _, m := range msgs {
			if !c.send(m) {
				return
			}
		}
		for _, op := range ops {
			if !c.pull(op, &buf) {
				return
			}
		}
	}
}

// pull sends a subscription's pending updates, each marshalled by the
// executor for the subscription's selection (or shared with another
// subscription that asked the same), and completes the subscription when
// its stream has ended. It reports false when the connection failed.
func (c *wsConn) pull(op *wsOp, buf *[]byte) bool {
	for range maxPullsPerTurn {
		if c.isStopped(op) {
			return true
		}
		d, ok, ended := op.stream.next()
		if !ok {
			if ended {
				c.finish(op)
			}
			return true
		}
		payload := c.t.shared.get(op.group, d.ID, d.Version)
		if payload == nil {
			op.stream.load(d)
			resp := op.respond(op.ctx)
			if resp == nil { // the operation's context ended
				c.finish(op)
				return true
			}
			payload = responsePayload(resp)
			c.t.shared.put(op.group, d.ID, d.Version, payload)
		}
		*buf = appendFrame((*buf)[:0], c.dataType(), op.idJSON, payload)
		if !c.send(*buf) {
			return false
		}
	}
	op.wake() // more may be waiting: come back after the others
	return true
}

// send writes one message within the write timeout. A failed write closes
// the socket; the reader then fails and frees the connection.
func (c *wsConn) send(msg []byte) bool {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	// The deadline moves at most ten times per timeout (so it is always at
	// least 90% of the timeout away): setting it is a timer update, which
	// costs more than the time it would measure.
	timeout := c.t.opts.WriteTimeout
	if now := time.Now(); now.Sub(c.writeDeadlineSet) >= timeout/10 {
		c.writeDeadlineSet = now
		_ = c.ws.SetWriteDeadline(now.Add(timeout))
	}
	if err := c.ws.WriteMessage(websocket.TextMessage, msg); err != nil {
		_ = c.ws.Close()
		return false
	}
	return true
}

// frame encodes one protocol message; payload is JSON or nil.
func frame(typ, id string, payload []byte) []byte {
	var idJSON []byte
	if id != "" {
		idJSON = jsonString(id)
	}
	return appendFrame(nil, typ, idJSON, payload)
}

func appendFrame(b []byte, typ string, idJSON, payload []byte) []byte {
	b = append(b, `{"type":"`...)
	b = append(b, typ...)
	b = append(b, '"')
	if idJSON != nil {
		b = append(b, `,"id":`...)
		b = append(b, idJSON...)
	}
	if payload != nil {
		b = append(b, `,"payload":`...)
		b = append(b, payload...)
	}
	return append(b, '}')
}

func jsonString(s string) []byte {
	b, _ := json.Marshal(s) // a string always marshals
	return b
}

// responsePayload is an execution result as JSON. The common case, data
// and nothing else, is spliced rather than re-encoded: the executor's data
// is already JSON.
func responsePayload(r *graphql.Response) []byte {
	if len(r.Errors) == 0 && len(r.Extensions) == 0 && r.Label == "" && r.Path == nil && r.HasNext == nil && len(r.Data) > 0 {
		b := make([]byte, 0, len(r.Data)+9)
		b = append(b, `{"data":`...)
		b = append(b, r.Data...)
		return append(b, '}')
	}
	b, err := json.Marshal(r)
	if err != nil {
		return errorsPayloadObject(err.Error())
	}
	return b
}

func errorsPayloadObject(msg string) []byte {
	b, _ := json.Marshal(map[string]any{"errors": gqlerror.List{{Message: msg}}})
	return b
}

// errorsPayload is the payload of an "error" message: a list of errors.
func errorsPayload(errs gqlerror.List) []byte {
	b, err := json.Marshal(errs)
	if err != nil {
		b, _ = json.Marshal(gqlerror.List{{Message: err.Error()}})
	}
	return b
}

// errorPayload is the payload of graphql-ws's connection_error.
func errorPayload(msg string) []byte {
	b, _ := json.Marshal(gqlerror.Error{Message: msg})
	return b
}
