package main

import (
	"github.com/spf13/pflag"

	"github.com/knactor/knactor/router"
)

// registerTurnFlags registers the router's settings of a turn's durable write: how long a call
// waits for a store that does not answer, the idempotency keys each actor remembers, and how the
// scheduler finds and runs timers and outboxes. `knactor router` and `knactor up` share them; in
// Kubernetes mode config-knactor sets their defaults.
func registerTurnFlags(fs *pflag.FlagSet, cfg *router.Config) {
	fs.DurationVar(&cfg.StoreTimeout, "store-timeout", router.DefaultStoreTimeout,
		"how long one state read or write of a call waits for an unavailable store before 503 store_unavailable")
	fs.IntVar(&cfg.IdempotencyKeys, "idempotency-keys", router.DefaultIdempotencyKeys,
		"idempotency keys each actor remembers (newest first)")
	fs.DurationVar(&cfg.IdempotencyTTL, "idempotency-ttl", router.DefaultIdempotencyTTL,
		"how long an actor remembers an idempotency key")
	fs.IntVar(&cfg.IdempotencyBytes, "idempotency-bytes", router.DefaultIdempotencyBytes,
		"most bytes of remembered keys and replies per actor (oldest dropped first)")
	fs.DurationVar(&cfg.ScanInterval, "timer-scan-interval", router.DefaultScanInterval,
		"how often the router lists the store's due-time index for timers and effects it did not queue itself (after a restart, or as a new owner)")
	fs.IntVar(&cfg.TimerConcurrency, "timer-concurrency", router.DefaultTimerConcurrency,
		"actors whose due timers and effects the router runs at once")
}
