package embedded

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Recovery of the embedded broker (kfake) after a kill, in two parts; the
// gateway's symptom of either is an event kept without its order's snapshot,
// or the reverse, so an acknowledged mutation's event is lost or written
// twice.
//
// kfake commits a transaction by writing a commit marker to each of its
// partitions in turn. A process killed in the middle leaves some partitions
// committed and the others open, and kfake, loading its files again, aborts
// whatever is open: the transaction ends half committed. Apache Kafka records
// the decision to commit before it writes any marker and finishes the commit
// on recovery. The commit journal does the same from outside kfake: it
// records a producer's commit before kfake writes the markers, and, after an
// unclean stop, recoverUncleanStop writes the markers that are missing
// before kfake loads its files.
//
// kfake also writes each batch and its index entry in two writes, and loads
// a batch whose entry is missing as outside any transaction, so a kill
// between the two makes an open transaction's record visible.
// recoverUncleanStop writes the missing entries.

// commitJournalName is the journal's file in the broker's folder.
const commitJournalName = "gateway-commits"

// A journal slot holds one transactional producer's state:
// [0:8] producer id, [8:10] producer epoch, [10] state, [11:16] unused,
// [16:24] when it began to commit (Unix milliseconds); little-endian.
// One producer keeps one slot, rewritten in place with a single write, so
// the file grows with the number of producers, not of transactions.
const (
	slotSize       = 24
	slotIdle       = 0 // no commit under way
	slotCommitting = 1 // an EndTxn commit was received; its markers may not all be written
)

// commitJournal records the transactional producers' commits. Its methods are
// called from kfake's control functions, which kfake runs one at a time
// before it handles the request.
type commitJournal struct {
	mu         sync.Mutex
	f          *os.File
	slots      map[int64]int64 // producer id → the offset of its slot
	committing map[int64]bool
	size       int64
}

// pendingCommit is a producer that was committing when the broker stopped.
type pendingCommit struct {
	producerID int64
	epoch      int16
	since      time.Time
}

// openCommitJournal starts an empty journal at path. It is called once any
// commit the previous journal recorded has been finished.
func openCommitJournal(path string) (*commitJournal, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("commit journal: %w", err)
	}
	return &commitJournal{f: f, slots: map[int64]int64{}, committing: map[int64]bool{}}, nil
}

// write sets producer id's slot.
func (j *commitJournal) write(id int64, epoch int16, state byte, at time.Time) error {
	off, ok := j.slots[id]
	if !ok {
		off = j.size
	}
	var b [slotSize]byte
	binary.LittleEndian.PutUint64(b[0:8], uint64(id))
	binary.LittleEndian.PutUint16(b[8:10], uint16(epoch))
	b[10] = state
	binary.LittleEndian.PutUint64(b[16:24], uint64(at.UnixMilli()))
	if _, err := j.f.WriteAt(b[:], off); err != nil {
		return fmt.Errorf("commit journal: %w", err)
	}
	if !ok {
		j.slots[id] = off
		j.size += slotSize
	}
	j.committing[id] = state == slotCommitting
	return nil
}

// endTxn records an EndTxn before kfake handles it: a commit is recorded as
// under way, an abort ends any earlier one.
func (j *commitJournal) endTxn(id int64, epoch int16, commit bool) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if commit {
		return j.write(id, epoch, slotCommitting, time.Now())
	}
	if j.committing[id] {
		return j.write(id, epoch, slotIdle, time.Now())
	}
	return nil
}

// addPartitions records that a producer is adding partitions to a
// transaction, so its previous EndTxn has finished (a client starts its next
// transaction only then): its commit is no longer under way. Without this,
// the open records of the next transaction would be taken for the last
// commit's.
func (j *commitJournal) addPartitions(id int64, epoch int16) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.committing[id] {
		return j.write(id, epoch, slotIdle, time.Now())
	}
	return nil
}

// Close closes the journal's file.
func (j *commitJournal) Close() error { return j.f.Close() }

// watch has cluster c record its transactional producers' commits in j.
// kfake runs control functions in its request loop, before the request
// itself, so a commit is in the journal before its first marker is written.
// A journal that cannot be written fails the request (its connection is
// closed) rather than let a commit through unrecorded.
func (j *commitJournal) watch(c *kfake.Cluster) {
	c.ControlKey(kmsg.EndTxn.Int16(), func(r kmsg.Request) (kmsg.Response, error, bool) {
		req := r.(*kmsg.EndTxnRequest)
		if err := j.endTxn(req.ProducerID, req.ProducerEpoch, req.Commit); err != nil {
			c.KeepControl()
			return nil, err, true
		}
		return nil, nil, false
	})
	c.ControlKey(kmsg.AddPartitionsToTxn.Int16(), func(r kmsg.Request) (kmsg.Response, error, bool) {
		req := r.(*kmsg.AddPartitionsToTxnRequest)
		var err error
		if req.Version <= 3 {
			err = j.addPartitions(req.ProducerID, req.ProducerEpoch)
		}
		for _, t := range req.Transactions {
			err = errors.Join(err, j.addPartitions(t.ProducerID, t.ProducerEpoch))
		}
		if err != nil {
			c.KeepControl()
			return nil, err, true
		}
		return nil, nil, false
	})
}

// readCommitJournal returns the producers the journal at path shows
// committing. A missing journal shows none; a torn last slot is ignored.
func readCommitJournal(path string) ([]pendingCommit, error) {
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("commit journal: %w", err)
	}
	var pending []pendingCommit
	for off := 0; off+slotSize <= len(raw); off += slotSize {
		s := raw[off : off+slotSize]
		if s[10] != slotCommitting {
			continue
		}
		pending = append(pending, pendingCommit{
			producerID: int64(binary.LittleEndian.Uint64(s[0:8])),
			epoch:      int16(binary.LittleEndian.Uint16(s[8:10])),
			since:      time.UnixMilli(int64(binary.LittleEndian.Uint64(s[16:24]))),
		})
	}
	return pending, nil
}

// transactionWindow bounds how long before its commit a transaction can have
// written records: kfake aborts transactions that outlive their timeout, and
// Kafka caps that timeout at 15 minutes by default. Segments last written
// before it are not searched for a committing producer's records.
const transactionWindow = 15 * time.Minute

// recoverUncleanStop prepares the folder dir of a broker that did not stop
// cleanly for kfake to load, and must run before kfake loads it. In each
// partition's newest segment it:
//
//   - gives every batch its index entry. kfake writes a batch, then its index
//     entry, in two writes; a kill between them leaves a batch without an
//     entry, which kfake then loads as not transactional, so an uncommitted
//     transaction's records become visible (a snapshot without its event, in
//     the gateway), and every later entry is off by one;
//   - writes the commit markers that the commits in pending did not get to
//     write: a pending producer whose last batch on the partition is one of
//     its transactional records of the same epoch, with no marker after it,
//     gets one; the other partitions already have theirs.
//
// It returns on how many partitions it finished a commit. Running it twice
// changes nothing more.
func recoverUncleanStop(dir string, pending []pendingCommit) (int, error) {
	byID := map[int64]pendingCommit{}
	var oldest time.Time
	for _, p := range pending {
		byID[p.producerID] = p
		if oldest.IsZero() || p.since.Before(oldest) {
			oldest = p.since
		}
	}
	root := filepath.Join(dir, "partitions")
	entries, err := os.ReadDir(root)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("recover partitions: %w", err)
	}
	finished := 0
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		n, err := recoverPartition(filepath.Join(root, e.Name()), byID, oldest.Add(-transactionWindow))
		finished += n
		if err != nil {
			return finished, fmt.Errorf("recover partition %s: %w", e.Name(), err)
		}
	}
	return finished, nil
}

// batchHead is what recovery reads of a record batch.
type batchHead struct {
	firstOffset     int64
	lastOffsetDelta int32
	leaderEpoch     int32
	attributes      int16
	maxTimestamp    int64
	producerID      int64
	producerEpoch   int16
}

const (
	attrTransactional = 0x10
	attrControl       = 0x20
)

// transactionalData is what kfake's index flags as inTx when it writes a
// batch: a transactional batch that is not a marker.
func (b batchHead) transactionalData() bool {
	return b.attributes&attrTransactional != 0 && b.attributes&attrControl == 0
}

// segment is one parsed segment file of a kfake partition folder.
type segment struct {
	base       int64
	batches    []batchHead
	valid      int64 // bytes of whole, intact batches
	size       int64
	idxEntries int64
	modified   time.Time
}

// recoverPartition does recoverUncleanStop's work in one partition folder
// and reports whether it finished a commit there.
func recoverPartition(pdir string, pending map[int64]pendingCommit, since time.Time) (int, error) {
	bases, err := segmentBases(pdir)
	if err != nil || len(bases) == 0 {
		return 0, err
	}
	newest, err := readSegment(pdir, bases[len(bases)-1])
	if err != nil {
		return 0, err
	}
	var open []pendingCommit
	if len(pending) > 0 {
		if open, err = openCommits(pdir, bases, newest, pending, since); err != nil {
			return 0, err
		}
	}
	if len(open) == 0 && newest.valid == newest.size && newest.idxEntries == int64(len(newest.batches)) {
		return 0, nil
	}
	if err := repairTail(pdir, newest, open); err != nil {
		return 0, err
	}
	if len(open) > 0 {
		return 1, nil
	}
	return 0, nil
}

// openCommits returns the pending producers whose last batch in the
// partition is an unfinished transaction's record. Segments are searched
// newest first, until every pending producer's last batch is found or the
// segments are older than since.
func openCommits(pdir string, bases []int64, newest *segment, pending map[int64]pendingCommit, since time.Time) ([]pendingCommit, error) {
	last := map[int64]batchHead{} // pending producer → its last batch here
	seg := newest
	for i := len(bases) - 1; ; {
		inSeg := map[int64]batchHead{}
		for _, b := range seg.batches {
			if _, ok := pending[b.producerID]; ok {
				inSeg[b.producerID] = b
			}
		}
		for id, b := range inSeg {
			if _, found := last[id]; !found {
				last[id] = b
			}
		}
		i--
		if i < 0 || len(last) == len(pending) || seg.modified.Before(since) {
			break
		}
		var err error
		if seg, err = readSegment(pdir, bases[i]); err != nil {
			return nil, err
		}
	}
	var open []pendingCommit
	for id, b := range last {
		if p := pending[id]; b.transactionalData() && b.producerEpoch == p.epoch {
			open = append(open, p)
		}
	}
	slices.SortFunc(open, func(a, b pendingCommit) int { return cmp.Compare(a.producerID, b.producerID) })
	return open, nil
}

// segmentBases lists a partition folder's segment files by base offset.
func segmentBases(pdir string) ([]int64, error) {
	entries, err := os.ReadDir(pdir)
	if err != nil {
		return nil, err
	}
	var bases []int64
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".dat")
		if !ok {
			continue
		}
		if base, err := strconv.ParseInt(name, 10, 64); err == nil {
			bases = append(bases, base)
		}
	}
	slices.Sort(bases)
	return bases, nil
}

// readSegment parses a segment file's batch headers, stopping at the first
// torn or corrupt batch as kfake does.
func readSegment(pdir string, base int64) (*segment, error) {
	path := filepath.Join(pdir, fmt.Sprintf("%d.dat", base))
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	info, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	seg := &segment{base: base, size: int64(len(raw)), modified: info.ModTime()}
	if idx, err := os.Stat(filepath.Join(pdir, fmt.Sprintf("%d.idx", base))); err == nil {
		seg.idxEntries = idx.Size() / indexEntrySize
	}
	pos := 0
	for pos+12 <= len(raw) {
		length := int(int32(binary.BigEndian.Uint32(raw[pos+8 : pos+12])))
		if length < 49 || pos+12+length > len(raw) {
			break
		}
		b := raw[pos : pos+12+length]
		if binary.BigEndian.Uint32(b[17:21]) != crc32.Checksum(b[21:], crc32c) {
			break
		}
		seg.batches = append(seg.batches, batchHead{
			firstOffset:     int64(binary.BigEndian.Uint64(b[0:8])),
			leaderEpoch:     int32(binary.BigEndian.Uint32(b[12:16])),
			attributes:      int16(binary.BigEndian.Uint16(b[21:23])),
			lastOffsetDelta: int32(binary.BigEndian.Uint32(b[23:27])),
			maxTimestamp:    int64(binary.BigEndian.Uint64(b[35:43])),
			producerID:      int64(binary.BigEndian.Uint64(b[43:51])),
			producerEpoch:   int16(binary.BigEndian.Uint16(b[51:53])),
		})
		pos += len(b)
	}
	seg.valid = int64(pos)
	return seg, nil
}

var crc32c = crc32.MakeTable(crc32.Castagnoli)

// kfake's index files hold one 15-byte entry per batch of their segment:
// version, checksum (low byte of the CRC-32C of the rest), partition leader
// epoch, a timestamp kfake recomputes on load, and flags (bit 0: the batch
// is transactional data, whose transaction kfake settles from the markers).
const (
	indexEntrySize    = 15
	indexEntryVersion = 1
)

func indexEntry(leaderEpoch int32, timestamp int64, inTx bool) []byte {
	b := make([]byte, indexEntrySize)
	b[0] = indexEntryVersion
	binary.LittleEndian.PutUint32(b[2:6], uint32(leaderEpoch))
	binary.LittleEndian.PutUint64(b[6:14], uint64(timestamp))
	if inTx {
		b[14] = 1
	}
	b[1] = byte(crc32.Checksum(b[2:], crc32c))
	return b
}

// repairTail cuts a torn batch off the partition's newest segment and makes
// its index hold exactly one entry per batch (kfake itself would cut the
// torn batch and extra entries on load, but not add missing entries), then
// appends a commit marker, with its entry, for each producer in open.
func repairTail(pdir string, seg *segment, open []pendingCommit) error {
	dat, err := os.OpenFile(filepath.Join(pdir, fmt.Sprintf("%d.dat", seg.base)), os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer dat.Close()
	if err := dat.Truncate(seg.valid); err != nil {
		return err
	}
	idxPath := filepath.Join(pdir, fmt.Sprintf("%d.idx", seg.base))
	idx, err := os.OpenFile(idxPath, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	defer idx.Close()
	info, err := idx.Stat()
	if err != nil {
		return err
	}
	entries := int(info.Size() / indexEntrySize)
	if entries > len(seg.batches) {
		entries = len(seg.batches)
	}
	if err := idx.Truncate(int64(entries * indexEntrySize)); err != nil {
		return err
	}
	var tail []byte
	for _, b := range seg.batches[entries:] { // batches whose entry was not written
		tail = append(tail, indexEntry(b.leaderEpoch, b.maxTimestamp, b.transactionalData())...)
	}
	next, leaderEpoch := seg.base, int32(0)
	if n := len(seg.batches); n > 0 {
		lastBatch := seg.batches[n-1]
		next = lastBatch.firstOffset + int64(lastBatch.lastOffsetDelta) + 1
		leaderEpoch = lastBatch.leaderEpoch
	}
	var markers []byte
	now := time.Now().UnixMilli()
	for _, p := range open {
		markers = append(markers, commitMarker(p.producerID, p.epoch, next, leaderEpoch, now)...)
		tail = append(tail, indexEntry(leaderEpoch, now, false)...)
		next++
	}
	if len(markers) > 0 {
		if _, err := dat.WriteAt(markers, seg.valid); err != nil {
			return err
		}
	}
	if _, err := idx.Seek(0, io.SeekEnd); err != nil {
		return err
	}
	_, err = idx.Write(tail)
	return err
}

// commitMarker encodes a transaction's commit control batch at offset, as
// kfake writes it.
func commitMarker(producerID int64, epoch int16, offset int64, leaderEpoch int32, now int64) []byte {
	key := kmsg.ControlRecordKey{Type: kmsg.ControlRecordKeyTypeCommit}
	value := kmsg.EndTxnMarker{}
	rec := kmsg.Record{Key: key.AppendTo(nil), Value: value.AppendTo(nil)}
	rec.Length = int32(len(rec.AppendTo(nil)) - 1) // the length's own varint is one byte here
	b := kmsg.RecordBatch{
		FirstOffset:          offset,
		PartitionLeaderEpoch: leaderEpoch,
		Magic:                2,
		Attributes:           attrControl | attrTransactional,
		FirstTimestamp:       now,
		MaxTimestamp:         now,
		ProducerID:           producerID,
		ProducerEpoch:        epoch,
		FirstSequence:        -1,
		NumRecords:           1,
		Records:              rec.AppendTo(nil),
	}
	enc := b.AppendTo(nil)
	b.Length = int32(len(enc) - 12)
	b.CRC = int32(crc32.Checksum(enc[21:], crc32c))
	return b.AppendTo(nil)
}
