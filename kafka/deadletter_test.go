package kafka

import (
	"errors"
	"strings"
	"testing"

	"github.com/IBM/sarama"
)

func TestParseDeadLetterID(t *testing.T) {
	for _, c := range []struct {
		in   string
		want DeadLetterID
		full bool
		bad  bool
	}{
		{in: "2/17", want: DeadLetterID{2, 17}, full: true},
		{in: "17", want: DeadLetterID{0, 17}},
		{in: "0/0", want: DeadLetterID{0, 0}, full: true},
		{in: "-1", bad: true},
		{in: "1/-3", bad: true},
		{in: "a/1", bad: true},
		{in: "1/2/3", bad: true},
		{in: "", bad: true},
		{in: "99999999999/1", bad: true},
	} {
		got, full, err := ParseDeadLetterID(c.in)
		if (err != nil) != c.bad || !c.bad && (got != c.want || full != c.full) {
			t.Errorf("ParseDeadLetterID(%q) = %v, %v, %v; want %v, %v, bad %v", c.in, got, full, err, c.want, c.full, c.bad)
		}
	}
}

func headersOf(m *sarama.ProducerMessage) map[string][]string {
	out := map[string][]string{}
	for _, h := range m.Headers {
		out[string(h.Key)] = append(out[string(h.Key)], string(h.Value))
	}
	return out
}

// A dead letter carries a reason code (ReasonUnprocessable without one),
// and a replayed record that fails again keeps the replay-of header but not
// the old dead letter's other headers (the replay strips them; a record
// that still has them must not show two reasons).
func TestDeadLetterHeaders(t *testing.T) {
	src := &sarama.ConsumerMessage{Topic: "o.commands", Partition: 2, Offset: 9, Key: []byte("k"), Value: []byte("v"), Headers: []*sarama.RecordHeader{
		{Key: []byte("command-id"), Value: []byte("c1")},
		{Key: []byte(HeaderDLReplayOf), Value: []byte("0/4")},
		{Key: []byte(HeaderDLError), Value: []byte("old error")},
		{Key: []byte(HeaderDLReason), Value: []byte("old")},
	}}
	h := headersOf(DeadLetter("o.deadletter", src, Reason(ReasonUndecodable, errors.New("bad"))))
	want := map[string]string{"command-id": "c1", HeaderDLReplayOf: "0/4", HeaderDLError: "bad", HeaderDLReason: ReasonUndecodable,
		HeaderDLTopic: "o.commands", HeaderDLPartition: "2", HeaderDLOffset: "9"}
	for k, v := range want {
		if len(h[k]) != 1 || h[k][0] != v {
			t.Errorf("header %s = %q, want [%q]", k, h[k], v)
		}
	}
	if len(h) != len(want) {
		t.Errorf("headers %v, want %v", h, want)
	}
	if h := headersOf(DeadLetter("o.deadletter", src, errors.New("panic"))); h[HeaderDLReason][0] != ReasonUnprocessable {
		t.Errorf("reason without a code: %q", h[HeaderDLReason])
	}
}

func TestReplayMessage(t *testing.T) {
	rec := &DeadLetterRecord{ID: DeadLetterID{1, 7}, Key: []byte("ord_1"), Value: []byte(`{"x":1}`), Headers: []*sarama.RecordHeader{
		{Key: []byte("command-id"), Value: []byte("c1")},
		{Key: []byte(HeaderDLReplayOf), Value: []byte("0/2")},
		{Key: []byte(HeaderDLError), Value: []byte("bad")},
		{Key: []byte(HeaderDLTopic), Value: []byte("o.commands")},
		{Key: []byte(HeaderDLPartition), Value: []byte("3")},
		{Key: []byte(HeaderDLOffset), Value: []byte("40")},
	}}
	m, err := ReplayMessage(rec, []string{"o.commands", "o.events"})
	if err != nil {
		t.Fatal(err)
	}
	h := headersOf(m)
	if m.Topic != "o.commands" || m.Partition != 3 || len(h) != 2 || h["command-id"][0] != "c1" || h[HeaderDLReplayOf][0] != "1/7" {
		t.Errorf("replay of %s: %s/%d headers %v", rec.ID, m.Topic, m.Partition, h)
	}
	if _, err := ReplayMessage(rec, []string{"o.events"}); err == nil || !strings.Contains(err.Error(), "cannot be replayed") {
		t.Errorf("replay to a topic not allowed: %v", err)
	}
	rec.Value = nil
	if _, err := ReplayMessage(rec, []string{"o.commands"}); err == nil || !strings.Contains(err.Error(), "o.commands/3/40") {
		t.Errorf("replay of a dead letter without its value: %v", err)
	}
}
