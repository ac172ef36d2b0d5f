package autoscaler

import (
	"math"
	"time"
)

// bucket holds the observations whose snapshot time falls in one second.
type bucket struct {
	// sec is the Unix second the bucket holds; it is meaningful only when weight > 0.
	sec int64
	// weight is the time, in seconds, the bucket's observations cover.
	weight float64
	// area is Σ average concurrency × seconds covered: weight × the bucket's average
	// concurrency.
	area float64
	// requests is the number of requests the observations counted.
	requests float64
}

// buckets is a ring of 1 s buckets covering the stable window: time-weighted concurrency and
// request counts keyed by the second of each observation. A bucket older than the stable
// window is overwritten by the second that reuses its slot, or ignored when read; nothing older
// than the window is ever averaged.
//
// Averages are time-weighted over the time the observations cover, Σ area / Σ weight, so an
// observation that covers two seconds (a late scrape) counts twice as much as one that covers
// one. Knative instead averages bucket values per second and counts a missing second as zero
// (pkg/autoscaler/aggregation/bucketing.go); with the router's recorder every snapshot covers
// the time since the previous one, so there are no missing seconds to guess about.
type buckets struct {
	ring []bucket
}

// newBuckets returns buckets for a window of whole seconds.
func newBuckets(window time.Duration) *buckets {
	return &buckets{ring: make([]bucket, bucketCount(window))}
}

func bucketCount(window time.Duration) int {
	return max(1, int(math.Ceil(window.Seconds())))
}

func (b *buckets) slot(sec int64) *bucket {
	n := int64(len(b.ring))
	return &b.ring[((sec%n)+n)%n]
}

// record adds an observation made at t that covers weight seconds, with the given average
// concurrency and request count. An observation older than the slot's current second (a full
// window older than something already recorded) is dropped.
func (b *buckets) record(t time.Time, weight, concurrency, requests float64) {
	sec := t.Unix()
	s := b.slot(sec)
	if s.weight == 0 || s.sec != sec {
		if s.weight > 0 && sec < s.sec {
			return
		}
		*s = bucket{sec: sec}
	}
	s.weight += weight
	s.area += concurrency * weight
	s.requests += requests
}

// average returns the time-weighted average concurrency and the requests per second over the
// window ending at now: the buckets of the seconds (now − window, now]. ok is false when no
// observation falls in the window.
func (b *buckets) average(now time.Time, window time.Duration) (concurrency, rps float64, ok bool) {
	n := min(bucketCount(window), len(b.ring))
	nowSec := now.Unix()
	var weight, area, requests float64
	for sec := nowSec - int64(n) + 1; sec <= nowSec; sec++ {
		s := b.slot(sec)
		if s.weight > 0 && s.sec == sec {
			weight += s.weight
			area += s.area
			requests += s.requests
		}
	}
	if weight == 0 {
		return 0, 0, false
	}
	return round6(area / weight), round6(requests / weight), true
}

// resize keeps the buckets that fit a new window.
func (b *buckets) resize(window time.Duration) {
	n := bucketCount(window)
	if n == len(b.ring) {
		return
	}
	old := b.ring
	b.ring = make([]bucket, n)
	for _, s := range old {
		if s.weight == 0 {
			continue
		}
		if d := b.slot(s.sec); d.weight == 0 || d.sec < s.sec {
			*d = s
		}
	}
}

// round6 rounds to six decimals, as Knative does with its window averages, so that float noise
// (0.1+0.2) never tips a ceil over to one more pod.
func round6(f float64) float64 {
	return math.Round(f*1e6) / 1e6
}
