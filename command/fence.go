package command

import (
	"strings"
	"time"

	"github.com/IBM/sarama"

	"github.com/ordergateway/gateway/kafka"
)

// fenceAfter is how long a restore goes without a record before its marker
// before it takes the wait for a transaction left open by the partition's
// previous owner (a read_committed consumer gets nothing past an open
// transaction): a live owner finishes its transaction before it gives a
// partition up, in milliseconds.
const fenceAfter = 2 * time.Second

// txnIDs are the transactional ids of an instance's committer, whose
// transactions take them in turn (see session.producer): base-0 and base-1.
func txnIDs(base string) [2]string { return [2]string{base + "-0", base + "-1"} }

// committerIDs is the pair of transactional ids that id belongs to, and
// the instance's base id; an id of a version whose committer had one id
// (no suffix) is alone.
func committerIDs(id string) (ids []string, base string) {
	if b, ok := strings.CutSuffix(id, "-0"); ok {
		return []string{id, b + "-1"}, b
	}
	if b, ok := strings.CutSuffix(id, "-1"); ok {
		return []string{b + "-0", id}, b
	}
	return []string{id}, id
}

// fencePreviousOwner ends the transaction that the last instance to commit
// partition p's commands may have left open (it was killed between the
// offset commit and the end of its transaction, say). Its transactional id
// is in the metadata of the offsets it committed; a producer initialised
// with that id makes the broker abort the transaction at once, instead of
// after the transaction timeout plus the broker's check interval
// (transaction.abort.timed.out.transaction.cleanup.interval.ms, 10 s by
// default). Both ids of its committer are fenced: the transaction left open
// is often the other one's (it began after the last that committed). If
// that instance is in fact alive, its current transaction fails and it
// rejoins the group: nothing is lost. Failures are logged; the restore then
// waits for the broker as before.
func (h *Handler) fencePreviousOwner(p int32) {
	log := h.cfg.Logger.With("partition", p)
	id, err := h.lastCommitter(p)
	if err != nil {
		log.Warn("command handler: restore held up by an open transaction; could not find the previous owner", "err", err)
		return
	}
	ids, base := committerIDs(id)
	if id == "" || base == h.txnID || !strings.HasPrefix(id, h.cfg.Topics.Commands+".handler.") {
		log.Warn("command handler: restore held up by an open transaction of an unknown producer; waiting for the broker to abort it")
		return
	}
	t0 := time.Now()
	sc := h.cfg.Security.Config("order-gateway-fence", h.cfg.FetchWait)
	sc.Producer.Transaction.Retry.Max = 100 // CONCURRENT_TRANSACTIONS while the broker aborts
	sc.Producer.Transaction.Retry.Backoff = 50 * time.Millisecond
	fenced := 0
	for _, id := range ids {
		prod, err := kafka.NewTxnProducer(h.cfg.Brokers, sc, id, h.cfg.TransactionTimeout, nil)
		if err != nil {
			log.Warn("command handler: restore held up by an open transaction; fencing the previous owner failed", "transactional id", id, "err", err)
			continue // the other id may hold the open transaction
		}
		_ = prod.Close()
		fenced++
	}
	if fenced == 0 {
		return
	}
	h.cfg.Metrics.Fenced.Inc()
	log.Warn("command handler: restore held up by an open transaction; fenced the previous owner's transactional ids, which aborts it",
		"transactional ids", ids, "took", time.Since(t0).Round(time.Millisecond))
}

// lastCommitter is the transactional id recorded with partition p's last
// committed command offset, or "".
func (h *Handler) lastCommitter(p int32) (string, error) {
	b, err := h.client.Coordinator(h.cfg.Group)
	if err != nil {
		return "", err
	}
	resp, err := b.FetchOffset(sarama.NewOffsetFetchRequest(kafka.Version, h.cfg.Group, map[string][]int32{h.cfg.Topics.Commands: {p}}))
	if err != nil {
		return "", err
	}
	blk := resp.GetBlock(h.cfg.Topics.Commands, p)
	if blk == nil {
		return "", nil
	}
	if blk.Err != sarama.ErrNoError {
		return "", blk.Err
	}
	return blk.Metadata, nil
}
