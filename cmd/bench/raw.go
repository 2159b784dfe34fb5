package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"

	"github.com/ordergateway/gateway/kafka"
)

// The raw floor is the gateway's Kafka round trip with everything else taken
// away: no HTTP, no GraphQL, no JSON, no domain logic, no snapshot. A client
// (one shared idempotent SyncProducer plus one read_committed partition
// consumer of its own replies partition on a client of its own, like
// command.Bus) produces a command;
// a server (a consumer group on the commands topic with one transactional
// producer per partition, like command.Handler) consumes batches of up to 100
// and, in one transaction, produces a reply and an event per command and
// commits the group offset; the client consumes the reply. One such round
// trip is a "hop"; a mutation is one hop plus everything the gateway adds.
// All clients use kafka.Config(…, 20ms), the gateway's own base settings.

func randID(prefix string) string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// rawServer mirrors command.Handler without the domain.
type rawServer struct {
	brokers []string
	topics  kafka.Topics
	groupID string
	logger  *slog.Logger
	group   *rawGroup
}

func startRawServer(brokers []string, prefix string, logger *slog.Logger) (*rawServer, error) {
	s := &rawServer{brokers: brokers, topics: kafka.NewTopics(prefix), groupID: prefix + ".raw-server", logger: logger}
	g, err := startRawGroup(brokers, "bench-raw-server", s.groupID, s.topics.Commands, s.ConsumeClaim, logger)
	if err != nil {
		return nil, fmt.Errorf("raw server: %w", err)
	}
	s.group = g
	return s, nil
}

func (s *rawServer) Close() { s.group.Close() }

// rawGroup is a consumer group member on one topic whose claims claim
// serves, consuming session after session until closed.
type rawGroup struct {
	client   sarama.Client
	group    sarama.ConsumerGroup
	claim    func(sarama.ConsumerGroupSession, sarama.ConsumerGroupClaim) error
	sessions atomic.Int64
	cancel   context.CancelFunc
	done     chan struct{}
}

// startRawGroup joins groupID on topic and returns once the member has its
// first session (or after 60 s with an error).
func startRawGroup(brokers []string, clientID, groupID, topic string, claim func(sarama.ConsumerGroupSession, sarama.ConsumerGroupClaim) error, logger *slog.Logger) (*rawGroup, error) {
	sc := kafka.Config(clientID, fetchWait)
	sc.Consumer.Offsets.AutoCommit.Enable = false
	sc.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{sarama.NewBalanceStrategySticky()}
	sc.Consumer.Group.Session.Timeout = sessionTimeout
	sc.Consumer.Group.Heartbeat.Interval = sessionTimeout / 3
	client, err := sarama.NewClient(brokers, sc)
	if err != nil {
		return nil, err
	}
	g := &rawGroup{client: client, claim: claim, done: make(chan struct{})}
	if g.group, err = sarama.NewConsumerGroupFromClient(groupID, client); err != nil {
		client.Close()
		return nil, fmt.Errorf("group %s: %w", groupID, err)
	}
	go func() {
		for err := range g.group.Errors() {
			logger.Warn("raw group", "group", groupID, "err", err)
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	g.cancel = cancel
	go func() {
		defer close(g.done)
		var loop kafka.GroupLoop
		_ = loop.Run(ctx, g.group, []string{topic}, g, logger)
	}()
	deadline := time.Now().Add(60 * time.Second)
	for g.sessions.Load() == 0 {
		if time.Now().After(deadline) {
			g.Close()
			return nil, fmt.Errorf("group %s did not get a session within 60s", groupID)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return g, nil
}

func (g *rawGroup) Close() {
	g.cancel()
	g.group.Close()
	<-g.done
	g.client.Close()
}

func (g *rawGroup) Setup(sarama.ConsumerGroupSession) error   { g.sessions.Add(1); return nil }
func (g *rawGroup) Cleanup(sarama.ConsumerGroupSession) error { return nil }
func (g *rawGroup) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	return g.claim(sess, claim)
}

func (s *rawServer) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	p := claim.Partition()
	sc := kafka.Config("bench-raw-server", fetchWait)
	sc.Producer.Transaction.ID = s.topics.Commands + ".raw." + strconv.Itoa(int(p))
	sc.Producer.Partitioner = sarama.NewManualPartitioner
	sc.Producer.Return.Successes = false
	prod, err := sarama.NewAsyncProducer(s.brokers, sc)
	if err != nil {
		return fmt.Errorf("raw server producer: %w", err)
	}
	var lastErr atomic.Pointer[error]
	errsDone := make(chan struct{})
	go func() {
		defer close(errsDone)
		for e := range prod.Errors() {
			err := e.Err
			lastErr.Store(&err)
		}
	}()
	defer func() {
		if prod.TxnStatus()&sarama.ProducerTxnFlagInTransaction != 0 {
			_ = prod.AbortTxn()
		}
		prod.Close()
		<-errsDone
	}()
	meta := sarama.NewConsumerGroupMetadataFromSession(sess, s.groupID, nil)
	for {
		select {
		case msg, ok := <-claim.Messages():
			if !ok {
				return nil
			}
			batch := []*sarama.ConsumerMessage{msg}
		fill:
			for len(batch) < 100 {
				select {
				case m, ok := <-claim.Messages():
					if !ok {
						break fill
					}
					batch = append(batch, m)
				default:
					break fill
				}
			}
			if err := prod.BeginTxn(); err != nil {
				return fmt.Errorf("raw server begin: %w", err)
			}
			for _, m := range batch {
				replyTo := kafka.Header(m, "reply-to")
				rp, _ := strconv.Atoi(kafka.Header(m, "reply-partition"))
				prod.Input() <- &sarama.ProducerMessage{Topic: s.topics.Replies, Partition: int32(rp), Key: sarama.StringEncoder(replyTo), Value: sarama.StringEncoder(kafka.Header(m, "command-id"))}
				prod.Input() <- &sarama.ProducerMessage{Topic: s.topics.Events, Partition: p, Key: sarama.ByteEncoder(m.Key), Value: sarama.ByteEncoder(m.Value)}
			}
			err := prod.AddMessageToTxnWithGroupMetadata(batch[len(batch)-1], meta, nil)
			if err == nil {
				err = prod.CommitTxn()
			}
			if err != nil {
				if le := lastErr.Load(); le != nil {
					err = fmt.Errorf("%w (produce: %v)", err, *le)
				}
				s.logger.Error("raw server: transaction failed", "partition", p, "err", err)
				return err
			}
		case <-sess.Context().Done():
			return nil
		}
	}
}

// rawClient mirrors command.Bus without JSON and domain validation.
type rawClient struct {
	id        string
	topics    kafka.Topics
	replyPart int32
	client    sarama.Client // the producer's
	cclient   sarama.Client // the reply consumer's: sarama sends one request at a time per connection, so a produce sharing a connection with a parked fetch would wait for it
	producer  sarama.SyncProducer
	consumer  sarama.Consumer
	replies   sarama.PartitionConsumer
	value     []byte // a command-sized payload

	mu      sync.Mutex
	pending map[string]chan struct{}
	done    chan struct{}
}

func newRawClient(brokers []string, prefix string) (*rawClient, error) {
	c := &rawClient{id: randID("raw_"), topics: kafka.NewTopics(prefix), pending: map[string]chan struct{}{}, done: make(chan struct{})}
	sc := kafka.Config("bench-raw-client", fetchWait)
	sc.Producer.Return.Successes = true
	sc.Producer.Partitioner = sarama.NewHashPartitioner
	sc.Producer.Retry.Max = 3
	var err error
	if c.client, err = sarama.NewClient(brokers, sc); err != nil {
		return nil, fmt.Errorf("raw client: %w", err)
	}
	parts, err := c.client.Partitions(c.topics.Replies)
	if err != nil {
		c.client.Close()
		return nil, fmt.Errorf("raw client: %w", err)
	}
	h := fnv.New32a()
	h.Write([]byte(c.id))
	c.replyPart = int32(h.Sum32() % uint32(len(parts)))
	if c.producer, err = sarama.NewSyncProducerFromClient(c.client); err != nil {
		c.client.Close()
		return nil, err
	}
	if c.cclient, err = sarama.NewClient(brokers, sc); err != nil {
		c.producer.Close()
		c.client.Close()
		return nil, err
	}
	if c.consumer, err = sarama.NewConsumerFromClient(c.cclient); err != nil {
		c.cclient.Close()
		c.producer.Close()
		c.client.Close()
		return nil, err
	}
	if c.replies, err = c.consumer.ConsumePartition(c.topics.Replies, c.replyPart, sarama.OffsetNewest); err != nil {
		c.consumer.Close()
		c.cclient.Close()
		c.producer.Close()
		c.client.Close()
		return nil, err
	}
	// About the size of a placeOrder command envelope.
	c.value = make([]byte, 420)
	for i := range c.value {
		c.value[i] = 'a' + byte(i%26)
	}
	go c.read()
	return c, nil
}

func (c *rawClient) read() {
	defer close(c.done)
	msgs, errs := c.replies.Messages(), c.replies.Errors()
	for msgs != nil || errs != nil {
		select {
		case m, ok := <-msgs:
			if !ok {
				msgs = nil
				continue
			}
			if string(m.Key) != c.id {
				continue
			}
			c.mu.Lock()
			ch := c.pending[string(m.Value)]
			delete(c.pending, string(m.Value))
			c.mu.Unlock()
			if ch != nil {
				close(ch)
			}
		case _, ok := <-errs:
			if !ok {
				errs = nil
			}
		}
	}
}

// hop sends one command keyed key and waits for its reply.
func (c *rawClient) hop(ctx context.Context, key string) error {
	cmdID := randID("cmd_")
	ch := make(chan struct{})
	c.mu.Lock()
	c.pending[cmdID] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pending, cmdID)
		c.mu.Unlock()
	}()
	msg := &sarama.ProducerMessage{Topic: c.topics.Commands, Key: sarama.StringEncoder(key), Value: sarama.ByteEncoder(c.value),
		Headers: []sarama.RecordHeader{
			{Key: []byte("command-id"), Value: []byte(cmdID)},
			{Key: []byte("idempotency-key"), Value: []byte(cmdID)},
			{Key: []byte("reply-to"), Value: []byte(c.id)},
			{Key: []byte("reply-partition"), Value: []byte(strconv.Itoa(int(c.replyPart)))},
		}}
	if _, _, err := c.producer.SendMessage(msg); err != nil {
		return fmt.Errorf("raw produce: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("raw hop %s: %w", cmdID, ctx.Err())
	}
}

func (c *rawClient) Close() {
	c.replies.AsyncClose()
	<-c.done
	c.consumer.Close()
	c.cclient.Close()
	c.producer.Close()
	c.client.Close()
}
