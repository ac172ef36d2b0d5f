package statecache_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/knactor/knactor/statecache"
	"github.com/knactor/knactor/test/miniotest"
)

// memLease is an in-memory LeaseStore: one versioned object, conditional writes. failNext makes
// the next write land but answer an error, as a lost answer does.
type memLease struct {
	mu       sync.Mutex
	body     []byte
	ver      int
	failNext bool
}

func (m *memLease) LeaseLocation() string { return "mem://lease" }

func (m *memLease) ReadLease(context.Context) ([]byte, statecache.Version, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ver == 0 {
		return nil, statecache.NoVersion, false, nil
	}
	return append([]byte(nil), m.body...), statecache.Version(fmt.Sprint(m.ver)), true, nil
}

func (m *memLease) WriteLease(_ context.Context, body []byte, expect statecache.Version) (statecache.Version, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	cur := statecache.NoVersion
	if m.ver != 0 {
		cur = statecache.Version(fmt.Sprint(m.ver))
	}
	if cur != expect {
		return statecache.NoVersion, fmt.Errorf("mem lease: %w", statecache.ErrConflict)
	}
	m.body, m.ver = append([]byte(nil), body...), m.ver+1
	if m.failNext {
		m.failNext = false
		return statecache.NoVersion, errors.New("connection reset after the request was sent")
	}
	return statecache.Version(fmt.Sprint(m.ver)), nil
}

func holder(t *testing.T, m statecache.LeaseStore) statecache.LeaseHolder {
	t.Helper()
	body, _, ok, err := m.ReadLease(bg)
	if err != nil || !ok {
		t.Fatalf("read lease: exists %v, %v", ok, err)
	}
	var h statecache.LeaseHolder
	if err := json.Unmarshal(body, &h); err != nil {
		t.Fatal(err)
	}
	return h
}

// leaseConfig is a lease of process pid on host "a" with the default timings on clk; alive
// says whether the other holders' processes run.
func leaseConfig(clk *clocktesting.FakeClock, pid int, alive bool) statecache.LeaseConfig {
	return statecache.LeaseConfig{
		Self:  statecache.LeaseHolder{Host: "a", PID: pid, Listen: fmt.Sprintf("127.0.0.1:%d", 8000+pid)},
		Clock: clk,
		Alive: func(statecache.LeaseHolder) bool { return alive },
	}
}

// acquireAsync runs AcquireLease on its own goroutine.
func acquireAsync(store statecache.LeaseStore, cfg statecache.LeaseConfig) <-chan acquired {
	ch := make(chan acquired, 1)
	go func() {
		l, err := statecache.AcquireLease(bg, store, cfg)
		ch <- acquired{l, err}
	}()
	return ch
}

type acquired struct {
	l   *statecache.Lease
	err error
}

// stepUntil steps clk by step until done delivers, failing after 100 steps.
func stepUntil[T any](t *testing.T, clk *clocktesting.FakeClock, step time.Duration, done <-chan T) T {
	t.Helper()
	for i := 0; i < 100; i++ {
		deadline := time.Now().Add(5 * time.Second)
		for !clk.HasWaiters() {
			select {
			case v := <-done:
				return v
			default:
			}
			if time.Now().After(deadline) {
				t.Fatal("nothing waits on the clock and nothing finished")
			}
			time.Sleep(time.Millisecond)
		}
		select {
		case v := <-done:
			return v
		default:
		}
		clk.Step(step)
	}
	t.Fatal("not done after 100 clock steps")
	var zero T
	return zero
}

func TestAcquireLease(t *testing.T) {
	tests := []struct {
		name string
		// before prepares the store: it may hold a lease of pid 1.
		before func(t *testing.T, m *memLease, clk *clocktesting.FakeClock) (renew func())
		alive  bool
		// wantHeld: the newcomer (pid 2) is refused naming pid 1; otherwise it holds the lease.
		wantHeld bool
		// wantWait: the newcomer took over only after a TTL on the clock.
		wantWait bool
	}{
		{name: "no lease yet", before: func(*testing.T, *memLease, *clocktesting.FakeClock) func() { return nil }},
		{name: "released by a holder that stopped", alive: true, before: func(t *testing.T, m *memLease, clk *clocktesting.FakeClock) func() {
			l, err := statecache.AcquireLease(bg, m, leaseConfig(clk, 1, true))
			if err != nil {
				t.Fatal(err)
			}
			if err := l.Release(bg); err != nil {
				t.Fatal(err)
			}
			return nil
		}},
		{name: "holder's process is gone", alive: false, before: func(t *testing.T, m *memLease, clk *clocktesting.FakeClock) func() {
			if _, err := statecache.AcquireLease(bg, m, leaseConfig(clk, 1, true)); err != nil {
				t.Fatal(err)
			}
			return nil
		}},
		{name: "holder alive and renewing", alive: true, wantHeld: true, before: func(t *testing.T, m *memLease, clk *clocktesting.FakeClock) func() {
			l, err := statecache.AcquireLease(bg, m, leaseConfig(clk, 1, true))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(bg)
			done := make(chan error, 1)
			go func() { done <- l.Run(ctx) }()
			return func() { cancel(); <-done }
		}},
		{name: "holder stopped renewing", alive: true, wantWait: true, before: func(t *testing.T, m *memLease, clk *clocktesting.FakeClock) func() {
			if _, err := statecache.AcquireLease(bg, m, leaseConfig(clk, 1, true)); err != nil {
				t.Fatal(err)
			}
			return nil
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clk := clocktesting.NewFakeClock(time.Unix(1e9, 0))
			m := &memLease{}
			if stop := tc.before(t, m, clk); stop != nil {
				defer stop()
			}
			start := clk.Now()
			got := stepUntil(t, clk, statecache.DefaultLeaseRenew/4, acquireAsync(m, leaseConfig(clk, 2, tc.alive)))
			if tc.wantHeld {
				var held *statecache.LeaseHeldError
				if !errors.As(got.err, &held) || held.Holder.PID != 1 {
					t.Fatalf("AcquireLease = %v, want a LeaseHeldError naming pid 1", got.err)
				}
				if waited := clk.Since(start); waited > statecache.DefaultLeaseRenew*2 {
					t.Errorf("refused after %v; a renewing holder shows itself within a renewal (%v)", waited, statecache.DefaultLeaseRenew)
				}
				return
			}
			if got.err != nil {
				t.Fatalf("AcquireLease: %v", got.err)
			}
			if h := holder(t, m); h.PID != 2 || h.Released {
				t.Fatalf("lease names %+v, want pid 2 holding it", h)
			}
			waited := clk.Since(start)
			if tc.wantWait && waited < statecache.DefaultLeaseTTL {
				t.Errorf("took over after %v, before a whole TTL (%v) without renewals", waited, statecache.DefaultLeaseTTL)
			}
			if !tc.wantWait && waited != 0 {
				t.Errorf("waited %v to take over a lease nobody holds", waited)
			}
		})
	}
}

func TestLeaseRunReportsATakeover(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Unix(1e9, 0))
	m := &memLease{}
	l, err := statecache.AcquireLease(bg, m, leaseConfig(clk, 1, true))
	if err != nil {
		t.Fatal(err)
	}
	// A renewal whose answer is lost still counts: the next one builds on it.
	m.failNext = true
	done := make(chan error, 1)
	go func() { done <- l.Run(bg) }()
	for i := 0; i < 3; i++ {
		for !clk.HasWaiters() {
			time.Sleep(time.Millisecond)
		}
		clk.Step(statecache.DefaultLeaseRenew)
	}
	for !clk.HasWaiters() {
		time.Sleep(time.Millisecond)
	}
	if h := holder(t, m); h.PID != 1 || h.Seq < 3 {
		t.Fatalf("after 3 renewals (one answered with an error) the lease is %+v", h)
	}
	// Another process writes over it (as one that saw no renewals for a TTL would).
	_, v, _, _ := m.ReadLease(bg)
	if _, err := m.WriteLease(bg, []byte(`{"host":"b","pid":7,"token":"x","seq":1}`), v); err != nil {
		t.Fatal(err)
	}
	clk.Step(statecache.DefaultLeaseRenew)
	err = <-done
	var lost *statecache.LeaseLostError
	if !errors.As(err, &lost) || !errors.Is(err, statecache.ErrLeaseLost) || lost.Holder.PID != 7 {
		t.Fatalf("Run = %v, want a LeaseLostError naming pid 7", err)
	}
	if err := l.Release(bg); err != nil {
		t.Fatalf("Release after a takeover: %v", err)
	}
	if h := holder(t, m); h.PID != 7 || h.Released {
		t.Fatalf("Release of a lost lease changed it: %+v", h)
	}
}

// On a real MinIO: one holder at a time, a refusal that names the holder, a takeover after a
// crash (no renewals for a TTL) and at once after a release.
func TestS3LeaseOnMinIO(t *testing.T) {
	srv := miniotest.Start(t)
	store, err := statecache.OpenS3Store(bg, s3Config(srv, "lease/"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := func(pid int) statecache.LeaseConfig {
		return statecache.LeaseConfig{
			Self: statecache.LeaseHolder{Host: "h", PID: pid}, TTL: time.Second, Renew: 100 * time.Millisecond,
			Alive: func(statecache.LeaseHolder) bool { return true },
		}
	}
	first, err := statecache.AcquireLease(bg, store, cfg(1))
	if err != nil {
		t.Fatal(err)
	}
	ctx, crash := context.WithCancel(bg)
	ran := make(chan error, 1)
	go func() { ran <- first.Run(ctx) }()

	_, err = statecache.AcquireLease(bg, store, cfg(2))
	var held *statecache.LeaseHeldError
	if !errors.As(err, &held) || held.Holder.PID != 1 {
		t.Fatalf("second AcquireLease = %v, want LeaseHeldError naming pid 1", err)
	}
	t.Logf("refused: %v", err)

	crash() // the holder stops renewing, without releasing
	if err := <-ran; err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	second, err := statecache.AcquireLease(bg, store, cfg(2))
	if err != nil {
		t.Fatalf("takeover after the holder stopped renewing: %v", err)
	}
	if waited := time.Since(start); waited < time.Second {
		t.Errorf("took over after %v, before a TTL (1 s) without renewals", waited)
	}
	// The first holder comes back: its next renewal finds the lease taken.
	go func() { ran <- first.Run(bg) }()
	if err := <-ran; !errors.Is(err, statecache.ErrLeaseLost) {
		t.Fatalf("the first holder's Run after a takeover = %v, want ErrLeaseLost", err)
	}
	if err := second.Release(bg); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	if _, err := statecache.AcquireLease(bg, store, cfg(3)); err != nil {
		t.Fatal(err)
	}
	if waited := time.Since(start); waited > 500*time.Millisecond {
		t.Errorf("a released lease took %v to acquire", waited)
	}
}
