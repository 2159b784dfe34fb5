package statestore

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func testLog(t *testing.T, buf *bytes.Buffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func write(t *testing.T, s *Store, key, v string, checkpoint int64) {
	t.Helper()
	b := s.NewBatch()
	if err := b.Set(key, []byte(v)); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(State{Checkpoint: checkpoint}); err != nil {
		t.Fatal(err)
	}
}

// A store opened again for the same identity keeps its values and
// checkpoint; one opened for another cluster, topic, partition or group is
// emptied, with a log line.
func TestForeignStoreIsDiscarded(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "p0")
	id := Identity{Cluster: "c1", Topic: "snap", TopicID: "t1", Partition: 0, Group: "g"}
	var log bytes.Buffer
	s, reset, err := Open(dir, id, nil, testLog(t, &log))
	if err != nil || reset {
		t.Fatalf("open: reset %v, %v", reset, err)
	}
	write(t, s, "a", "1", 42)
	s.Close()

	s, reset, err = Open(dir, id, nil, testLog(t, &log))
	if err != nil || reset {
		t.Fatalf("reopen: reset %v, %v", reset, err)
	}
	if v, ok, _ := s.Get("a"); !ok || string(v) != "1" {
		t.Errorf("reopened: a = %q %v", v, ok)
	}
	if st, _ := s.State(); st.Checkpoint != 42 {
		t.Errorf("reopened: checkpoint %d", st.Checkpoint)
	}
	s.Close()

	for _, other := range []Identity{
		{Cluster: "c2", Topic: "snap", TopicID: "t1", Partition: 0, Group: "g"},
		{Cluster: "c1", Topic: "snap", TopicID: "t2", Partition: 0, Group: "g"},
		{Cluster: "c1", Topic: "snap", TopicID: "t1", Partition: 0, Group: "g2"},
	} {
		write := func() {
			s, _, err := Open(dir, id, nil, testLog(t, &log))
			if err != nil {
				t.Fatal(err)
			}
			b := s.NewBatch()
			_ = b.Set("a", []byte("1"))
			_ = b.Commit(State{Checkpoint: 42})
			s.Close()
		}
		write()
		log.Reset()
		s, reset, err := Open(dir, other, nil, testLog(t, &log))
		if err != nil || !reset {
			t.Fatalf("%+v: reset %v, %v", other, reset, err)
		}
		if _, ok, _ := s.Get("a"); ok {
			t.Errorf("%+v: the foreign store's value is still there", other)
		}
		if st, _ := s.State(); st.Checkpoint != 0 {
			t.Errorf("%+v: checkpoint %d, want 0", other, st.Checkpoint)
		}
		if !strings.Contains(log.String(), "discarding the local store") {
			t.Errorf("%+v: no log line: %s", other, log.String())
		}
		s.Close()
	}
}

// A folder Pebble cannot open (here its files overwritten) is emptied and
// the store starts again.
func TestCorruptStoreIsDiscarded(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "p0")
	id := Identity{Topic: "snap"}
	var log bytes.Buffer
	s, _, err := Open(dir, id, nil, testLog(t, &log))
	if err != nil {
		t.Fatal(err)
	}
	write(t, s, "a", "1", 7)
	s.Close()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "MANIFEST") || e.Name() == "CURRENT" {
			if err := os.WriteFile(filepath.Join(dir, e.Name()), []byte("not pebble"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	s, reset, err := Open(dir, id, nil, testLog(t, &log))
	if err != nil || !reset {
		t.Fatalf("corrupt store: reset %v, %v", reset, err)
	}
	defer s.Close()
	if _, ok, _ := s.Get("a"); ok {
		t.Error("the corrupt store's value is still there")
	}
	if !strings.Contains(log.String(), "cannot be opened") {
		t.Errorf("no log line: %s", log.String())
	}
}

// A batch's Get sees its own writes; values and state land together.
func TestBatchReadsItsWrites(t *testing.T) {
	s, _, err := Open(filepath.Join(t.TempDir(), "p"), Identity{}, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	b := s.NewBatch()
	_ = b.Set("k", []byte("v"))
	if v, ok, _ := b.Get("k"); !ok || string(v) != "v" {
		t.Errorf("batch get: %q %v", v, ok)
	}
	if _, ok, _ := s.Get("k"); ok {
		t.Error("an uncommitted write is visible")
	}
	b.Close()
	if st, _ := s.State(); st.Checkpoint != 0 {
		t.Errorf("a dropped batch moved the checkpoint: %d", st.Checkpoint)
	}
	n := 0
	_ = s.Scan(func(string, []byte) error { n++; return nil })
	if n != 0 {
		t.Errorf("scan of an empty store: %d values", n)
	}
}

// A write-only batch refuses Get and applies its writes and state at once,
// as an indexed one does.
func TestWriteBatch(t *testing.T) {
	var log bytes.Buffer
	s, _, err := Open(filepath.Join(t.TempDir(), "p0"), Identity{Topic: "snap"}, nil, testLog(t, &log))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	write(t, s, "gone", "x", 1)
	b := s.NewWriteBatch()
	if _, _, err := b.Get("gone"); err == nil {
		t.Fatal("Get on a write-only batch: no error")
	}
	if err := b.Set("a", []byte("1")); err != nil {
		t.Fatal(err)
	}
	if err := b.Delete("gone"); err != nil {
		t.Fatal(err)
	}
	if v, ok, _ := s.Get("a"); ok {
		t.Fatalf("a = %q before the commit", v)
	}
	if err := b.Commit(State{Checkpoint: 7}); err != nil {
		t.Fatal(err)
	}
	if v, ok, _ := s.Get("a"); !ok || string(v) != "1" {
		t.Errorf("a = %q %v", v, ok)
	}
	if _, ok, _ := s.Get("gone"); ok {
		t.Error("gone is still there")
	}
	if st, _ := s.State(); st.Checkpoint != 7 {
		t.Errorf("checkpoint %d", st.Checkpoint)
	}
}
