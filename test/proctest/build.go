package proctest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sync"
	"testing"
)

var (
	mu      sync.Mutex
	inMain  bool                  // Main runs the tests
	binDir  string                // where Build puts binaries; made on first use, removed by Main
	builds  = map[string]*build{} // package path → its build
	rootDir struct {
		once sync.Once
		path string
		err  error
	}
)

// build is one package's binary, built once.
type build struct {
	once sync.Once
	path string
	err  error
}

// Main runs the tests and removes the binaries Build made, then exits with the tests' status.
// Call it from TestMain in every package that calls Build.
func Main(m *testing.M) {
	mu.Lock()
	inMain = true
	mu.Unlock()
	code := m.Run()
	mu.Lock()
	dir := binDir
	mu.Unlock()
	if dir != "" {
		os.RemoveAll(dir)
	}
	os.Exit(code)
}

// Build returns the path of the binary of pkg, a package path relative to the repository root
// such as "cmd/knactor", built with `go build` on first use and reused for the rest of the test
// binary. It fails t if the build fails or the package's TestMain does not call Main.
func Build(t testing.TB, pkg string) string {
	t.Helper()
	root := repoRoot(t)
	mu.Lock()
	if !inMain {
		mu.Unlock()
		t.Fatalf("proctest.Build(%q): call proctest.Main from TestMain, so that the binaries are removed", pkg)
	}
	if binDir == "" {
		dir, err := os.MkdirTemp("", "proctest-bin-")
		if err != nil {
			mu.Unlock()
			t.Fatal(err)
		}
		binDir = dir
	}
	b := builds[pkg]
	if b == nil {
		b = &build{}
		builds[pkg] = b
	}
	dir := binDir
	mu.Unlock()

	b.once.Do(func() {
		out := filepath.Join(dir, filepath.FromSlash(pkg), path.Base(pkg))
		cmd := exec.Command("go", "build", "-o", out, "./"+pkg)
		cmd.Dir = root
		if msg, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go build ./%s: %v\n%s", pkg, err, msg)
			return
		}
		b.path = out
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// repoRoot returns the repository root: the nearest directory at or above the working directory
// that holds a go.mod.
func repoRoot(t testing.TB) string {
	t.Helper()
	rootDir.once.Do(func() {
		dir, err := os.Getwd()
		if err != nil {
			rootDir.err = err
			return
		}
		for {
			if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
				rootDir.path = dir
				return
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				rootDir.err = errors.New("proctest: no go.mod at or above the working directory")
				return
			}
			dir = parent
		}
	})
	if rootDir.err != nil {
		t.Fatal(rootDir.err)
	}
	return rootDir.path
}
