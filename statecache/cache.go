package statecache

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/allegro/bigcache/v3"
	"k8s.io/utils/clock"
)

// Defaults of Config.
const (
	// DefaultMaxBytes bounds the cache's memory for values: 256 MiB holds about a million actors
	// of 100-byte state (bigcache spends ~220-380 bytes per such entry).
	DefaultMaxBytes = 256 << 20
	// DefaultFlushInterval is how long write-behind holds a write at most (while the store is
	// healthy): long enough to coalesce a hot actor's turns, short enough to bound loss on a crash.
	DefaultFlushInterval = time.Second
	// DefaultFlushConcurrency bounds the store writes one flush runs at once on a store that
	// writes one key per request (S3): 16 requests in flight keep a MinIO busy without queueing
	// behind each other.
	DefaultFlushConcurrency = 16
	// DefaultMaxDirtyBytes bounds the write-behind changes a cache holds that are not durable
	// yet: 64 MiB is a minute of 1 KiB changes at 1000 turns/s, and what a crash could lose.
	DefaultMaxDirtyBytes = 64 << 20
	// DefaultMaxDirtyAge bounds how long write-behind goes on acknowledging changes while its
	// flushes fail: past it, a store outage answers 503 instead of piling up changes that a
	// crash would lose.
	DefaultMaxDirtyAge = 30 * time.Second
	// DefaultFlushBatch bounds the writes of one batch on a BatchWriter (the local store). 4096
	// actors of 1 KiB are a 4 MiB log record: one fsync, and a stripe lock set held for a few
	// milliseconds.
	DefaultFlushBatch = 4096
	// cacheLockStripes serialise loads and writes of one key inside the cache.
	cacheLockStripes = 256
	// accessShards spread the idle-tracking map over independent locks.
	accessShards = 64
)

// Config configures a Cache. The zero value is valid: write-through, DefaultMaxBytes, no
// passivation.
type Config struct {
	// MaxBytes bounds the memory of cached values (rounded up to whole MiB). Least recently
	// written entries are evicted first when it is reached; dirty write-behind values are kept
	// outside this bound until they are flushed.
	MaxBytes int
	// Mode is WriteThrough (default) or WriteBehind.
	Mode WriteMode
	// FlushInterval is how often write-behind flushes, and how often idle actors are passivated.
	FlushInterval time.Duration
	// FlushConcurrency bounds concurrent store writes per flush. Default DefaultFlushConcurrency.
	FlushConcurrency int
	// FlushBatch bounds the writes of one batch when the store is a BatchWriter: a flush then
	// writes its changes in batches instead of concurrent requests. Default DefaultFlushBatch.
	FlushBatch int
	// JournalDir, with WriteBehind, is where Close keeps the changes its final flush could not
	// make durable, and where NewCache takes them back (journal.go); one process per directory.
	// Empty: no journal, and such changes are lost with the process.
	JournalDir string
	// IdleAfter passivates actors not read or written for this long: their entries leave memory
	// once durable. Zero disables passivation. Cache.SetIdleAfter sets it per function.
	IdleAfter time.Duration
	// OnFlushError is told of every failed write-behind flush of a key. The write is kept and
	// retried on the next flush unless err is ErrConflict (another writer changed the key; the
	// buffered write is dropped and the key reloaded from the store). Called from the flushing
	// goroutine; it must not block.
	OnFlushError func(key Key, err error)
	// MaxDirtyBytes bounds the write-behind changes not yet durable (their values' bytes): a
	// change past it is refused with ErrUnavailable. Default DefaultMaxDirtyBytes.
	MaxDirtyBytes int
	// MaxDirtyAge bounds how long write-behind accepts changes while every flush of some key
	// fails (the store is down): past it, changes are refused with ErrUnavailable until a
	// flush succeeds. Default DefaultMaxDirtyAge.
	MaxDirtyAge time.Duration
	// Clock drives flushing and passivation. Default the real clock.
	Clock clock.WithTicker
	// Revalidate makes every Get of a cached entry ask the store whether it is still current
	// (a conditional read that sends no value when it is: Revalidator), for when the cache is
	// not its keys' only writer, e.g. several routers on one bucket. Writes are safe without it
	// (conditional puts refuse a stale version); reads need it to never return a value older
	// than an acknowledged write. WriteThrough only: a write-behind cache must be the only
	// writer.
	Revalidate bool
	// Keys, when set, encrypts state at rest: every value the cache writes to the store is
	// sealed with the active key (AES-256-GCM, bound to the actor's key), and every value it
	// reads is opened with the key it names. Values in memory stay plaintext. A stored value
	// that is not sealed (written before keys were configured) is read as it is and sealed by
	// its next write (Stats.PlaintextReads counts them). A sealed value whose key is not in the
	// ring, or any sealed value when Keys is nil, fails its read with a *KeyMissingError; one
	// that does not decrypt with ErrSealBroken. Nothing is cached for such a key.
	Keys *Keyring
}

// Revalidator is a Store that can tell whether a key still has a version without sending its
// value. A Cache with Config.Revalidate uses it; with a Store that lacks it, every Get reads the
// store.
type Revalidator interface {
	// GetIfChanged returns the key's entry and true when its version is no longer v, or false
	// (and no entry) when it still is.
	GetIfChanged(ctx context.Context, key Key, v Version) (Entry, bool, error)
}

func (c *Config) setDefaults() {
	if c.MaxBytes == 0 {
		c.MaxBytes = DefaultMaxBytes
	}
	if c.FlushInterval == 0 {
		c.FlushInterval = DefaultFlushInterval
	}
	if c.FlushConcurrency == 0 {
		c.FlushConcurrency = DefaultFlushConcurrency
	}
	if c.FlushBatch == 0 {
		c.FlushBatch = DefaultFlushBatch
	}
	if c.MaxDirtyBytes == 0 {
		c.MaxDirtyBytes = DefaultMaxDirtyBytes
	}
	if c.MaxDirtyAge == 0 {
		c.MaxDirtyAge = DefaultMaxDirtyAge
	}
	if c.Clock == nil {
		c.Clock = clock.RealClock{}
	}
}

func (c *Config) validate() error {
	var errs []error
	if c.MaxBytes < 0 {
		errs = append(errs, fmt.Errorf("max bytes %d is negative", c.MaxBytes))
	}
	if c.Mode != WriteThrough && c.Mode != WriteBehind {
		errs = append(errs, fmt.Errorf("unknown write mode %d", c.Mode))
	}
	if c.JournalDir != "" && c.Mode != WriteBehind {
		errs = append(errs, errors.New("a write-behind journal needs the write-behind mode"))
	}
	if c.FlushInterval < 0 || c.IdleAfter < 0 {
		errs = append(errs, errors.New("flush interval and idle time must not be negative"))
	}
	if c.FlushConcurrency < 0 || c.FlushBatch < 0 {
		errs = append(errs, errors.New("flush concurrency and batch size must not be negative"))
	}
	if c.Revalidate && c.Mode == WriteBehind {
		errs = append(errs, errors.New("revalidating reads needs write-through: a write-behind cache must be its keys' only writer"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("cache config: %w", err)
	}
	return nil
}

// Stats are a Cache's counters since it was created.
type Stats struct {
	Hits, Misses  uint64 // reads answered from memory / from the store
	Revalidated   uint64 // hits confirmed current by the store (Config.Revalidate)
	Flushed       uint64 // write-behind writes made durable
	FlushErrors   uint64 // failed flush attempts (each reported to OnFlushError)
	LostConflicts uint64 // write-behind writes dropped because another writer changed the key
	Passivated    uint64 // entries dropped from memory for being idle
	// PlaintextReads are values read from the store unsealed although Config.Keys is set:
	// written before encryption was switched on; each is sealed by its next write.
	PlaintextReads uint64
	Dirty          int // write-behind writes not yet durable
	DirtyBytes     int // their values' bytes
	// Journaled are the Dirty writes taken back from the write-behind journal at open.
	Journaled int
	// FlushFailingFor is how long flushes have been failing (0 while they succeed).
	FlushFailingFor time.Duration
}

// Cache keeps actor state in memory in front of a Store.
//
// Concurrency: all methods are safe for concurrent use. A per-key stripe mutex (stripes)
// serialises the load, check and write of one key, so a cache fill can never overwrite a newer
// write. dirtyMu guards dirty; flushMu lets one flush run at a time. The background goroutine
// flushes (WriteBehind) and passivates (when an idle time applies) on each tick and stops in
// Close.
type Cache struct {
	cfg   Config
	store Store
	mem   *bigcache.BigCache
	seed  maphash.Seed

	stripes [cacheLockStripes]sync.Mutex

	dirtyMu sync.Mutex
	dirty   map[string]*dirtyWrite // write-behind writes not yet in the store, by Key.String()
	// dirtyBytes sums the values in dirty; failingSince is when flushes began to fail (zero
	// while they succeed). Both guarded by dirtyMu.
	dirtyBytes   int
	failingSince time.Time
	// removable are index entries (due times, channel memberships) whose removal waited for a
	// flush that has now made the record that no longer needs them durable (see
	// removeIndexEntry); guarded by dirtyMu.
	removable []indexEntry

	flushMu sync.Mutex

	access [accessShards]accessShard // last read or write of each cached key, for passivation
	// journal is the write-behind journal (Config.JournalDir); nil without one.
	journal *journal
	// idle holds the functions' own idle times (SetIdleAfter); tracking is set while any idle
	// time, the Config's or a function's, passivates: only then is each use recorded in access.
	idle     functionIdle
	tracking atomic.Bool

	localSeq atomic.Uint64 // numbers write-behind versions
	localTag string        // makes write-behind versions unique to this cache

	hits, misses, revalidated, flushed, flushErrors, lostConflicts, passivated, plaintextReads atomic.Uint64

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// cached is the in-memory form of a key: what callers see, plus the store's version underneath.
// With write-through both versions are the same.
type cached struct {
	Entry
	durable Version
}

// NewCache returns a Cache in front of store. Close it to stop its goroutine and, with
// WriteBehind, to flush what is buffered.
func NewCache(store Store, cfg Config) (*Cache, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	c := &Cache{
		cfg:      cfg,
		store:    store,
		seed:     maphash.MakeSeed(),
		dirty:    make(map[string]*dirtyWrite),
		localTag: strconv.FormatUint(uint64(time.Now().UnixNano()), 36),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	for i := range c.access {
		c.access[i].last = make(map[string]time.Time)
	}
	c.tracking.Store(cfg.IdleAfter > 0)
	maxMB := (cfg.MaxBytes + 1<<20 - 1) >> 20
	bc := bigcache.DefaultConfig(time.Duration(math.MaxInt64)) // no time-based expiry: passivation decides
	// Few shards, so each is large enough for a state at the router's 1 MiB cap. Two cores
	// contend little on 16 locks.
	bc.Shards = 16
	bc.HardMaxCacheSize = maxMB
	bc.MaxEntriesInWindow = 16 << 10
	bc.MaxEntrySize = 256
	bc.CleanWindow = 0
	bc.Verbose = false
	bc.OnRemoveWithReason = c.onEvict
	mem, err := bigcache.New(context.Background(), bc)
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	c.mem = mem
	if cfg.JournalDir != "" {
		if err := c.openJournal(cfg.JournalDir); err != nil {
			c.closeJournal()
			mem.Close()
			return nil, err
		}
	}
	go c.loop() // a function may be given an idle time later (SetIdleAfter)
	return c, nil
}

// Get returns the key's current entry: from memory when cached, else from the store (and then
// cached). An absent key is an Entry with Exists false.
func (c *Cache) Get(ctx context.Context, key Key) (Entry, error) {
	id := key.String()
	if c.cfg.Revalidate {
		return c.revalidate(ctx, key, id)
	}
	if e, ok := c.fromMemory(id); ok {
		c.hits.Add(1)
		c.touch(id)
		return e.Entry, nil
	}
	mu := c.stripe(id)
	mu.Lock()
	defer mu.Unlock()
	e, err := c.load(ctx, key, id)
	return e.Entry, err
}

// revalidate is Get with Config.Revalidate: a cached entry is returned only once the store has
// confirmed its version; otherwise the store's entry replaces it.
func (c *Cache) revalidate(ctx context.Context, key Key, id string) (Entry, error) {
	mu := c.stripe(id)
	mu.Lock()
	defer mu.Unlock()
	e, ok := c.fromMemory(id)
	rv, can := c.store.(Revalidator)
	if !ok || !can || e.Version == NoVersion {
		c.mem.Delete(id)
		e, err := c.load(ctx, key, id)
		return e.Entry, err
	}
	fresh, changed, err := rv.GetIfChanged(ctx, key, e.Version)
	if err == nil && changed {
		fresh, err = c.open(key, fresh)
	}
	if err != nil {
		if changed {
			c.mem.Delete(id) // the cached entry is stale, and the store's does not open
		}
		return Entry{}, err
	}
	c.touch(id)
	if !changed {
		c.hits.Add(1)
		c.revalidated.Add(1)
		return e.Entry, nil
	}
	c.misses.Add(1)
	c.remember(id, cached{Entry: fresh, durable: fresh.Version})
	return fresh, nil
}

// Put stores value for key if the key's current version is expect, and returns the new
// version. With WriteThrough it returns after the store has the value; with WriteBehind at once.
// A stale expect returns ErrConflict, and the cache then holds the current value, so a Get and
// retry settle it. commit names the write (see Store): retrying a Put that failed with
// ErrUnavailable with the same commit succeeds if the earlier try landed.
func (c *Cache) Put(ctx context.Context, key Key, value []byte, expect Version, commit Commit) (Version, error) {
	return c.write(ctx, key, value, true, expect, commit)
}

// Delete removes key's value if its current version is expect, like Put.
func (c *Cache) Delete(ctx context.Context, key Key, expect Version, commit Commit) (Version, error) {
	return c.write(ctx, key, nil, false, expect, commit)
}

func (c *Cache) write(ctx context.Context, key Key, value []byte, exists bool, expect Version, commit Commit) (Version, error) {
	if err := key.Validate(); err != nil {
		return NoVersion, err
	}
	id := key.String()
	mu := c.stripe(id)
	mu.Lock()
	defer mu.Unlock()
	if err := commit.Validate(); err != nil {
		return NoVersion, err
	}
	if c.cfg.Mode == WriteBehind {
		return c.writeBehind(ctx, key, id, value, exists, expect, commit)
	}
	if e, ok := c.fromMemory(id); ok && e.Version != expect {
		// The cache already holds a newer version than the caller read (cached versions only
		// move forward), so the store would refuse too: save the round trip. It may be this
		// very write, landed by an earlier try and loaded since by a read.
		if sameCommit(e.Commit, commit) {
			return e.Version, nil
		}
		return NoVersion, &ConflictError{Key: key, Current: e.Version, Commit: e.Commit}
	}
	var v Version
	var err error
	if exists {
		v, err = c.store.Put(ctx, key, c.cfg.Keys.Seal(key, value), expect, commit)
	} else {
		v, err = c.store.Delete(ctx, key, expect, commit)
	}
	if errors.Is(err, ErrConflict) {
		c.mem.Delete(id)
		// Refresh the entry for the caller's retry. If the store cannot be read now, the retry
		// reads it: the conflict, not the failed refresh, is this write's outcome.
		_, _ = c.load(ctx, key, id)
		return NoVersion, err
	}
	if err != nil {
		// The write may or may not have happened: forget the cached value so the next read asks
		// the store.
		c.mem.Delete(id)
		return NoVersion, err
	}
	c.remember(id, cached{Entry: Entry{Value: value, Version: v, Exists: exists, Commit: commit}, durable: v})
	return v, nil
}

// load returns the key's entry from memory, the dirty set or the store. The caller holds the
// key's stripe.
func (c *Cache) load(ctx context.Context, key Key, id string) (cached, error) {
	if e, ok := c.fromMemory(id); ok {
		c.hits.Add(1)
		c.touch(id)
		return e, nil
	}
	c.dirtyMu.Lock()
	d, ok := c.dirty[id]
	c.dirtyMu.Unlock()
	if ok { // evicted from memory under pressure, but still waiting to be flushed
		e := cached{Entry: Entry{Value: d.value, Version: d.version, Exists: d.exists, Commit: d.commit}, durable: d.base}
		c.remember(id, e)
		c.hits.Add(1)
		return e, nil
	}
	c.misses.Add(1)
	se, err := c.store.Get(ctx, key)
	if err == nil {
		se, err = c.open(key, se)
	}
	if err != nil {
		return cached{}, err
	}
	e := cached{Entry: se, durable: se.Version}
	c.remember(id, e)
	return e, nil
}

// Stats returns the cache's counters.
func (c *Cache) Stats() Stats {
	c.dirtyMu.Lock()
	dirty, dirtyBytes, journaled := len(c.dirty), c.dirtyBytes, 0
	for _, d := range c.dirty {
		if d.journaled {
			journaled++
		}
	}
	var failing time.Duration
	if !c.failingSince.IsZero() {
		failing = c.cfg.Clock.Since(c.failingSince)
	}
	c.dirtyMu.Unlock()
	return Stats{
		DirtyBytes: dirtyBytes, FlushFailingFor: failing,
		Hits: c.hits.Load(), Misses: c.misses.Load(), Revalidated: c.revalidated.Load(), Flushed: c.flushed.Load(),
		FlushErrors: c.flushErrors.Load(), LostConflicts: c.lostConflicts.Load(),
		Passivated: c.passivated.Load(), PlaintextReads: c.plaintextReads.Load(), Dirty: dirty, Journaled: journaled,
	}
}

// open turns an entry read from the store into its plaintext form (Config.Keys).
func (c *Cache) open(key Key, e Entry) (Entry, error) {
	if !e.Exists {
		return e, nil
	}
	plain, sealed, err := c.cfg.Keys.open(key, e.Value)
	if err != nil {
		return Entry{}, err
	}
	if !sealed && c.cfg.Keys != nil {
		c.plaintextReads.Add(1)
	}
	e.Value = plain
	return e, nil
}

func (c *Cache) stripe(id string) *sync.Mutex {
	return &c.stripes[maphash.String(c.seed, id)%cacheLockStripes]
}

// Close stops the background goroutine, flushes buffered writes (bounded by ctx) and releases
// memory. It returns the flush's errors: writes it names were not made durable.
func (c *Cache) Close(ctx context.Context) error {
	var err error
	c.once.Do(func() {
		close(c.stop)
		<-c.done
		if c.cfg.Mode == WriteBehind {
			err = c.Flush(ctx)
		}
		if err != nil && c.journal != nil {
			c.flushMu.Lock()
			name, n, jerr := c.writeJournal()
			c.flushMu.Unlock()
			if jerr != nil {
				err = fmt.Errorf("%w; and the write-behind journal could not keep them: %w", err, jerr)
			} else if n > 0 {
				err = fmt.Errorf("%w; %d changes kept in the write-behind journal %s: the next start takes them back", err, n, name)
			}
		}
		c.closeJournal()
		c.mem.Close()
	})
	return err
}
