package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"

	"github.com/knactor/knactor/pods/local"
	"github.com/knactor/knactor/statecache"
)

// Environment variables that carry secrets. Secrets never come from flags (they would show in
// process listings and shell history) and are never logged.
const (
	envS3AccessKey    = "KNACTOR_S3_ACCESS_KEY"
	envS3SecretKey    = "KNACTOR_S3_SECRET_KEY"
	envS3SessionToken = "KNACTOR_S3_SESSION_TOKEN"
	envAuthTokens     = "KNACTOR_AUTH_TOKENS" // comma-separated bearer tokens of the public API
	// envEncryptionKeys holds the keys that encrypt state at rest: "id:base64-32-byte-key"
	// entries separated by commas or newlines, the first one active (statecache.ParseKeyring).
	envEncryptionKeys = "KNACTOR_ENCRYPTION_KEYS"
)

// stateFlags select and configure the state store and its cache.
type stateFlags struct {
	dir        string
	s3         statecache.S3Config
	writeMode  string
	cacheMB    int
	idleAfter  time.Duration
	flushEvery time.Duration
	// maxDirtyMB and maxDirtyAge bound what write-behind acknowledges before it is durable.
	maxDirtyMB  int
	maxDirtyAge time.Duration
	// journalDir keeps the write-behind changes a failed final flush could not make durable;
	// empty: beside the state directory (journalDirOf).
	journalDir string
	// revalidate confirms every cached read with the store (Kubernetes mode: several routers
	// write the same actors). Write-through caches only.
	revalidate bool
	// severalRouters says other routers may serve the same actors (Kubernetes mode: replicas,
	// a rolling update's surge, a router that cannot reach an actor's owner runs the turn
	// itself). Write-behind is then refused: an actor that moves to another router would lose
	// the writes this one acknowledged but had not flushed, since the new owner writes over the
	// stale stored state and this router's flush is dropped as a conflict. A default of
	// write-behind fails openState; a function's write-behind annotation runs write-through.
	severalRouters bool
	// encryptionKeys is the key specification of encryption at rest from the ActorSystem's
	// Secret (Kubernetes mode); empty: $KNACTOR_ENCRYPTION_KEYS, if set. Never a flag.
	encryptionKeys string
}

func (f *stateFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.dir, "state-dir", defaultStateDir(), "directory of the local state store, an embedded log-structured database (used unless --s3-endpoint is set); a directory-store layout from older releases is migrated on start")
	fs.StringVar(&f.s3.Endpoint, "s3-endpoint", "", "S3/MinIO endpoint host:port; credentials from $"+envS3AccessKey+" and $"+envS3SecretKey)
	fs.StringVar(&f.s3.Bucket, "s3-bucket", "knactor", "S3 bucket that holds actor state")
	fs.StringVar(&f.s3.Prefix, "s3-prefix", "", "object name prefix inside the bucket, ending in '/'")
	fs.StringVar(&f.s3.Region, "s3-region", "", "S3 region (empty: discover)")
	fs.BoolVar(&f.s3.TLS, "s3-tls", false, "use https for S3")
	fs.BoolVar(&f.s3.CreateBucket, "s3-create-bucket", false, "create the bucket if it does not exist")
	fs.DurationVar(&f.s3.Timeout, "s3-timeout", statecache.DefaultS3Timeout, "deadline of one S3 request; a timed-out write is retried under the same commit id")
	fs.IntVar(&f.s3.Attempts, "s3-attempts", statecache.DefaultS3Attempts, "tries of one S3 request that fails transiently, before the router's own --store-timeout retries")
	fs.StringVar(&f.writeMode, "write-mode", "write-through", "write-through (reply after the write is durable) or write-behind (coalesced, flushed every --flush-interval)")
	fs.IntVar(&f.cacheMB, "cache-mb", statecache.DefaultMaxBytes>>20, "memory for cached state, MiB")
	fs.DurationVar(&f.idleAfter, "passivate-after", 10*time.Minute, "drop an actor's state from memory after this long unused (0: never)")
	fs.DurationVar(&f.flushEvery, "flush-interval", statecache.DefaultFlushInterval, "write-behind flush interval")
	fs.IntVar(&f.maxDirtyMB, "max-dirty-mb", statecache.DefaultMaxDirtyBytes>>20, "write-behind: MiB of acknowledged changes that may wait for the store; past it calls get 503 store_unavailable")
	fs.StringVar(&f.journalDir, "journal-dir", "", "write-behind: directory that keeps the changes the final flush at shutdown could not write, taken back at the next start (default: --state-dir with \"-journal\" appended)")
	fs.DurationVar(&f.maxDirtyAge, "max-dirty-age", statecache.DefaultMaxDirtyAge, "write-behind: how long changes are acknowledged while flushes fail; past it calls get 503 store_unavailable until the store takes writes")
}

// journalDirOf is the write-behind journal's directory: --journal-dir, else beside the state
// directory, which is this process's own (the local store locks it).
func (f *stateFlags) journalDirOf() string {
	if f.journalDir != "" {
		return f.journalDir
	}
	return filepath.Clean(f.dir) + "-journal"
}

// journalWaiting reports whether the write-behind journal holds changes from a previous run.
func (f *stateFlags) journalWaiting() bool {
	files, _ := filepath.Glob(filepath.Join(f.journalDirOf(), "changes-*.jsonl"))
	return len(files) > 0
}

func defaultStateDir() string {
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "knactor", "state")
	}
	return filepath.Join(os.TempDir(), "knactor-state")
}

// state is the state store with one cache per write mode in use. Functions use the default mode
// unless their manifest says otherwise; their keys never overlap, so the caches share the store.
// It satisfies router.StateCache and local.WarmActors.
type state struct {
	flags      *stateFlags
	store      statecache.Store
	closeStore func() error
	describe   string
	def        statecache.WriteMode
	keys       *statecache.Keyring // nil: state is stored in plaintext
	// collectors export the store's metrics (the local store's; S3's are the router's).
	collectors []prometheus.Collector

	mu     sync.Mutex
	caches map[statecache.WriteMode]*statecache.Cache
	modes  map[string]statecache.WriteMode // function → its write mode (functions set or pinned)
	idle   map[string]time.Duration        // function → its own passivate-after, for every cache
	// refused are the functions whose knactor.dev/write-mode asks for write-behind while
	// severalRouters refuses it: they run write-through (knactor_state_write_behind_refused_functions).
	refused map[string]bool
}

// openState opens the store named by the flags.
func (f *stateFlags) openState(ctx context.Context) (*state, error) {
	mode, err := statecache.ParseWriteMode(f.writeMode)
	if err != nil {
		return nil, err
	}
	if mode == statecache.WriteBehind && f.severalRouters {
		return nil, errWriteBehindSeveralRouters
	}
	keys, err := f.keyring()
	if err != nil {
		return nil, err
	}
	st := &state{flags: f, def: mode, keys: keys, closeStore: func() error { return nil },
		caches: make(map[statecache.WriteMode]*statecache.Cache), modes: make(map[string]statecache.WriteMode),
		idle: make(map[string]time.Duration), refused: make(map[string]bool)}
	if f.s3.Endpoint != "" {
		if f.s3.AccessKey == "" { // Kubernetes mode fills them from the ActorSystem's Secret
			f.s3.AccessKey, f.s3.SecretKey = os.Getenv(envS3AccessKey), os.Getenv(envS3SecretKey)
			f.s3.SessionToken = os.Getenv(envS3SessionToken)
		}
		if f.s3.AccessKey == "" || f.s3.SecretKey == "" {
			return nil, fmt.Errorf("--s3-endpoint needs credentials in $%s and $%s", envS3AccessKey, envS3SecretKey)
		}
		s, err := statecache.OpenS3Store(ctx, f.s3)
		if err != nil {
			return nil, err
		}
		st.store, st.describe = s, fmt.Sprintf("s3://%s/%s/%s", f.s3.Endpoint, f.s3.Bucket, f.s3.Prefix)
	} else {
		s, err := statecache.OpenPebbleStore(f.dir, statecache.PebbleOptions{})
		if err != nil {
			return nil, err
		}
		st.store, st.describe, st.closeStore = s, f.dir, s.Close
		st.collectors = append(st.collectors, s.Collector())
	}
	if _, err := st.cache(mode); err != nil {
		_ = st.closeStore()
		return nil, err
	}
	if mode != statecache.WriteBehind && f.journalWaiting() {
		// A previous run's write-behind changes wait in the journal: the write-behind cache
		// takes them back now and flushes them, whichever mode the functions use today.
		if _, err := st.cache(statecache.WriteBehind); err != nil {
			_ = st.Close(ctx)
			return nil, err
		}
	}
	if c, ok := st.caches[statecache.WriteBehind]; ok && c.Stats().Journaled > 0 {
		slog.Info("write-behind journal taken back", "changes", c.Stats().Journaled, "dir", f.journalDirOf())
	}
	st.describe += " (" + mode.String() + ")"
	st.collectors = append(st.collectors, statecache.StatsCollector(st.stats))
	if f.severalRouters {
		st.collectors = append(st.collectors, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "knactor_state_write_behind_refused_functions",
			Help: "Functions whose knactor.dev/write-mode asks for write-behind but run write-through: several routers share the actors (docs/storage.md#write-modes).",
		}, st.refusedFunctions))
	}
	if keys != nil {
		st.collectors = append(st.collectors, prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "knactor_state_plaintext_reads_total",
			Help: "State values read from the store unencrypted although encryption keys are configured (written before encryption was switched on; each is encrypted by its next write).",
		}, st.plaintextReads))
	}
	return st, nil
}

// errWriteBehindSeveralRouters refuses a default of write-behind where several routers may serve
// the same actors (stateFlags.severalRouters).
var errWriteBehindSeveralRouters = errors.New("write-behind is refused with several routers: an actor that moves to another router " +
	"would lose the writes this one acknowledged but had not flushed; use write-through, where each reply waits for its durable write")

// keyring parses the encryption keys: the ActorSystem's Secret's, else $KNACTOR_ENCRYPTION_KEYS.
// nil when neither is set. Errors and logs name keys by id only.
func (f *stateFlags) keyring() (*statecache.Keyring, error) {
	spec, from := f.encryptionKeys, "the ActorSystem's encryption Secret"
	if env := os.Getenv(envEncryptionKeys); spec == "" {
		spec, from = env, "$"+envEncryptionKeys
	} else if env != "" {
		slog.Warn("$" + envEncryptionKeys + " is ignored: the ActorSystem's encryption Secret sets the keys")
	}
	if spec == "" {
		return nil, nil
	}
	keys, err := statecache.ParseKeyring(spec)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", from, err)
	}
	slog.Info("state encrypted at rest", "active key", keys.Active(), "keys", len(keys.IDs()), "ids", strings.Join(keys.IDs(), ","), "from", from)
	return keys, nil
}

// plaintextReads sums the caches' reads of unencrypted values (Stats.PlaintextReads).
func (s *state) plaintextReads() float64 { return float64(s.stats().PlaintextReads) }

// stats sums the stats of the state's caches (one per write mode in use).
func (s *state) stats() statecache.Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	var sum statecache.Stats
	for _, c := range s.caches {
		sum = sum.Add(c.Stats())
	}
	return sum
}

// pinMode makes function use mode ("" is the default mode) unless it already uses another one,
// which is an error: the function's cached state lives in the other mode's cache. A mode that
// does not parse is an error too, and the function is pinned to the default. With several
// routers write-behind means write-through (stateFlags.severalRouters), so that every path that
// pins a function agrees and no write-behind cache is ever made. changed reports a function
// seen for the first time.
func (s *state) pinMode(function, mode string) (changed bool, err error) {
	m, perr := s.def, error(nil)
	if mode != "" {
		if parsed, err := statecache.ParseWriteMode(mode); err == nil {
			m = parsed
		} else {
			perr = err // the function runs with the default, pinned like any other mode
		}
	}
	if m == statecache.WriteBehind && s.flags.severalRouters {
		m = statecache.WriteThrough
	}
	if _, err := s.cache(m); err != nil {
		return false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur, ok := s.modes[function]; ok {
		if cur != m {
			return false, fmt.Errorf("function %q runs with write mode %s; knactor.dev/write-mode now says %s: restart the routers to apply it", function, cur, m)
		}
		return false, perr
	}
	s.modes[function] = m
	return true, perr
}

// noteWriteBehindRefused records asking, the functions whose knactor.dev/write-mode asks for
// write-behind, when several routers refuse it, and returns those not recorded before (each is
// logged once); nil without several routers, where write-behind runs.
func (s *state) noteWriteBehindRefused(asking []string) (newly []string) {
	if !s.flags.severalRouters {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := make(map[string]bool, len(asking))
	for _, fn := range asking {
		now[fn] = true
		if !s.refused[fn] {
			newly = append(newly, fn)
		}
	}
	s.refused = now
	return newly
}

// refusedFunctions is the number of functions noteWriteBehindRefused last recorded.
func (s *state) refusedFunctions() float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return float64(len(s.refused))
}

var _ local.WriteModes = (*state)(nil)

// DefaultWriteMode implements local.WriteModes: the mode of a function that names none.
func (s *state) DefaultWriteMode() statecache.WriteMode { return s.def }

// PinMode implements local.WriteModes (pinMode).
func (s *state) PinMode(function, mode string) (changed bool, err error) {
	return s.pinMode(function, mode)
}

// SetPassivateAfter implements local.WriteModes: function's actors leave every cache after d
// unused (its knactor.dev/passivate-after; 0: never), or after --passivate-after when d < 0.
func (s *state) SetPassivateAfter(function string, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d < 0 {
		delete(s.idle, function)
	} else {
		s.idle[function] = d
	}
	for _, c := range s.caches {
		c.SetIdleAfter(function, d)
	}
}

func (s *state) cache(mode statecache.WriteMode) (*statecache.Cache, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.caches[mode]; ok {
		return c, nil
	}
	f := s.flags
	var journal string
	if mode == statecache.WriteBehind {
		journal = f.journalDirOf()
	}
	c, err := statecache.NewCache(s.store, statecache.Config{
		MaxBytes: f.cacheMB << 20, Mode: mode, FlushInterval: f.flushEvery, IdleAfter: f.idleAfter, JournalDir: journal,
		MaxDirtyBytes: f.maxDirtyMB << 20, MaxDirtyAge: f.maxDirtyAge,
		Revalidate: f.revalidate && mode == statecache.WriteThrough,
		Keys:       s.keys,
		OnFlushError: func(k statecache.Key, err error) {
			slog.Warn("write-behind flush failed", "actor", k.String(), "err", err)
		},
	})
	if err != nil {
		return nil, err
	}
	for fn, d := range s.idle {
		c.SetIdleAfter(fn, d)
	}
	s.caches[mode] = c
	return c, nil
}

func (s *state) of(function string) *statecache.Cache {
	s.mu.Lock()
	defer s.mu.Unlock()
	mode, ok := s.modes[function]
	if !ok {
		// The first use pins the default: a mode set later for the function (an annotation seen
		// late) must not move it away from the cache that holds its state.
		mode = s.def
		s.modes[function] = mode
	}
	return s.caches[mode]
}

// modeOf is the write mode function runs with.
func (s *state) modeOf(function string) statecache.WriteMode {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.modeLocked(function)
}

func (s *state) modeLocked(function string) statecache.WriteMode {
	if mode, ok := s.modes[function]; ok {
		return mode
	}
	return s.def
}

func (s *state) Get(ctx context.Context, k statecache.Key) (statecache.Entry, error) {
	return s.of(k.Function).Get(ctx, k)
}

func (s *state) Put(ctx context.Context, k statecache.Key, v []byte, expect statecache.Version, c statecache.Commit) (statecache.Version, error) {
	return s.of(k.Function).Put(ctx, k, v, expect, c)
}

func (s *state) Delete(ctx context.Context, k statecache.Key, expect statecache.Version, c statecache.Commit) (statecache.Version, error) {
	return s.of(k.Function).Delete(ctx, k, expect, c)
}

// AddDue implements statecache.DueIndex through the function's cache, which knows its write
// mode (a write-behind cache orders index removals after its flushes).
func (s *state) AddDue(ctx context.Context, d statecache.Due) error {
	return s.of(d.Key.Function).AddDue(ctx, d)
}

// RemoveDue implements statecache.DueIndex through the function's cache.
func (s *state) RemoveDue(ctx context.Context, d statecache.Due) error {
	return s.of(d.Key.Function).RemoveDue(ctx, d)
}

// Join implements statecache.ChannelIndex through the function's cache.
func (s *state) Join(ctx context.Context, channel string, k statecache.Key) error {
	return s.of(k.Function).Join(ctx, channel, k)
}

// Leave implements statecache.ChannelIndex through the function's cache, which orders it after
// its flushes with write-behind.
func (s *state) Leave(ctx context.Context, channel string, k statecache.Key) error {
	return s.of(k.Function).Leave(ctx, channel, k)
}

// Members implements statecache.ChannelIndex with the store's index, which all caches share.
func (s *state) Members(ctx context.Context, channel string, after statecache.Key, limit int) ([]statecache.Key, error) {
	ix, ok := s.store.(statecache.ChannelIndex)
	if !ok {
		return nil, statecache.ErrNoChannelIndex
	}
	return ix.Members(ctx, channel, after, limit)
}

// ListDue implements statecache.DueIndex with the store's index, which all caches share.
func (s *state) ListDue(ctx context.Context, until time.Time, after statecache.Due, limit int) ([]statecache.Due, error) {
	ix, ok := s.store.(statecache.DueIndex)
	if !ok {
		return nil, statecache.ErrNoDueIndex
	}
	return ix.ListDue(ctx, until, after, limit)
}

// WarmIDs implements local.WarmActors.
func (s *state) WarmIDs(function string) []string { return s.of(function).WarmIDs(function) }

// Close flushes write-behind state and closes the store.
func (s *state) Close(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for _, c := range s.caches {
		errs = append(errs, c.Close(ctx))
	}
	return errors.Join(append(errs, s.closeStore())...)
}
