package activator

import (
	"slices"
	"sync"
	"time"
)

// coldStartSamples bounds the hold durations kept per function for ColdStarts' percentiles:
// the newest ones, 2 KiB per function.
const coldStartSamples = 256

// coldStarts keeps, per function, how many calls were held while it had no ready pod and how
// long the newest coldStartSamples of them waited. The Prometheus histogram has the same data
// in coarse buckets; this answers the status page's p50/p99 exactly.
type coldStarts struct {
	mu sync.Mutex
	m  map[string]*coldRing
}

type coldRing struct {
	count uint64
	held  [coldStartSamples]time.Duration
	next  int // where the next sample goes; len = min(count, coldStartSamples)
}

func (c *coldStarts) record(function string, d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[string]*coldRing)
	}
	r := c.m[function]
	if r == nil {
		r = &coldRing{}
		c.m[function] = r
	}
	r.held[r.next] = d
	r.next = (r.next + 1) % coldStartSamples
	r.count++
}

// ColdStarts returns how many calls for function were held because it had no ready pod (the
// activator's cold starts), and the median and 99th percentile of how long the newest
// coldStartSamples of them waited (zero without any).
func (a *Activator) ColdStarts(function string) (count uint64, p50, p99 time.Duration) {
	c := &a.cold
	c.mu.Lock()
	r := c.m[function]
	if r == nil {
		c.mu.Unlock()
		return 0, 0, 0
	}
	n := int(min(r.count, coldStartSamples))
	held := slices.Clone(r.held[:n])
	count = r.count
	c.mu.Unlock()
	slices.Sort(held)
	pct := func(p float64) time.Duration { return held[int(float64(n-1)*p+0.5)] }
	return count, pct(0.5), pct(0.99)
}
