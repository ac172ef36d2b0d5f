package router

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/knactor/knactor/statecache"
	"github.com/valyala/fasthttp"
)

// Back-off between tries of a state read or write that found the store unavailable: quick
// enough to catch a store that comes back from a restart, slow enough not to hammer one that is
// down. The store's own client retries within each try as well.
const (
	storeRetryBackoff    = 50 * time.Millisecond
	storeRetryBackoffMax = time.Second
)

// storeCtx bounds one state read or write by Config.StoreTimeout (or a whole call by its
// timeout) without paying for a timer when nothing waits: the deadline's timer starts only when
// something waits on the context (Done or Err), which on a cache-hit turn nothing does. stop
// releases it.
type storeCtx struct {
	context.Context // the call's
	deadline        time.Time

	once   sync.Once // starts inner
	inner  context.Context
	cancel context.CancelFunc
}

func (r *Router) newStoreCtx(ctx context.Context) *storeCtx {
	deadline := time.Now().Add(r.cfg.StoreTimeout)
	if c, ok := ctx.(*callCtx); ok {
		if s := c.spare(); s != nil {
			s.Context, s.deadline = ctx, deadline
			return s
		}
	}
	return &storeCtx{Context: ctx, deadline: deadline}
}

// callCtx is a call's deadline (its storeCtx) that carries two more storeCtx values for the
// turn's state read and write, so that a turn allocates one context instead of three. Each
// spare is handed out once (a turn that tries again allocates for its later attempts), so a
// context is never reused after stop. It also holds the room of the turn's envelope metadata and
// of its answer, which live as long as the call: one allocation for all of them.
type callCtx struct {
	storeCtx
	spares [2]storeCtx
	used   atomic.Int32 // spares handed out

	meta   [callMetaRoom]metaPair // turnMetadata's room; owned by invoke's goroutine
	result turnResult             // the turn's answer (invoke returns its address)
}

// callMetaRoom is the envelope metadata a call holds without allocating: the router's two keys
// (request id, attempt), an idempotency key, the three keys of a trace context and two of the
// caller's. A call with more allocates its metadata.
const callMetaRoom = 8

// spare returns an unused storeCtx of c, or nil when both were handed out.
func (c *callCtx) spare() *storeCtx {
	if n := c.used.Add(1); n <= int32(len(c.spares)) {
		return &c.spares[n-1]
	}
	return nil
}

func (c *storeCtx) start() {
	c.once.Do(func() { c.inner, c.cancel = context.WithDeadline(c.Context, c.deadline) })
}

// Deadline is the earlier of the call's deadline and the store's.
func (c *storeCtx) Deadline() (time.Time, bool) {
	if d, ok := c.Context.Deadline(); ok && d.Before(c.deadline) {
		return d, true
	}
	return c.deadline, true
}

// Done is closed at the deadline or when the call is cancelled.
func (c *storeCtx) Done() <-chan struct{} {
	c.start()
	return c.inner.Done()
}

// Err says why Done is closed.
func (c *storeCtx) Err() error {
	c.start()
	return c.inner.Err()
}

// stop releases the timer, if one was started. A stopped storeCtx is done (Canceled).
func (c *storeCtx) stop() {
	c.once.Do(func() { c.inner = stoppedCtx }) // no timer starts after stop
	if c.cancel != nil {
		c.cancel()
	}
}

// stoppedCtx is the inner context of a storeCtx stopped before anything waited on it.
var stoppedCtx = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

// withStore runs one state read or write, trying again while the store is unavailable, for up
// to Config.StoreTimeout (and never past ctx). A write is retried with its commit unchanged, so
// a try that landed although its answer was lost is recognised, not applied twice. When the
// store stays away, the caller gets 503 store_unavailable with Retry-After. The first try is
// made by the caller (the hot path allocates nothing here); err is its error.
func (r *Router) withStore(sctx *storeCtx, function, op string, err error, do func(context.Context) error) error {
	backoff := storeRetryBackoff
	for {
		if err == nil {
			if r.storeDown.Load() {
				r.storeDown.Store(false)
			}
			return nil
		}
		if !errors.Is(err, statecache.ErrUnavailable) {
			return storeError(err, r.cfg.StoreTimeout)
		}
		r.storeDown.Store(true)
		if sctx.Err() != nil {
			return storeError(err, r.cfg.StoreTimeout)
		}
		r.metrics.storeRetry(function, op)
		select {
		case <-r.clock.After(backoff):
		case <-sctx.Done():
			return storeError(err, r.cfg.StoreTimeout)
		}
		backoff = min(2*backoff, storeRetryBackoffMax)
		err = do(sctx)
	}
}

// acquireTurn waits for the actor's mailbox. While the store is down, calls queued behind a
// turn that waits on it would each wait their whole deadline: then the wait is bounded by
// StoreTimeout too, and answers 503 store_unavailable, as the turn ahead will.
func (r *Router) acquireTurn(ctx context.Context, key string, timeout time.Duration) (Turn, error) {
	wctx := ctx
	if r.storeDown.Load() {
		var cancel context.CancelFunc
		wctx, cancel = context.WithTimeout(ctx, r.cfg.StoreTimeout)
		defer cancel()
	}
	turn, err := r.mailboxes.Acquire(wctx, key)
	switch {
	case err == nil:
		return turn, nil
	case err == errQueueFull:
		r.metrics.refusal(refusedActorQueue)
	case err == errTooManyWaiting:
		r.metrics.refusal(refusedWaiting)
	case ctx.Err() == nil && wctx.Err() != nil:
		return Turn{}, errorf(fasthttp.StatusServiceUnavailable, CodeStoreUnavailable, "state store unavailable: waited %v for the actor's turn behind calls waiting on the store", r.cfg.StoreTimeout)
	case errors.Is(err, context.DeadlineExceeded):
		return Turn{}, errorf(fasthttp.StatusGatewayTimeout, CodeFunctionTimeout, "timed out after %v waiting for the actor's turn", timeout)
	}
	return Turn{}, err
}

// storeError maps a state store failure to the caller's error: 503 while the store is
// unavailable (the client may retry; with an idempotency key the retry is safe even when the
// write landed), 503 when the stored state is sealed with an encryption key the router lacks
// or does not decrypt, 504 when the call's own deadline ran out.
func storeError(err error, waited time.Duration) error {
	var ae *apiError
	switch {
	case errors.As(err, &ae):
		return err
	case errors.Is(err, statecache.ErrUnavailable):
		return errorf(fasthttp.StatusServiceUnavailable, CodeStoreUnavailable, "state store unavailable (waited up to %v): %v", waited, err)
	case errors.Is(err, statecache.ErrKeyMissing):
		return errorf(fasthttp.StatusServiceUnavailable, CodeEncryptionKeyMissing, "%v", err)
	case errors.Is(err, statecache.ErrSealBroken):
		return errorf(fasthttp.StatusServiceUnavailable, CodeStateUnreadable, "%v", err)
	case errors.Is(err, context.DeadlineExceeded):
		return errorf(fasthttp.StatusGatewayTimeout, CodeFunctionTimeout, "timed out reading or writing the actor's state")
	}
	return err
}
