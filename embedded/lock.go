package embedded

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// ErrDataDirInUse means another process holds the data folder's lock.
var ErrDataDirInUse = errors.New("data folder in use")

// DirLock is held on a data folder while this process runs its embedded
// broker and store there. Two processes on one folder would each run a
// broker and a store on the same files; the store also relies on this
// process being its only writer (view.SoleWriter).
type DirLock struct {
	f *os.File
}

// lockFileName is the lock's file in the data folder; it holds the pid of
// the process that last took the lock.
const lockFileName = "gateway.lock"

// LockDir takes the lock on dir (creating dir if need be). It fails with an
// error wrapping ErrDataDirInUse, naming the holder's pid when known, if
// another process holds it. The lock ends with Close or with the process.
func LockDir(dir string) (*DirLock, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("data folder %s: %w", dir, err)
	}
	path := filepath.Join(dir, lockFileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("data folder lock %s: %w", path, err)
	}
	if err := lockFile(f); err != nil {
		holder := ""
		if b, rerr := os.ReadFile(path); rerr == nil {
			if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); perr == nil {
				holder = fmt.Sprintf(" by process %d", pid)
			}
		}
		f.Close()
		if errors.Is(err, errLocked) {
			return nil, fmt.Errorf("%w: %s is used%s; give each gateway its own DATA_DIR, or run several against shared Kafka and MongoDB (KAFKA_BROKERS, MONGODB_URI)",
				ErrDataDirInUse, dir, holder)
		}
		return nil, fmt.Errorf("data folder lock %s: %w", path, err)
	}
	// The pid is for the message above; the lock is what counts.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &DirLock{f: f}, nil
}

// Close releases the lock. Later calls do nothing.
func (l *DirLock) Close() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := unlockFile(l.f)
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	l.f = nil
	return err
}
