//go:build !unix

package embedded

import (
	"errors"
	"os"
)

var errLocked = errors.New("locked")

// lockFile does nothing where flock is not available: the data folder is
// not protected there (README, "Limits"; docs/embedded.md).
func lockFile(*os.File) error { return nil }

func unlockFile(*os.File) error { return nil }
