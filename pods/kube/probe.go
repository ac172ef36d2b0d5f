package kube

import (
	"context"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Probe schedule of a pod that is Ready in the API but does not accept connections yet.
const (
	// probeInterval is the pause between probes at first: the activator's ~50 ms, so a pod is
	// admitted within 50 ms of its process listening.
	probeInterval = 50 * time.Millisecond
	// probeFastFor is how long probes come every probeInterval: a process that listens that
	// long after its kubelet reported it Ready is not just starting.
	probeFastFor = 10 * time.Second
	// probeSlowInterval is the pause between probes after probeFastFor. Knative's activator
	// never admits a pod it cannot reach, and neither does knactor; but it keeps trying, only
	// less often, until the pod changes or goes.
	probeSlowInterval = time.Second
)

// probe is the TCP probe of one pod at one address.
type probe struct {
	uid    types.UID
	addr   string
	cancel context.CancelFunc
	ok     atomic.Bool // set once the pod has answered
}

// probeOf returns the probe of a pod at addr, starting it when the pod has none yet, or had one
// for another address or another pod of the same name (which it cancels).
func (w *Watcher) probeOf(ctx context.Context, function string, pod *corev1.Pod, addr string) *probe {
	ps := w.probes[function]
	if ps == nil {
		ps = make(map[string]*probe)
		w.probes[function] = ps
	}
	if p, ok := ps[pod.Name]; ok {
		if p.uid == pod.UID && p.addr == addr {
			return p
		}
		p.cancel()
	}
	pctx, cancel := context.WithCancel(ctx)
	p := &probe{uid: pod.UID, addr: addr, cancel: cancel}
	ps[pod.Name] = p
	w.wg.Add(1)
	go w.probe(pctx, function, pod.Name, p)
	return p
}

// keepProbes cancels the function's probes of pods not in keep (all of them when keep is nil).
func (w *Watcher) keepProbes(function string, keep map[string]bool) {
	ps := w.probes[function]
	for name, p := range ps {
		if !keep[name] {
			p.cancel()
			delete(ps, name)
		}
	}
	if len(ps) == 0 {
		delete(w.probes, function)
	}
}

// probe dials a pod until it answers (then queues its function) or ctx ends: every
// probeInterval for probeFastFor, every probeSlowInterval after.
func (w *Watcher) probe(ctx context.Context, function, pod string, p *probe) {
	defer w.wg.Done()
	clk := w.cfg.Clock
	start := clk.Now()
	interval := probeInterval
	for {
		pctx, cancel := context.WithTimeout(ctx, w.cfg.ProbeTimeout)
		err := w.cfg.Prober(pctx, p.addr)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			p.ok.Store(true)
			w.enqueue(function)
			return
		}
		if interval == probeInterval && clk.Since(start) >= probeFastFor {
			w.cfg.Logger.Warn("kube: pod is Ready but does not accept connections; probing it less often",
				"function", function, "pod", pod, "addr", p.addr, "err", err)
			interval = probeSlowInterval
		}
		t := clk.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		}
	}
}
