package auth

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// SecretFile is the name of the generated signing secret in the data folder.
const SecretFile = "auth-secret"

// LoadOrCreateSecret returns the signing secret kept in dir (SecretFile),
// generating it first (256 random bits, hex-encoded, file mode 0600) if
// there is none. created reports whether it did. Two processes that start
// at once get the same secret.
func LoadOrCreateSecret(dir string) (secret Secret, created bool, err error) {
	path := filepath.Join(dir, SecretFile)
	if s, err := readSecret(path); err == nil || !errors.Is(err, os.ErrNotExist) {
		return s, false, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, false, fmt.Errorf("create %s: %v", dir, err)
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, false, err
	}
	tmp, err := os.CreateTemp(dir, SecretFile+".*")
	if err != nil {
		return nil, false, fmt.Errorf("write the auth secret in %s: %v", dir, err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return nil, false, err
	}
	if _, err := tmp.WriteString(hex.EncodeToString(b[:]) + "\n"); err != nil {
		tmp.Close()
		return nil, false, err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return nil, false, err
	}
	if err := tmp.Close(); err != nil {
		return nil, false, err
	}
	// Link, not rename: a secret another process wrote meanwhile is kept.
	if err := os.Link(tmp.Name(), path); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, false, fmt.Errorf("write the auth secret in %s: %v", dir, err)
	} else if err != nil {
		s, err := readSecret(path)
		return s, false, err
	}
	s, err := readSecret(path)
	return s, err == nil, err
}

func readSecret(path string) (Secret, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		return nil, fmt.Errorf("read the auth secret %s: %v", path, err)
	}
	s := strings.TrimSpace(string(b))
	if len(s) < MinSecretBytes {
		return nil, fmt.Errorf("the auth secret %s is shorter than %d bytes; delete it to have a new one generated", path, MinSecretBytes)
	}
	return Secret(s), nil
}
