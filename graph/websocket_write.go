package graph

import (
	"encoding/binary"
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

// Writing. Every frame the server sends goes out through the connection's
// writer, one turn at a time (c.writing says a turn is running). A turn
// sends the outbox (whole frames: acks, results, pongs, completes), then
// pulls the woken subscriptions' updates.
//
// A turn normally runs on one of the transport's fan-out workers, which
// never wait on a socket: a write the socket does not take whole hands the
// rest of the turn to a goroutine of the connection's own (write), which
// finishes the frame and goes on with blocking writes, each within the
// write timeout. So a connection costs no goroutine while it is idle or
// keeps up, and a client that does not read holds up only itself.
//
// writeLock (a channel, so that a close can give up waiting) is held for
// each write to the socket. Besides the writer only the close takes it
// (writeClose), for its last frames: graphql-ws's connection_error, if
// any, then the close frame; nothing is written after them. c.partial,
// guarded by it, is a frame already partly on the wire; whoever writes
// next sends it first.
// The websocket library writes nothing after the upgrade (hijackWriter):
// pongs and close frames go through here too.

// sendResult is how a write went.
type sendResult uint8

const (
	sent      sendResult = iota
	failed               // the socket failed and is closed; the reader frees the connection
	handedOff            // a worker could not write without waiting: the connection's own goroutine goes on
)

// enqueue queues whole frames for the connection's writer.
func (c *wsConn) enqueue(frames ...[]byte) {
	c.mu.Lock()
	ok := c.queueLocked(frames)
	c.mu.Unlock()
	if !ok {
		c.overflowed()
	}
}

// enqueueFor queues an operation's frames unless it has stopped, in one
// step with that check, so nothing of it follows its complete. It reports
// whether they were queued.
func (c *wsConn) enqueueFor(op *wsOp, frames ...[]byte) bool {
	c.mu.Lock()
	if op.stopped.Load() {
		c.mu.Unlock()
		return false
	}
	ok := c.queueLocked(frames)
	c.mu.Unlock()
	if !ok {
		c.overflowed()
	}
	return ok
}

// overflowed closes a connection whose outbox is full, on a goroutine of
// its own: the caller may be a fan-out worker, which must not wait for the
// close frame.
func (c *wsConn) overflowed() {
	go c.closeWith(websocket.ClosePolicyViolation, "the client reads slower than it sends requests")
}

// queueLocked appends to the outbox and wakes the writer; c.mu is held. It
// reports false when the outbox is over its bound (nothing is queued then).
func (c *wsConn) queueLocked(frames [][]byte) bool {
	if c.closed {
		return true
	}
	n := 0
	for _, f := range frames {
		n += len(f)
	}
	if c.outboxBytes+n > maxOutboxBytes {
		return false
	}
	c.outbox = append(c.outbox, frames...)
	c.outboxBytes += n
	c.startWriter()
	return true
}

// takeOutbox empties the outbox; c.mu is held.
func (c *wsConn) takeOutbox() [][]byte {
	frames := c.outbox
	c.outbox, c.outboxBytes = nil, 0
	return frames
}

// startWriter starts a writer turn unless one runs; c.mu is held.
func (c *wsConn) startWriter() {
	if c.writing {
		return
	}
	c.writing = true
	if c.raw != nil && c.t.fan != nil {
		c.t.fan.submit(c)
		return
	}
	go c.write()
}

// write is a writer turn on a goroutine of the connection's own: it sends
// what a worker left half-written, then goes on with blocking writes.
func (c *wsConn) write() {
	defer c.recoverWriter()
	c.writeLock <- struct{}{}
	ok := c.flushPartial(time.Now().Add(c.t.opts.WriteTimeout))
	<-c.writeLock
	if ok {
		c.drain(nil)
	}
}

func (c *wsConn) recoverWriter() {
	if p := recover(); p != nil {
		c.t.opts.Logger.Error("websocket writer panicked", "panic", p)
		go c.closeWith(closeInternalError, "internal error")
	}
}

// drain is the body of a writer turn: the queued frames, then the woken
// subscriptions' updates, until there is nothing left (the turn then ends)
// or the connection fails. With a worker (w not nil) it never waits on
// the socket; what is left when a write would wait goes back to the front
// of the queues, for the goroutine it hands the turn to.
func (c *wsConn) drain(w *fanWorker) {
	var done []*wsOp
	for {
		c.mu.Lock()
		if done != nil && c.spareReady == nil { // reuse the last batch's array
			clear(done)
			c.spareReady = done[:0]
		}
		frames, ops := c.takeOutbox(), c.ready
		c.ready, c.spareReady = c.spareReady, nil
		if c.closed || len(frames)+len(ops) == 0 {
			c.writing = false
			c.mu.Unlock()
			return
		}
		for _, op := range ops {
			op.queued = false
		}
		c.mu.Unlock()
		if i, r := c.sendFrames(frames, w); r != sent {
			if r == handedOff {
				c.handOff(frames[i:], ops)
			}
			return
		}
		for j, op := range ops {
			r := c.pull(op, w)
			if r == sent && j < len(ops)-1 {
				// what was queued meanwhile (a pong, a keep-alive, a query's
				// result) does not wait behind every subscription's updates
				var rest [][]byte
				c.mu.Lock()
				rest = c.takeOutbox()
				c.mu.Unlock()
				var i int
				if i, r = c.sendFrames(rest, w); r == handedOff {
					c.handOff(rest[i:], ops[j+1:])
					return
				}
			}
			if r == handedOff {
				c.handOff(nil, ops[j:]) // the current one too: it may have more
			}
			if r != sent {
				return
			}
		}
		done = ops
	}
}

// sendFrames sends frames in order. When one is handed off (its rest in
// c.partial) it returns the index of the next, the first still to send.
func (c *wsConn) sendFrames(frames [][]byte, w *fanWorker) (int, sendResult) {
	for i, f := range frames {
		if r := c.sendFrame(f, w); r != sent {
			return i + 1, r
		}
	}
	return len(frames), sent
}

// handOff gives the rest of a worker's turn to a goroutine of the
// connection's own: the frames not yet sent go back in front of the
// outbox and the subscriptions not yet served in front of the ready list.
// The goroutine starts with c.partial.
func (c *wsConn) handOff(frames [][]byte, ops []*wsOp) {
	c.mu.Lock()
	if len(frames) > 0 {
		for _, f := range frames {
			c.outboxBytes += len(f)
		}
		c.outbox = append(frames[:len(frames):len(frames)], c.outbox...)
	}
	var front []*wsOp
	for _, op := range ops {
		if !op.queued && !op.stopped.Load() {
			op.queued = true
			front = append(front, op)
		}
	}
	if len(front) > 0 {
		c.ready = append(front, c.ready...)
	}
	c.mu.Unlock()
	go c.write()
}

// pull sends a subscription's pending updates, each marshalled by the
// executor for the subscription's selection (or shared with another
// subscription that asked the same), and completes the subscription when
// its stream has ended.
//
// Once it has been to the hub's buffer and sent what it found there, it
// stops: an update buffered after that has woken the subscription again
// (the turn cleared its queued mark before pulling), so looking for one
// here would only cost another trip to the hub. Until then (it starts with
// the first state, or with what an earlier turn left) it goes on, since
// the wake-up for what waits in the hub may have been spent on that turn.
func (c *wsConn) pull(op *wsOp, w *fanWorker) sendResult {
	if c.isStopped(op) {
		return sent
	}
	var local []byte
	buf := &local
	if w != nil {
		buf = &w.buf
	}
	fromHub := false
	for range maxPullsPerTurn {
		if op.stopped.Load() { // the client completed it meanwhile: nothing more of it
			return sent
		}
		if fromHub && !op.stream.buffered() {
			return sent
		}
		if !op.stream.buffered() {
			fromHub = true // this next goes to the hub
		}
		d, ok, ended := op.stream.next()
		if !ok {
			switch e := op.stream.endErr(); {
			case ended && e != nil:
				c.fail(op, errorsPayload(gqlerror.List{e}))
			case ended:
				c.finish(op)
			}
			return sent
		}
		payload := c.t.shared.result(op.group, d, op.stream, op.respond, op.ctx)
		if payload == nil { // the operation's context ended
			c.finish(op)
			return sent
		}
		*buf = appendMessageFrame((*buf)[:0], c.dataType(), op.idJSON, payload)
		span := c.t.opts.push.start(d.ID, d.Version, "websocket")
		r := c.sendFrame(*buf, w)
		span.End()
		if r != failed { // written, or being written by the connection's goroutine
			c.t.opts.metrics.UpdatesSentWS.Inc()
		}
		if r != sent {
			return r
		}
	}
	op.wake() // more may be waiting: come back after the others
	return sent
}

// sendFrame writes one frame. Without a worker it waits for the socket,
// within the write timeout. With one it writes what the socket takes at
// once; the rest goes to c.partial and the result is handedOff. A failed
// write closes the socket; the reader then fails and frees the connection.
func (c *wsConn) sendFrame(f []byte, w *fanWorker) sendResult {
	if w == nil {
		c.writeLock <- struct{}{}
		defer func() { <-c.writeLock }()
		if c.closeSent || !c.flushPartial(time.Now().Add(c.t.opts.WriteTimeout)) {
			return failed
		}
		return c.writeBlocking(f, time.Now().Add(c.t.opts.WriteTimeout))
	}
	select {
	case c.writeLock <- struct{}{}:
	default: // the close holds it (a turn never runs beside another): this connection is closing
		return failed
	}
	defer func() { <-c.writeLock }()
	if c.closeSent {
		return failed
	}
	if c.partial != nil { // only a goroutine's turn leaves one, and it sends it first
		_ = c.ws.Close()
		return failed
	}
	n, err := w.tryWrite(c.raw, c.nc, f)
	switch {
	case err != nil:
		_ = c.ws.Close()
		return failed
	case n == len(f):
		return sent
	}
	c.partial = append([]byte(nil), f[n:]...)
	return handedOff
}

// writeBlocking writes f by deadline; writeLock is held.
func (c *wsConn) writeBlocking(f []byte, deadline time.Time) sendResult {
	_ = c.nc.SetWriteDeadline(deadline)
	if _, err := c.nc.Write(f); err != nil {
		_ = c.ws.Close()
		return failed
	}
	return sent
}

// flushPartial sends the rest of a half-written frame; writeLock is held.
func (c *wsConn) flushPartial(deadline time.Time) bool {
	if c.partial == nil {
		return true
	}
	f := c.partial
	c.partial = nil
	return c.writeBlocking(f, deadline) == sent
}

// writeClose sends last (a whole frame, or nil), then a close frame, all
// within closeWait (waiting for a write in progress, finishing a frame
// partly written, last, the close frame); a client that does not read then
// gets none. Once it holds writeLock no other frame is written: a writer
// turn still running finds closeSent.
func (c *wsConn) writeClose(last []byte, code int, reason string) {
	deadline := time.Now().Add(closeWait)
	t := time.NewTimer(closeWait)
	defer t.Stop()
	select {
	case c.writeLock <- struct{}{}:
	case <-t.C:
		return
	}
	defer func() { <-c.writeLock }()
	c.closeSent = true // nothing may follow last or the close frame
	if !c.flushPartial(deadline) {
		return
	}
	if last != nil && c.writeBlocking(last, deadline) != sent {
		return
	}
	c.writeBlocking(appendFrame(nil, websocket.CloseMessage, websocket.FormatCloseMessage(code, closeReason(reason))), deadline)
}

const closeWait = time.Second

// appendFrame appends an unmasked, final frame of the given opcode (the
// server's frames are never masked or fragmented).
func appendFrame(b []byte, opcode int, payload []byte) []byte {
	return append(appendHeader(b, opcode, len(payload)), payload...)
}

func appendHeader(b []byte, opcode, n int) []byte {
	b = append(b, 0x80|byte(opcode))
	switch {
	case n < 126:
		return append(b, byte(n))
	case n <= 0xffff:
		return binary.BigEndian.AppendUint16(append(b, 126), uint16(n))
	default:
		return binary.BigEndian.AppendUint64(append(b, 127), uint64(n))
	}
}

// frame encodes one protocol message as a websocket text frame; payload
// is JSON or nil.
func frame(typ, id string, payload []byte) []byte {
	var idJSON []byte
	if id != "" {
		idJSON = jsonString(id)
	}
	return appendMessageFrame(nil, typ, idJSON, payload)
}

// appendMessageFrame appends a text frame holding the message
// {"type":typ,"id":idJSON,"payload":payload} (id and payload omitted when
// nil), without building the message first.
func appendMessageFrame(b []byte, typ string, idJSON, payload []byte) []byte {
	n := len(`{"type":""}`) + len(typ)
	if idJSON != nil {
		n += len(`,"id":`) + len(idJSON)
	}
	if payload != nil {
		n += len(`,"payload":`) + len(payload)
	}
	return appendMessage(appendHeader(b, websocket.TextMessage, n), typ, idJSON, payload)
}

func appendMessage(b []byte, typ string, idJSON, payload []byte) []byte {
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
