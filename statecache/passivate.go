package statecache

import (
	"hash/maphash"
	"strings"
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

// touch records that id was used now, for passivation.
func (c *Cache) touch(id string) {
	if c.cfg.IdleAfter == 0 {
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
	if c.cfg.IdleAfter == 0 {
		return
	}
	s := &c.access[maphash.String(c.seed, id)%accessShards]
	s.mu.Lock()
	delete(s.last, id)
	s.mu.Unlock()
}

// Passivate drops from memory every entry idle for at least IdleAfter whose state is durable,
// and returns how many it dropped. Dirty entries stay until a flush makes them durable. The
// background goroutine calls it on every tick; tests call it directly.
func (c *Cache) Passivate() int {
	if c.cfg.IdleAfter == 0 {
		return 0
	}
	cutoff := c.cfg.Clock.Now().Add(-c.cfg.IdleAfter)
	var idle []string
	for i := range c.access {
		s := &c.access[i]
		s.mu.Lock()
		for id, t := range s.last {
			if !t.After(cutoff) {
				idle = append(idle, id)
			}
		}
		s.mu.Unlock()
	}
	dropped := 0
	for _, id := range idle {
		if c.passivate(id, cutoff) {
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
	prefix := function + "/"
	var ids []string
	for i := range c.access {
		s := &c.access[i]
		s.mu.Lock()
		for id := range s.last {
			if actor, ok := strings.CutPrefix(id, prefix); ok {
				ids = append(ids, actor)
			}
		}
		s.mu.Unlock()
	}
	return ids
}
