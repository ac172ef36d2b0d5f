package local

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/utils/clock"

	"github.com/knactor/knactor/autoscaler"
	"github.com/knactor/knactor/manifest"
	"github.com/knactor/knactor/router"
	"github.com/knactor/knactor/statecache"
)

// writeModes is a WriteModes that pins modes and keeps idle times in maps, as knactor up's
// state does.
type writeModes struct {
	mu    sync.Mutex
	modes map[string]statecache.WriteMode
	idle  map[string]time.Duration
}

func (m *writeModes) SetPassivateAfter(function string, d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.idle == nil {
		m.idle = map[string]time.Duration{}
	}
	m.idle[function] = d
}

func (m *writeModes) DefaultWriteMode() statecache.WriteMode { return statecache.WriteThrough }

func (m *writeModes) PinMode(function, mode string) (bool, error) {
	wm := statecache.WriteThrough
	if mode != "" {
		parsed, err := statecache.ParseWriteMode(mode)
		if err != nil {
			return false, err
		}
		wm = parsed
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if cur, ok := m.modes[function]; ok {
		if cur != wm {
			return false, fmt.Errorf("function %q runs with write mode %s, not %s", function, cur, wm)
		}
		return false, nil
	}
	m.modes[function] = wm
	return true, nil
}

// newTestFunctions returns knactor up's functions over a real runtime (no pod is started: no
// call scales them), a real autoscaler (not running) and write modes in a map.
func newTestFunctions(t *testing.T) *Functions {
	t.Helper()
	rt, err := New(Config{LogDir: filepath.Join(t.TempDir(), "logs")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := rt.Close(ctx); err != nil {
			t.Error(err)
		}
	})
	scaler := autoscaler.New(autoscaler.Config{}, nil, rt, clock.RealClock{}, nil)
	return NewFunctions(rt, scaler, &writeModes{modes: map[string]statecache.WriteMode{}}, autoscaler.DefaultScaleToZeroGracePeriod, manifest.Options{})
}

// service is a manifest of one function with extra template annotations.
func service(name string, annotations ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  name: %s\n  annotations:\n    knactor.dev/command: \"./%s\"\nspec:\n  template:\n", name, name)
	if len(annotations) > 0 {
		b.WriteString("    metadata:\n      annotations:\n")
		for i := 0; i+1 < len(annotations); i += 2 {
			fmt.Fprintf(&b, "        %s: %q\n", annotations[i], annotations[i+1])
		}
	}
	b.WriteString("    spec:\n      containers:\n        - image: example.com/fn\n")
	return b.String()
}

func TestDeployCreatesUpdatesAndRefusesWriteModeChanges(t *testing.T) {
	f := newTestFunctions(t)
	ctx := context.Background()
	results := func(ds []router.Deployment) string {
		var parts []string
		for _, d := range ds {
			parts = append(parts, d.Function+"="+d.Result)
		}
		return strings.Join(parts, ",")
	}
	steps := []struct {
		name     string
		manifest string
		dir      string
		want     string
		err      error
	}{
		{"two new functions", service("a") + "---\n" + service("b"), "", "a=created,b=created", nil},
		{"the same again", service("a"), "", "a=unchanged", nil},
		{"new settings", service("a", "autoscaling.knative.dev/max-scale", "3"), "", "a=updated", nil},
		{"a write-mode change", service("a", "knactor.dev/write-mode", "write-behind"), "", "", router.ErrDeployConflict},
		{"the default write mode said explicitly", service("b", "knactor.dev/write-mode", "write-through"), "", "b=unchanged", nil},
		{"no command", strings.Replace(service("c"), "knactor.dev/command", "example.com/other", 1), "", "", router.ErrBadManifest},
		{"invalid: all or nothing", service("d") + "---\n" + service("e", "autoscaling.knative.dev/min-scale", "-1"), "", "", router.ErrBadManifest},
		{"not a manifest", "kind: Pod\n", "", "", router.ErrBadManifest},
		{"a working directory", service("w", "knactor.dev/workdir", "sub"), "/srv/fns", "w=created", nil},
	}
	for _, s := range steps {
		got, err := f.Deploy(ctx, []byte(s.manifest), s.dir)
		if s.err != nil {
			t.Logf("%s: %v", s.name, err)
			if !errors.Is(err, s.err) {
				t.Fatalf("%s: err %v, want %v", s.name, err, s.err)
			}
			continue
		}
		if err != nil || results(got) != s.want {
			t.Fatalf("%s: got %s, %v; want %s", s.name, results(got), err, s.want)
		}
	}
	if got := strings.Join(f.Names(), ","); got != "a,b,w" {
		t.Fatalf("deployed %s, want a,b,w (d must not be deployed)", got)
	}
	if spec, _ := f.scaler.Status("a"); spec.Function != "a" {
		t.Fatalf("autoscaler does not know a: %+v", spec)
	}
	if _, ok := f.Function("d"); ok {
		t.Fatal("d is routed")
	}
	if got := f.deployed["w"].pod.Dir; got != "/srv/fns/sub" {
		t.Fatalf("working dir %q, want /srv/fns/sub", got)
	}
	list := f.FunctionStatuses()
	if len(list) != 3 || list[0].Function != "a" || list[0].DesiredPods != 1 || list[0].ReadyPods != 0 {
		t.Fatalf("statuses %+v", list)
	}
}

// A function's knactor.dev/passivate-after reaches the state when it is deployed; deployed
// again without it, the function has the platform's idle time back (-1).
func TestDeploySetsEachFunctionsIdleTime(t *testing.T) {
	f := newTestFunctions(t)
	modes := f.modes.(*writeModes)
	steps := []struct {
		name     string
		manifest string
		want     time.Duration
	}{
		{"without the annotation", service("a"), -1},
		{"with it", service("a", manifest.PassivateAfterAnnotation, "90s"), 90 * time.Second},
		{"never", service("a", manifest.PassivateAfterAnnotation, "0"), 0},
		{"without it again", service("a"), -1},
	}
	for _, s := range steps {
		if _, err := f.Deploy(context.Background(), []byte(s.manifest), ""); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		modes.mu.Lock()
		got, ok := modes.idle["a"]
		modes.mu.Unlock()
		if !ok || got != s.want {
			t.Fatalf("%s: idle time %v (set %v), want %v", s.name, got, ok, s.want)
		}
	}
}

func TestConcurrentDeploysAndCalls(t *testing.T) {
	f := newTestFunctions(t)
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for j := range 10 {
				if _, err := f.Deploy(context.Background(), []byte(service(fmt.Sprintf("f%d-%d", i, j))), ""); err != nil {
					t.Error(err)
				}
			}
		}()
		go func() {
			defer wg.Done()
			for range 200 {
				f.Function("f0-0")
				f.FunctionStatuses()
			}
		}()
	}
	wg.Wait()
	if n := len(f.Names()); n != 40 {
		t.Fatalf("%d functions deployed, want 40", n)
	}
}
