package router

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/knactor/knactor/router/routing"
	"github.com/knactor/knactor/sdk"
	"github.com/knactor/knactor/statecache"
	"github.com/knactor/knactor/test/proctest"
)

// alarmState counts the firings an alarm actor saw.
type alarmState struct {
	Rings int      `json:"rings"`
	Dues  []string `json:"dues,omitempty"`
}

// alarm is a function with durable timers: arm sets a one-shot, every sets a repeating one,
// cancel cancels, ring is what the timers run. gate, when set, holds the "hold" action until
// closed.
type alarm struct {
	*sdk.Actor[alarmState]
	rings atomic.Int64
	gate  chan struct{}
	held  chan struct{}
}

func newAlarm() *alarm {
	a := &alarm{Actor: sdk.NewActor[alarmState](), gate: make(chan struct{}), held: make(chan struct{}, 1)}
	type setP struct {
		In    int64 `json:"in_ms"`
		Every int64 `json:"every_ms"`
	}
	sdk.Handle(a.Actor, "arm", func(_ context.Context, t *sdk.Turn[alarmState], p setP) (int, error) {
		t.SetTimer(sdk.Timer{Name: "t", Action: "ring", In: time.Duration(p.In) * time.Millisecond,
			Every: time.Duration(p.Every) * time.Millisecond, Payload: map[string]int{"n": 1}})
		return len(t.Timers()), nil
	})
	sdk.Handle(a.Actor, "cancel", func(_ context.Context, t *sdk.Turn[alarmState], _ struct{}) (int, error) {
		t.CancelTimer("t")
		return 0, nil
	})
	sdk.Handle(a.Actor, "hold-then-cancel", func(_ context.Context, t *sdk.Turn[alarmState], _ struct{}) (int, error) {
		a.held <- struct{}{}
		<-a.gate
		t.CancelTimer("t")
		return 0, nil
	})
	sdk.Handle(a.Actor, "ring", func(_ context.Context, t *sdk.Turn[alarmState], p struct {
		N int `json:"n"`
	}) (int, error) {
		name, due, ok := t.FiredTimer()
		if !ok || name != "t" || p.N != 1 || t.Metadata["idempotency_key"] != fmt.Sprintf("timer:t:%d", due.UnixMilli()) {
			return 0, sdk.Errorf(400, "bad_firing", "metadata %v payload %v", t.Metadata, p)
		}
		a.rings.Add(1)
		t.State.Rings++
		t.State.Dues = append(t.State.Dues, due.UTC().Format(time.RFC3339Nano))
		return t.State.Rings, nil
	})
	return a
}

var alarmFn = routing.Function{Name: "alarm"}

// timerHarness is a router with a fake clock over the local store.
func timerHarness(t *testing.T, store statecache.Store, clk *clocktesting.FakeClock) *harness {
	t.Helper()
	// Every step of the fake clock passes a listing of the index.
	return newHarnessOn(t, Config{ScanInterval: time.Millisecond}, store, func(o *Options) { o.Clock = clk })
}

// settle steps the fake clock by d and waits until the scheduler has listed the index as of the
// new time, has nothing due and nothing running: what was due by then has run.
func settle(t *testing.T, h *harness, clk *clocktesting.FakeClock, d time.Duration) {
	t.Helper()
	s := h.r.sched
	clk.Step(d)
	now := clk.Now().UnixNano()
	proctest.Eventually(t, "the scheduler settles", func() bool {
		if s.scanned.Load() < now {
			s.wake() // a timer made just as the clock stepped waits for the step after: wake the loop
			return false
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		next, queued := s.queue.Next()
		return s.queue.Active() == 0 && (!queued || next.After(clk.Now()))
	})
}

func recordView(t *testing.T, h *harness, actor string) (v struct {
	State  alarmState `json:"state"`
	Timers []struct {
		Name    string          `json:"name"`
		Due     time.Time       `json:"due"`
		EveryMS int64           `json:"every_ms"`
		Payload json.RawMessage `json:"payload"`
	} `json:"timers"`
	Pending int `json:"pending_effects"`
}) {
	t.Helper()
	rp := h.do("GET", "/v1/actors/alarm/"+actor+"?view=record", "")
	if rp.status != 200 {
		t.Fatalf("view=record: %d %s", rp.status, rp.body)
	}
	if err := json.Unmarshal([]byte(rp.body), &v); err != nil {
		t.Fatalf("view=record %s: %v", rp.body, err)
	}
	return v
}

func TestTimerFiresOnceAsATurnOfItsActor(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC))
	h := timerHarness(t, localStore(t), clk)
	a := newAlarm()
	h.deploy(alarmFn, a)
	h.do("POST", "/v1/actors/alarm/a1/arm", `{"in_ms":5000}`).want(t, 200, "0")
	v := recordView(t, h, "a1")
	if len(v.Timers) != 1 || !v.Timers[0].Due.Equal(clk.Now().Add(5*time.Second)) || string(v.Timers[0].Payload) != `{"n":1}` {
		t.Fatalf("timers = %+v", v.Timers)
	}
	if rp := h.do("GET", "/v1/actors/alarm/a1", ""); rp.status != 404 || rp.header.Get(HeaderTimers) != "" {
		t.Fatalf("GET state of an actor with a timer and no state: %d %v", rp.status, rp.header)
	}
	settle(t, h, clk, 4*time.Second)
	if a.rings.Load() != 0 {
		t.Fatal("fired before it was due")
	}
	settle(t, h, clk, time.Second)
	settle(t, h, clk, 10*time.Second)
	if n := a.rings.Load(); n != 1 {
		t.Fatalf("rings = %d, want 1", n)
	}
	v = recordView(t, h, "a1")
	if v.State.Rings != 1 || len(v.Timers) != 0 || v.State.Dues[0] != "2026-12-04T12:00:05Z" {
		t.Fatalf("after firing: %+v", v)
	}
}

func TestRepeatingTimerFiresOnceForMissedTicks(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC))
	h := timerHarness(t, localStore(t), clk)
	a := newAlarm()
	h.deploy(alarmFn, a)
	h.do("POST", "/v1/actors/alarm/a1/arm", `{"every_ms":1000}`).want(t, 200, "0")
	settle(t, h, clk, time.Second)
	if n := a.rings.Load(); n != 1 {
		t.Fatalf("rings after one period = %d", n)
	}
	// Ten periods pass at once (the router was away): one firing for all of them.
	settle(t, h, clk, 10*time.Second+500*time.Millisecond)
	if n := a.rings.Load(); n != 2 {
		t.Fatalf("rings after ten missed periods = %d, want 2", n)
	}
	v := recordView(t, h, "a1")
	if len(v.Timers) != 1 || !v.Timers[0].Due.Equal(time.Date(2026, 12, 4, 12, 0, 12, 0, time.UTC)) || v.Timers[0].EveryMS != 1000 {
		t.Fatalf("next tick = %+v, want 12:00:12", v.Timers)
	}
	if rp := h.do("GET", "/v1/actors/alarm/a1", ""); rp.status != 200 || rp.header.Get(HeaderTimers) != "1" {
		t.Fatalf("GET state: %d %s %s: %q, want 1", rp.status, rp.body, HeaderTimers, rp.header.Get(HeaderTimers))
	}
}

// A turn that cancels a timer wins over the timer's firing, even when the timer came due while
// the turn ran: the firing is a turn too, and finds the timer gone.
func TestCancelWinsOverADueTimer(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC))
	h := timerHarness(t, localStore(t), clk)
	a := newAlarm()
	h.deploy(alarmFn, a)
	h.do("POST", "/v1/actors/alarm/a1/arm", `{"in_ms":1000}`).want(t, 200, "0")
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		h.do("POST", "/v1/actors/alarm/a1/hold-then-cancel", `{}`)
	}()
	<-a.held
	clk.Step(2 * time.Second) // the timer is due while the cancelling turn holds the actor
	proctest.Eventually(t, "the firing waits for the actor's turn", func() bool {
		h.r.sched.mu.Lock()
		defer h.r.sched.mu.Unlock()
		return h.r.sched.queue.Active() == 1 // the firing waits for the actor's turn
	})
	close(a.gate)
	wg.Wait()
	settle(t, h, clk, time.Second)
	if n := a.rings.Load(); n != 0 {
		t.Fatalf("a cancelled timer fired %d times", n)
	}
	// Nothing is left of the actor: no state, no timers.
	h.do("GET", "/v1/actors/alarm/a1?view=record", "").want(t, 404, "")
}

// Timers live in the store: a router started on it later fires what came due meanwhile, once.
func TestTimerFiresAfterARouterRestart(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC))
	store := localStore(t)
	first := timerHarness(t, store, clk)
	first.deploy(alarmFn, newAlarm())
	for i := range 20 {
		first.do("POST", fmt.Sprintf("/v1/actors/alarm/a%d/arm", i), `{"in_ms":5000}`).want(t, 200, "0")
	}
	if err := first.shutdown(); err != nil {
		t.Fatal(err)
	}
	clk.Step(time.Minute)
	second := timerHarness(t, store, clk)
	a := newAlarm()
	second.deploy(alarmFn, a)
	settle(t, second, clk, time.Millisecond)
	settle(t, second, clk, 5*time.Second)
	if n := a.rings.Load(); n != 20 {
		t.Fatalf("rings after the restart = %d, want 20", n)
	}
	list, err := store.ListDue(context.Background(), clk.Now().Add(time.Hour), statecache.Due{}, 100)
	if err != nil || len(list) != 0 {
		t.Fatalf("index after firing: %v %v, want empty", list, err)
	}
}

// outageStore is the local store with an outage switch: while down, reads and writes of
// records and of the due-time index fail as unavailable.
type outageStore struct {
	*statecache.PebbleStore
	down atomic.Bool
}

func (s *outageStore) fail() error {
	if s.down.Load() {
		return fmt.Errorf("test: %w", statecache.ErrUnavailable)
	}
	return nil
}

func (s *outageStore) Get(ctx context.Context, k statecache.Key) (statecache.Entry, error) {
	if err := s.fail(); err != nil {
		return statecache.Entry{}, err
	}
	return s.PebbleStore.Get(ctx, k)
}

func (s *outageStore) Put(ctx context.Context, k statecache.Key, v []byte, expect statecache.Version, c statecache.Commit) (statecache.Version, error) {
	if err := s.fail(); err != nil {
		return "", err
	}
	return s.PebbleStore.Put(ctx, k, v, expect, c)
}

func (s *outageStore) ListDue(ctx context.Context, until time.Time, after statecache.Due, limit int) ([]statecache.Due, error) {
	if err := s.fail(); err != nil {
		return nil, err
	}
	return s.PebbleStore.ListDue(ctx, until, after, limit)
}

// A timer due while the store is down fires late, once it is back, and once.
func TestTimerDueDuringAStoreOutageFiresLateOnce(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC))
	store := &outageStore{PebbleStore: localStore(t)}
	h := newHarnessOn(t, Config{ScanInterval: time.Millisecond, StoreTimeout: 100 * time.Millisecond}, store,
		func(o *Options) { o.Clock = clk })
	a := newAlarm()
	h.deploy(alarmFn, a)
	h.do("POST", "/v1/actors/alarm/a1/arm", `{"in_ms":1000}`).want(t, 200, "0")
	store.down.Store(true)
	settle(t, h, clk, 2*time.Second) // due: the turn runs, its write fails, it is retried later
	if a.rings.Load() == 0 {
		t.Fatal("the timer's turn did not run while it was due")
	}
	settle(t, h, clk, 5*time.Second) // still down: tried again, still nothing committed
	store.down.Store(false)
	settle(t, h, clk, time.Minute)
	v := recordView(t, h, "a1")
	if v.State.Rings != 1 || len(v.State.Dues) != 1 || v.State.Dues[0] != "2026-12-04T12:00:01Z" || len(v.Timers) != 0 {
		t.Fatalf("after the outage: %+v (the function ran %d times), want one firing applied, for 12:00:01", v, a.rings.Load())
	}
}

// A delayed effect waits in the outbox for its time, survives a router restart, and is
// delivered once when due.
func TestDelayedEffectWaitsInTheOutboxThroughARestart(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC))
	store := localStore(t)
	first := timerHarness(t, store, clk)
	first.deploy(counterFn, newTestActor())
	first.do("POST", "/v1/actors/counter/src/send", `{"to":"dst","by":5,"delay_ms":3000}`).want(t, 200, `{"value":1}`)
	settle(t, first, clk, 2*time.Second)
	first.do("GET", "/v1/actors/counter/dst", "").want(t, 404, "") // not due yet
	if err := first.shutdown(); err != nil {
		t.Fatal(err)
	}
	second := timerHarness(t, store, clk)
	second.deploy(counterFn, newTestActor())
	settle(t, second, clk, 2*time.Second)
	second.do("GET", "/v1/actors/counter/dst", "").want(t, 200, `{"value":5}`)
	settle(t, second, clk, time.Minute)
	second.do("GET", "/v1/actors/counter/dst", "").want(t, 200, `{"value":5}`)
	rp := second.do("GET", "/v1/actors/counter/src?view=record", "")
	if rp.status != 200 || !strings.Contains(rp.body, `"pending_effects":0`) {
		t.Fatalf("source after delivery: %d %s", rp.status, rp.body)
	}
}

// An actor's outbox holds at most MaxOutbox effects: a turn that would add past it is refused
// with 503 and changes nothing.
func TestOutboxIsBounded(t *testing.T) {
	var effects []string
	for range DefaultMaxEffectsPerTurn {
		effects = append(effects, `{"actor":"dst","action":"add","payload":{"by":1},"delay_ms":3600000}`)
	}
	answer := `{"state":{"value":1},"reply":null,"effects":[` + strings.Join(effects, ",") + `]}`
	h := newHarness(t, Config{})
	h.deploy(counterFn, rawPod(200, answer))
	turns := MaxOutbox / DefaultMaxEffectsPerTurn
	for range turns {
		h.do("POST", "/v1/actors/counter/src/send", `{}`).want(t, 200, "")
	}
	before := h.do("GET", "/v1/actors/counter/src?view=record", "")
	rp := h.do("POST", "/v1/actors/counter/src/send", `{}`)
	if rp.status != 503 || !strings.Contains(rp.body, CodeNoCapacity) || rp.header.Get("Retry-After") == "" {
		t.Fatalf("turn past the outbox bound: %d %s, want 503 %s with Retry-After", rp.status, rp.body, CodeNoCapacity)
	}
	after := h.do("GET", "/v1/actors/counter/src?view=record", "")
	if after.body != before.body || !strings.Contains(after.body, fmt.Sprintf(`"pending_effects":%d`, MaxOutbox)) {
		t.Fatalf("the refused turn changed the record, or the outbox is not full:\nbefore %s\nafter  %s", before.body, after.body)
	}
}
