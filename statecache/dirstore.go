package statecache

import (
	"bytes"
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
	"strings"
	"sync"
)

// dirLockStripes is the number of mutexes that serialise writers of DirStore keys. Writers of
// different keys rarely share one, and 256 mutexes cost 2 KiB.
const dirLockStripes = 256

// DirStore keeps each key's value in a file under a directory: "{dir}/{function}/{escaped id}".
// It is knactor's embedded default: no server, durable across restarts, with the same
// conditional semantics as S3Store. A write goes to a temporary file that is fsynced and then
// renamed over the old one, so a crash leaves either the old or the new value, never a torn one.
//
// Each file records the commit that wrote it beside the value, and a delete leaves a tombstone
// file, so a retried write recognises its own earlier try (see Store).
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

// OpenDirStore opens (creating if needed) a store rooted at dir. It removes the temporary files
// of writes that a crash interrupted: holding the directory's lock, no write of another process
// can be under way.
func OpenDirStore(dir string) (*DirStore, error) {
	f, err := lockDir(dir, "dir store")
	if err != nil {
		return nil, err
	}
	if err := removeTempFiles(dir); err != nil {
		f.Close()
		return nil, fmt.Errorf("dir store %s: removing temporary files of interrupted writes: %w", dir, err)
	}
	return &DirStore{dir: dir, lockFile: f, seed: maphash.MakeSeed()}, nil
}

// tempPrefix starts the names of writeFileAtomic's temporary files. Escaped ids never start with
// '.', so they cannot collide with a key's file.
const tempPrefix = ".tmp-"

// removeTempFiles removes the temporary files under dir that writeFileAtomic left when the
// process died between creating and renaming one.
func removeTempFiles(dir string) error {
	return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasPrefix(d.Name(), tempPrefix) {
			return os.Remove(path)
		}
		return nil
	})
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
func (s *DirStore) Put(_ context.Context, key Key, value []byte, expect Version, commit Commit) (Version, error) {
	return s.write(key, value, true, expect, commit)
}

// Delete implements Store. It replaces the value with a tombstone file that records commit; a
// later create is conditional on the tombstone's version, as with S3Store.
func (s *DirStore) Delete(_ context.Context, key Key, expect Version, commit Commit) (Version, error) {
	return s.write(key, nil, false, expect, commit)
}

func (s *DirStore) write(key Key, value []byte, exists bool, expect Version, commit Commit) (Version, error) {
	op := "put"
	if !exists {
		op = "delete"
	}
	if err := commit.Validate(); err != nil {
		return NoVersion, fmt.Errorf("dir store: %s %s: %w", op, key, err)
	}
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
		if sameCommit(cur.Commit, commit) {
			return cur.Version, nil // an earlier try of this write landed
		}
		return NoVersion, &ConflictError{Key: key, Current: cur.Version, Commit: cur.Commit}
	}
	if !exists && !cur.Exists {
		return cur.Version, nil
	}
	file := encodeDirFile(value, exists, commit)
	if err := writeFileAtomic(path, file); err != nil {
		return NoVersion, fmt.Errorf("dir store: %s %s: %w: %w", op, key, ErrUnavailable, err)
	}
	return contentVersion(file), nil
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
	e := decodeDirFile(b)
	e.Version = contentVersion(b)
	return e, nil
}

// A DirStore file is a header and the value:
//
//	magic "\x00KD1" | flags (1 byte: 1 = holds a value, 0 = tombstone) | commit length (1 byte) | commit | value
//
// Files written before commits were recorded hold the bare value; a file without the magic is
// read as such (a value starting with the magic is always written with a header, so the two
// never mix up).
var dirFileMagic = []byte("\x00KD1")

const dirFileExists = 1

func encodeDirFile(value []byte, exists bool, commit Commit) []byte {
	b := make([]byte, 0, len(dirFileMagic)+2+len(commit)+len(value))
	b = append(b, dirFileMagic...)
	var flags byte
	if exists {
		flags = dirFileExists
	}
	b = append(b, flags, byte(len(commit)))
	b = append(b, commit...)
	return append(b, value...)
}

func decodeDirFile(b []byte) Entry {
	rest, ok := bytes.CutPrefix(b, dirFileMagic)
	if !ok || len(rest) < 2 || len(rest) < 2+int(rest[1]) {
		return Entry{Value: b, Exists: true} // a bare value from before headers
	}
	n := int(rest[1])
	e := Entry{Exists: rest[0]&dirFileExists != 0, Commit: Commit(rest[2 : 2+n])}
	if e.Exists {
		e.Value = rest[2+n:]
	}
	return e
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
	tmp := filepath.Join(dir, tempPrefix+hex.EncodeToString(suffix[:]))
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
