package statecache

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"
)

const (
	// migratedDir keeps a directory store's files once they are in the local store: a backup the
	// operator deletes when satisfied. Nothing reads it.
	migratedDir = "migrated.dirstore"

	// migrateBatch is how many actors one migration batch writes (one fsync each).
	migrateBatch = 1000
)

// migrateDirStore moves the actors of a state directory written by DirStore into the store:
// every "{root}/{function}/" directory of value files. Each function's actors are written in
// batches, then its directory is renamed into "{root}/migrated.dirstore/". A crash midway leaves
// the directory in place, and the next open writes the actors not yet in the store (an actor
// already there was written by the interrupted migration: nothing else writes before it ends).
// Versions change (a router's cached versions die with it); values and their commits keep. A
// tombstone (a deleted actor) is not carried over: the actor is absent either way.
func (s *PebbleStore) migrateDirStore(root string) error {
	entries, err := os.ReadDir(root)
	if err != nil {
		return fmt.Errorf("local store: read %s: %w", root, err)
	}
	var functions []string
	for _, e := range entries {
		if e.IsDir() && e.Name() != pebbleDir && e.Name() != migratedDir && ValidateFunction(e.Name()) == nil {
			functions = append(functions, e.Name())
		}
	}
	if len(functions) == 0 {
		return nil
	}
	start := time.Now()
	slog.Info("local store: migrating a directory store into the log-structured store (once)", "dir", root, "functions", len(functions))
	total := 0
	for _, fn := range functions {
		n, err := s.migrateFunction(root, fn)
		if err != nil {
			return fmt.Errorf("local store: migrate %s from the directory store: %w (nothing was removed: fix the cause and start again)", filepath.Join(root, fn), err)
		}
		total += n
	}
	slog.Info("local store: migrated the directory store", "dir", root, "actors", total, "took", time.Since(start).Round(time.Millisecond),
		"backup", filepath.Join(root, migratedDir))
	return nil
}

// migrateFunction writes the actors of "{root}/{fn}" and moves the directory away.
func (s *PebbleStore) migrateFunction(root, fn string) (int, error) {
	dir := filepath.Join(root, fn)
	files, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	var (
		writes     []Write
		keys       [][]byte
		n          int
		batchBytes int
	)
	flush := func() error {
		res := make([]WriteResult, len(writes))
		s.applyBatch(writes, keys, res)
		for _, r := range res {
			if r.Err != nil {
				return r.Err
			}
		}
		n += len(writes)
		writes, keys, batchBytes = writes[:0], keys[:0], 0
		return nil
	}
	for _, f := range files {
		// Escaped ids never start with '.': such names are DirStore's temporary files.
		if f.IsDir() || strings.HasPrefix(f.Name(), ".") {
			continue
		}
		dbKey := []byte(pebbleStatePrefix + fn + "/" + f.Name())
		cur, err := s.read(Key{Function: fn, ID: f.Name()}, dbKey, false)
		if err != nil {
			return n, err
		}
		if cur.Version != NoVersion {
			continue // written by an interrupted migration
		}
		b, err := os.ReadFile(filepath.Join(dir, f.Name()))
		if err != nil {
			return n, err
		}
		e := decodeDirFile(b)
		writes = append(writes, Write{Key: Key{Function: fn, ID: f.Name()}, Value: e.Value, Exists: e.Exists, Commit: e.Commit})
		keys = append(keys, dbKey)
		batchBytes += len(e.Value)
		if len(writes) == migrateBatch || batchBytes >= maxBatchBytes {
			if err := flush(); err != nil {
				return n, err
			}
		}
	}
	if err := flush(); err != nil {
		return n, err
	}
	backup := filepath.Join(root, migratedDir)
	if err := os.MkdirAll(backup, 0o700); err != nil {
		return n, err
	}
	dst := filepath.Join(backup, fn)
	if _, err := os.Stat(dst); err == nil {
		dst += "." + time.Now().UTC().Format("20060102T150405")
	}
	if err := os.Rename(dir, dst); err != nil {
		return n, err
	}
	if err := syncDir(backup); err != nil {
		return n, err
	}
	return n, syncDir(root)
}
