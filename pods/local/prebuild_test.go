package local

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestPrebuild(t *testing.T) {
	// The binaries go to a cache of the test's; Go's build cache stays the warm one.
	gocache, err := exec.Command("go", "env", "GOCACHE").Output()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("GOCACHE", strings.TrimSpace(string(gocache)))
	cache := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", cache)
	tests := []struct {
		name    string
		command []string
		built   bool
	}{
		{"a binary runs as it is", []string{"./counter", "-v"}, false},
		{"go run with flags runs as it is", []string{"go", "run", "-race", "./examples/hello"}, false},
		{"python runs as it is", []string{"python3", "examples/pycounter/main.py"}, false},
		{"go run PKG is built once", []string{"go", "run", "./examples/hello", "arg"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.built && testing.Short() {
				t.Skip("builds a binary; run without -short")
			}
			got, err := prebuild(context.Background(), "hello", "../..", tt.command)
			if err != nil {
				t.Fatal(err)
			}
			if !tt.built {
				if !slices.Equal(got, tt.command) {
					t.Fatalf("prebuild = %q, want %q unchanged", got, tt.command)
				}
				return
			}
			if len(got) != 2 || got[1] != "arg" || !strings.HasPrefix(got[0], filepath.Join(cache, "knactor", "bin", "hello-")) {
				t.Fatalf("prebuild = %q, want the built binary in the cache and the arguments", got)
			}
			if info, err := os.Stat(got[0]); err != nil || info.Mode()&0o111 == 0 {
				t.Fatalf("built binary %s: %v", got[0], err)
			}
		})
	}
	if _, err := prebuild(context.Background(), "broken", "../..", []string{"go", "run", "./no/such/package"}); err == nil ||
		!strings.Contains(err.Error(), `function "broken": go build ./no/such/package`) {
		t.Fatalf("a build that fails: %v, want an error naming the function and the package", err)
	}
}
