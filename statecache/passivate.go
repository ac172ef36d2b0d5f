package statecache

import (
	"hash/maphash"
	"maps"
	"sync"
	"time"

	"github.com/allegro/bigcache/v3"
)

// accessShard is one lock's share of the idle tracking: when each cached key was last used.
// mu guards last.
type accessShard struct {
	mu   sync.Mutex
	last map[string]time.Time
}

// functionIdle is the idle times of functions that have their own (Cache.SetIdleAfter). mu
// guards of.
type functionIdle struct {
	mu sync.RWMutex
	of map[string]time.Duration
}

// SetIdleAfter makes function's actors passivate after d unused instead of Config.IdleAfter
// (0: never); a negative d gives the function Config.IdleAfter again. Actors used since before
// the call count from their last use: a function whose actors were not tracked (no idle time
// applied to it or to the cache) starts to be tracked now.
func (c *Cache) SetIdleAfter(function string, d time.Duration) {
	c.idle.mu.Lock()
	defer c.idle.mu.Unlock()
	if d < 0 {
		delete(c.idle.of, function)
	} else {
		if c.idle.of == nil {
			c.idle.of = make(map[string]time.Duration)
		}
		c.idle.of[function] = d
	}
	tracking := c.cfg.IdleAfter > 0
	for _, d := range c.idle.of {
		tracking = tracking || d > 0
	}
	c.tracking.Store(tracking)
}

// IdleAfterOf returns how long function's actors stay in memory unused: its own idle time
// (SetIdleAfter), else Config.IdleAfter; 0 is never.
func (c *Cache) IdleAfterOf(function string) time.Duration {
	c.idle.mu.RLock()
	defer c.idle.mu.RUnlock()
	if d, ok := c.idle.of[function]; ok {
		return d
	}
	return c.cfg.IdleAfter
}

// idleTimes returns the idle time of each function that has its own, for one passivation pass.
func (c *Cache) idleTimes() map[string]time.Duration {
	c.idle.mu.RLock()
	defer c.idle.mu.RUnlock()
	return maps.Clone(c.idle.of)
}

// touch records that id was used now, for passivation.
func (c *Cache) touch(id string) {
	if !c.tracking.Load() {
		return
	}
	now := c.cfg.Clock.Now()
	s := &c.access[maphash.String(c.seed, id)%accessShards]
	s.mu.Lock()
	s.last[id] = now
	s.mu.Unlock()
}

// onEvict is bigcache's removal callback; it runs under a bigcache shard lock, so it only
// touches the access map.
func (c *Cache) onEvict(id string, _ []byte, _ bigcache.RemoveReason) {
	if !c.tracking.Load() {
		return
	}
	s := &c.access[maphash.String(c.seed, id)%accessShards]
	s.mu.Lock()
	delete(s.last, id)
	s.mu.Unlock()
}

// Passivate drops from memory every entry idle for at least its function's idle time
// (SetIdleAfter, else Config.IdleAfter) whose state is durable, and returns how many it dropped.
// Dirty entries stay until a flush makes them durable. The background goroutine calls it on
// every tick; tests call it directly.
func (c *Cache) Passivate() int {
	if !c.tracking.Load() {
		return 0
	}
	now := c.cfg.Clock.Now()
	own := c.idleTimes()
	type candidate struct {
		id     string
		cutoff time.Time
	}
	var idle []candidate
	for i := range c.access {
		s := &c.access[i]
		s.mu.Lock()
		for id, t := range s.last {
			after := c.cfg.IdleAfter
			if k, ok := ParseName(id); ok {
				if d, set := own[k.Function]; set {
					after = d
				}
			}
			if cutoff := now.Add(-after); after > 0 && !t.After(cutoff) {
				idle = append(idle, candidate{id, cutoff})
			}
		}
		s.mu.Unlock()
	}
	dropped := 0
	for _, e := range idle {
		if c.passivate(e.id, e.cutoff) {
			dropped++
		}
	}
	c.passivated.Add(uint64(dropped))
	return dropped
}

// passivate drops id from memory if it is still idle since cutoff and not dirty.
func (c *Cache) passivate(id string, cutoff time.Time) bool {
	mu := c.stripe(id)
	mu.Lock()
	defer mu.Unlock()
	s := &c.access[maphash.String(c.seed, id)%accessShards]
	s.mu.Lock()
	t, ok := s.last[id]
	s.mu.Unlock()
	if !ok || t.After(cutoff) {
		return false // used again since it was found idle
	}
	if c.isDirty(id) {
		return false
	}
	s.mu.Lock()
	delete(s.last, id)
	s.mu.Unlock()
	return c.mem.Delete(id) == nil
}

// WarmIDs returns the ids of function's actors that are in memory and were used since the last
// passivation: the actors a scale-down should move as few of as it can. It needs IdleAfter
// (without passivation the cache does not track use) and returns nil otherwise.
func (c *Cache) WarmIDs(function string) []string {
	var ids []string
	for i := range c.access {
		s := &c.access[i]
		s.mu.Lock()
		for name := range s.last {
			if k, ok := ParseName(name); ok && k.Function == function {
				ids = append(ids, k.ID)
			}
		}
		s.mu.Unlock()
	}
	return ids
}
