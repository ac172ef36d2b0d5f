// Package stats counts, per function, the request statistics the autoscaler scales on: what
// Knative's activator and queue-proxy report to the KPA, plus the number of active actors.
//
// A Recorder is told when each request enters and leaves the router. It integrates the number
// of requests in flight over time, so that ending a function's window (EndWindow) reports the
// time-weighted average concurrency of the window since the previous one ended, the way Knative's
// queue-proxy computes it: at every change, area += in-flight × elapsed; at the end of the window,
// average = area / window length.
package stats

import (
	"cmp"
	"slices"
	"sync"
	"time"

	"k8s.io/utils/clock"
)

// forgetAfterEmptySnapshots is how many consecutive empty windows (no request began, none was
// in flight at any moment of the window) make a Recorder forget a function. At the autoscaler's
// one window per second that is ten minutes of idleness: far longer than Knative's default
// stable window (60 s) and scale-to-zero grace period (30 s), so the autoscaler has long seen the
// zeros it needs. A forgotten function reports exactly what an idle one would, except that
// EndWindows leaves it out; its next request starts it afresh.
const forgetAfterEmptySnapshots = 600

// maxTrackedActors bounds the actors a window remembers by id. Past it, the actors no longer in
// flight are counted instead of remembered, so a flood of distinct actors in one window costs a
// counter, not memory — also in a router whose windows nobody ends (`knactor
// router` without an autoscaler), where the window never ends. An actor counted that way and
// called again in the same window counts twice: a window with more than maxTrackedActors actors
// may report more ActiveActors than it had, never fewer.
const maxTrackedActors = 1 << 14

// Snapshot is the statistics of one function over one window.
type Snapshot struct {
	// Function is the function's name.
	Function string
	// Time is the end of the window.
	Time time.Time
	// Window is the length of the window this snapshot covers.
	Window time.Duration
	// InFlight is the number of requests in flight at Time.
	InFlight int
	// AverageConcurrency is the time-weighted average of the requests in flight over the window;
	// InFlight when the window has no length.
	AverageConcurrency float64
	// Requests is the number of requests that began in the window.
	Requests uint64
	// ActiveActors is the number of distinct actors that had a request in flight at some moment
	// of the window: those whose request began in it, and those whose request began earlier and
	// was still in flight when it began.
	ActiveActors int
}

// Recorder keeps the request statistics of every function it has seen. It is safe for
// concurrent use.
//
// EndWindow (or EndWindows) ends a function's window and starts the next one, so a Recorder has
// one reader of its windows: the autoscaler's scraper. InFlight, Functions, Totals and
// HotActors end no window.
type Recorder struct {
	clk clock.PassiveClock
	// functions maps a function's name to its *funcStats.
	functions sync.Map
	// forgetAfter is forgetAfterEmptySnapshots; tests lower it.
	forgetAfter int
	// trackActors is maxTrackedActors; tests lower it.
	trackActors int
}

// NewRecorder returns a Recorder that reads time from clk.
func NewRecorder(clk clock.PassiveClock) *Recorder {
	return &Recorder{clk: clk, forgetAfter: forgetAfterEmptySnapshots, trackActors: maxTrackedActors}
}

// funcStats holds the statistics of one function's current window.
type funcStats struct {
	name string

	mu sync.Mutex
	// inFlight is the number of requests in flight.
	inFlight int
	// area is the integral of inFlight over the window so far, in request-nanoseconds. An
	// int64 holds it exactly for 10,000 requests in flight over more than a week.
	area time.Duration
	// windowStart is when the window began; last is when area was last brought up to date.
	windowStart, last time.Time
	// requests is the number of requests that began in the window.
	requests uint64
	// actors maps each actor that had a request in flight during the window to its number of
	// requests in flight now. Entries at zero stay until the window ends, or until the map
	// reaches pruneAt: then they move to counted.
	actors map[string]int
	// counted is the actors of the window no longer in actors (see maxTrackedActors).
	counted int
	// pruneAt is the size of actors that makes Begin prune it: the Recorder's trackActors, or
	// twice what a prune left (all in flight), so pruning stays amortized O(1) per request.
	pruneAt int
	// emptySnapshots counts the consecutive windows that ended with nothing in them.
	emptySnapshots int
	// forgotten is set when the function is removed from its Recorder; a request that finds it
	// set looks the function up again.
	forgotten bool

	// totalRequests and totalArea are requests and area since the function was first seen,
	// never reset when a window ends: the status page reads them (Totals) without ending the
	// autoscaler's window.
	totalRequests uint64
	totalArea     time.Duration
	// hot counts calls per actor in the current half of the hot-actor window and hotPrev in the
	// one before (see HotActors); each holds at most hotActorsTracked actors.
	hot, hotPrev map[string]uint64
	hotStart     time.Time
}

// advance brings area up to now. A clock that steps backwards adds no area.
func (f *funcStats) advance(now time.Time) {
	if d := now.Sub(f.last); d > 0 {
		f.area += time.Duration(f.inFlight) * d
		f.totalArea += time.Duration(f.inFlight) * d
	}
	f.last = now
}

// Begin records that a request for function entered the router, on behalf of actor ("" for a
// stateless call). The caller must call end when the request leaves; further calls of end do
// nothing. The request path uses Enter, which allocates nothing.
func (r *Recorder) Begin(function, actor string) (end func()) {
	c := r.Enter(function, actor)
	var once sync.Once
	return func() { once.Do(c.End) }
}

// Call is a request in flight in a Recorder, from Enter until End.
type Call struct {
	r     *Recorder
	f     *funcStats
	actor string
}

// Enter records that a request for function entered the router, on behalf of actor ("" for a
// stateless call). The caller must call End exactly once when the request leaves.
func (r *Recorder) Enter(function, actor string) Call {
	for {
		f := r.lookup(function)
		f.mu.Lock()
		if f.forgotten {
			// An EndWindow forgot f after the lookup; the next lookup makes a new one.
			f.mu.Unlock()
			continue
		}
		now := r.clk.Now()
		f.advance(now)
		f.inFlight++
		f.requests++
		f.totalRequests++
		if actor != "" {
			f.countHot(now, actor)
			if _, known := f.actors[actor]; !known && len(f.actors) >= max(f.pruneAt, r.trackActors) {
				f.prune()
			}
			if f.actors == nil {
				f.actors = make(map[string]int)
			}
			f.actors[actor]++
		}
		f.mu.Unlock()
		// A function is never forgotten while a request is in flight, so the Call can keep f.
		return Call{r: r, f: f, actor: actor}
	}
}

// End records that the request left.
func (c Call) End() {
	f := c.f
	f.mu.Lock()
	defer f.mu.Unlock()
	f.advance(c.r.clk.Now())
	f.inFlight--
	if c.actor != "" {
		f.actors[c.actor]--
	}
}

// lookup returns the statistics of function, creating them with a window that begins now.
func (r *Recorder) lookup(function string) *funcStats {
	if v, ok := r.functions.Load(function); ok {
		return v.(*funcStats)
	}
	now := r.clk.Now()
	v, _ := r.functions.LoadOrStore(function, &funcStats{name: function, windowStart: now, last: now})
	return v.(*funcStats)
}

// EndWindow ends function's window: it returns the statistics of the window since the previous
// one ended (or since the function's first request) and starts a new window. A function the Recorder has not seen, or
// has forgotten, reports a window of no length with nothing in it.
func (r *Recorder) EndWindow(function string) Snapshot {
	v, ok := r.functions.Load(function)
	if !ok {
		return Snapshot{Function: function, Time: r.clk.Now()}
	}
	return r.endWindow(v.(*funcStats))
}

// EndWindows ends the window of every function the Recorder knows, as EndWindow does, and returns
// their Snapshots sorted by name.
func (r *Recorder) EndWindows() []Snapshot {
	var functions []*funcStats
	r.functions.Range(func(_, f any) bool {
		functions = append(functions, f.(*funcStats))
		return true
	})
	slices.SortFunc(functions, func(a, b *funcStats) int { return cmp.Compare(a.name, b.name) })
	snapshots := make([]Snapshot, len(functions))
	for i, f := range functions {
		snapshots[i] = r.endWindow(f)
	}
	return snapshots
}

// endWindow ends f's window, starts the next one, and forgets f after enough empty windows. A
// function that was forgotten since the caller found it reports as one never seen.
func (r *Recorder) endWindow(f *funcStats) Snapshot {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := r.clk.Now()
	if f.forgotten {
		return Snapshot{Function: f.name, Time: now}
	}
	f.advance(now)
	s := Snapshot{
		Function:           f.name,
		Time:               now,
		Window:             now.Sub(f.windowStart),
		InFlight:           f.inFlight,
		AverageConcurrency: float64(f.inFlight),
		Requests:           f.requests,
		ActiveActors:       len(f.actors) + f.counted,
	}
	if s.Window > 0 {
		s.AverageConcurrency = float64(f.area) / float64(s.Window)
	}

	if f.requests == 0 && f.inFlight == 0 && f.area == 0 {
		f.emptySnapshots++
	} else {
		f.emptySnapshots = 0
	}
	if f.emptySnapshots >= r.forgetAfter {
		f.forgotten = true
		r.functions.CompareAndDelete(f.name, f)
		return s
	}

	f.windowStart, f.area, f.requests = now, 0, 0
	// The next window starts with the actors still in flight.
	f.actors, _ = inFlightActors(f.actors)
	f.counted, f.pruneAt = 0, 0
	return s
}

// prune moves the window's actors no longer in flight from actors to counted.
func (f *funcStats) prune() {
	var idle int
	f.actors, idle = inFlightActors(f.actors)
	f.counted += idle
	f.pruneAt = 2 * len(f.actors)
}

// inFlightActors returns the actors of m with requests in flight, in a new map (deleting from
// m would keep the memory of a burst of actors: maps do not shrink), and how many it left out.
func inFlightActors(m map[string]int) (map[string]int, int) {
	var actors map[string]int
	idle := 0
	for a, n := range m {
		if n == 0 {
			idle++
			continue
		}
		if actors == nil {
			actors = make(map[string]int)
		}
		actors[a] = n
	}
	return actors, idle
}

// InFlight returns the number of requests for function in flight now. It does not end the
// window.
func (r *Recorder) InFlight(function string) int {
	v, ok := r.functions.Load(function)
	if !ok {
		return 0
	}
	f := v.(*funcStats)
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.inFlight
}

// Functions returns the names of the functions the Recorder knows, sorted. It does not end any
// window (metrics scrapes use it beside InFlight).
func (r *Recorder) Functions() []string {
	var names []string
	r.functions.Range(func(name, _ any) bool {
		names = append(names, name.(string))
		return true
	})
	slices.Sort(names)
	return names
}

// Totals returns function's requests and the integral of its requests in flight (in
// request-nanoseconds) since the Recorder first saw it, and its requests in flight now. Unlike
// EndWindow it ends no window: the difference of two Totals is the rate and the average
// concurrency between them. A function forgotten and seen again starts from zero.
func (r *Recorder) Totals(function string) (requests uint64, area time.Duration, inFlight int) {
	v, ok := r.functions.Load(function)
	if !ok {
		return 0, 0, 0
	}
	f := v.(*funcStats)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.advance(r.clk.Now())
	return f.totalRequests, f.totalArea, f.inFlight
}

// Hot actors are counted with the Space-Saving algorithm (Metwally et al.): at most
// hotActorsTracked actors per function are counted; a new actor past that takes the place of
// the least counted one and inherits its count, so a count is an upper bound, and an actor
// called more than 1/hotActorsTracked of the time is never missed. Counts are kept in two
// halves of HotWindow, so what HotActors reports covers the last half to whole window.
const hotActorsTracked = 32

// HotWindow is the window HotActors counts calls in: Knative's default stable window.
const HotWindow = 60 * time.Second

// ActorCalls is an actor and its calls in the hot-actor window.
type ActorCalls struct {
	Actor string
	Calls uint64
}

// countHot counts one call of actor. Hold f.mu.
func (f *funcStats) countHot(now time.Time, actor string) {
	f.rotateHot(now)
	if f.hot == nil {
		f.hot = make(map[string]uint64, hotActorsTracked)
	}
	if _, ok := f.hot[actor]; ok || len(f.hot) < hotActorsTracked {
		f.hot[actor]++
		return
	}
	var minActor string
	var minCalls uint64
	for a, n := range f.hot {
		if minActor == "" || n < minCalls {
			minActor, minCalls = a, n
		}
	}
	delete(f.hot, minActor)
	f.hot[actor] = minCalls + 1
}

// rotateHot starts a new half of the hot-actor window when the current one is over. Hold f.mu.
func (f *funcStats) rotateHot(now time.Time) {
	half := HotWindow / 2
	switch d := now.Sub(f.hotStart); {
	case d < half && d >= 0:
		return
	case d < 2*half && d >= 0:
		f.hot, f.hotPrev = f.hotPrev, f.hot
		f.hotStart = f.hotStart.Add(half)
	default: // both halves are over (or the clock stepped back)
		clear(f.hotPrev)
		f.hotStart = now
	}
	clear(f.hot)
}

// HotActors returns function's most called actors over the last HotWindow (at least its
// second half), most called first, at most n.
func (r *Recorder) HotActors(function string, n int) []ActorCalls {
	v, ok := r.functions.Load(function)
	if !ok {
		return nil
	}
	f := v.(*funcStats)
	f.mu.Lock()
	f.rotateHot(r.clk.Now())
	sum := make(map[string]uint64, len(f.hot)+len(f.hotPrev))
	for a, c := range f.hotPrev {
		sum[a] += c
	}
	for a, c := range f.hot {
		sum[a] += c
	}
	f.mu.Unlock()
	out := make([]ActorCalls, 0, len(sum))
	for a, c := range sum {
		out = append(out, ActorCalls{Actor: a, Calls: c})
	}
	slices.SortFunc(out, func(a, b ActorCalls) int {
		if c := cmp.Compare(b.Calls, a.Calls); c != 0 {
			return c
		}
		return cmp.Compare(a.Actor, b.Actor)
	})
	if len(out) > n {
		out = out[:n]
	}
	return out
}
