package statecache

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/maphash"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
)

// dirLockStripes is the number of mutexes that serialise writers of DirStore keys. Writers of
// different keys rarely share one, and 256 mutexes cost 2 KiB.
const dirLockStripes = 256

// DirStore keeps each key's value in a file under a directory: "{dir}/{function}/{escaped id}".
// It is knactor's embedded default: no server, durable across restarts, with the same
// conditional semantics as S3Store. A write goes to a temporary file that is fsynced and then
// renamed over the old one, so a crash leaves either the old or the new value, never a torn one.
//
// Writers of one key are serialised by a striped mutex; readers take no lock (rename is atomic).
// One process owns a directory at a time: OpenDirStore takes an exclusive flock on
// "{dir}/.knactor.lock" and fails if another process holds it. Versions are content hashes.
type DirStore struct {
	dir      string
	lockFile *os.File
	seed     maphash.Seed
	stripes  [dirLockStripes]sync.Mutex
}

var _ Store = (*DirStore)(nil)

// OpenDirStore opens (creating if needed) a store rooted at dir.
func OpenDirStore(dir string) (*DirStore, error) {
	if dir == "" {
		return nil, errors.New("dir store: directory is empty")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("dir store: create %s: %w", dir, err)
	}
	lockPath := filepath.Join(dir, ".knactor.lock")
	f, err := os.OpenFile(lockPath, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("dir store: open lock %s: %w", lockPath, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("dir store: %s is in use by another knactor process (lock %s): %w", dir, lockPath, err)
	}
	return &DirStore{dir: dir, lockFile: f, seed: maphash.MakeSeed()}, nil
}

// Close releases the directory's lock. The store must not be used afterwards.
func (s *DirStore) Close() error {
	return s.lockFile.Close() // closing the descriptor drops the flock
}

// Get implements Store.
func (s *DirStore) Get(_ context.Context, key Key) (Entry, error) {
	path, err := s.path(key)
	if err != nil {
		return Entry{}, err
	}
	return s.read(key, path)
}

// Put implements Store.
func (s *DirStore) Put(_ context.Context, key Key, value []byte, expect Version) (Version, error) {
	path, err := s.path(key)
	if err != nil {
		return NoVersion, err
	}
	mu := s.stripe(path)
	mu.Lock()
	defer mu.Unlock()
	cur, err := s.read(key, path)
	if err != nil {
		return NoVersion, err
	}
	if cur.Version != expect {
		return NoVersion, fmt.Errorf("put %s: %w", key, ErrConflict)
	}
	if err := writeFileAtomic(path, value); err != nil {
		return NoVersion, fmt.Errorf("dir store: put %s: %w: %w", key, ErrUnavailable, err)
	}
	return contentVersion(value), nil
}

// Delete implements Store.
func (s *DirStore) Delete(_ context.Context, key Key, expect Version) (Version, error) {
	path, err := s.path(key)
	if err != nil {
		return NoVersion, err
	}
	mu := s.stripe(path)
	mu.Lock()
	defer mu.Unlock()
	cur, err := s.read(key, path)
	if err != nil {
		return NoVersion, err
	}
	if cur.Version != expect {
		return NoVersion, fmt.Errorf("delete %s: %w", key, ErrConflict)
	}
	if !cur.Exists {
		return NoVersion, nil
	}
	if err := os.Remove(path); err != nil {
		return NoVersion, fmt.Errorf("dir store: delete %s: %w: %w", key, ErrUnavailable, err)
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return NoVersion, fmt.Errorf("dir store: delete %s: %w: %w", key, ErrUnavailable, err)
	}
	return NoVersion, nil
}

func (s *DirStore) path(key Key) (string, error) {
	name, err := key.ObjectName()
	if err != nil {
		return "", err
	}
	return filepath.Join(s.dir, filepath.FromSlash(name)), nil
}

func (s *DirStore) stripe(path string) *sync.Mutex {
	return &s.stripes[maphash.String(s.seed, path)%dirLockStripes]
}

func (s *DirStore) read(key Key, path string) (Entry, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Entry{}, nil
	}
	if err != nil {
		return Entry{}, fmt.Errorf("dir store: get %s: %w: %w", key, ErrUnavailable, err)
	}
	return Entry{Value: b, Version: contentVersion(b), Exists: true}, nil
}

// contentVersion names a value by its SHA-256 (first 128 bits). Two writes of equal bytes share a
// version, which is safe: a writer whose expected version matches read exactly these bytes.
func contentVersion(b []byte) Version {
	sum := sha256.Sum256(b)
	return Version(hex.EncodeToString(sum[:16]))
}

// writeFileAtomic replaces path with data: write a temporary file beside it, fsync, rename,
// fsync the directory.
func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	var suffix [8]byte
	_, _ = rand.Read(suffix[:])
	// Escaped ids never start with '.', so temporary names cannot collide with a key's file.
	tmp := filepath.Join(dir, ".tmp-"+hex.EncodeToString(suffix[:]))
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	_, werr := f.Write(data)
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp, path)
	}
	if werr != nil {
		os.Remove(tmp)
		return werr
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
