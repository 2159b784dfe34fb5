//go:build unix

package embedded

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
)

func TestLockDirRefusesASecondHolder(t *testing.T) {
	dir := t.TempDir()
	l, err := LockDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, err = LockDir(dir)
	if !errors.Is(err, ErrDataDirInUse) || !strings.Contains(err.Error(), fmt.Sprintf("by process %d", os.Getpid())) || !strings.Contains(err.Error(), "DATA_DIR") {
		t.Fatalf("second LockDir: err = %v, want ErrDataDirInUse naming this process and DATA_DIR", err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l2, err := LockDir(dir)
	if err != nil {
		t.Fatalf("LockDir after Close: %v", err)
	}
	if err := l2.Close(); err != nil || l2.Close() != nil {
		t.Fatalf("Close: %v", err)
	}
}
