package kafka

import (
	"github.com/IBM/sarama"
)

// LastStableOffsets asks the leaders of topic's partitions for their last
// stable offsets (ListOffsets with read_committed: the offset of the first
// record of a transaction still open, else the high watermark), one
// request per leader. Partitions whose leader did not answer are left out,
// and the first error is returned with what was read.
func LastStableOffsets(client sarama.Client, topic string, partitions []int32) (map[int32]int64, error) {
	reqs := map[*sarama.Broker]*sarama.OffsetRequest{}
	var firstErr error
	for _, p := range partitions {
		b, err := client.Leader(topic, p)
		if err != nil {
			firstErr = err
			continue
		}
		r := reqs[b]
		if r == nil {
			r = sarama.NewOffsetRequest(client.Config().Version)
			r.IsolationLevel = sarama.ReadCommitted
			reqs[b] = r
		}
		r.AddBlock(topic, p, sarama.OffsetNewest, 1)
	}
	out := make(map[int32]int64, len(partitions))
	for b, r := range reqs {
		resp, err := b.GetAvailableOffsets(r)
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		for _, p := range partitions {
			if block := resp.GetBlock(topic, p); block != nil && block.Err == sarama.ErrNoError && len(block.Offsets) > 0 {
				out[p] = block.Offsets[0]
			}
		}
	}
	return out, firstErr
}

// CommittedOffsets is the offsets group has committed for topic's
// partitions (-1: none).
func CommittedOffsets(client sarama.Client, group, topic string, partitions []int32) (map[int32]int64, error) {
	b, err := client.Coordinator(group)
	if err != nil {
		return nil, err
	}
	resp, err := b.FetchOffset(sarama.NewOffsetFetchRequest(Version, group, map[string][]int32{topic: partitions}))
	if err != nil {
		return nil, err
	}
	out := make(map[int32]int64, len(partitions))
	for _, p := range partitions {
		blk := resp.GetBlock(topic, p)
		if blk == nil {
			continue
		}
		if blk.Err != sarama.ErrNoError {
			return out, blk.Err
		}
		out[p] = blk.Offset
	}
	return out, nil
}
