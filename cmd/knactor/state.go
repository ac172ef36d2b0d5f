package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/pflag"

	"github.com/knactor/knactor/statecache"
)

// Environment variables that carry secrets. Secrets never come from flags (they would show in
// process listings and shell history) and are never logged.
const (
	envS3AccessKey    = "KNACTOR_S3_ACCESS_KEY"
	envS3SecretKey    = "KNACTOR_S3_SECRET_KEY"
	envS3SessionToken = "KNACTOR_S3_SESSION_TOKEN"
	envAuthTokens     = "KNACTOR_AUTH_TOKENS" // comma-separated bearer tokens of the public API
)

// stateFlags select and configure the state store and its cache.
type stateFlags struct {
	dir        string
	s3         statecache.S3Config
	writeMode  string
	cacheMB    int
	idleAfter  time.Duration
	flushEvery time.Duration
}

func (f *stateFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.dir, "state-dir", defaultStateDir(), "directory of the local state store (used unless --s3-endpoint is set)")
	fs.StringVar(&f.s3.Endpoint, "s3-endpoint", "", "S3/MinIO endpoint host:port; credentials from $"+envS3AccessKey+" and $"+envS3SecretKey)
	fs.StringVar(&f.s3.Bucket, "s3-bucket", "knactor", "S3 bucket that holds actor state")
	fs.StringVar(&f.s3.Prefix, "s3-prefix", "", "object name prefix inside the bucket, ending in '/'")
	fs.StringVar(&f.s3.Region, "s3-region", "", "S3 region (empty: discover)")
	fs.BoolVar(&f.s3.TLS, "s3-tls", false, "use https for S3")
	fs.BoolVar(&f.s3.CreateBucket, "s3-create-bucket", false, "create the bucket if it does not exist")
	fs.StringVar(&f.writeMode, "write-mode", "write-through", "write-through (reply after the write is durable) or write-behind (coalesced, flushed every --flush-interval)")
	fs.IntVar(&f.cacheMB, "cache-mb", statecache.DefaultMaxBytes>>20, "memory for cached state, MiB")
	fs.DurationVar(&f.idleAfter, "passivate-after", 10*time.Minute, "drop an actor's state from memory after this long unused (0: never)")
	fs.DurationVar(&f.flushEvery, "flush-interval", statecache.DefaultFlushInterval, "write-behind flush interval")
}

func defaultStateDir() string {
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "knactor", "state")
	}
	return filepath.Join(os.TempDir(), "knactor-state")
}

// openState opens the store and the cache in front of it. close flushes and releases both.
func (f *stateFlags) openState(ctx context.Context) (cache *statecache.Cache, describe string, close func(context.Context) error, err error) {
	mode, err := statecache.ParseWriteMode(f.writeMode)
	if err != nil {
		return nil, "", nil, err
	}
	var store statecache.Store
	closeStore := func() error { return nil }
	if f.s3.Endpoint != "" {
		f.s3.AccessKey, f.s3.SecretKey = os.Getenv(envS3AccessKey), os.Getenv(envS3SecretKey)
		f.s3.SessionToken = os.Getenv(envS3SessionToken)
		if f.s3.AccessKey == "" || f.s3.SecretKey == "" {
			return nil, "", nil, fmt.Errorf("--s3-endpoint needs credentials in $%s and $%s", envS3AccessKey, envS3SecretKey)
		}
		s, err := statecache.OpenS3Store(ctx, f.s3)
		if err != nil {
			return nil, "", nil, err
		}
		store, describe = s, fmt.Sprintf("s3://%s/%s%s", f.s3.Endpoint, f.s3.Bucket, "/"+f.s3.Prefix)
	} else {
		s, err := statecache.OpenDirStore(f.dir)
		if err != nil {
			return nil, "", nil, err
		}
		store, describe, closeStore = s, f.dir, s.Close
	}
	cache, err = statecache.NewCache(store, statecache.Config{
		MaxBytes: f.cacheMB << 20, Mode: mode, FlushInterval: f.flushEvery, IdleAfter: f.idleAfter,
		OnFlushError: func(k statecache.Key, err error) {
			slog.Warn("write-behind flush failed", "actor", k.String(), "err", err)
		},
	})
	if err != nil {
		_ = closeStore()
		return nil, "", nil, err
	}
	return cache, describe + " (" + mode.String() + ")", func(ctx context.Context) error {
		return errors.Join(cache.Close(ctx), closeStore())
	}, nil
}
