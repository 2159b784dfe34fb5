package graph

import (
	"sync"
)

// fanout runs writer turns (see websocket_write.go) on a few workers, at
// most one per core: an update to 10,000 subscribers is 10,000 turns, and
// a goroutine started for each cost more than the turn's own work. The
// workers exit when the queue is empty, so an idle transport has none.
type fanout struct {
	max int

	mu      sync.Mutex
	queue   []*wsConn
	head    int
	running int
}

func newFanout(workers int) *fanout { return &fanout{max: max(workers, 1)} }

// submit queues a connection whose turn has started (c.writing is set, so
// it is queued at most once).
func (f *fanout) submit(c *wsConn) {
	f.mu.Lock()
	f.queue = append(f.queue, c)
	start := f.running < f.max
	if start {
		f.running++
	}
	f.mu.Unlock()
	if start {
		go f.work()
	}
}

// fanoutBatch is how many turns a worker takes from the queue at once.
const fanoutBatch = 64

func (f *fanout) work() {
	w := newFanWorker()
	batch := make([]*wsConn, 0, fanoutBatch)
	for {
		f.mu.Lock()
		if f.head == len(f.queue) {
			f.queue, f.head = f.queue[:0], 0
			f.running--
			f.mu.Unlock()
			return
		}
		end := min(f.head+fanoutBatch, len(f.queue))
		batch = append(batch[:0], f.queue[f.head:end]...)
		clear(f.queue[f.head:end])
		f.head = end
		f.mu.Unlock()
		for _, c := range batch {
			w.turn(c)
		}
		clear(batch)
	}
}

// turn runs one connection's writer turn; a panic closes that connection
// only.
func (w *fanWorker) turn(c *wsConn) {
	defer c.recoverWriter()
	c.drain(w)
}
