package router

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/knactor/knactor/router/record"
	"github.com/knactor/knactor/statecache"
	"github.com/valyala/fasthttp"
)

// timerKeyPrefix starts the idempotency key a timer's turn carries in its metadata
// ("timer:{name}:{due, Unix ms}"); callers may not use it, like effect keys.
const timerKeyPrefix = "timer:"

// firing is the timer a call fires: set on calls the scheduler makes, nil on all others.
type firing struct {
	name  string
	due   time.Time // the due time it fires for, from the actor's record
	fired time.Time // when this attempt of its turn started
	// skip consumes the firing without running the function: the timer's turn kept failing.
	skip bool
}

// errNotDue reports a timer that is no longer due when its turn begins: cancelled, set to a
// later time, or fired already by an earlier attempt whose answer was lost. Nothing runs.
var errNotDue = errors.New("timer is not due")

// key is the idempotency key of this firing: the same on every re-fire of one due time.
func (f *firing) key() string {
	return timerKeyPrefix + f.name + ":" + strconv.FormatInt(f.due.UnixMilli(), 10)
}

// load finds the timer in the actor's record, inside the turn: the call runs its action with its
// payload, for its current due time, or not at all when it is not due at now.
func (f *firing) load(call *actorCall, rec *record.Record, now time.Time) error {
	t, ok := rec.Timer(f.name)
	if !ok || t.Due.After(now) {
		return errNotDue
	}
	f.due, f.fired = t.Due, now
	call.action, call.payload = t.Action, t.Payload
	return nil
}

// nextTick is when a repeating timer due at due is due again, seen at now: the first tick after
// now. After downtime the missed ticks are not made up: the timer fires once for them all.
func nextTick(due time.Time, every time.Duration, now time.Time) time.Time {
	next := due.Add(every)
	if !next.After(now) {
		missed := now.Sub(due) / every
		next = due.Add((missed + 1) * every)
	}
	return next
}

// schedule applies a turn's changes to the actor's timers and subscriptions to next: the fired
// timer is consumed (a one-shot is removed, a repeating one moves to its next tick), a deleted
// actor loses its timers and channels, then the answer's sets and cancels apply in order. It
// reports whether anything changed.
func (r *Router) schedule(next *record.Record, call *actorCall, out *outcome, now time.Time) (bool, error) {
	changed := false
	if f := call.timer; f != nil {
		if t, ok := next.Timer(f.name); ok && t.Due.Equal(f.due) {
			if t.Every > 0 {
				t.Due = nextTick(t.Due, t.Every, now)
				next.SetTimer(t)
			} else {
				next.CancelTimer(f.name)
			}
			changed = true
		}
	}
	if out.delete {
		for _, t := range next.Timers() {
			changed = next.CancelTimer(t.Name) || changed
		}
		for _, c := range next.Channels() {
			changed = next.Unsubscribe(c) || changed
		}
	}
	for i := range out.timers {
		op := &out.timers[i]
		if op.Cancel {
			changed = next.CancelTimer(op.Name) || changed
			continue
		}
		t, err := op.timer(now)
		if err != nil {
			return false, badReply("%v", err)
		}
		next.SetTimer(t)
		changed = true
	}
	if n := len(next.Timers()); n > MaxTimers {
		return false, badReply("the actor would have %d timers, over the limit of %d", n, MaxTimers)
	}
	return changed, nil
}

// commitOnly consumes a timer's firing without running its function (see firing.skip).
func (r *Router) commitOnly(ctx context.Context, call *actorCall, cur statecache.Entry, rec record.Record,
	commits *turnCommits, attempt int) (*turnResult, error) {
	out := outcome{}
	version, _, _, err := r.commit(ctx, call, cur, rec, &out, commits, attempt, record.Digest{})
	if err != nil {
		return nil, err
	}
	return &turnResult{version: version}, nil
}

// Retries of a timer whose turn fails: a failure that may pass (store, capacity, an unreachable
// pod) is retried until it passes, so a timer fires late but fires; a function that fails
// (502, 504) is retried maxTimerAttempts times, then that firing is skipped and logged, as
// Durable Objects do with alarms.
const (
	timerRetryBackoff    = time.Second
	timerRetryBackoffMax = time.Minute
	maxTimerAttempts     = 6
	// orphanRetry spaces the tries of a timer whose function is not deployed (any more): it
	// fires once the function is back.
	orphanRetry = 30 * time.Second
)

// timerTries counts the failed tries of one firing: all of them (they space the retries) and
// those where the function itself failed (they decide when the firing is skipped).
type timerTries struct{ tries, failures int }

// fireTimer runs the actor's timer called name, if it is due, as a turn of the actor, and
// counts a failure in tries. It returns when to try again (zero: done).
func (r *Router) fireTimer(key statecache.Key, name string, tries *timerTries) (retryAt time.Time) {
	fn, ok := r.backends.Function(key.Function)
	if !ok {
		r.log.Warn("timer not fired: its function is not deployed", "function", key.Function, "actor", key.ID, "timer", name)
		r.metrics.timer(key.Function, "orphaned")
		return r.clock.Now().Add(orphanRetry)
	}
	f := &firing{name: name, skip: tries.failures >= maxTimerAttempts}
	// forwarded: the scheduler runs only actors this router owns; the turn runs here.
	call := &actorCall{fn: fn, key: key, requestID: r.newRequestID(), timer: f, forwarded: true}
	ctx, span := r.startRoot(context.Background(), spanTimer, attrFunction.String(key.Function),
		attrActor.String(key.ID), attrTimer.String(name), attrRequestID.String(call.requestID))
	_, err := r.run(ctx, call)
	endTimer(span, err)
	var ae *apiError
	switch {
	case errors.Is(err, errNotDue):
		return time.Time{}
	case err == nil && f.skip:
		r.log.Error("timer firing skipped: its turn kept failing",
			call.logArgs("timer", name, "due", f.due, "failures", tries.failures)...)
		r.metrics.timer(key.Function, "skipped")
		return time.Time{}
	case err == nil:
		r.metrics.timer(key.Function, "fired")
		return time.Time{}
	case errors.As(err, &ae) && ae.status >= fasthttp.StatusBadRequest && ae.status < fasthttp.StatusInternalServerError && ae.status != fasthttp.StatusTooManyRequests:
		// The function's own error answer: the firing was consumed with it.
		r.log.Info("timer's turn answered an error", call.logArgs("timer", name, "err", err)...)
		r.metrics.timer(key.Function, "refused")
		return time.Time{}
	}
	tries.tries++
	if ae != nil && (ae.status == fasthttp.StatusBadGateway || ae.code == CodeFunctionTimeout) {
		tries.failures++
	}
	backoff := min(timerRetryBackoff<<min(tries.tries-1, 16), timerRetryBackoffMax)
	r.log.Warn("timer's turn failed; retrying",
		call.logArgs("timer", name, "tries", tries.tries, "retry_in", backoff, "err", err)...)
	r.metrics.timer(key.Function, "retry")
	return r.clock.Now().Add(backoff)
}
