package proctest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// CounterManifest writes a Knative Service named name that runs the counter example from its
// built binary (knactor.dev/command), with the given template annotations as key, value pairs,
// and returns the file's path. It is what tests deploy with `knactor up -f` or `kn-actor deploy`.
func CounterManifest(t testing.TB, name string, annotations ...string) string {
	t.Helper()
	return Manifest(t, name, "examples/counter", annotations...)
}

// Manifest writes a Knative Service named name that runs the package pkg (a path from the
// repository root, such as "examples/auction", optionally followed by arguments after spaces:
// "examples/auction bidder") from its built binary, with the given template annotations as key,
// value pairs, and returns the file's path.
func Manifest(t testing.TB, name, pkg string, annotations ...string) string {
	t.Helper()
	if len(annotations)%2 != 0 {
		t.Fatalf("Manifest: annotations come in key, value pairs, got %d strings", len(annotations))
	}
	pkg, args, _ := strings.Cut(pkg, " ")
	command := Build(t, pkg)
	if args != "" {
		command += " " + args
	}
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  name: %s\nspec:\n  template:\n"+
		"    metadata:\n      annotations:\n        knactor.dev/command: %q\n", name, command)
	for i := 0; i < len(annotations); i += 2 {
		fmt.Fprintf(&b, "        %s: %q\n", annotations[i], annotations[i+1])
	}
	fmt.Fprintf(&b, "    spec:\n      containers:\n        - image: ko://github.com/knactor/knactor/%s\n", pkg)
	path := filepath.Join(t.TempDir(), name+".yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}
