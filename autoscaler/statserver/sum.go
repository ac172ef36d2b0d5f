package statserver

import (
	"time"

	"github.com/knactor/knactor/router/stats"
)

// routerFunc is what one router reported about one function.
type routerFunc struct {
	// What it reported since the previous Snapshot of the function:
	// fresh is set by a message, cleared by Snapshot.
	fresh bool
	// area is Σ averageConcurrency × windowSeconds; windowSec is Σ windowSeconds.
	area, windowSec float64
	// lastAvg is the latest averageConcurrency: the average when windowSec is 0.
	lastAvg float64
	// requests is Σ requests.
	requests uint64
	// peakActors is the largest activeActors.
	peakActors int

	// The latest message's inFlight and activeActors.
	inFlight, activeActors int
}

func (f *routerFunc) add(st *Stat) {
	f.fresh = true
	f.area += st.AverageConcurrency * st.WindowSeconds
	f.windowSec += st.WindowSeconds
	f.lastAvg = st.AverageConcurrency
	f.requests += st.Requests
	f.peakActors = max(f.peakActors, st.ActiveActors)
	f.inFlight, f.activeActors = st.InFlight, st.ActiveActors
}

// contribution is one router's part of a Snapshot.
type contribution struct {
	avg      float64
	window   time.Duration
	requests uint64
	actors   int
}

// take returns what the router reported since the previous Snapshot and starts over. A
// router that reported nothing since then contributes its latest in-flight requests as its
// average, and as many of its latest active actors as can still be in flight (each has at
// least one request in flight).
func (f *routerFunc) take() contribution {
	if !f.fresh {
		return contribution{avg: float64(f.inFlight), actors: min(f.activeActors, f.inFlight)}
	}
	c := contribution{avg: f.lastAvg, window: seconds(f.windowSec), requests: f.requests, actors: f.peakActors}
	if f.windowSec > 0 {
		c.avg = f.area / f.windowSec
	}
	f.fresh, f.area, f.windowSec, f.requests, f.peakActors = false, 0, 0, 0, 0
	return c
}

// departure is what routers that left had reported about one function and no Snapshot took:
// the sum of their contributions.
type departure struct {
	contribution
	at time.Time // when the latest of them left
}

// apply records m's stats for c's router. A poke alone (no stats) changes nothing; a stats
// message that leaves out a function the router reported before means the router forgot it
// (idle for long): its latest in-flight requests are zero, and it is removed once a Snapshot
// has taken what it still holds. Called with mu held.
func (s *Server) apply(c *conn, m *Message) {
	if m.Poke != "" && len(m.Stats) == 0 {
		return
	}
	if c.functions == nil {
		c.functions = make(map[string]*routerFunc, len(m.Stats))
	}
	for i := range m.Stats {
		st := &m.Stats[i]
		f := c.functions[st.Function]
		if f == nil {
			f = &routerFunc{}
			c.functions[st.Function] = f
		}
		f.add(st)
	}
	if len(c.functions) == len(m.Stats) {
		return // every function is in the message
	}
	in := make(map[string]struct{}, len(m.Stats))
	for i := range m.Stats {
		in[m.Stats[i].Function] = struct{}{}
	}
	for name, f := range c.functions {
		if _, ok := in[name]; ok {
			continue
		}
		f.inFlight, f.activeActors = 0, 0
		if !f.fresh {
			delete(c.functions, name)
		}
	}
}

// drop removes c from the server, once: its router stops contributing, and what it had
// reported but no Snapshot took is kept in departed for the next Snapshot. When c was a
// router's current connection, drop counts its disconnect for reason (under mu, so the
// count agrees with Routers) and returns true: the caller logs it after unlocking. Called
// with mu held.
func (s *Server) drop(c *conn, reason string, now time.Time) bool {
	if c.gone {
		return false
	}
	c.gone = true
	if c.router == "" || s.routers[c.router] != c {
		return false
	}
	delete(s.routers, c.router)
	s.disconnects.WithLabelValues(reason).Inc()
	for name, f := range c.functions {
		if !f.fresh {
			continue
		}
		d := s.departed[name]
		if d == nil {
			d = &departure{}
			s.departed[name] = d
		}
		part := f.take()
		d.avg += part.avg
		d.requests += part.requests
		d.actors += part.actors
		d.window = max(d.window, part.window)
		d.at = now
	}
	c.functions = nil
	return true
}

// Snapshot returns the statistics of function since its previous Snapshot, added up over the
// routers (see the package documentation), and starts a new window. Time is now on the
// server's clock; Window is the time since the previous Snapshot of the function or, for the
// first one, the longest window a router's report covers. A function no router reports has a
// window of no length with nothing in it. Like stats.Recorder.EndWindow, each call ends the window,
// so the autoscaler must be its only caller.
func (s *Server) Snapshot(function string) stats.Snapshot {
	now := s.cfg.Clock.Now()
	out := stats.Snapshot{Function: function, Time: now}
	s.mu.Lock()
	stale, counted := s.sweep(now)
	found := false
	var span time.Duration
	for _, c := range s.routers {
		f := c.functions[function]
		if f == nil {
			continue
		}
		found = true
		part := f.take()
		out.AverageConcurrency += part.avg
		out.Requests += part.requests
		out.InFlight += f.inFlight
		out.ActiveActors += part.actors
		span = max(span, part.window)
	}
	if d := s.departed[function]; d != nil {
		found = true
		out.AverageConcurrency += d.avg
		out.Requests += d.requests
		out.ActiveActors += d.actors
		span = max(span, d.window)
		delete(s.departed, function)
	}
	prev, seen := s.lastSnapshot[function]
	switch {
	case !found:
		delete(s.lastSnapshot, function)
	case seen:
		out.Window = max(now.Sub(prev), 0)
		s.lastSnapshot[function] = now
	default:
		out.Window = span
		s.lastSnapshot[function] = now
	}
	s.mu.Unlock()
	s.endStale(stale, counted, now)
	return out
}
