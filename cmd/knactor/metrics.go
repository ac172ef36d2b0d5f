package main

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/knactor/knactor/autoscaler"
	"github.com/knactor/knactor/pods/local"
)

// scalingCollector reports the autoscaler's latest decisions on /metrics, so a user (and the
// tests) can watch a function scale. Series carry the function and, in Kubernetes mode, where
// each revision is scaled on its own, the revision (empty in local mode).
type scalingCollector struct {
	a                                 *autoscaler.Autoscaler
	functionOf                        func(revision string) (string, bool) // nil: keys are functions
	desired, ready, panicking, stable *prometheus.Desc
}

// newScalingCollector reports a's decisions. functionOf, when set, names the function of each
// key the autoscaler scales (Kubernetes mode's revisions).
func newScalingCollector(a *autoscaler.Autoscaler, functionOf func(revision string) (string, bool)) *scalingCollector {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("knactor_autoscaler_"+name, help, []string{"function", "revision"}, nil)
	}
	return &scalingCollector{
		a:          a,
		functionOf: functionOf,
		desired:    d("desired_pods", "Pods the autoscaler last decided the function needs."),
		ready:      d("ready_pods", "Ready pods of the function at the last decision."),
		panicking:  d("panic_mode", "1 while the function's autoscaler is in panic mode."),
		stable:     d("stable_value", "The scaling metric averaged over the stable window."),
	}
}

func (c *scalingCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.desired
	ch <- c.ready
	ch <- c.panicking
	ch <- c.stable
}

func (c *scalingCollector) Collect(ch chan<- prometheus.Metric) {
	for _, key := range c.a.Functions() {
		s, ok := c.a.Status(key)
		if !ok {
			continue
		}
		fn, rev := key, ""
		if c.functionOf != nil {
			if f, ok := c.functionOf(key); ok {
				fn, rev = f, key
			}
		}
		panicking := 0.0
		if s.Panicking {
			panicking = 1
		}
		ch <- prometheus.MustNewConstMetric(c.desired, prometheus.GaugeValue, float64(s.DesiredPods), fn, rev)
		ch <- prometheus.MustNewConstMetric(c.ready, prometheus.GaugeValue, float64(s.ReadyPods), fn, rev)
		ch <- prometheus.MustNewConstMetric(c.panicking, prometheus.GaugeValue, panicking, fn, rev)
		ch <- prometheus.MustNewConstMetric(c.stable, prometheus.GaugeValue, s.StableValue, fn, rev)
	}
}

// podsCollector reports the local runtime's pods by state (ready, starting) per function.
type podsCollector struct {
	rt    podLister
	names func() []string // the deployed functions, which deployments add to
	pods  *prometheus.Desc
}

type podLister interface {
	Pods(function string) []local.PodStatus
}

func newPodsCollector(rt podLister, names func() []string) *podsCollector {
	return &podsCollector{rt: rt, names: names, pods: prometheus.NewDesc("knactor_pods",
		"Local pods of the function by state.", []string{"function", "state"}, nil)}
}

func (c *podsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.pods }

func (c *podsCollector) Collect(ch chan<- prometheus.Metric) {
	for _, fn := range c.names() {
		n := map[string]int{"ready": 0, "starting": 0}
		for _, p := range c.rt.Pods(fn) {
			n[p.State]++
		}
		for state, count := range n {
			ch <- prometheus.MustNewConstMetric(c.pods, prometheus.GaugeValue, float64(count), fn, state)
		}
	}
}
