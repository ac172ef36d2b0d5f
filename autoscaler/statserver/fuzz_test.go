package statserver

import (
	"math"
	"testing"
)

// FuzzDecode feeds arbitrary frames to the stats wire decoder: it never panics, and a message it
// accepts names its router and holds only finite, non-negative figures.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"router":"r1","stats":[{"function":"counter","time":"2025-06-01T12:00:01Z","windowSeconds":1,"inFlight":3,"averageConcurrency":2.5,"requests":41,"activeActors":7}]}`))
	f.Add([]byte(`{"router":"r1","poke":"counter"}`))
	f.Add([]byte(`{"router":""}`))
	f.Add([]byte(`{"router":"r","stats":[{"function":"f","windowSeconds":-1}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := decode(data)
		if err != nil {
			return
		}
		if m.Router == "" {
			t.Fatalf("a message without a router was accepted: %q", data)
		}
		for _, s := range m.Stats {
			for _, x := range []float64{s.WindowSeconds, s.AverageConcurrency} {
				if x < 0 || math.IsInf(x, 0) || math.IsNaN(x) {
					t.Fatalf("figure %v accepted from %q", x, data)
				}
			}
		}
	})
}
