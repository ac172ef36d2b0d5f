package routing

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/knactor/knactor/router/placement"
)

func TestDrainWaitsForTheCallsInFlight(t *testing.T) {
	l := NewInFlight(nil)
	pod := placement.Pod{Name: "p", Addr: "127.0.0.1:1"}
	c := l.Counter(pod.Addr)
	if l.Counter(pod.Addr) != c {
		t.Fatal("two counters for one address")
	}
	c.Add(1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := l.Drain(ctx, pod); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Drain with a call in flight = %v, want the context's deadline", err)
	}
	done := make(chan error, 1)
	go func() { done <- l.Drain(context.Background(), pod) }()
	c.Add(-1)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if l.Counter(pod.Addr) == c {
		t.Error("a drained pod's counter is still kept")
	}
}
