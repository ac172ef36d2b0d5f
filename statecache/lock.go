package statecache

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// lockName is the file whose flock marks a state directory as owned by one process.
const lockName = ".knactor.lock"

// lockDir takes the exclusive lock of a state directory, creating the directory if needed. Two
// processes writing one directory would each trust their cache over the other's writes, so the
// second is refused with an error that says which directory and why. Closing the returned file
// releases the lock (the kernel drops it when the process dies, too).
func lockDir(dir, what string) (*os.File, error) {
	if dir == "" {
		return nil, fmt.Errorf("%s: directory is empty", what)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("%s: create %s: %w", what, dir, err)
	}
	path := filepath.Join(dir, lockName)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("%s: open lock %s: %w", what, path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %s is in use by another knactor process (lock %s): %w", what, dir, path, err)
	}
	return f, nil
}
