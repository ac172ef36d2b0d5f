package routing

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/utils/clock"

	"github.com/knactor/knactor/router/placement"
)

// drainPoll is how often Drain looks at a pod's in-flight count; turns are milliseconds long.
const drainPoll = 5 * time.Millisecond

// InFlight counts the calls in flight per pod address: every call the router sends to a pod
// (actor turns, WebSocket messages and effects as well as pass-through requests), from the
// moment the activator claims the pod until the call is done. A runtime calls Drain before it
// stops a pod. The activator counts into the InFlight its Config names
// (activator.Config.InFlight), so a runtime built before the activator can hold it. Safe for
// concurrent use.
type InFlight struct {
	clk clock.WithDelayedExecution
	m   sync.Map // addr → *atomic.Int64
}

// NewInFlight returns an InFlight with no calls counted, whose Drain polls on clk (nil: the
// real clock).
func NewInFlight(clk clock.WithDelayedExecution) *InFlight {
	if clk == nil {
		clk = clock.RealClock{}
	}
	return &InFlight{clk: clk}
}

// Counter returns the count of calls in flight to the pod at addr, for the caller to add to
// when it sends a call and subtract from when the call is done.
func (l *InFlight) Counter(addr string) *atomic.Int64 {
	if c, ok := l.m.Load(addr); ok {
		return c.(*atomic.Int64)
	}
	c, _ := l.m.LoadOrStore(addr, new(atomic.Int64))
	return c.(*atomic.Int64)
}

// Drain waits until no call is in flight to pod, which its runtime has already taken out of
// the ready set, so the pod can be stopped without failing a call, then forgets the pod. The
// router counts a call before it checks the ready set again, so every call Drain does not wait
// for sees the pod gone and chooses another. WebSocket sessions end at the router, so they need
// nothing: their next message goes to the actor's new owner.
func (l *InFlight) Drain(ctx context.Context, pod placement.Pod) error {
	c := l.Counter(pod.Addr)
	for c.Load() > 0 {
		select {
		case <-ctx.Done():
			return fmt.Errorf("draining pod %s: %d calls still in flight: %w", pod.Name, c.Load(), ctx.Err())
		case <-l.clk.After(drainPoll):
		}
	}
	l.m.Delete(pod.Addr)
	return nil
}
