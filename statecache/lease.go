package statecache

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"syscall"
	"time"

	"k8s.io/utils/clock"
)

// Defaults of LeaseConfig. A holder renews five times per TTL, so two renewals may fail in a row
// (a store restart, a GC pause) without anyone taking over; a newcomer that sees a live holder
// renew refuses within one renewal interval, and a crashed holder on another host is replaced
// after one TTL (on the same host its dead pid is seen at once).
const (
	DefaultLeaseTTL   = 10 * time.Second
	DefaultLeaseRenew = DefaultLeaseTTL / 5
)

// maxLeaseRaces bounds how many times Acquire retries after losing a conditional write to another
// process that was acquiring at the same moment; past it the other process won.
const maxLeaseRaces = 5

// LeaseStore is where a lease lives: one small object with a version, written only by
// conditional writes. S3Store is one (the object {prefix}.lease).
type LeaseStore interface {
	// ReadLease returns the lease object's bytes and version; exists is false when there is none.
	ReadLease(ctx context.Context) (body []byte, v Version, exists bool, err error)
	// WriteLease replaces the lease object if its version is still expect (NoVersion: create it
	// only if absent) and returns the new version, or an error that wraps ErrConflict.
	WriteLease(ctx context.Context, body []byte, expect Version) (Version, error)
	// LeaseLocation names the lease's store for messages, e.g. s3://host/bucket/prefix.
	LeaseLocation() string
}

// LeaseHolder is what a lease says about the process that holds it: enough for an operator to
// find it, and for a process on the same host to tell whether it is still running.
type LeaseHolder struct {
	Host    string    `json:"host"`
	PID     int       `json:"pid"`
	Listen  string    `json:"listen,omitempty"`
	Started time.Time `json:"started"`
	// Renewed is the holder's clock when it last renewed; only for messages (clocks of two
	// hosts need not agree, so nobody decides on it).
	Renewed time.Time `json:"renewed"`
	// TTL is how long the holder may go without renewing before another process may take over.
	TTL time.Duration `json:"ttl"`
	// Token is random per acquisition and Seq counts renewals: together they make every write
	// distinct (S3 versions are content hashes) and let a holder recognise its own landed write
	// after an ambiguous failure.
	Token string `json:"token"`
	Seq   uint64 `json:"seq"`
	// Released is set by a holder that stopped cleanly: the next process takes over at once.
	Released bool `json:"released,omitempty"`
}

// String describes the holder for an operator.
func (h LeaseHolder) String() string {
	s := fmt.Sprintf("pid %d on host %q", h.PID, h.Host)
	if h.Listen != "" {
		s += ", serving " + h.Listen
	}
	if !h.Started.IsZero() {
		s += ", up since " + h.Started.UTC().Format(time.RFC3339)
	}
	return s
}

// LeaseHeldError is Acquire's answer when another live process holds the lease.
type LeaseHeldError struct {
	Location string
	Holder   LeaseHolder
}

func (e *LeaseHeldError) Error() string {
	return fmt.Sprintf("%s is in use by another knactor (%s): one knactor up may use a bucket and prefix at a time; "+
		"stop that one or choose another --s3-prefix (Kubernetes mode runs several routers on one bucket)", e.Location, e.Holder)
}

// ErrLeaseLost reports that another process took the lease over: this one must stop serving.
var ErrLeaseLost = errors.New("lease lost")

// LeaseLostError is Run's answer when the lease was taken over.
type LeaseLostError struct {
	Location string
	Holder   LeaseHolder // the new holder, when it could be read
}

func (e *LeaseLostError) Error() string {
	return fmt.Sprintf("%s: %v to another knactor (%s); stopping so that two processes never serve one store", e.Location, ErrLeaseLost, e.Holder)
}

// Is makes errors.Is(err, ErrLeaseLost) true.
func (e *LeaseLostError) Is(target error) bool { return target == ErrLeaseLost }

// LeaseConfig configures a lease.
type LeaseConfig struct {
	// Self describes this process (Host, PID, Listen, Started); the rest is filled in.
	Self LeaseHolder
	// TTL and Renew default to DefaultLeaseTTL and DefaultLeaseRenew; Renew must be under TTL/2.
	TTL, Renew time.Duration
	// Clock times the waits. Default the real clock.
	Clock clock.Clock
	// Alive reports whether the holder's process is known to be running; a holder on this host
	// whose pid is gone is replaced at once. Default: same host name and kill(pid, 0) succeeds.
	Alive func(LeaseHolder) bool
	// Log gets the waits and takeovers. Default slog.Default().
	Log *slog.Logger
}

func (c *LeaseConfig) setDefaults() error {
	if c.TTL == 0 {
		c.TTL = DefaultLeaseTTL
	}
	if c.Renew == 0 {
		c.Renew = c.TTL / 5
	}
	if c.Renew <= 0 || c.Renew*2 > c.TTL {
		return fmt.Errorf("lease: renew interval %v must be positive and at most half the TTL %v", c.Renew, c.TTL)
	}
	if c.Clock == nil {
		c.Clock = clock.RealClock{}
	}
	if c.Alive == nil {
		host := c.Self.Host
		c.Alive = func(h LeaseHolder) bool { return h.Host != host || processAlive(h.PID) }
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	return nil
}

// processAlive reports whether pid names a running process on this host (or one this process may
// not signal, which is running too).
func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// Lease is a held claim to be the only process serving a store location. It is owned by the
// goroutine that calls Run; Release is called after Run returns.
type Lease struct {
	store LeaseStore
	cfg   LeaseConfig
	self  LeaseHolder // the body last written (Seq counts up)
	ver   Version     // the version of that write
}

// AcquireLease takes the lease of store for this process. It creates an absent lease, takes over
// one that was released or whose holder is a dead process on this host, and otherwise watches
// the lease for one TTL: a holder that renews in that time is alive, and the answer is a
// *LeaseHeldError naming it; a lease nobody renewed is taken over. Every takeover is a
// conditional write of the version seen, so of two processes acquiring at once one wins.
func AcquireLease(ctx context.Context, store LeaseStore, cfg LeaseConfig) (*Lease, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	var tok [12]byte
	if _, err := rand.Read(tok[:]); err != nil {
		return nil, fmt.Errorf("lease: %w", err)
	}
	l := &Lease{store: store, cfg: cfg, self: cfg.Self}
	l.self.TTL, l.self.Token, l.self.Seq, l.self.Released = cfg.TTL, hex.EncodeToString(tok[:]), 0, false
	for race := 0; race < maxLeaseRaces; race++ {
		body, ver, exists, err := store.ReadLease(ctx)
		if err != nil {
			return nil, fmt.Errorf("lease of %s: %w", store.LeaseLocation(), err)
		}
		if exists {
			holder, ok := decodeLease(body)
			if !ok || (!holder.Released && cfg.Alive(holder)) {
				if ver, err = l.watch(ctx, holder, ok, ver); err != nil {
					return nil, err
				}
			}
			if ok && !holder.Released {
				cfg.Log.Warn("taking over the lease of a knactor that stopped without releasing it",
					"store", store.LeaseLocation(), "previous", holder.String())
			}
		}
		err = l.write(ctx, ver)
		if errors.Is(err, ErrConflict) {
			continue // another process wrote first: look again
		}
		if err != nil {
			return nil, fmt.Errorf("lease of %s: %w", store.LeaseLocation(), err)
		}
		return l, nil
	}
	return nil, fmt.Errorf("lease of %s: lost %d races to other processes acquiring it", store.LeaseLocation(), maxLeaseRaces)
}

// watch waits up to one TTL (the holder's or ours, the longer) for the lease at version ver to
// change. A change means a live holder (*LeaseHeldError) unless the new write released it; no
// change means nobody renews it, and watch returns the version to take over.
func (l *Lease) watch(ctx context.Context, holder LeaseHolder, known bool, ver Version) (Version, error) {
	wait := l.cfg.TTL
	if known && holder.TTL > wait {
		wait = holder.TTL
	}
	l.cfg.Log.Info("the store's lease is held; waiting to see whether its holder renews it",
		"store", l.store.LeaseLocation(), "holder", holder.String(), "wait", wait)
	deadline := l.cfg.Clock.Now().Add(wait)
	for {
		left := deadline.Sub(l.cfg.Clock.Now())
		if left <= 0 {
			return ver, nil
		}
		t := l.cfg.Clock.NewTimer(min(left, l.cfg.Renew/2))
		select {
		case <-ctx.Done():
			t.Stop()
			return ver, ctx.Err()
		case <-t.C():
		}
		body, now, exists, err := l.store.ReadLease(ctx)
		if err != nil {
			continue // a read that fails proves nothing; the takeover is conditional anyway
		}
		if !exists {
			return NoVersion, nil
		}
		if now == ver {
			continue
		}
		h, ok := decodeLease(body)
		if ok && h.Released {
			return now, nil
		}
		return "", &LeaseHeldError{Location: l.store.LeaseLocation(), Holder: h}
	}
}

// write writes l.self with the next sequence number over version expect.
func (l *Lease) write(ctx context.Context, expect Version) error {
	next := l.self
	next.Seq++
	next.Renewed = l.cfg.Clock.Now()
	body, err := json.Marshal(next)
	if err != nil {
		return err
	}
	v, err := l.store.WriteLease(ctx, body, expect)
	if errors.Is(err, ErrConflict) {
		// An earlier try whose answer was lost may have landed: then the lease holds this write.
		if cur, cv, exists, rerr := l.store.ReadLease(ctx); rerr == nil && exists {
			if h, ok := decodeLease(cur); ok && h.Token == next.Token && h.Seq == next.Seq {
				v, err = cv, nil
			}
		}
	}
	if err != nil {
		return err
	}
	l.self, l.ver = next, v
	return nil
}

// Run renews the lease every Renew until ctx ends (nil) or another process took it over
// (*LeaseLostError). A store that cannot be reached is retried at the next renewal: the holder
// keeps serving, and since a takeover waits for a whole TTL without renewals and then writes
// conditionally, the next renewal that reaches the store finds out whether it was taken.
func (l *Lease) Run(ctx context.Context) error {
	failing := 0
	for {
		t := l.cfg.Clock.NewTimer(l.cfg.Renew)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C():
		}
		err := l.write(ctx, l.ver)
		switch {
		case err == nil:
			if failing > 0 {
				l.cfg.Log.Info("lease renewed again", "store", l.store.LeaseLocation(), "failed renewals", failing)
			}
			failing = 0
		case errors.Is(err, ErrConflict):
			lost := &LeaseLostError{Location: l.store.LeaseLocation()}
			if body, _, exists, rerr := l.store.ReadLease(ctx); rerr == nil && exists {
				lost.Holder, _ = decodeLease(body)
			}
			return lost
		case ctx.Err() != nil:
			return nil
		default:
			failing++
			l.cfg.Log.Warn("could not renew the store's lease; retrying", "store", l.store.LeaseLocation(), "err", err, "failed renewals", failing)
		}
	}
}

// Release marks the lease released, so the next process takes over without waiting. It does
// nothing if the lease was taken over meanwhile.
func (l *Lease) Release(ctx context.Context) error {
	l.self.Released = true
	err := l.write(ctx, l.ver)
	if errors.Is(err, ErrConflict) {
		return nil
	}
	return err
}

// Holder returns what the lease says about this process.
func (l *Lease) Holder() LeaseHolder { return l.self }

func decodeLease(body []byte) (LeaseHolder, bool) {
	var h LeaseHolder
	if err := json.Unmarshal(body, &h); err != nil || h.Token == "" {
		return LeaseHolder{}, false
	}
	return h, true
}

// LeaseSelf describes this process for a lease: the host name, the pid, the address it serves
// and the time it started.
func LeaseSelf(listen string, started time.Time) LeaseHolder {
	host, _ := os.Hostname()
	return LeaseHolder{Host: host, PID: os.Getpid(), Listen: listen, Started: started}
}
