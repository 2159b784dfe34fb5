// Command fanoutfloor is the floor the subscribers benchmark
// (BenchmarkSubscribers) measures the gateway against: a websocket server
// that does the least a server can do to deliver one update to every
// subscriber. It speaks just enough graphql-transport-ws for the
// benchmark's clients (connection_init → connection_ack, subscribe → a
// first "next", ping → pong) and, on POST /publish?version=N, writes one
// prepared "next" message per connection, split over one goroutine per
// core. No GraphQL, no Kafka, no store: what is left is the sockets and
// the websocket framing.
//
//	go run ./cmd/fanoutfloor -listen 127.0.0.1:8090
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net/http"
	"runtime"
	"strconv"
	"sync"

	"github.com/gorilla/websocket"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8090", "address to serve /graphql, /publish and /readyz on")
	flag.Parse()
	s := &server{}
	mux := http.NewServeMux()
	mux.HandleFunc("/graphql", s.accept)
	mux.HandleFunc("POST /publish", s.publish)
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ready") })
	log.Fatal(http.ListenAndServe(*listen, mux))
}

type server struct {
	mu    sync.Mutex
	subs  []*subscriber
	state int // the current version
}

type subscriber struct {
	conn *websocket.Conn
	id   []byte // the subscription id, as JSON
	mu   sync.Mutex
}

var upgrader = websocket.Upgrader{
	ReadBufferSize: 256, WriteBufferSize: 4096, WriteBufferPool: &sync.Pool{},
	Subprotocols: []string{"graphql-transport-ws"},
	CheckOrigin:  func(*http.Request) bool { return true },
}

func (s *server) accept(w http.ResponseWriter, r *http.Request) {
	conn, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	go s.read(conn)
}

func (s *server) read(conn *websocket.Conn) {
	defer conn.Close()
	sub := &subscriber{conn: conn}
	defer s.remove(sub)
	for {
		_, data, err := conn.ReadMessage()
		if err != nil {
			return
		}
		var m struct{ Type, ID string }
		if json.Unmarshal(data, &m) != nil {
			return
		}
		switch m.Type {
		case "connection_init":
			sub.write([]byte(`{"type":"connection_ack"}`))
		case "ping":
			sub.write([]byte(`{"type":"pong"}`))
		case "subscribe":
			sub.id, _ = json.Marshal(m.ID)
			s.mu.Lock()
			s.subs = append(s.subs, sub)
			v := s.state
			s.mu.Unlock()
			sub.write(next(nil, sub.id, max(v, 1)))
		}
	}
}

func (s *server) remove(sub *subscriber) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, x := range s.subs {
		if x == sub {
			s.subs = append(s.subs[:i], s.subs[i+1:]...)
			return
		}
	}
}

func (sub *subscriber) write(msg []byte) {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	_ = sub.conn.WriteMessage(websocket.TextMessage, msg)
}

// next is a "next" message shaped like the gateway's for the benchmark's
// query.
func next(b, id []byte, version int) []byte {
	b = append(b, `{"type":"next","id":`...)
	b = append(b, id...)
	b = append(b, `,"payload":{"data":{"orderUpdated":{"id":"ord_floor00000000000000000000000","version":`...)
	b = strconv.AppendInt(b, int64(version), 10)
	b = append(b, `,"status":"PENDING","itemCount":`...)
	b = strconv.AppendInt(b, int64(version), 10)
	return append(b, `}}}}`...)
}

// publish writes version to every subscriber, one goroutine per core, and
// answers when all writes are done.
func (s *server) publish(w http.ResponseWriter, r *http.Request) {
	v, err := strconv.Atoi(r.URL.Query().Get("version"))
	if err != nil {
		http.Error(w, "version: want a number", http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	s.state = v
	subs := append([]*subscriber(nil), s.subs...)
	s.mu.Unlock()
	workers := runtime.GOMAXPROCS(0)
	var wg sync.WaitGroup
	for k := range workers {
		wg.Go(func() {
			var buf []byte
			for i := k; i < len(subs); i += workers {
				buf = next(buf[:0], subs[i].id, v)
				subs[i].write(buf)
			}
		})
	}
	wg.Wait()
	fmt.Fprintf(w, "%d\n", len(subs))
}
