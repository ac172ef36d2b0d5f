package main

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/knactor/knactor/manifest"
)

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
			sf := &stateFlags{dir: filepath.Join(t.TempDir(), "state"), writeMode: def, cacheMB: 1, flushEvery: time.Hour}
			st, err := sf.openState(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close(context.Background())
			fns := annotated{
				"plain":   nil,
				"through": {manifest.WriteModeAnnotation: manifest.WriteThrough},
				"behind":  {manifest.WriteModeAnnotation: manifest.WriteBehind},
				"broken":  {manifest.WriteModeAnnotation: "fast"},
			}
			applyWriteModes(st, fns)
			want := map[string]string{"plain": def, "through": manifest.WriteThrough, "behind": manifest.WriteBehind, "broken": def}
			for fn, mode := range want {
				if got := st.modeOf(fn).String(); got != mode {
					t.Errorf("%s runs %s, want %s", fn, got, mode)
				}
			}
			fns["through"] = map[string]string{manifest.WriteModeAnnotation: manifest.WriteBehind}
			applyWriteModes(st, fns)
			if got := st.modeOf("through").String(); got != manifest.WriteThrough {
				t.Errorf("a changed annotation moved a running function to %s", got)
			}
		})
	}
}
