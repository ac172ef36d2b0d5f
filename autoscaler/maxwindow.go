package autoscaler

import "time"

// maxWindow keeps the largest value recorded over the last length of time: the scale-down
// delay. Like Knative's max.TimeWindow (pkg/autoscaler/aggregation/max) it keeps only the
// values that can still become the maximum — each is larger than every value recorded after
// it — so it holds at most one entry per decision in the window and usually one or two.
type maxWindow struct {
	length time.Duration
	// entries are in recording order with strictly decreasing values; entries[0] is the
	// maximum.
	entries []maxEntry
}

type maxEntry struct {
	t time.Time
	v int32
}

// record adds v at now and returns the maximum over (now − length, now].
func (w *maxWindow) record(now time.Time, v int32) int32 {
	// A value no larger than v, recorded before it, can never be the maximum again.
	for len(w.entries) > 0 && w.entries[len(w.entries)-1].v <= v {
		w.entries = w.entries[:len(w.entries)-1]
	}
	// Values recorded a full window ago no longer count.
	drop := 0
	for drop < len(w.entries) && now.Sub(w.entries[drop].t) >= w.length {
		drop++
	}
	if drop > 0 {
		w.entries = append(w.entries[:0], w.entries[drop:]...)
	}
	w.entries = append(w.entries, maxEntry{t: now, v: v})
	return w.entries[0].v
}
