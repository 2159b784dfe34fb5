package command

import (
	"context"
	"slices"
	"testing"

	"github.com/IBM/sarama"
)

// TestNextBatchKeepsEachPartitionInOrder: the committer takes commands
// fetched from its partitions and commands its own bus offers right after
// writing them. An offered command is taken when it is the very next of its
// partition; one that comes before the command ahead of it is kept aside
// until that one is taken (offered or fetched), and a fetched one is
// skipped when its offered copy was taken, so every command is handled
// once, in offset order.
func TestNextBatchKeepsEachPartitionInOrder(t *testing.T) {
	msg := func(p int32, offset int64) *sarama.ConsumerMessage {
		return &sarama.ConsumerMessage{Partition: p, Offset: offset}
	}
	fetched := func(p int32, o int64) inbound { return inbound{m: msg(p, o)} }
	offered := func(p int32, o int64) inbound { return inbound{m: msg(p, o), local: true} }
	type pos struct {
		p int32
		o int64
	}
	for _, tc := range []struct {
		name  string
		start map[int32]int64 // where the claims start (absent: not known)
		in    [][]inbound     // what arrives before each batch
		want  [][]pos
	}{
		{"offered next, fetched copy skipped", map[int32]int64{0: 5},
			[][]inbound{{offered(0, 5)}, {fetched(0, 5), fetched(0, 6)}},
			[][]pos{{{0, 5}}, {{0, 6}}}},
		{"offered ahead of a fetch still due waits for it", map[int32]int64{0: 5},
			[][]inbound{{offered(0, 6)}, {fetched(0, 5), fetched(0, 6)}},
			[][]pos{nil, {{0, 5}, {0, 6}}}},
		{"offers answered out of order", map[int32]int64{0: 5},
			[][]inbound{{offered(0, 7), offered(0, 6)}, {offered(0, 5), offered(0, 8)}, {fetched(0, 5), fetched(0, 6), fetched(0, 7), fetched(0, 8), fetched(0, 9)}},
			[][]pos{nil, {{0, 5}, {0, 6}, {0, 7}, {0, 8}}, {{0, 9}}}},
		{"an offer kept aside whose fetched copy comes first", map[int32]int64{0: 5},
			[][]inbound{{offered(0, 6)}, {fetched(0, 5), fetched(0, 6)}, {fetched(0, 7), offered(0, 7)}},
			[][]pos{nil, {{0, 5}, {0, 6}}, {{0, 7}}}},
		{"fetched first, offered copy skipped", map[int32]int64{0: 5},
			[][]inbound{{fetched(0, 5), offered(0, 5), offered(0, 6)}},
			[][]pos{{{0, 5}, {0, 6}}}},
		{"partitions apart", map[int32]int64{0: 5, 1: 9},
			[][]inbound{{offered(1, 9), offered(0, 7), fetched(0, 5), offered(0, 6), fetched(1, 9)}},
			[][]pos{{{1, 9}, {0, 5}, {0, 6}, {0, 7}}}},
		{"claim start not known: offers wait for the first fetch", map[int32]int64{},
			[][]inbound{{offered(0, 4), offered(0, 3)}, {fetched(0, 3), offered(0, 5)}},
			[][]pos{nil, {{0, 3}, {0, 4}, {0, 5}}}},
	} {
		s := &session{h: &Handler{cfg: HandlerConfig{BatchSize: 100}}, ctx: context.Background(), inbox: make(chan inbound, 100), next: map[int32]int64{}}
		for p, o := range tc.start {
			s.starting(p, o)
		}
		for i, in := range tc.in {
			for _, m := range in {
				s.inbox <- m
			}
			batch, ok := s.nextBatch()
			var got []pos
			for _, m := range batch {
				got = append(got, pos{m.Partition, m.Offset})
			}
			if !ok || !slices.Equal(got, tc.want[i]) {
				t.Errorf("%s: batch %d is %v, want %v", tc.name, i, got, tc.want[i])
			}
		}
		if s.early.n != 0 || len(s.early.by[0]) != 0 {
			t.Errorf("%s: %d offers still kept aside (%v), want none", tc.name, s.early.n, s.early.by)
		}
	}
}

// TestEarlyOffersAreBounded: offers kept aside stop at maxEarlyOffers; the
// ones past it come by fetch, and nothing is taken twice or out of order.
func TestEarlyOffersAreBounded(t *testing.T) {
	s := &session{h: &Handler{cfg: HandlerConfig{BatchSize: 100}}, ctx: context.Background(), inbox: make(chan inbound, 100), next: map[int32]int64{}}
	s.starting(0, 0)
	total := int64(maxEarlyOffers + 50)
	for o := total; o >= 1; o-- { // every offer but the first, last first
		s.inbox <- inbound{m: &sarama.ConsumerMessage{Partition: 0, Offset: o}, local: true}
		if batch, _ := s.nextBatch(); len(batch) != 0 {
			t.Fatalf("offer %d taken before offset 0", o)
		}
	}
	if s.early.n != maxEarlyOffers {
		t.Fatalf("%d offers kept aside, want %d", s.early.n, maxEarlyOffers)
	}
	var got []int64
	for o := int64(0); o <= total; o++ {
		s.inbox <- inbound{m: &sarama.ConsumerMessage{Partition: 0, Offset: o}}
		batch, _ := s.nextBatch()
		for _, m := range batch {
			got = append(got, m.Offset)
		}
	}
	if int64(len(got)) != total+1 {
		t.Fatalf("%d commands taken, want %d", len(got), total+1)
	}
	for i, o := range got {
		if o != int64(i) {
			t.Fatalf("command %d taken at position %d", o, i)
		}
	}
	if s.early.n != 0 {
		t.Errorf("%d offers still kept aside", s.early.n)
	}

	// A batch takes at most BatchSize commands, released offers included;
	// the rest wait for the partition's next command.
	s = &session{h: &Handler{cfg: HandlerConfig{BatchSize: 3}}, ctx: context.Background(), inbox: make(chan inbound, 10), next: map[int32]int64{}}
	s.starting(0, 0)
	for _, o := range []int64{5, 4, 3, 2, 1} {
		s.inbox <- inbound{m: &sarama.ConsumerMessage{Partition: 0, Offset: o}, local: true}
	}
	if batch, _ := s.nextBatch(); len(batch) != 0 {
		t.Fatalf("offers taken before offset 0: %d", len(batch))
	}
	var sizes []int
	for _, o := range []int64{0, 3, 4} {
		s.inbox <- inbound{m: &sarama.ConsumerMessage{Partition: 0, Offset: o}}
		batch, _ := s.nextBatch()
		sizes = append(sizes, len(batch))
	}
	if !slices.Equal(sizes, []int{3, 3, 0}) {
		t.Errorf("batches of %v commands with BatchSize 3, want [3 3 0]", sizes)
	}
}
