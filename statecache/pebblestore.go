package statecache

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/vfs"
)

const (
	// pebbleStripes is the number of mutexes that serialise the read-check-write of PebbleStore
	// keys. A stripe is held while a write is checked and applied to the memtable (a few
	// microseconds; longer only when Pebble stalls writes or its queue of writes waiting for an
	// fsync is full), not while its fsync runs, so 1024 (8 KiB) make a wait rare at any load.
	pebbleStripes = 1024

	// versionBlock is how many versions a PebbleStore hands out before it records a new limit.
	// The limit is persisted before any version under it is used, so versions never repeat
	// across crashes; 2^32 writes per record makes its one fsync free.
	versionBlock = 1 << 32

	// DefaultPebbleCacheBytes is the block cache of the local store. Hot actors live in the
	// state cache above it; this one serves cold reads after passivation.
	DefaultPebbleCacheBytes = 16 << 20

	// DefaultPebbleMemTableBytes is the size of one memtable. Writes are buffered here (and in the
	// write-ahead log) until a memtable fills and is flushed to a table file in the background.
	DefaultPebbleMemTableBytes = 16 << 20
)

// Key prefixes inside the database: state under "s/", the store's own records under "m/", the
// due-time index under "d/" (pebbleDuePrefix) and the channel index under "c/"
// (pebbleChannelPrefix).
const (
	pebbleStatePrefix = "s/"
	pebbleVersionKey  = "m/version-limit"
)

// PebbleStore keeps actor state in an embedded Pebble database, a log-structured merge tree with
// a write-ahead log: knactor's local default. A write is acknowledged once its log record is
// fsynced; writes of different actors that arrive together share one log append and one fsync
// (Pebble's commit pipeline groups them), so a durable write costs about a cache hit plus one
// fsync shared by everyone in flight. WriteBatch makes any number of writes durable with one.
//
// The semantics are S3Store's and DirStore's: conditional puts on versions, deletes that leave a
// tombstone with a version, and the commit of every write kept beside its value, so a retried
// write recognises its own earlier try (see Store).
//
// Concurrency: the read-check-apply of a key runs under its stripe mutex; the fsync wait runs
// outside it, so one slow disk flush never holds other writers of the stripe. A write is visible
// to readers once applied, a moment before its fsync ends; its writer is only answered after.
// One process owns a directory at a time (the flock of "{dir}/.knactor.lock").
//
// Versions are numbers from a counter whose limit is persisted ahead of use, so a version is
// never handed out twice, even across crashes.
type PebbleStore struct {
	dir     string // the database's directory, for errors and logs
	db      *pebble.DB
	lock    *os.File
	seed    maphash.Seed
	stripes [pebbleStripes]sync.Mutex

	next     atomic.Uint64 // the last version handed out
	limit    atomic.Uint64 // versions below it may be handed out; persisted
	extendMu sync.Mutex    // serialises raising limit

	logSyncs atomic.Uint64 // fsyncs of the write-ahead log (logFS)

	fatal func(format string, args ...any) // stops the process: pebbleLogger.Fatalf
}

var (
	_ Store       = (*PebbleStore)(nil)
	_ BatchWriter = (*PebbleStore)(nil)
)

// PebbleOptions tune a PebbleStore. The zero value uses the defaults.
type PebbleOptions struct {
	// CacheBytes is Pebble's block cache. Default DefaultPebbleCacheBytes.
	CacheBytes int64
	// MemTableBytes is the size of one memtable. Default DefaultPebbleMemTableBytes.
	MemTableBytes uint64
}

// pebbleDir is the database's directory inside a state directory. The state directory holds the
// lock beside it, and the files of a migrated directory store (migratedDir). A function name
// never holds a dot, so neither name can be a directory store's function directory.
const pebbleDir = "store.pebble"

// OpenPebbleStore opens (creating if needed) the store of the state directory dir: the database
// in "{dir}/store.pebble". It fails if another process holds dir, or if the database is damaged beyond a
// torn tail of its log (a crash in the middle of a log write loses only that unacknowledged
// write, and the store opens).
//
// A state directory written by DirStore is migrated on open, once (see migrateDirStore).
func OpenPebbleStore(dir string, o PebbleOptions) (*PebbleStore, error) {
	lock, err := lockDir(dir, "local store")
	if err != nil {
		return nil, err
	}
	s, err := openPebble(filepath.Join(dir, pebbleDir), lock, o)
	if err != nil {
		lock.Close()
		return nil, err
	}
	if err := s.migrateDirStore(dir); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func openPebble(dir string, lock *os.File, o PebbleOptions) (*PebbleStore, error) {
	if o.CacheBytes == 0 {
		o.CacheBytes = DefaultPebbleCacheBytes
	}
	if o.MemTableBytes == 0 {
		o.MemTableBytes = DefaultPebbleMemTableBytes
	}
	cache := pebble.NewCache(o.CacheBytes)
	defer cache.Unref() // the database holds its own reference
	logger := pebbleLogger{dir: dir}
	s := &PebbleStore{dir: dir, lock: lock, seed: maphash.MakeSeed(), fatal: logger.Fatalf}
	opts := &pebble.Options{
		Cache:              cache,
		MemTableSize:       o.MemTableBytes,
		FormatMajorVersion: pebble.FormatNewest,
		Logger:             logger,
		FS:                 logFS{FS: vfs.Default, syncs: &s.logSyncs},
	}
	// Every write reads its key first, and a new actor's key is in no table: bloom filters
	// (10 bits a key, 1 % false positives; the deeper levels inherit it) answer those reads
	// without reading the tables' index blocks.
	opts.Levels[0].FilterPolicy = bloom.FilterPolicy(10)
	db, err := pebble.Open(dir, opts)
	if err != nil {
		return nil, fmt.Errorf("local store: open %s: %w (if the files are damaged, restore the directory from a backup; knactor does not repair it)", dir, err)
	}
	s.db = db
	if err := s.loadVersions(); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// loadVersions starts handing out versions at the persisted limit, and persists the next one.
func (s *PebbleStore) loadVersions() error {
	var start uint64
	raw, closer, err := s.db.Get([]byte(pebbleVersionKey))
	switch {
	case err == nil:
		if len(raw) != 8 {
			closer.Close()
			return fmt.Errorf("local store: %s: version limit record is %d bytes, want 8: the database is damaged", s.dir, len(raw))
		}
		start = binary.BigEndian.Uint64(raw)
		closer.Close()
	case errors.Is(err, pebble.ErrNotFound):
	default:
		return fmt.Errorf("local store: %s: read version limit: %w", s.dir, err)
	}
	s.next.Store(start)
	s.limit.Store(start)
	return s.raiseLimit(start + 1)
}

// raiseLimit persists a limit above v (once per versionBlock versions).
func (s *PebbleStore) raiseLimit(v uint64) error {
	s.extendMu.Lock()
	defer s.extendMu.Unlock()
	for v >= s.limit.Load() {
		limit := s.limit.Load() + versionBlock
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], limit)
		if err := s.db.Set([]byte(pebbleVersionKey), b[:], pebble.Sync); err != nil {
			return fmt.Errorf("local store: %s: persist version limit: %w: %w", s.dir, ErrUnavailable, err)
		}
		s.limit.Store(limit)
	}
	return nil
}

// nextVersion hands out a version never used before.
func (s *PebbleStore) nextVersion() (uint64, error) {
	v := s.next.Add(1)
	if v < s.limit.Load() {
		return v, nil
	}
	return v, s.raiseLimit(v)
}

// Close closes the database and releases the directory. Acknowledged writes are in the log; the
// next open replays it. The store must not be used afterwards.
func (s *PebbleStore) Close() error {
	err := s.db.Close()
	return errors.Join(err, s.lock.Close())
}

// Get implements Store.
func (s *PebbleStore) Get(_ context.Context, key Key) (Entry, error) {
	dbKey, err := pebbleKey(key)
	if err != nil {
		return Entry{}, err
	}
	return s.read(key, dbKey, true)
}

// read returns the entry of dbKey, its value copied out of Pebble's memory when withValue.
func (s *PebbleStore) read(key Key, dbKey []byte, withValue bool) (Entry, error) {
	raw, closer, err := s.db.Get(dbKey)
	if errors.Is(err, pebble.ErrNotFound) {
		return Entry{}, nil
	}
	if err != nil {
		return Entry{}, fmt.Errorf("local store: get %s: %w: %w", key, ErrUnavailable, err)
	}
	defer closer.Close()
	e, err := decodePebbleValue(raw, withValue)
	if err != nil {
		return Entry{}, fmt.Errorf("local store: get %s: %w", key, err)
	}
	return e, nil
}

// Put implements Store.
func (s *PebbleStore) Put(ctx context.Context, key Key, value []byte, expect Version, commit Commit) (Version, error) {
	return s.writeOne(Write{Key: key, Value: value, Exists: true, Expect: expect, Commit: commit})
}

// Delete implements Store. It leaves a tombstone that records commit; a later create is
// conditional on the tombstone's version, as with S3Store.
func (s *PebbleStore) Delete(ctx context.Context, key Key, expect Version, commit Commit) (Version, error) {
	return s.writeOne(Write{Key: key, Expect: expect, Commit: commit})
}

func (s *PebbleStore) writeOne(w Write) (Version, error) {
	dbKey, err := checkWrite(w)
	if err != nil {
		return NoVersion, err
	}
	mu := s.stripe(dbKey)
	b := s.db.NewBatch()
	mu.Lock()
	v, staged, err := s.stage(b, w, dbKey)
	if err != nil || !staged {
		mu.Unlock()
		b.Close()
		return v, err
	}
	err = s.db.ApplyNoSyncWait(b, pebble.Sync)
	mu.Unlock()
	if err != nil {
		b.Close()
		return NoVersion, fmt.Errorf("local store: %s %s: %w: %w", w.op(), w.Key, ErrUnavailable, err)
	}
	s.syncWait(b) // shared with every write that reached the log meanwhile
	b.Close()
	return v, nil
}

// syncWait waits until b's log record is fsynced. A failed fsync is fatal: the write is already
// visible (Pebble applies it to the memtable before the fsync), so a retry of its commit would
// find it and report success although it may never reach the disk, and the kernel may have
// dropped the dirty pages it failed to write, so a second fsync proves nothing. The process
// stops; on restart the log holds what was durable.
func (s *PebbleStore) syncWait(b *pebble.Batch) {
	if err := b.SyncWait(); err != nil {
		s.fatal("fsync of the write-ahead log failed: %v", err)
	}
}

// WriteBatch implements BatchWriter: the writes that pass their check are applied as one Pebble
// batch, one log record and one fsync.
func (s *PebbleStore) WriteBatch(_ context.Context, writes []Write) []WriteResult {
	res := make([]WriteResult, len(writes))
	keys := make([][]byte, len(writes))
	seen := make(map[string]bool, len(writes))
	for i, w := range writes {
		dbKey, err := checkWrite(w)
		if err == nil && seen[string(dbKey)] {
			err = fmt.Errorf("local store: %s %s: the key is written twice in one batch", w.op(), w.Key)
		}
		if err != nil {
			res[i].Err = err
			continue
		}
		seen[string(dbKey)] = true
		keys[i] = dbKey
	}
	s.applyBatch(writes, keys, res)
	return res
}

// applyBatch stages every write whose key is not nil and applies them as one batch, filling res.
// The keys are distinct.
func (s *PebbleStore) applyBatch(writes []Write, keys [][]byte, res []WriteResult) {
	stripes := make([]int, 0, len(writes))
	for _, k := range keys {
		if k != nil {
			stripes = append(stripes, s.stripeIndex(k))
		}
	}
	slices.Sort(stripes) // taken in order, so two batches never deadlock
	stripes = slices.Compact(stripes)
	for _, i := range stripes {
		s.stripes[i].Lock()
	}
	unlock := func() {
		for _, i := range stripes {
			s.stripes[i].Unlock()
		}
	}
	b := s.db.NewBatch()
	defer b.Close()
	var staged []int
	for i, w := range writes {
		if keys[i] == nil {
			continue
		}
		v, ok, err := s.stage(b, w, keys[i])
		res[i] = WriteResult{Version: v, Err: err}
		if ok {
			staged = append(staged, i)
		}
	}
	if len(staged) == 0 {
		unlock()
		return
	}
	err := s.db.ApplyNoSyncWait(b, pebble.Sync)
	unlock()
	if err != nil {
		for _, i := range staged {
			res[i] = WriteResult{Err: fmt.Errorf("local store: %s %s: %w: %w", writes[i].op(), writes[i].Key, ErrUnavailable, err)}
		}
		return
	}
	s.syncWait(b)
}

// stage checks w against the key's current entry and adds it to b. staged is false when w
// needs no write (a repeat of a landed commit, a delete of an absent key) or fails its check.
// The caller holds the key's stripe.
func (s *PebbleStore) stage(b *pebble.Batch, w Write, dbKey []byte) (v Version, staged bool, err error) {
	cur, err := s.read(w.Key, dbKey, false)
	if err != nil {
		return NoVersion, false, err
	}
	if cur.Version != w.Expect {
		if sameCommit(cur.Commit, w.Commit) {
			return cur.Version, false, nil // an earlier try of this write landed
		}
		return NoVersion, false, &ConflictError{Key: w.Key, Current: cur.Version, Commit: cur.Commit}
	}
	if !w.Exists && !cur.Exists {
		return cur.Version, false, nil
	}
	n, err := s.nextVersion()
	if err != nil {
		return NoVersion, false, err
	}
	op := b.SetDeferred(len(dbKey), pebbleHeaderBytes+len(w.Commit)+len(w.Value))
	copy(op.Key, dbKey)
	encodePebbleValue(op.Value, n, w)
	op.Finish()
	return pebbleVersion(n), true, nil
}

func (s *PebbleStore) stripeIndex(dbKey []byte) int {
	return int(maphash.Bytes(s.seed, dbKey) % pebbleStripes)
}

func (s *PebbleStore) stripe(dbKey []byte) *sync.Mutex { return &s.stripes[s.stripeIndex(dbKey)] }

// checkWrite validates w and returns its database key.
func checkWrite(w Write) ([]byte, error) {
	if err := w.Commit.Validate(); err != nil {
		return nil, fmt.Errorf("local store: %s %s: %w", w.op(), w.Key, err)
	}
	return pebbleKey(w.Key)
}

func pebbleKey(key Key) ([]byte, error) {
	name, err := key.ObjectName()
	if err != nil {
		return nil, err
	}
	return append([]byte(pebbleStatePrefix), name...), nil
}

func pebbleVersion(n uint64) Version { return Version(strconv.FormatUint(n, 36)) }

// A PebbleStore value is a header and the state:
//
//	version (8 bytes, big endian) | flags (1 byte: 1 = holds a value, 0 = tombstone) | commit length (1 byte) | commit | value
const pebbleHeaderBytes = 8 + 1 + 1

func encodePebbleValue(dst []byte, version uint64, w Write) {
	binary.BigEndian.PutUint64(dst, version)
	dst[8] = 0
	if w.Exists {
		dst[8] = 1
	}
	dst[9] = byte(len(w.Commit))
	n := copy(dst[pebbleHeaderBytes:], w.Commit)
	copy(dst[pebbleHeaderBytes+n:], w.Value)
}

func decodePebbleValue(raw []byte, withValue bool) (Entry, error) {
	if len(raw) < pebbleHeaderBytes || len(raw) < pebbleHeaderBytes+int(raw[9]) {
		return Entry{}, fmt.Errorf("stored entry is %d bytes, shorter than its header: the database is damaged", len(raw))
	}
	n := pebbleHeaderBytes + int(raw[9])
	e := Entry{
		Version: pebbleVersion(binary.BigEndian.Uint64(raw)),
		Exists:  raw[8]&1 != 0,
		Commit:  Commit(raw[pebbleHeaderBytes:n]),
	}
	if e.Exists && withValue {
		e.Value = append([]byte{}, raw[n:]...)
	}
	return e, nil
}

// pebbleLogger sends Pebble's log to slog: its routine notes (flushes, compactions) at debug
// level, errors as errors.
type pebbleLogger struct{ dir string }

func (l pebbleLogger) Infof(format string, args ...any) {
	slog.Debug("local store: "+fmt.Sprintf(format, args...), "dir", l.dir)
}

func (l pebbleLogger) Errorf(format string, args ...any) {
	slog.Error("local store: "+fmt.Sprintf(format, args...), "dir", l.dir)
}

// Fatalf is called when Pebble cannot go on (a failed log write it cannot undo). Acknowledged
// writes are on disk; the process stops so a supervisor restarts it on a database it reopens.
func (l pebbleLogger) Fatalf(format string, args ...any) {
	slog.Error("local store: fatal: "+fmt.Sprintf(format, args...), "dir", l.dir)
	os.Exit(70) // EX_SOFTWARE
}
