package main

import (
	"context"
	"path/filepath"
	"testing"
	"time"

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

// TestKubeWriteModes is the Kubernetes side of the write mode: the ActorSystem's mode for a
// function without the annotation, the annotation's otherwise, and a function keeps its first
// mode when the annotation changes under a running router.
func TestKubeWriteModes(t *testing.T) {
	for _, def := range []string{manifest.WriteThrough, manifest.WriteBehind} {
		t.Run("default "+def, func(t *testing.T) {
			st := openTestState(t, &stateFlags{writeMode: def})
			fns := annotated{
				"plain":   nil,
				"through": {manifest.WriteModeAnnotation: manifest.WriteThrough},
				"behind":  {manifest.WriteModeAnnotation: manifest.WriteBehind},
				"broken":  {manifest.WriteModeAnnotation: "fast"},
			}
			applyFunctionSettings(st, fns)
			want := map[string]string{"plain": def, "through": manifest.WriteThrough, "behind": manifest.WriteBehind, "broken": def}
			for fn, mode := range want {
				if got := st.modeOf(fn).String(); got != mode {
					t.Errorf("%s runs %s, want %s", fn, got, mode)
				}
			}
			// A changed annotation, a fixed one, and a function first called before its
			// annotation was seen: each keeps the mode it first ran with.
			other := map[string]string{manifest.WriteThrough: manifest.WriteBehind, manifest.WriteBehind: manifest.WriteThrough}
			st.of("late") // a call before the watcher told of the function
			fns["through"] = map[string]string{manifest.WriteModeAnnotation: manifest.WriteBehind}
			fns["broken"] = map[string]string{manifest.WriteModeAnnotation: other[def]}
			fns["late"] = map[string]string{manifest.WriteModeAnnotation: other[def]}
			applyFunctionSettings(st, fns)
			for fn, mode := range map[string]string{"through": manifest.WriteThrough, "broken": def, "late": def} {
				if got := st.modeOf(fn).String(); got != mode {
					t.Errorf("%s moved to %s after its annotation changed, want it kept at %s", fn, got, mode)
				}
			}
		})
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
