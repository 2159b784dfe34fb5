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

// maxOutboxBytes bounds what a connection queues for a client that reads
// slower than it sends requests; past it the connection is closed.
const maxOutboxBytes = 8 << 20

// enqueue queues whole messages for the connection's writer.
func (c *wsConn) enqueue(msgs ...[]byte) {
	c.mu.Lock()
	ok := c.queueLocked(msgs)
	c.mu.Unlock()
	if !ok {
		c.closeWith(websocket.ClosePolicyViolation, "the client reads slower than it sends requests")
	}
}

// enqueueFor queues an operation's messages unless it has stopped, in one
// step with that check, so nothing of it follows its complete. It reports
// whether they were queued.
func (c *wsConn) enqueueFor(op *wsOp, msgs ...[]byte) bool {
	c.mu.Lock()
	if op.stopped {
		c.mu.Unlock()
		return false
	}
	ok := c.queueLocked(msgs)
	c.mu.Unlock()
	if !ok {
		c.closeWith(websocket.ClosePolicyViolation, "the client reads slower than it sends requests")
	}
	return ok
}

// queueLocked appends to the outbox and wakes the writer; c.mu is held. It
// reports false when the outbox is over its bound (nothing is queued then).
func (c *wsConn) queueLocked(msgs [][]byte) bool {
	if c.closed {
		return true
	}
	n := 0
	for _, m := range msgs {
		n += len(m)
	}
	if c.outboxBytes+n > maxOutboxBytes {
		return false
	}
	c.outbox = append(c.outbox, msgs...)
	c.outboxBytes += n
	c.startWriter()
	return true
}

// takeOutbox empties the outbox; c.mu is held.
func (c *wsConn) takeOutbox() [][]byte {
	msgs := c.outbox
	c.outbox, c.outboxBytes = nil, 0
	return msgs
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
		msgs, ops := c.takeOutbox(), c.ready
		c.ready = nil
		if c.closed || len(msgs)+len(ops) == 0 {
			c.writing = false
			c.mu.Unlock()
			return
		}
		for _, op := range ops {
			op.queued = false
		}
		c.mu.Unlock()
		if !c.sendAll(msgs) {
			return
		}
		for _, op := range ops {
			if !c.pull(op, &buf) || !c.sendOutbox() {
				return
			}
		}
	}
}

// sendOutbox sends what was queued meanwhile (a pong, a keep-alive, a
// query's result), so it does not wait behind every subscription's updates.
func (c *wsConn) sendOutbox() bool {
	c.mu.Lock()
	msgs := c.takeOutbox()
	c.mu.Unlock()
	return c.sendAll(msgs)
}

// sendAll sends msgs in order; false when the connection failed.
func (c *wsConn) sendAll(msgs [][]byte) bool {
	for _, m := range msgs {
		if !c.send(m) {
			return false
		}
	}
	return true
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
	_ = c.ws.SetWriteDeadline(time.Now().Add(c.t.opts.WriteTimeout))
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
