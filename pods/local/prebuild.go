package local

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// prebuildTimeout bounds one `go build` of a function at deploy: a cold build of a function and
// its dependencies takes seconds to a minute on a laptop.
const prebuildTimeout = 5 * time.Minute

// prebuild turns a function command `go run PKG [ARGS...]` into the binary `go build` makes of
// PKG, run with ARGS, so that starting a pod does not wait for a compile (and a pod's process is
// the function itself, not the go command above it). The build runs once at deploy, in dir,
// into the user's cache ({UserCacheDir}/knactor/bin); Go's build cache makes it quick when
// nothing changed. Any other command, and `go run` with flags, is returned as it is.
func prebuild(ctx context.Context, name, dir string, command []string) ([]string, error) {
	if len(command) < 3 || command[0] != "go" || command[1] != "run" || strings.HasPrefix(command[2], "-") {
		return command, nil
	}
	pkg := command[2]
	cache, err := os.UserCacheDir()
	if err != nil {
		return command, nil // no cache to build into: run it as written
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256([]byte(abs + "\x00" + pkg))
	out := filepath.Join(cache, "knactor", "bin", name+"-"+hex.EncodeToString(sum[:6]))
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return nil, fmt.Errorf("function %q: building %s: %w", name, pkg, err)
	}
	// Built under a name of its own, then renamed: another knactor building the same function
	// never runs a half-written binary.
	tmp := out + ".tmp-" + strconv.Itoa(os.Getpid())
	ctx, cancel := context.WithTimeout(ctx, prebuildTimeout)
	defer cancel()
	build := exec.CommandContext(ctx, "go", "build", "-o", tmp, pkg)
	build.Dir = dir
	if msg, err := build.CombinedOutput(); err != nil {
		os.Remove(tmp)
		return nil, fmt.Errorf("function %q: go build %s (its command is go run): %v\n%s", name, pkg, err, msg)
	}
	if err := os.Rename(tmp, out); err != nil {
		return nil, fmt.Errorf("function %q: building %s: %w", name, pkg, err)
	}
	return append([]string{out}, command[3:]...), nil
}
