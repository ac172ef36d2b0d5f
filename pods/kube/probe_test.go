package kube

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

func TestProbeFailsThenSucceeds(t *testing.T) {
	const fn, rev = "counter", "counter-00001"
	h := start(t, deployment(fn, rev, 0))
	var failures atomic.Int32
	failures.Store(2)
	h.setProbe(func(context.Context, string) error {
		if failures.Add(-1) >= 0 {
			return errors.New("connection refused")
		}
		return nil
	})
	h.createPod(pod(fn, rev, "p1", "127.1.0.1"))
	for i := range 2 {
		select {
		case <-h.calls:
		case <-time.After(waitTimeout):
			t.Fatalf("probe %d did not come", i+1)
		}
		waitTimer(t, h)
		if n := h.w.Ready(fn).Len(); n != 0 {
			t.Fatalf("after %d failed probes, %d ready pods; want 0", i+1, n)
		}
		h.clock.Step(probeInterval)
	}
	h.waitReady(fn, at("p1", "127.1.0.1"))
}

// waitTimer waits until a goroutine waits on the fake clock (the prober's retry timer).
func waitTimer(t *testing.T, h *harness) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !h.clock.HasWaiters() {
		if time.Now().After(deadline) {
			t.Fatal("no probe is waiting to retry")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestProbeCancelledWhenPodChanges(t *testing.T) {
	const fn, rev = "counter", "counter-00001"
	tests := []struct {
		name   string
		change func(h *harness, p *corev1.Pod)
	}{
		{"not ready", func(h *harness, p *corev1.Pod) { h.updatePod(setReady(p, false)) }},
		{"deleted", func(h *harness, p *corev1.Pod) { h.deletePod(p.Name) }},
		{"IP changed", func(h *harness, p *corev1.Pod) { p.Status.PodIP = "127.1.0.2"; h.updatePod(p) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := start(t, deployment(fn, rev, 0))
			ended := make(chan error, 1)
			h.setProbe(func(ctx context.Context, addr string) error {
				if addr != "127.1.0.1:8080" {
					return nil
				}
				<-ctx.Done()
				ended <- ctx.Err()
				return ctx.Err()
			})
			p := pod(fn, rev, "p1", "127.1.0.1")
			h.createPod(p)
			<-h.calls
			tt.change(h, p.DeepCopy())
			select {
			case err := <-ended:
				if !errors.Is(err, context.Canceled) {
					t.Errorf("probe ended with %v, want it cancelled", err)
				}
			case <-time.After(waitTimeout):
				t.Fatal("the probe was not cancelled")
			}
		})
	}
}
