package command

import (
	"context"
	"slices"
	"testing"

	"github.com/IBM/sarama"
)

// TestNextBatchKeepsEachPartitionInOrder: the committer takes commands
// fetched from its partitions and commands its own bus offers right after
// writing them. An offered command is taken only when it is the very next of
// its partition (else the fetch brings it in its turn), and a fetched one
// is skipped when its offered copy was taken, so every command is handled
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
		{"offered ahead of a fetch still due is left to the fetch", map[int32]int64{0: 5},
			[][]inbound{{offered(0, 6), fetched(0, 5), fetched(0, 6)}},
			[][]pos{{{0, 5}, {0, 6}}}},
		{"fetched first, offered copy skipped", map[int32]int64{0: 5},
			[][]inbound{{fetched(0, 5), offered(0, 5), offered(0, 6)}},
			[][]pos{{{0, 5}, {0, 6}}}},
		{"partitions apart", map[int32]int64{0: 5, 1: 9},
			[][]inbound{{offered(1, 9), offered(0, 7), fetched(0, 5), offered(0, 6), fetched(1, 9)}},
			[][]pos{{{1, 9}, {0, 5}, {0, 6}}}},
		{"claim start not known: offers wait for the first fetch", map[int32]int64{},
			[][]inbound{{offered(0, 3)}, {fetched(0, 3), offered(0, 4)}},
			[][]pos{nil, {{0, 3}, {0, 4}}}},
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
	}
}
