package main

import (
	"context"
	"log/slog"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"k8s.io/utils/clock"

	"github.com/knactor/knactor/autoscaler"
	"github.com/knactor/knactor/router/stats"
)

type noStats struct{}

func (noStats) Snapshot(string) stats.Snapshot { return stats.Snapshot{} }

type noScaler struct{}

func (noScaler) Scale(context.Context, string, int32) error { return nil }
func (noScaler) ReadyPods(string) int                       { return 0 }

// The autoscaler's series name the function, and in Kubernetes mode the revision each key is.
func TestScalingCollectorLabels(t *testing.T) {
	tests := []struct {
		name         string
		key          string
		functionOf   func(string) (string, bool)
		fn, revision string
	}{
		{"local mode: keys are functions", "counter", nil, "counter", ""},
		{"kubernetes mode: keys are revisions", "counter-00002",
			func(rev string) (string, bool) { return "counter", rev == "counter-00002" }, "counter", "counter-00002"},
		{"a key the watcher no longer knows keeps its name", "gone-00001",
			func(string) (string, bool) { return "", false }, "gone-00001", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := autoscaler.New(autoscaler.Config{}, noStats{}, noScaler{}, clock.RealClock{}, slog.Default())
			if err := a.Add(tc.key, autoscaler.DefaultSpec()); err != nil {
				t.Fatal(err)
			}
			reg := prometheus.NewPedanticRegistry()
			reg.MustRegister(newScalingCollector(a, tc.functionOf))
			families, err := reg.Gather()
			if err != nil {
				t.Fatal(err)
			}
			if len(families) != 4 {
				t.Fatalf("%d metric families, want 4", len(families))
			}
			for _, f := range families {
				for _, m := range f.GetMetric() {
					if got := labels(m); got["function"] != tc.fn || got["revision"] != tc.revision {
						t.Errorf("%s labels %v, want function=%q revision=%q", f.GetName(), got, tc.fn, tc.revision)
					}
				}
			}
		})
	}
}

func labels(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}
