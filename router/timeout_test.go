package router

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/knactor/knactor/sdk"
)

// A turn that times out frees its actor once the router has closed its connection to the pod,
// which tells the pod (an SDK function's ctx is done). A function that ignores its ctx may still
// be running when the actor's next turn arrives at the pod: that is the one exception to "one
// call per actor at a time" (docs/api.md, "Timeouts"), and whatever the late turn answers is
// never committed.
func TestTimedOutTurnEndsItsPodCallAndNeverCommits(t *testing.T) {
	told := make(chan struct{})    // the stubborn turn's ctx is done
	release := make(chan struct{}) // the test lets the stubborn turn answer
	answered := make(chan struct{})
	var stubborn atomic.Bool // a stubborn turn is running
	var overlapped atomic.Bool
	a := sdk.NewActor[counterState]()
	sdk.Handle(a, "add", func(_ context.Context, t *sdk.Turn[counterState], p struct {
		By int64 `json:"by"`
	}) (counterReply, error) {
		if stubborn.Load() {
			overlapped.Store(true)
		}
		t.State.Value += p.By
		return counterReply{t.State.Value}, nil
	})
	sdk.Handle(a, "stubborn", func(ctx context.Context, t *sdk.Turn[counterState], _ struct{}) (counterReply, error) {
		stubborn.Store(true)
		defer func() { stubborn.Store(false); close(answered) }()
		<-ctx.Done()
		close(told)
		<-release // and goes on regardless
		t.State.Value = 999
		return counterReply{t.State.Value}, nil
	})
	h := newHarness(t, Config{CallTimeout: 300 * time.Millisecond})
	h.deploy(counterFn, a)
	h.do("POST", "/v1/actors/counter/a/add", `{"by":1}`).want(t, 200, `{"value":1}`)

	if rp := h.do("POST", "/v1/actors/counter/a/stubborn", `{}`); rp.status != 504 {
		t.Fatalf("stubborn turn: %d %s, want 504", rp.status, rp.body)
	}
	select {
	case <-told:
	case <-time.After(5 * time.Second):
		t.Fatal("the pod was not told that the timed-out turn ended: its ctx is not done")
	}
	h.do("POST", "/v1/actors/counter/a/add", `{"by":1}`).want(t, 200, `{"value":2}`)
	if !overlapped.Load() {
		t.Fatal("the next turn did not overlap the stubborn one: the test no longer shows the exception")
	}
	close(release)
	select {
	case <-answered:
	case <-time.After(5 * time.Second):
		t.Fatal("the stubborn turn did not end")
	}
	h.do("GET", "/v1/actors/counter/a", "").want(t, 200, `{"value":2}`)
}
