package stats

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"k8s.io/utils/clock"
	clocktesting "k8s.io/utils/clock/testing"
)

const fn = "counter"

var t0 = time.Unix(1_700_000_000, 0)

// prime makes the Recorder know fn and starts its window now, with nothing recorded in it.
func prime(r *Recorder) {
	r.Begin(fn, "")()
	r.EndWindow(fn)
}

func TestEndWindow(t *testing.T) {
	tests := []struct {
		name string
		// run records requests for fn and leaves the clock at the end of the window.
		run  func(r *Recorder, clk *clocktesting.FakeClock)
		want Snapshot // Function and Time are filled in by the test
	}{{
		name: "steady one in flight",
		run: func(r *Recorder, clk *clocktesting.FakeClock) {
			r.Begin(fn, "")
			clk.Step(time.Second)
		},
		want: Snapshot{Window: time.Second, InFlight: 1, AverageConcurrency: 1, Requests: 1},
	}, {
		name: "none for half, two for half",
		run: func(r *Recorder, clk *clocktesting.FakeClock) {
			prime(r)
			clk.Step(500 * time.Millisecond)
			r.Begin(fn, "")
			r.Begin(fn, "")
			clk.Step(500 * time.Millisecond)
		},
		want: Snapshot{Window: time.Second, InFlight: 2, AverageConcurrency: 1, Requests: 2},
	}, {
		name: "burst of ten at once",
		run: func(r *Recorder, clk *clocktesting.FakeClock) {
			prime(r)
			var ends []func()
			for range 10 {
				ends = append(ends, r.Begin(fn, ""))
			}
			clk.Step(100 * time.Millisecond)
			for _, end := range ends {
				end()
			}
			clk.Step(900 * time.Millisecond)
		},
		want: Snapshot{Window: time.Second, AverageConcurrency: 1, Requests: 10},
	}, {
		name: "burst of ten one after another",
		run: func(r *Recorder, clk *clocktesting.FakeClock) {
			prime(r)
			for range 10 {
				end := r.Begin(fn, "")
				clk.Step(10 * time.Millisecond)
				end()
			}
			clk.Step(900 * time.Millisecond)
		},
		want: Snapshot{Window: time.Second, AverageConcurrency: 0.1, Requests: 10},
	}, {
		name: "window of no length reports the requests in flight",
		run: func(r *Recorder, clk *clocktesting.FakeClock) {
			for range 3 {
				r.Begin(fn, "")
			}
			r.Begin(fn, "")()
		},
		want: Snapshot{InFlight: 3, AverageConcurrency: 3, Requests: 4},
	}, {
		name: "request from the previous window",
		run: func(r *Recorder, clk *clocktesting.FakeClock) {
			r.Begin(fn, "a")
			clk.Step(time.Second)
			r.EndWindow(fn)
			clk.Step(2 * time.Second)
		},
		want: Snapshot{Window: 2 * time.Second, InFlight: 1, AverageConcurrency: 1, ActiveActors: 1},
	}, {
		name: "request ended in this window",
		run: func(r *Recorder, clk *clocktesting.FakeClock) {
			end := r.Begin(fn, "a")
			clk.Step(time.Second)
			r.EndWindow(fn)
			clk.Step(time.Second)
			end()
			clk.Step(time.Second)
		},
		want: Snapshot{Window: 2 * time.Second, AverageConcurrency: 0.5, ActiveActors: 1},
	}, {
		name: "idle after a request",
		run: func(r *Recorder, clk *clocktesting.FakeClock) {
			end := r.Begin(fn, "a")
			clk.Step(time.Second)
			end()
			r.EndWindow(fn)
			clk.Step(time.Second)
		},
		want: Snapshot{Window: time.Second},
	}, {
		name: "end is idempotent",
		run: func(r *Recorder, clk *clocktesting.FakeClock) {
			r.Begin(fn, "")
			end := r.Begin(fn, "")
			end()
			end()
			clk.Step(time.Second)
			end()
		},
		want: Snapshot{Window: time.Second, InFlight: 1, AverageConcurrency: 1, Requests: 2},
	}, {
		name: "distinct actors",
		run: func(r *Recorder, clk *clocktesting.FakeClock) {
			r.Begin(fn, "a")()
			r.Begin(fn, "b")
			r.Begin(fn, "a")
			r.Begin(fn, "")
			r.Begin(fn, "")
			clk.Step(time.Second)
		},
		want: Snapshot{Window: time.Second, InFlight: 4, AverageConcurrency: 4, Requests: 5, ActiveActors: 2},
	}, {
		name: "actors in flight carry over to the next window",
		run: func(r *Recorder, clk *clocktesting.FakeClock) {
			r.Begin(fn, "gone")()
			r.Begin(fn, "stays")
			end := r.Begin(fn, "ends")
			r.EndWindow(fn)
			clk.Step(time.Second)
			end()
			r.Begin(fn, "new")()
		},
		want: Snapshot{Window: time.Second, InFlight: 1, AverageConcurrency: 2, Requests: 1, ActiveActors: 3},
	}, {
		name: "clock stepped back adds no area",
		run: func(r *Recorder, clk *clocktesting.FakeClock) {
			end := r.Begin(fn, "")
			clk.SetTime(t0.Add(-time.Second))
			end()
			clk.SetTime(t0.Add(time.Second))
		},
		want: Snapshot{Window: time.Second, Requests: 1},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := clocktesting.NewFakeClock(t0)
			r := NewRecorder(clk)
			tt.run(r, clk)
			want := tt.want
			want.Function, want.Time = fn, clk.Now()
			if got := r.EndWindow(fn); got != want {
				t.Errorf("EndWindow() =\n%+v, want\n%+v", got, want)
			}
		})
	}
}

func TestSnapshotStartsNewWindow(t *testing.T) {
	clk := clocktesting.NewFakeClock(t0)
	r := NewRecorder(clk)
	r.Begin(fn, "a")
	r.Begin(fn, "b")()
	clk.Step(time.Second)

	first := r.EndWindow(fn)
	if want := (Snapshot{Function: fn, Time: t0.Add(time.Second), Window: time.Second, InFlight: 1, AverageConcurrency: 1, Requests: 2, ActiveActors: 2}); first != want {
		t.Errorf("first EndWindow() =\n%+v, want\n%+v", first, want)
	}
	second := r.EndWindow(fn)
	if want := (Snapshot{Function: fn, Time: t0.Add(time.Second), InFlight: 1, AverageConcurrency: 1, ActiveActors: 1}); second != want {
		t.Errorf("second EndWindow() at once =\n%+v, want\n%+v", second, want)
	}
}

func TestEndWindows(t *testing.T) {
	clk := clocktesting.NewFakeClock(t0)
	r := NewRecorder(clk)
	if got := r.EndWindows(); len(got) != 0 {
		t.Errorf("EndWindows() of a new Recorder = %+v, want none", got)
	}
	r.Begin("b", "")
	r.Begin("c", "x")()
	r.Begin("a", "")
	r.Begin("a", "")
	clk.Step(2 * time.Second)

	now := clk.Now()
	want := []Snapshot{
		{Function: "a", Time: now, Window: 2 * time.Second, InFlight: 2, AverageConcurrency: 2, Requests: 2},
		{Function: "b", Time: now, Window: 2 * time.Second, InFlight: 1, AverageConcurrency: 1, Requests: 1},
		{Function: "c", Time: now, Window: 2 * time.Second, Requests: 1, ActiveActors: 1},
	}
	if got := r.EndWindows(); !slices.Equal(got, want) {
		t.Errorf("EndWindows() =\n%+v, want\n%+v", got, want)
	}

	clk.Step(time.Second)
	now = clk.Now()
	want = []Snapshot{
		{Function: "a", Time: now, Window: time.Second, InFlight: 2, AverageConcurrency: 2},
		{Function: "b", Time: now, Window: time.Second, InFlight: 1, AverageConcurrency: 1},
		{Function: "c", Time: now, Window: time.Second},
	}
	if got := r.EndWindows(); !slices.Equal(got, want) {
		t.Errorf("EndWindows() in the next window =\n%+v, want\n%+v", got, want)
	}
}

func TestSnapshotUnknownFunction(t *testing.T) {
	clk := clocktesting.NewFakeClock(t0)
	r := NewRecorder(clk)
	r.Begin(fn, "")
	if got, want := r.EndWindow("other"), (Snapshot{Function: "other", Time: t0}); got != want {
		t.Errorf("Snapshot(%q) = %+v, want %+v", "other", got, want)
	}
	if got := r.EndWindows(); len(got) != 1 || got[0].Function != fn {
		t.Errorf("EndWindows() = %+v, want only %s: asking about a function must not record it", got, fn)
	}
}

func TestInFlight(t *testing.T) {
	clk := clocktesting.NewFakeClock(t0)
	r := NewRecorder(clk)
	steps := []struct {
		name string
		do   func()
		want int
	}{
		{name: "unknown function", do: func() {}, want: 0},
		{name: "two begin", do: func() { r.Begin(fn, ""); r.Begin(fn, "a") }, want: 2},
		{name: "one more begins and ends", do: func() { r.Begin(fn, "")() }, want: 2},
		{name: "after a snapshot", do: func() { r.EndWindow(fn) }, want: 2},
	}
	for _, s := range steps {
		s.do()
		if got := r.InFlight(fn); got != s.want {
			t.Errorf("%s: InFlight() = %d, want %d", s.name, got, s.want)
		}
	}
	clk.Step(time.Second)
	if got := r.EndWindow(fn); got.Requests != 0 || got.Window != time.Second {
		t.Errorf("EndWindow() after InFlight = %+v, want a window of 1s with no requests: InFlight must not end the window", got)
	}
}

func TestForgetIdleFunction(t *testing.T) {
	clk := clocktesting.NewFakeClock(t0)
	r := NewRecorder(clk)
	end := r.Begin(fn, "a")
	clk.Step(time.Second)
	// Requests in flight keep a function however many snapshots find no new request.
	for range 2 * forgetAfterEmptySnapshots {
		if got := r.EndWindows(); len(got) != 1 || got[0].InFlight != 1 {
			t.Fatalf("EndWindows() with a request in flight = %+v, want it reported", got)
		}
		clk.Step(time.Second)
	}
	end()

	// The window in which the last request ended is not empty.
	if got := r.EndWindow(fn); got.AverageConcurrency != 1 || got.ActiveActors != 1 {
		t.Errorf("EndWindow() of the window the request ended in = %+v, want concurrency 1 and 1 actor", got)
	}
	for i := range forgetAfterEmptySnapshots {
		clk.Step(time.Second)
		want := []Snapshot{{Function: fn, Time: clk.Now(), Window: time.Second}}
		if got := r.EndWindows(); !slices.Equal(got, want) {
			t.Fatalf("empty EndWindows() %d = %+v, want %+v", i+1, got, want)
		}
	}
	if got := r.EndWindows(); len(got) != 0 {
		t.Errorf("EndWindows() after %d empty snapshots = %+v, want the function forgotten", forgetAfterEmptySnapshots, got)
	}
	if got, want := r.EndWindow(fn), (Snapshot{Function: fn, Time: clk.Now()}); got != want {
		t.Errorf("EndWindow() of a forgotten function = %+v, want %+v", got, want)
	}

	// A new request starts the function afresh.
	r.Begin(fn, "b")
	clk.Step(time.Second)
	want := Snapshot{Function: fn, Time: clk.Now(), Window: time.Second, InFlight: 1, AverageConcurrency: 1, Requests: 1, ActiveActors: 1}
	if got := r.EndWindow(fn); got != want {
		t.Errorf("EndWindow() after a new request = %+v, want %+v", got, want)
	}
}

// TestConcurrentRequests runs many requests at once and checks that no count is lost.
func TestConcurrentRequests(t *testing.T) {
	const (
		goroutines = 16
		requests   = 1000 // per goroutine
		actors     = 50
	)
	clk := clocktesting.NewFakeClock(t0)
	r := NewRecorder(clk)
	held := r.Begin(fn, "held")
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range requests {
				end := r.Begin(fn, fmt.Sprint("actor-", (g*requests+i)%actors))
				if r.InFlight(fn) < 2 {
					t.Error("InFlight() < 2 while two requests are in flight")
				}
				end()
				end()
			}
		})
	}
	wg.Wait()
	clk.Step(time.Second)
	want := Snapshot{
		Function: fn, Time: clk.Now(), Window: time.Second, InFlight: 1, AverageConcurrency: 1,
		Requests: goroutines*requests + 1, ActiveActors: actors + 1,
	}
	if got := r.EndWindow(fn); got != want {
		t.Errorf("EndWindow() =\n%+v, want\n%+v", got, want)
	}
	held()
	if got := r.InFlight(fn); got != 0 {
		t.Errorf("InFlight() = %d after every request ended, want 0", got)
	}
}

// TestConcurrentSnapshots takes snapshots from two goroutines, which forget the function whenever
// they find it idle, while requests come and go: every request must be counted in exactly one
// snapshot.
func TestConcurrentSnapshots(t *testing.T) {
	const (
		goroutines = 8
		requests   = 2000 // per goroutine
	)
	clk := clocktesting.NewFakeClock(t0)
	r := NewRecorder(clk)
	r.forgetAfter = 1

	var (
		readers             sync.WaitGroup
		counted, countedAll uint64
		done                = make(chan struct{})
	)
	// read calls snapshot until done and adds up the requests it reports into *sum.
	read := func(sum *uint64, snapshot func() []Snapshot) {
		for {
			select {
			case <-done:
				return
			default:
			}
			for _, s := range snapshot() {
				*sum += s.Requests
			}
			clk.Step(time.Millisecond)
		}
	}
	readers.Go(func() { read(&countedAll, r.EndWindows) })
	readers.Go(func() { read(&counted, func() []Snapshot { return []Snapshot{r.EndWindow(fn)} }) })

	var workers sync.WaitGroup
	for range goroutines {
		workers.Go(func() {
			for range requests {
				r.Begin(fn, "a")()
			}
		})
	}
	workers.Wait()
	close(done)
	readers.Wait()
	if got := counted + countedAll + r.EndWindow(fn).Requests; got != goroutines*requests {
		t.Errorf("snapshots counted %d requests, want %d", got, goroutines*requests)
	}
}

func BenchmarkBeginEnd(b *testing.B) {
	tests := []struct {
		name  string
		actor func(i int) string
	}{
		{name: "stateless", actor: func(int) string { return "" }},
		{name: "one actor", actor: func(int) string { return "a" }},
		{name: "many actors", actor: func(i int) string { return actorNames[i%len(actorNames)] }},
	}
	for _, tt := range tests {
		b.Run(tt.name, func(b *testing.B) {
			r := NewRecorder(clock.RealClock{})
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					r.Begin(fn, tt.actor(i))()
					i++
				}
			})
		})
	}
}

var actorNames = func() []string {
	names := make([]string, 1024)
	for i := range names {
		names[i] = fmt.Sprint("user-", i)
	}
	return names
}()

// TestActorFloodStaysBounded is the regression test of a Recorder that remembered every actor of
// a window by id until the next snapshot: a router nobody snapshots (`knactor router` without an
// autoscaler) kept every actor id it ever served.
func TestActorFloodStaysBounded(t *testing.T) {
	clk := clocktesting.NewFakeClock(t0)
	r := NewRecorder(clk)
	r.trackActors = 100
	held := r.Begin(fn, "held") // in flight throughout: survives every prune
	tracked := func() int {
		v, _ := r.functions.Load(fn)
		f := v.(*funcStats)
		f.mu.Lock()
		defer f.mu.Unlock()
		return len(f.actors)
	}
	const n = 10_000
	most := 0
	for i := range n {
		r.Begin(fn, fmt.Sprintf("actor-%d", i))()
		most = max(most, tracked())
	}
	if most > r.trackActors {
		t.Fatalf("%d actors remembered by id at once, want at most %d", most, r.trackActors)
	}
	held()
	if got := r.EndWindow(fn); got.ActiveActors != n+1 || got.Requests != n+1 {
		t.Fatalf("EndWindow() = %+v, want %d actors and requests", got, n+1)
	}
	if got := tracked(); got != 0 {
		t.Fatalf("%d actors remembered after the snapshot, want none", got)
	}

	// Actors in flight are never dropped, however many there are; ending them still works.
	var ends []func()
	for i := range 3 * r.trackActors {
		ends = append(ends, r.Begin(fn, fmt.Sprintf("busy-%d", i)))
	}
	if got := tracked(); got != 3*r.trackActors {
		t.Fatalf("%d actors in flight remembered, want %d", got, 3*r.trackActors)
	}
	for _, end := range ends {
		end()
	}
	if got := r.EndWindow(fn); got.ActiveActors != 3*r.trackActors || got.InFlight != 0 {
		t.Fatalf("EndWindow() = %+v, want %d actors and none in flight", got, 3*r.trackActors)
	}
}
