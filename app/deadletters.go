package app

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/IBM/sarama"

	"github.com/ordergateway/gateway/command"
	"github.com/ordergateway/gateway/embedded"
	"github.com/ordergateway/gateway/kafka"
)

// Bounds of `deadletters`.
const (
	dlDefaultLimit    = 100
	dlMaxLimit        = 10_000   // --limit: dead letters listed, or replayed by --all, per run
	dlMaxIDs          = 1_000    // dead letters named on one command line
	dlDefaultMaxBytes = 16 << 10 // --max-bytes: of a value `show` prints
	dlMaxMaxBytes     = 1 << 20  // a record is at most 1 MiB by default
	dlMaxHeaderShown  = 256      // bytes of each header value `show` prints
	dlMaxHeadersShown = 64       // headers `show` prints
	dlErrorColumn     = 100      // bytes of the error `list` prints per line
	dlMaxWait         = 5 * time.Minute
)

// dlUsage is `deadletters --help`.
const dlUsage = `usage: order-gateway deadletters list [--limit 100] [--json] [gateway settings]
       order-gateway deadletters show ID [--max-bytes 16384] [--json] [gateway settings]
       order-gateway deadletters replay (ID... | --all [--limit 100]) [--force] [--wait 5s] [gateway settings]

Reads the dead-letter topic <TOPIC_PREFIX>.deadletter: the commands and events
the gateway could not process, each with why and where it came from.
  list    the newest dead letters (at most --limit, up to 10000): ID, age,
          reason code, source topic/partition/offset, whether it was replayed,
          and the error
  show    one dead letter: its headers, key and value (JSON pretty-printed,
          at most --max-bytes of it)
  replay  writes dead letters' records back to their source topic and
          partition, to be processed again (after a fix or an upcaster was
          deployed). Each replay is recorded in the dead-letter topic in the
          same transaction; a dead letter replayed before is refused unless
          --force. --all replays the oldest dead letters not replayed yet (at
          most --limit per run). A replayed command is answered from its
          recorded outcome if its idempotency key was applied meanwhile, and
          replay waits up to --wait (default COMMAND_TIMEOUT, 0: not at all)
          for the answers; a replayed event the views already have is skipped.
ID is PARTITION/OFFSET as list shows it, or a bare OFFSET when one partition
holds that offset.

Kafka is KAFKA_BROKERS (with KAFKA_TLS, KAFKA_CA_FILE, KAFKA_SASL_*), else the
embedded broker in DATA_DIR: that of the gateway that runs on DATA_DIR, or,
when none does, one this command starts there and stops.
Exit codes: 0 done; 1 failed, or a dead letter was refused; 2 bad usage.`

// DeadLettersCommand is `order-gateway deadletters list|show|replay`: see
// dlUsage. Its own flags are --limit, --json, --all, --force, --wait and
// --max-bytes; the others are the gateway's settings (KAFKA_BROKERS,
// TOPIC_PREFIX, DATA_DIR...). Errors are one line on stderr. It returns the
// exit code.
func DeadLettersCommand(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	fail := func(code int, format string, a ...any) int {
		fmt.Fprintf(stderr, "order-gateway deadletters: "+format+"\n", a...)
		return code
	}
	if len(args) == 0 {
		return fail(2, "give list, show ID or replay ID (see --help)")
	}
	sub := args[0]
	switch sub {
	case "list", "show", "replay":
	case "-h", "-help", "--help", "help":
		fmt.Fprintln(stdout, dlUsage)
		return 0
	default:
		return fail(2, "unknown subcommand %q: list, show or replay (see --help)", cutLine(sub, 40))
	}
	o := dlOptions{limit: dlDefaultLimit, maxBytes: dlDefaultMaxBytes, wait: -1}
	var rest []string
	for i := 1; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") {
			o.ids = append(o.ids, a)
			continue
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		switch name {
		case "h", "help":
			fmt.Fprintln(stdout, dlUsage)
			return 0
		case "json", "all", "force":
			b, err := strconv.ParseBool(value)
			if !hasValue {
				b, err = true, nil
			}
			if err != nil {
				return fail(2, "--%s=%q is not true or false", name, cutLine(value, 20))
			}
			switch name {
			case "json":
				o.json = b
			case "all":
				o.all = b
			default:
				o.force = b
			}
		case "limit", "max-bytes", "wait":
			if !hasValue {
				if i+1 >= len(args) {
					return fail(2, "--%s needs a value", name)
				}
				i++
				value = args[i]
			}
			switch name {
			case "limit":
				n, err := strconv.Atoi(value)
				if err != nil || n < 1 || n > dlMaxLimit {
					return fail(2, "--limit %q is not a whole number from 1 to %d", cutLine(value, 20), dlMaxLimit)
				}
				o.limit = n
			case "max-bytes":
				n, err := strconv.Atoi(value)
				if err != nil || n < 64 || n > dlMaxMaxBytes {
					return fail(2, "--max-bytes %q is not a whole number from 64 to %d", cutLine(value, 20), dlMaxMaxBytes)
				}
				o.maxBytes = n
			default:
				d, err := time.ParseDuration(value)
				if err != nil || d < 0 || d > dlMaxWait {
					return fail(2, "--wait %q is not a duration from 0 to %s", cutLine(value, 20), dlMaxWait)
				}
				o.wait = d
			}
		default:
			// A gateway setting: they all take a value.
			rest = append(rest, a)
			if !hasValue && i+1 < len(args) {
				i++
				rest = append(rest, args[i])
			}
		}
	}
	switch {
	case sub == "list" && len(o.ids) > 0:
		return fail(2, "list takes no dead letter (show ID shows one)")
	case sub == "show" && len(o.ids) != 1:
		return fail(2, "show takes one dead letter: PARTITION/OFFSET, or OFFSET")
	case sub == "replay" && o.all == (len(o.ids) > 0):
		return fail(2, "replay takes dead letters (PARTITION/OFFSET or OFFSET) or --all, not both nor neither")
	case sub == "replay" && o.all && o.force:
		return fail(2, "--force replays named dead letters again, not --all (which replays those not replayed yet)")
	case len(o.ids) > dlMaxIDs:
		return fail(2, "%d dead letters named; at most %d at once", len(o.ids), dlMaxIDs)
	}
	for _, s := range o.ids {
		if _, _, err := kafka.ParseDeadLetterID(s); err != nil {
			return fail(2, "%v", err)
		}
	}
	cfg, err := ParseConfig(rest, getenv, io.Discard)
	if err != nil {
		return fail(2, "config: %v", err)
	}
	if o.wait < 0 {
		o.wait = cfg.CommandTimeout
	}
	ctx := context.Background()
	conn, err := openDeadLetters(cfg)
	if err != nil {
		return fail(1, "%v", err)
	}
	defer conn.close()
	d := &dlRun{cfg: cfg, conn: conn, opts: o, stdout: stdout, stderr: stderr,
		reader: &kafka.DeadLetterReader{Client: conn.client, Topic: conn.topics.DeadLetter}}
	if _, err := d.reader.Partitions(); err != nil {
		if errors.Is(err, sarama.ErrUnknownTopicOrPartition) {
			return fail(1, "the topic %s does not exist at %s: no gateway has run with TOPIC_PREFIX=%s there", conn.topics.DeadLetter, conn.where, cfg.TopicPrefix)
		}
		return fail(1, "%s at %s: %v", conn.topics.DeadLetter, conn.where, err)
	}
	switch sub {
	case "list":
		err = d.list(ctx)
	case "show":
		err = d.show(ctx)
	default:
		err = d.replay(ctx)
	}
	if err != nil {
		return fail(1, "%v", oneLine(err))
	}
	if d.refused {
		return 1
	}
	return 0
}

type dlOptions struct {
	ids             []string
	limit, maxBytes int
	json, all       bool
	force           bool
	wait            time.Duration
}

// dlConn is the connection to the broker that holds the dead letters, and
// what to stop when done.
type dlConn struct {
	brokers  []string
	security *kafka.Security
	client   sarama.Client
	topics   kafka.Topics
	where    string // the broker, for messages
	stop     []func()
}

func (c *dlConn) close() {
	if c.client != nil {
		c.client.Close()
	}
	for i := len(c.stop) - 1; i >= 0; i-- {
		c.stop[i]()
	}
}

// dlFetchWait is the tool's consumers' fetch wait: short, so a partition's
// end is seen soon.
const dlFetchWait = 50 * time.Millisecond

// openDeadLetters connects to KAFKA_BROKERS, or to the embedded broker of
// the gateway that holds DATA_DIR, or starts the embedded broker in
// DATA_DIR when no gateway holds it.
func openDeadLetters(cfg Config) (*dlConn, error) {
	c := &dlConn{topics: kafka.NewTopics(cfg.TopicPrefix), brokers: cfg.KafkaBrokers}
	switch {
	case len(cfg.KafkaBrokers) > 0:
		sec, err := cfg.checkConnections()
		if err != nil {
			return nil, err
		}
		c.security, c.where = sec, fmt.Sprintf("KAFKA_BROKERS %s", strings.Join(cfg.KafkaBrokers, ","))
	default:
		kdir := filepath.Join(cfg.DataDir, "kafka")
		if _, err := os.Stat(kdir); err != nil {
			return nil, fmt.Errorf("DATA_DIR %s holds no embedded broker (no %s): set DATA_DIR to the gateway's, or KAFKA_BROKERS to its brokers", cfg.DataDir, kdir)
		}
		lock, err := embedded.LockDir(cfg.DataDir)
		switch {
		case errors.Is(err, embedded.ErrDataDirInUse):
			addr, ok := embedded.RunningKafkaAddr(kdir)
			if !ok {
				return nil, fmt.Errorf("a running gateway holds DATA_DIR %s and its broker's address is not recorded there: stop that gateway, or set KAFKA_BROKERS to its broker's address (its start log shows it as kafka=[...])", cfg.DataDir)
			}
			c.brokers, c.where = []string{addr}, fmt.Sprintf("the embedded broker %s of the gateway running on DATA_DIR %s", addr, cfg.DataDir)
		case err != nil:
			return nil, err
		default:
			k, err := embedded.StartKafka(kdir, 0)
			if err != nil {
				lock.Close()
				return nil, err
			}
			c.stop = append(c.stop, func() { lock.Close() }, k.Close)
			c.brokers, c.where = []string{k.Addr()}, fmt.Sprintf("the embedded broker in DATA_DIR %s", cfg.DataDir)
		}
	}
	client, err := sarama.NewClient(c.brokers, c.security.Config("order-gateway-deadletters", dlFetchWait))
	if err != nil {
		c.close()
		if refused := c.security.Refusal(err, c.brokers); refused != nil {
			return nil, refused
		}
		if len(cfg.KafkaBrokers) == 0 {
			return nil, fmt.Errorf("%s does not answer (%v): stop that gateway, or set KAFKA_BROKERS to its broker's address", c.where, oneLine(err))
		}
		return nil, fmt.Errorf("%s not reachable: %v", c.where, oneLine(err))
	}
	c.client = client
	return c, nil
}

// dlRun is one run of the tool.
type dlRun struct {
	cfg     Config
	conn    *dlConn
	opts    dlOptions
	reader  *kafka.DeadLetterReader
	stdout  io.Writer
	stderr  io.Writer
	refused bool // a dead letter was refused (replayed before, not replayable)
}

// dlSummary is a dead letter as list shows it.
type dlSummary struct {
	ID              string             `json:"id"`
	Partition       int32              `json:"partition"`
	Offset          int64              `json:"offset"`
	Time            time.Time          `json:"time"`
	AgeSeconds      int64              `json:"ageSeconds"`
	SourceTopic     string             `json:"sourceTopic"`
	SourcePartition int32              `json:"sourcePartition"`
	SourceOffset    int64              `json:"sourceOffset"`
	Reason          string             `json:"reason"`
	Error           string             `json:"error"`
	Key             string             `json:"key"`
	ReplayOf        string             `json:"replayOf,omitempty"`
	Replays         []kafka.ReplayMark `json:"replays"`
	rec             *kafka.DeadLetterRecord
}

func summarize(rec *kafka.DeadLetterRecord, now time.Time) *dlSummary {
	topic, p, o := rec.Source()
	s := &dlSummary{ID: rec.ID.String(), Partition: rec.ID.Partition, Offset: rec.ID.Offset, Time: rec.Time.UTC(),
		AgeSeconds: int64(now.Sub(rec.Time) / time.Second), SourceTopic: topic, SourcePartition: p, SourceOffset: o,
		Reason: rec.Reason(), Error: rec.Error(), Key: printable(rec.Key, 128), Replays: []kafka.ReplayMark{}}
	if id, ok := rec.ReplayOf(); ok {
		s.ReplayOf = id.String()
	}
	return s
}

// list prints the newest --limit dead letters. It keeps at most --limit
// per partition while it reads (the newest), so its memory is bounded
// whatever the topic holds.
func (d *dlRun) list(ctx context.Context) error {
	parts, err := d.reader.Partitions()
	if err != nil {
		return err
	}
	type window struct {
		order []*dlSummary
		at    map[int64]*dlSummary
	}
	windows := map[int32]*window{}
	total, replays := 0, 0
	now := time.Now()
	err = d.reader.Scan(ctx, parts, nil, func(rec *kafka.DeadLetterRecord, mark *kafka.ReplayMark) error {
		if mark != nil {
			replays++
			if s := windows[mark.Of.Partition].at[mark.Of.Offset]; s != nil {
				s.Replays = append(s.Replays, *mark)
			}
			return nil
		}
		total++
		w := windows[rec.ID.Partition]
		if w == nil {
			w = &window{at: map[int64]*dlSummary{}}
			windows[rec.ID.Partition] = w
		}
		if len(w.order) == d.opts.limit {
			delete(w.at, w.order[0].Offset)
			w.order = w.order[1:]
		}
		s := summarize(rec, now)
		w.order = append(w.order, s)
		w.at[s.Offset] = s
		return nil
	})
	if err != nil {
		return err
	}
	var all []*dlSummary
	for _, w := range windows {
		all = append(all, w.order...)
	}
	slices.SortFunc(all, func(a, b *dlSummary) int {
		return cmp.Or(a.Time.Compare(b.Time), cmp.Compare(a.Partition, b.Partition), cmp.Compare(a.Offset, b.Offset))
	})
	if len(all) > d.opts.limit {
		all = all[len(all)-d.opts.limit:]
	}
	if d.opts.json {
		enc := json.NewEncoder(d.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{"topic": d.conn.topics.DeadLetter, "total": total, "replays": replays, "deadLetters": nonNil(all)})
	}
	if total == 0 {
		fmt.Fprintf(d.stdout, "no dead letters in %s\n", d.conn.topics.DeadLetter)
		return nil
	}
	tw := tabwriter.NewWriter(d.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tAGE\tREASON\tSOURCE\tSTATE\tERROR")
	for _, s := range all {
		state := "pending"
		if n := len(s.Replays); n > 0 {
			state = "replayed"
			if n > 1 {
				state = fmt.Sprintf("replayed %dx", n)
			}
		}
		if s.ReplayOf != "" {
			state += " (replay of " + s.ReplayOf + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", s.ID, age(now.Sub(s.Time)), cutLine(s.Reason, 20), source(s), state, cutLine(s.Error, dlErrorColumn))
	}
	tw.Flush()
	fmt.Fprintf(d.stdout, "%d dead letters in %s (%d replays recorded); showing the newest %d (--limit)\n", total, d.conn.topics.DeadLetter, replays, len(all))
	return nil
}

func nonNil(s []*dlSummary) []*dlSummary {
	if s == nil {
		return []*dlSummary{}
	}
	return s
}

func source(s *dlSummary) string {
	if s.SourcePartition < 0 {
		return cutLine(s.SourceTopic, 60)
	}
	return fmt.Sprintf("%s/%d/%d", cutLine(s.SourceTopic, 60), s.SourcePartition, s.SourceOffset)
}

// resolve turns an ID argument into a dead letter's id.
func (d *dlRun) resolve(arg string) (kafka.DeadLetterID, error) {
	id, full, err := kafka.ParseDeadLetterID(arg)
	if err != nil || full {
		return id, err
	}
	id, err = d.reader.Locate(id.Offset)
	if errors.Is(err, kafka.ErrNoDeadLetter) {
		return id, fmt.Errorf("no dead letter at offset %s of %s", arg, d.conn.topics.DeadLetter)
	}
	return id, err
}

// get reads the dead letter id, and with marks its replay marks.
func (d *dlRun) get(ctx context.Context, id kafka.DeadLetterID) (*kafka.DeadLetterRecord, error) {
	rec, err := d.reader.Get(ctx, id)
	if errors.Is(err, kafka.ErrNoDeadLetter) {
		return nil, fmt.Errorf("no dead letter %s in %s (list shows them)", id, d.conn.topics.DeadLetter)
	}
	return rec, err
}

// show prints one dead letter, its value cut to --max-bytes.
func (d *dlRun) show(ctx context.Context) error {
	id, err := d.resolve(d.opts.ids[0])
	if err != nil {
		return err
	}
	rec, err := d.get(ctx, id)
	if err != nil {
		return err
	}
	s := summarize(rec, time.Now())
	err = d.reader.Scan(ctx, []int32{id.Partition}, nil, func(_ *kafka.DeadLetterRecord, mark *kafka.ReplayMark) error {
		if mark != nil && mark.Of == id {
			s.Replays = append(s.Replays, *mark)
		}
		return nil
	})
	if err != nil {
		return err
	}
	value, truncated := prettyValue(rec.Value, d.opts.maxBytes)
	if d.opts.json {
		type header struct{ Key, Value string }
		var hs []header
		for i, h := range rec.Headers {
			if h != nil && i < dlMaxHeadersShown {
				hs = append(hs, header{Key: printable(h.Key, dlMaxHeaderShown), Value: printable(h.Value, dlMaxHeaderShown)})
			}
		}
		out := struct {
			*dlSummary
			Headers    []header        `json:"headers"`
			ValueBytes int             `json:"valueBytes"`
			Value      json.RawMessage `json:"value"`
			Truncated  bool            `json:"valueTruncated"`
		}{dlSummary: s, Headers: hs, ValueBytes: len(rec.Value), Truncated: truncated}
		if !truncated && rec.Value != nil && json.Valid(rec.Value) {
			out.Value = rec.Value
		} else {
			out.Value, _ = json.Marshal(value)
		}
		enc := json.NewEncoder(d.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	w := d.stdout
	fmt.Fprintf(w, "dead letter %s of %s\n", s.ID, d.conn.topics.DeadLetter)
	fmt.Fprintf(w, "set aside:  %s (%s ago)\n", s.Time.Format(time.RFC3339), age(time.Since(s.Time)))
	fmt.Fprintf(w, "source:     %s\n", source(s))
	fmt.Fprintf(w, "reason:     %s: %s\n", s.Reason, strings.ReplaceAll(s.Error, "\n", " "))
	if s.ReplayOf != "" {
		fmt.Fprintf(w, "replay of:  dead letter %s\n", s.ReplayOf)
	}
	if len(s.Replays) == 0 {
		fmt.Fprintln(w, "replayed:   no")
	}
	for _, m := range s.Replays {
		forced := ""
		if m.Forced {
			forced = " (forced)"
		}
		fmt.Fprintf(w, "replayed:   to %s/%d/%d at %s%s\n", m.Topic, m.Partition, m.Offset, m.At.Format(time.RFC3339), forced)
	}
	fmt.Fprintln(w, "headers:")
	for i, h := range rec.Headers {
		if i == dlMaxHeadersShown {
			fmt.Fprintf(w, "  … %d more\n", len(rec.Headers)-i)
			break
		}
		if h != nil {
			fmt.Fprintf(w, "  %s: %s\n", printable(h.Key, dlMaxHeaderShown), printable(h.Value, dlMaxHeaderShown))
		}
	}
	fmt.Fprintf(w, "key:        %s\n", printable(rec.Key, dlMaxHeaderShown))
	switch {
	case rec.Value == nil:
		fmt.Fprintln(w, "value:      none (the copy was too large for the dead-letter topic; the source record has it)")
	default:
		fmt.Fprintf(w, "value (%d bytes):\n%s\n", len(rec.Value), value)
		if truncated {
			fmt.Fprintf(w, "… cut at %d bytes (--max-bytes)\n", d.opts.maxBytes)
		}
	}
	return nil
}

// prettyValue is v indented when it is JSON, else quoted when it is not
// printable text, cut to max bytes.
func prettyValue(v []byte, max int) (string, bool) {
	var buf bytes.Buffer
	text := string(v)
	if json.Valid(v) && json.Indent(&buf, v, "", "  ") == nil {
		text = buf.String()
	} else if !utf8.Valid(v) || strings.ContainsFunc(text, func(r rune) bool { return r < 0x20 && r != '\n' && r != '\t' }) {
		text = strconv.Quote(text)
	}
	if len(text) <= max {
		return text, false
	}
	return strings.ToValidUTF8(text[:max], ""), true
}

// printable is b as text, quoted when it is not printable, cut to max
// bytes.
func printable(b []byte, max int) string {
	s := string(b)
	if !utf8.ValidString(s) || strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		s = strconv.Quote(s)
	}
	return cutLine(s, max)
}

// replay writes the named dead letters (or, with --all, the oldest ones not
// replayed yet) back to their source topics. See kafka/deadletter.go for
// why a dead letter cannot be replayed twice without --force, even by two
// runs at once.
func (d *dlRun) replay(ctx context.Context) error {
	var ids []kafka.DeadLetterID
	for _, a := range d.opts.ids {
		id, err := d.resolve(a)
		if err != nil {
			return err
		}
		ids = append(ids, id)
	}
	cfg := d.conn.security.Config("order-gateway-deadletters-replay", dlFetchWait)
	replayer, err := kafka.NewReplayer(d.conn.brokers, cfg, d.conn.topics.DeadLetter, kafka.ReplayTransactionalID(d.cfg.TopicPrefix))
	if err != nil {
		return fmt.Errorf("transactional producer: %v", oneLine(err))
	}
	defer replayer.Close()
	// Scan after fencing: every replay committed before this one started
	// has its mark before the scan marks.
	var parts []int32
	wanted := map[kafka.DeadLetterID]bool{}
	for _, id := range ids {
		if !wanted[id] {
			wanted[id] = true
			if !slices.Contains(parts, id.Partition) {
				parts = append(parts, id.Partition)
			}
		}
	}
	if d.opts.all {
		if parts, err = d.reader.Partitions(); err != nil {
			return err
		}
	}
	until, err := replayer.Fence(parts)
	if err != nil {
		return fmt.Errorf("mark the scan: %v", oneLine(err))
	}
	found := map[kafka.DeadLetterID]*kafka.DeadLetterRecord{}
	marks := map[kafka.DeadLetterID][]kafka.ReplayMark{}
	// --all: the oldest --limit dead letters of each partition without a
	// mark (a mark comes after its dead letter, so a candidate may lose its
	// place later; more is set when one was left out).
	pending := map[int32][]*kafka.DeadLetterRecord{}
	more := false
	err = d.reader.Scan(ctx, parts, until, func(rec *kafka.DeadLetterRecord, mark *kafka.ReplayMark) error {
		switch {
		case mark != nil && d.opts.all:
			pending[mark.Of.Partition] = slices.DeleteFunc(pending[mark.Of.Partition], func(r *kafka.DeadLetterRecord) bool { return r.ID == mark.Of })
		case mark != nil && wanted[mark.Of]:
			marks[mark.Of] = append(marks[mark.Of], *mark)
		case rec != nil && d.opts.all:
			if len(pending[rec.ID.Partition]) < d.opts.limit {
				pending[rec.ID.Partition] = append(pending[rec.ID.Partition], rec)
			} else {
				more = true
			}
		case rec != nil && wanted[rec.ID]:
			found[rec.ID] = rec
		}
		return nil
	})
	if err != nil {
		return err
	}
	var targets []*kafka.DeadLetterRecord
	if d.opts.all {
		for _, recs := range pending {
			targets = append(targets, recs...)
		}
		slices.SortFunc(targets, func(a, b *kafka.DeadLetterRecord) int {
			return cmp.Or(a.Time.Compare(b.Time), cmp.Compare(a.ID.Partition, b.ID.Partition), cmp.Compare(a.ID.Offset, b.ID.Offset))
		})
		if len(targets) > d.opts.limit {
			targets, more = targets[:d.opts.limit], true
		}
	} else {
		seen := map[kafka.DeadLetterID]bool{}
		for _, id := range ids {
			if seen[id] {
				continue
			}
			seen[id] = true
			rec := found[id]
			if rec == nil {
				fmt.Fprintf(d.stdout, "%s: no such dead letter in %s\n", id, d.conn.topics.DeadLetter)
				d.refused = true
				continue
			}
			if ms := marks[id]; len(ms) > 0 && !d.opts.force {
				m := ms[len(ms)-1]
				fmt.Fprintf(d.stdout, "%s: refused: already replayed to %s/%d/%d at %s; --force replays it again\n", id, m.Topic, m.Partition, m.Offset, m.At.Format(time.RFC3339))
				d.refused = true
				continue
			}
			targets = append(targets, rec)
		}
	}
	answers, err := d.listenForAnswers(targets)
	if err != nil {
		return err
	}
	defer answers.close()
	replayed := 0
	for _, rec := range targets {
		msg, err := kafka.ReplayMessage(rec, []string{d.conn.topics.Commands, d.conn.topics.Events})
		if err != nil {
			fmt.Fprintf(d.stdout, "%s: refused: %v\n", rec.ID, err)
			d.refused = true
			continue
		}
		answers.address(rec, msg)
		mark, err := replayer.Replay(rec, msg, len(marks[rec.ID]) > 0)
		if err != nil {
			return fmt.Errorf("replay of %s: %v (the dead letters before it are replayed)", rec.ID, oneLine(err))
		}
		replayed++
		fmt.Fprintf(d.stdout, "%s: replayed to %s/%d/%d\n", rec.ID, mark.Topic, mark.Partition, mark.Offset)
	}
	answers.wait(d.stdout, d.opts.wait)
	switch {
	case d.opts.all && replayed == 0 && !more:
		fmt.Fprintf(d.stdout, "no dead letters left to replay in %s\n", d.conn.topics.DeadLetter)
	case d.opts.all && more:
		fmt.Fprintf(d.stdout, "replayed %d; more may be waiting: run replay --all again\n", replayed)
	}
	return nil
}

// dlAnswers waits for the command handler's answers to replayed commands:
// a replayed command names this run as its reply destination.
type dlAnswers struct {
	instance  string
	partition int32
	commands  string
	consumer  sarama.Consumer
	pc        sarama.PartitionConsumer
	waiting   map[string]kafka.DeadLetterID // by command id
	order     []string
}

func (d *dlRun) listenForAnswers(targets []*kafka.DeadLetterRecord) (*dlAnswers, error) {
	a := &dlAnswers{commands: d.conn.topics.Commands, waiting: map[string]kafka.DeadLetterID{}}
	needed := false
	for _, rec := range targets {
		topic, _, _ := rec.Source()
		needed = needed || topic == d.conn.topics.Commands
	}
	if !needed || d.opts.wait == 0 {
		return a, nil
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	a.instance = "deadletters_" + hex.EncodeToString(b[:])
	parts, err := d.conn.client.Partitions(d.conn.topics.Replies)
	if err != nil || len(parts) == 0 {
		return nil, fmt.Errorf("replies topic %s: %v", d.conn.topics.Replies, err)
	}
	h := fnv.New32a()
	h.Write([]byte(a.instance))
	a.partition = int32(h.Sum32() % uint32(len(parts)))
	if a.consumer, err = sarama.NewConsumerFromClient(d.conn.client); err != nil {
		return nil, err
	}
	// From the newest offset, taken now: every answer to a command
	// replayed after this is read.
	if a.pc, err = kafka.ConsumeWhenLed(d.conn.client, a.consumer, d.conn.topics.Replies, a.partition, sarama.OffsetNewest); err != nil {
		a.consumer.Close()
		return nil, fmt.Errorf("read %s: %v", d.conn.topics.Replies, err)
	}
	return a, nil
}

// address makes a replayed command answer this run (instead of the bus that
// sent it first, which no longer waits for it).
func (a *dlAnswers) address(rec *kafka.DeadLetterRecord, msg *sarama.ProducerMessage) {
	if msg.Topic != a.commands {
		return
	}
	msg.Headers = slices.DeleteFunc(msg.Headers, func(h sarama.RecordHeader) bool {
		return string(h.Key) == command.HeaderReplyTo || string(h.Key) == command.HeaderReplyPartition
	})
	if a.pc == nil {
		return // no answer awaited: none is sent
	}
	id := ""
	for _, h := range msg.Headers {
		if string(h.Key) == command.HeaderCommandID {
			id = string(h.Value)
		}
	}
	if id == "" {
		return // an answer could not be told apart
	}
	msg.Headers = append(msg.Headers, sarama.RecordHeader{Key: []byte(command.HeaderReplyTo), Value: []byte(a.instance)},
		sarama.RecordHeader{Key: []byte(command.HeaderReplyPartition), Value: []byte(strconv.Itoa(int(a.partition)))})
	if _, dup := a.waiting[id]; !dup {
		a.order = append(a.order, id)
	}
	a.waiting[id] = rec.ID
}

// wait prints the answers as they come, for up to wait.
func (a *dlAnswers) wait(w io.Writer, wait time.Duration) {
	if a.pc == nil || len(a.waiting) == 0 {
		return
	}
	timeout := time.NewTimer(wait)
	defer timeout.Stop()
	for len(a.waiting) > 0 {
		select {
		case m := <-a.pc.Messages():
			var r command.Reply
			if string(m.Key) != a.instance || json.Unmarshal(m.Value, &r) != nil {
				continue
			}
			id, ok := a.waiting[r.CommandID]
			if !ok {
				continue
			}
			delete(a.waiting, r.CommandID)
			fmt.Fprintf(w, "%s: answer: %s\n", id, describeReply(r))
		case <-timeout.C:
			var left []string
			for _, c := range a.order {
				if id, ok := a.waiting[c]; ok {
					left = append(left, id.String())
				}
			}
			fmt.Fprintf(w, "%s: no answer within %s: is a gateway running? The commands wait in %s until one handles them\n", strings.Join(left, ", "), wait, a.commands)
			return
		}
	}
}

func (a *dlAnswers) close() {
	if a.pc != nil {
		a.pc.Close()
	}
	if a.consumer != nil {
		a.consumer.Close()
	}
}

// describeReply words a command's outcome in one line.
func describeReply(r command.Reply) string {
	switch {
	case r.Error != nil:
		return fmt.Sprintf("%s: %s", r.Error.Code, cutLine(r.Error.Message, 200))
	case r.Replayed:
		return fmt.Sprintf("already applied: the recorded outcome of its idempotency key (order %s at version %d)", r.OrderID, r.Version)
	}
	return fmt.Sprintf("applied (order %s at version %d)", r.OrderID, r.Version)
}

// age is d in its largest whole unit: 12s, 5m, 3h, 4d.
func age(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", max(int(d/time.Second), 0))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d/time.Hour))
	}
	return fmt.Sprintf("%dd", int(d/(24*time.Hour)))
}

// cutLine is s on one line, cut to at most n bytes.
func cutLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		return strings.ToValidUTF8(s[:n], "") + "…"
	}
	return s
}

// oneLine is err's text on one line.
func oneLine(err error) string { return cutLine(err.Error(), 400) }
