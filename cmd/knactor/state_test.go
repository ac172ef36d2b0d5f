package main

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/knactor/knactor/manifest"
	"github.com/knactor/knactor/pods/local"
	"github.com/knactor/knactor/statecache"
)

// openTestState opens the state sf names, in a fresh directory with a 1 MiB cache and no flush
// during the test, closed when the test ends.
func openTestState(t *testing.T, sf *stateFlags) *state {
	t.Helper()
	sf.dir, sf.cacheMB, sf.flushEvery = filepath.Join(t.TempDir(), "state"), 1, time.Hour
	st, err := sf.openState(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close(context.Background()) })
	return st
}

// annotated is a fixed list of functions and their annotations.
type annotated map[string]map[string]string

func (a annotated) Functions() []string {
	var names []string
	for n := range a {
		names = append(names, n)
	}
	return names
}

func (a annotated) Annotations(name string) map[string]string { return a[name] }

// warnings captures the Warn lines slog's default logger writes while a test runs.
type warnings struct {
	mu    sync.Mutex
	lines []string
}

func (w *warnings) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (w *warnings) Handle(_ context.Context, r slog.Record) error {
	line := r.Message
	r.Attrs(func(a slog.Attr) bool { line += " " + a.Key + "=" + a.Value.String(); return true })
	w.mu.Lock()
	w.lines = append(w.lines, line)
	w.mu.Unlock()
	return nil
}
func (w *warnings) WithAttrs([]slog.Attr) slog.Handler { return w }
func (w *warnings) WithGroup(string) slog.Handler      { return w }

// captureWarnings makes slog's default logger write into the returned warnings until the test
// ends.
func captureWarnings(t *testing.T) *warnings {
	w := &warnings{}
	prev := slog.Default()
	slog.SetDefault(slog.New(w))
	t.Cleanup(func() { slog.SetDefault(prev) })
	return w
}

// refusedWarnings lists the functions of the "write-behind refused" warnings, sorted.
func (w *warnings) refusedWarnings() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var fns []string
	for _, l := range w.lines {
		if strings.Contains(l, "write-behind refused") {
			_, fn, _ := strings.Cut(l, "function=")
			fns = append(fns, fn)
		}
	}
	sort.Strings(fns)
	return fns
}

// TestKubeWriteModes is the Kubernetes side of the write mode: the ActorSystem's mode for a
// function without the annotation, the annotation's otherwise, and a function keeps its first
// mode when the annotation changes under a running router. With several routers (Kubernetes
// mode: stateFlags.severalRouters) write-behind is refused: a default of it does not open, and a
// function annotated with it runs write-through, with one warning per function and a gauge of
// such functions (issue 16, point 6: an actor that moves between routers would lose acknowledged
// writes).
func TestKubeWriteModes(t *testing.T) {
	const (
		wt = manifest.WriteThrough
		wb = manifest.WriteBehind
	)
	first := annotated{
		"plain":   nil,
		"through": {manifest.WriteModeAnnotation: wt},
		"behind":  {manifest.WriteModeAnnotation: wb},
		"broken":  {manifest.WriteModeAnnotation: "fast"},
	}
	tests := []struct {
		name           string
		def            string
		severalRouters bool
		openErr        bool              // openState refuses the flags
		want           map[string]string // modes after the first annotations
		// then are the annotations after changes, with "late" first called before the watcher
		// told of it; wantThen the modes after them (each function keeps its first mode).
		then     annotated
		wantThen map[string]string
		refused  float64  // knactor_state_write_behind_refused_functions after then
		warned   []string // functions warned of running write-through, sorted
	}{{
		name: "one router, default write-through",
		def:  wt,
		want: map[string]string{"plain": wt, "through": wt, "behind": wb, "broken": wt},
		then: annotated{"plain": nil, "behind": {manifest.WriteModeAnnotation: wb},
			"through": {manifest.WriteModeAnnotation: wb}, "broken": {manifest.WriteModeAnnotation: wb}, "late": {manifest.WriteModeAnnotation: wb}},
		wantThen: map[string]string{"through": wt, "broken": wt, "late": wt, "behind": wb},
	}, {
		name: "one router, default write-behind",
		def:  wb,
		want: map[string]string{"plain": wb, "through": wt, "behind": wb, "broken": wb},
		then: annotated{"plain": nil, "behind": {manifest.WriteModeAnnotation: wb},
			"through": {manifest.WriteModeAnnotation: wb}, "broken": {manifest.WriteModeAnnotation: wt}, "late": {manifest.WriteModeAnnotation: wt}},
		wantThen: map[string]string{"through": wt, "broken": wb, "late": wb, "behind": wb},
	}, {
		name: "several routers, default write-through", def: wt, severalRouters: true,
		want: map[string]string{"plain": wt, "through": wt, "behind": wt, "broken": wt},
		// "behind" drops its annotation: it leaves the gauge; three functions newly ask.
		then: annotated{"plain": nil, "behind": nil,
			"through": {manifest.WriteModeAnnotation: wb}, "broken": {manifest.WriteModeAnnotation: wb}, "late": {manifest.WriteModeAnnotation: wb}},
		wantThen: map[string]string{"through": wt, "broken": wt, "late": wt, "behind": wt, "plain": wt},
		refused:  3,
		warned:   []string{"behind", "broken", "late", "through"},
	}, {
		name: "several routers, default write-behind", def: wb, severalRouters: true, openErr: true,
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			warns := captureWarnings(t)
			sf := &stateFlags{writeMode: tc.def, severalRouters: tc.severalRouters}
			if tc.openErr {
				sf.dir = filepath.Join(t.TempDir(), "state")
				st, err := sf.openState(context.Background())
				if err == nil {
					_ = st.Close(context.Background())
					t.Fatal("openState accepted a default of write-behind with several routers")
				}
				if !errors.Is(err, errWriteBehindSeveralRouters) {
					t.Fatalf("openState: %v, want %v", err, errWriteBehindSeveralRouters)
				}
				return
			}
			st := openTestState(t, sf)
			fns := maps.Clone(first)
			applyFunctionSettings(st, fns)
			for fn, mode := range tc.want {
				if got := st.modeOf(fn).String(); got != mode {
					t.Errorf("%s runs %s, want %s", fn, got, mode)
				}
			}
			st.of("late") // a call before the watcher told of the function
			applyFunctionSettings(st, tc.then)
			for fn, mode := range tc.wantThen {
				if got := st.modeOf(fn).String(); got != mode {
					t.Errorf("after the annotations changed %s runs %s, want %s", fn, got, mode)
				}
			}
			if got := refusedGauge(t, st); got != tc.refused {
				t.Errorf("knactor_state_write_behind_refused_functions = %v, want %v", got, tc.refused)
			}
			if got := warns.refusedWarnings(); !slices.Equal(got, tc.warned) {
				t.Errorf("write-behind refused warnings for %q, want %q", got, tc.warned)
			}
			if _, ok := st.caches[statecache.WriteBehind]; ok && tc.severalRouters {
				t.Error("a write-behind cache was made with several routers")
			}
		})
	}
}

// refusedGauge reads knactor_state_write_behind_refused_functions from the state's collectors,
// as /metrics would; 0 when the state does not export it (one router).
func refusedGauge(t *testing.T, st *state) float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(st.collectors...)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "knactor_state_write_behind_refused_functions" {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	return 0
}

// TestKubeWriteBehindAnnotationWritesThrough: with Kubernetes mode's state (several routers,
// revalidated reads), a function annotated write-behind has its write in the store when Put
// returns, and reads a write another router made to the store since: the cache the router
// uses for it is write-through and revalidating, the configuration
// router.TestOwnershipMovesUnderLoadLoseNoWrite proves loses no acknowledged write.
func TestKubeWriteBehindAnnotationWritesThrough(t *testing.T) {
	st := openTestState(t, &stateFlags{writeMode: manifest.WriteThrough, severalRouters: true, revalidate: true})
	applyFunctionSettings(st, annotated{"behind": {manifest.WriteModeAnnotation: manifest.WriteBehind}})
	ctx := context.Background()
	k := statecache.Key{Function: "behind", ID: "a"}
	if _, err := st.Get(ctx, k); err != nil { // cached: absent
		t.Fatal(err)
	}
	v, err := st.Put(ctx, k, []byte(`{"value":1}`), statecache.NoVersion, "commit-1")
	if err != nil {
		t.Fatal(err)
	}
	stored, err := st.store.Get(ctx, k)
	if err != nil || string(stored.Value) != `{"value":1}` {
		t.Fatalf("the store holds %q, %v after the write returned: the write was not written through", stored.Value, err)
	}
	// Another router writes the actor: this one's cached {"value":1} is stale.
	if _, err := st.store.Put(ctx, k, []byte(`{"value":2}`), v, "commit-2"); err != nil {
		t.Fatal(err)
	}
	if e, err := st.Get(ctx, k); err != nil || string(e.Value) != `{"value":2}` {
		t.Fatalf("read %q, %v after another router wrote {\"value\":2}: the cache does not revalidate", e.Value, err)
	}
}

// TestKubePassivateAfter: a function's knactor.dev/passivate-after is its actors' idle time in
// every cache, also one made later (a write mode first used after the annotation was seen); a
// function without it, or with a broken one, has the ActorSystem's; a removed annotation gives
// the ActorSystem's back.
func TestKubePassivateAfter(t *testing.T) {
	st := openTestState(t, &stateFlags{writeMode: manifest.WriteThrough, idleAfter: time.Hour})
	fns := annotated{
		"plain":  nil,
		"quick":  {manifest.PassivateAfterAnnotation: "90s", manifest.WriteModeAnnotation: manifest.WriteBehind},
		"never":  {manifest.PassivateAfterAnnotation: "0"},
		"broken": {manifest.PassivateAfterAnnotation: "soon"},
	}
	applyFunctionSettings(st, fns)
	want := map[string]time.Duration{"plain": time.Hour, "quick": 90 * time.Second, "never": 0, "broken": time.Hour}
	check := func(when string) {
		t.Helper()
		for fn, d := range want {
			for _, mode := range []statecache.WriteMode{statecache.WriteThrough, statecache.WriteBehind} {
				c, err := st.cache(mode)
				if err != nil {
					t.Fatal(err)
				}
				if got := c.IdleAfterOf(fn); got != d {
					t.Errorf("%s: %s's actors idle out after %v in the %s cache, want %v", when, fn, got, mode, d)
				}
			}
		}
	}
	check("first")
	delete(fns["quick"], manifest.PassivateAfterAnnotation)
	applyFunctionSettings(st, fns)
	want["quick"] = time.Hour
	check("after the annotation was removed")
}

// TestStateIsLocalWriteModes is knactor up's side of the write mode (local.WriteModes): the
// default for a function whose manifest names none, and a function pinned to its first mode.
func TestStateIsLocalWriteModes(t *testing.T) {
	st := openTestState(t, &stateFlags{writeMode: manifest.WriteBehind})
	var modes local.WriteModes = st
	if got := modes.DefaultWriteMode().String(); got != manifest.WriteBehind {
		t.Fatalf("DefaultWriteMode = %s, want %s", got, manifest.WriteBehind)
	}
	steps := []struct {
		function, mode string
		changed, err   bool
	}{
		{"a", "", true, false},
		{"a", manifest.WriteBehind, false, false},
		{"a", manifest.WriteThrough, false, true},
		{"b", manifest.WriteThrough, true, false},
	}
	for _, s := range steps {
		changed, err := modes.PinMode(s.function, s.mode)
		if changed != s.changed || (err != nil) != s.err {
			t.Fatalf("PinMode(%q, %q) = %v, %v; want changed %v, error %v", s.function, s.mode, changed, err, s.changed, s.err)
		}
	}
	if got := st.modeOf("b").String(); got != manifest.WriteThrough {
		t.Fatalf("b runs %s, want %s", got, manifest.WriteThrough)
	}
}
