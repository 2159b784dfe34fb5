// Command plain is the baseline cmd/load measures the gateway against: what
// a team would otherwise write for the same GraphQL API, a plain
// produce-consume CQRS service in the style of a Watermill one. A mutation
// is produced to a commands topic; a consumer group in the same process
// consumes it (at least once: offsets are committed after the work, every
// second), reads the order's document, decides with domain.Decide, writes
// the document back (guarded by its version, upserted), publishes the event
// and answers the waiting mutation in-process. There are no transactions,
// no snapshots topic, no projector and no customer summaries: the order
// documents it writes are what the queries read. Idempotency keys are kept
// in the order document (its newest 100).
//
// It takes the gateway's settings for what it shares with it: LISTEN_ADDR,
// KAFKA_BROKERS (empty: an embedded broker under DATA_DIR), MONGODB_URI or
// STORE_POSTGRESQL_URL (neither: an embedded store under DATA_DIR),
// MONGODB_DATABASE, TOPIC_PREFIX, PARTITIONS, DATA_DIR. It is a
// benchmark baseline, not a product: one instance, no subscriptions.
package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/IBM/sarama"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/ordergateway/gateway/command"
	"github.com/ordergateway/gateway/domain"
	"github.com/ordergateway/gateway/embedded"
	"github.com/ordergateway/gateway/graph"
	"github.com/ordergateway/gateway/kafka"
	"github.com/ordergateway/gateway/view"
)

func main() {
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, logger); err != nil {
		fmt.Fprintln(os.Stderr, "plain:", err)
		os.Exit(1)
	}
}

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func run(ctx context.Context, logger *slog.Logger) error {
	dataDir := env("DATA_DIR", "./data-plain")
	prefix := env("TOPIC_PREFIX", "plain")
	partitions, err := strconv.Atoi(env("PARTITIONS", "6"))
	if err != nil {
		return fmt.Errorf("PARTITIONS: %w", err)
	}
	brokers := strings.Split(env("KAFKA_BROKERS", ""), ",")
	if brokers[0] == "" {
		k, err := embedded.StartKafka(filepath.Join(dataDir, "kafka"), 0)
		if err != nil {
			return err
		}
		defer k.Close()
		brokers = []string{k.Addr()}
	}
	uri := env("MONGODB_URI", "")
	if uri == "" {
		var m *embedded.Mongo
		if pg := env("STORE_POSTGRESQL_URL", ""); pg != "" {
			m, err = embedded.StartMongoPostgreSQL(pg, "127.0.0.1:0", nil)
		} else {
			m, err = embedded.StartMongo(filepath.Join(dataDir, "mongodb"), "127.0.0.1:0", nil)
		}
		if err != nil {
			return err
		}
		defer m.Close()
		uri = m.URI()
	}
	database := env("MONGODB_DATABASE", "plain")

	topics := kafka.NewTopics(prefix)
	admin, err := sarama.NewClusterAdmin(brokers, kafka.Config("plain-admin", 100*time.Millisecond))
	if err != nil {
		return err
	}
	err = kafka.EnsureTopics(admin, topics, kafka.TopicSettings{Partitions: int32(partitions), ReplicationFactor: -1})
	admin.Close()
	if err != nil {
		return err
	}
	store, err := view.Open(uri, database)
	if err != nil {
		return err
	}
	defer store.Close(context.Background())
	if err := store.EnsureIndexes(ctx); err != nil {
		return err
	}
	client, err := mongo.Connect(options.Client().ApplyURI(uri))
	if err != nil {
		return err
	}
	defer client.Disconnect(context.Background())

	svc, err := newService(brokers, topics, prefix, client.Database(database).Collection("orders"), logger)
	if err != nil {
		return err
	}
	defer svc.close()
	go svc.consume(ctx)

	gql := graph.NewServer(&graph.Resolver{Commands: svc, Views: store, Logger: logger}, graph.WebsocketOptions{AllowedOrigins: []string{"localhost:*", "127.0.0.1:*"},
		InitTimeout: 10 * time.Second, PingInterval: 15 * time.Second, WriteTimeout: 10 * time.Second, MaxSubscriptionsPer: 100})
	mux := http.NewServeMux()
	mux.Handle("/graphql", gql)
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if !svc.ready() {
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	ln, err := net.Listen("tcp", env("LISTEN_ADDR", ":8081"))
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	<-ctx.Done()
	shut, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return srv.Shutdown(shut)
}

// service sends commands and handles them.
type service struct {
	topics   kafka.Topics
	group    sarama.ConsumerGroup
	producer sarama.SyncProducer // commands and events
	orders   *mongo.Collection
	logger   *slog.Logger

	mu      sync.Mutex
	pending map[string]chan command.Reply
	joined  chan struct{}
	once    sync.Once
}

func newService(brokers []string, topics kafka.Topics, prefix string, orders *mongo.Collection, logger *slog.Logger) (*service, error) {
	pc := kafka.Config("plain-producer", 20*time.Millisecond)
	pc.Producer.Return.Successes = true
	pc.Producer.Partitioner = sarama.NewHashPartitioner
	producer, err := sarama.NewSyncProducer(brokers, pc)
	if err != nil {
		return nil, err
	}
	gc := kafka.Config("plain-consumer", 20*time.Millisecond)
	gc.Consumer.IsolationLevel = sarama.ReadUncommitted
	gc.Consumer.Offsets.AutoCommit.Enable = true
	gc.Consumer.Offsets.AutoCommit.Interval = time.Second
	group, err := sarama.NewConsumerGroup(brokers, prefix+".plain", gc)
	if err != nil {
		producer.Close()
		return nil, err
	}
	return &service{topics: topics, group: group, producer: producer, orders: orders, logger: logger,
		pending: map[string]chan command.Reply{}, joined: make(chan struct{})}, nil
}

func (s *service) close() {
	s.group.Close()
	s.producer.Close()
}

func (s *service) ready() bool {
	select {
	case <-s.joined:
		return true
	default:
		return false
	}
}

// wireCommand is a command on the commands topic.
type wireCommand struct {
	ID             string          `json:"id"`
	Type           string          `json:"type"`
	IdempotencyKey string          `json:"idempotencyKey"`
	Data           json.RawMessage `json:"data"`
}

// Send is graph.Commands: produce the command, wait for its outcome.
func (s *service) Send(ctx context.Context, cmd domain.Command, key string) (command.Reply, error) {
	if p, ok := cmd.(domain.PlaceOrder); ok && p.OrderID == "" {
		p.OrderID = command.PlaceOrderID(p.CustomerID, key)
		cmd = p
	}
	if err := domain.CheckIdempotencyKey(key); err != nil {
		return command.Reply{Error: err.(*domain.Error)}, nil
	}
	if err := domain.Validate(cmd); err != nil {
		return command.Reply{OrderID: cmd.TargetOrderID(), Error: err.(*domain.Error)}, nil
	}
	typ, data, err := domain.MarshalCommand(cmd)
	if err != nil {
		return command.Reply{}, err
	}
	var rnd [12]byte
	_, _ = rand.Read(rnd[:])
	id := hex.EncodeToString(rnd[:])
	if key == "" {
		key = id
	}
	value, _ := json.Marshal(wireCommand{ID: id, Type: typ, IdempotencyKey: key, Data: data})
	ch := make(chan command.Reply, 1)
	s.mu.Lock()
	s.pending[id] = ch
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.pending, id)
		s.mu.Unlock()
	}()
	if _, _, err := s.producer.SendMessage(&sarama.ProducerMessage{Topic: s.topics.Commands, Key: sarama.StringEncoder(cmd.TargetOrderID()), Value: sarama.ByteEncoder(value)}); err != nil {
		return command.Reply{}, &domain.Error{Code: domain.CodeUnavailable, Message: "the command could not be sent"}
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	select {
	case r := <-ch:
		return r, nil
	case <-ctx.Done():
		return command.Reply{}, &domain.Error{Code: domain.CodeCommandTimeout, Message: "the command was not answered in time"}
	}
}

func (s *service) consume(ctx context.Context) {
	for ctx.Err() == nil {
		if err := s.group.Consume(ctx, []string{s.topics.Commands}, s); err != nil {
			if errors.Is(err, sarama.ErrClosedConsumerGroup) {
				return
			}
			s.logger.Warn("consume", "err", err)
			time.Sleep(time.Second)
		}
	}
}

func (s *service) Setup(sarama.ConsumerGroupSession) error {
	s.once.Do(func() { close(s.joined) })
	return nil
}

func (s *service) Cleanup(sarama.ConsumerGroupSession) error { return nil }

func (s *service) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	for m := range claim.Messages() {
		r, err := s.handle(sess.Context(), m)
		if err != nil {
			s.logger.Warn("command not handled", "offset", m.Offset, "err", err)
			r = command.Reply{Error: &domain.Error{Code: domain.CodeInternal, Message: "internal error"}}
		}
		sess.MarkMessage(m, "")
		s.mu.Lock()
		ch := s.pending[r.CommandID]
		s.mu.Unlock()
		if ch != nil {
			ch <- r
		}
	}
	return nil
}

// stored is the order document: the view the queries read, plus the
// idempotency outcomes.
type stored struct {
	view.OrderDoc `bson:",inline"`
	Outcomes      []storedOutcome `bson:"outcomes,omitempty"`
}

type storedOutcome struct {
	Key     string        `bson:"key"`
	Hash    string        `bson:"hash"`
	Version int           `bson:"version"`
	Error   *domain.Error `bson:"error,omitempty"`
}

// handle decides one command against the stored order and writes the
// result: document, then event.
func (s *service) handle(ctx context.Context, m *sarama.ConsumerMessage) (command.Reply, error) {
	var w wireCommand
	if err := json.Unmarshal(m.Value, &w); err != nil {
		return command.Reply{}, err
	}
	cmd, err := domain.UnmarshalCommand(w.Type, w.Data)
	if err != nil {
		return command.Reply{CommandID: w.ID}, err
	}
	r := command.Reply{CommandID: w.ID, OrderID: cmd.TargetOrderID()}
	var doc stored
	err = s.orders.FindOne(ctx, bson.D{{Key: "_id", Value: cmd.TargetOrderID()}}).Decode(&doc)
	if err != nil && !errors.Is(err, mongo.ErrNoDocuments) {
		return r, err
	}
	var state domain.Order
	if err == nil {
		state = doc.ToOrder()
	}
	sum := sha256.Sum256(append([]byte(w.Type+"\x00"), w.Data...))
	hash := hex.EncodeToString(sum[:16])
	for _, o := range doc.Outcomes {
		if o.Key == w.IdempotencyKey {
			if o.Hash != hash {
				r.Version, r.Error = state.Version, domain.Errorf(domain.CodeIdempotencyKeyReused, "the idempotency key was already used with a different request")
				return r, nil
			}
			r.Version, r.Error, r.Replayed = o.Version, o.Error, true
			if state.Exists() {
				r.Order = &state
			}
			return r, nil
		}
	}
	events, derr := domain.Decide(state, cmd, time.Now().UTC().Truncate(time.Millisecond))
	if derr != nil {
		var de *domain.Error
		if !errors.As(derr, &de) {
			return r, derr
		}
		r.Error = de
	}
	prevVersion := state.Version
	for _, e := range events {
		state = domain.Evolve(state, e)
	}
	r.Version = state.Version
	if !state.Exists() {
		return r, nil
	}
	r.Order = &state
	next := stored{OrderDoc: view.FromOrder(state), Outcomes: append(doc.Outcomes, storedOutcome{Key: w.IdempotencyKey, Hash: hash, Version: state.Version, Error: r.Error})}
	if n := len(next.Outcomes); n > 100 {
		next.Outcomes = next.Outcomes[n-100:]
	}
	// Filtered by _id alone: each order is written by the one consumer of
	// its partition (and FerretDB turns any other filter into a scan).
	if prevVersion == 0 {
		_, err = s.orders.InsertOne(ctx, next)
	} else {
		_, err = s.orders.ReplaceOne(ctx, bson.D{{Key: "_id", Value: state.ID}}, next)
	}
	if err != nil {
		return r, err
	}
	for _, e := range events {
		v, err := domain.MarshalEvent(e)
		if err != nil {
			return r, err
		}
		if _, _, err := s.producer.SendMessage(&sarama.ProducerMessage{Topic: s.topics.Events, Key: sarama.StringEncoder(e.OrderID), Value: sarama.ByteEncoder(v)}); err != nil {
			return r, err
		}
	}
	return r, nil
}
