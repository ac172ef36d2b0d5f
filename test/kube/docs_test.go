package kube

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// docBlock is one shell block of a document: a fenced block whose info string is "sh NAME".
type docBlock struct {
	name   string
	script string
	// expects are the texts after "# →" on the block's lines: its output must hold each
	// (compared without whitespace, so a pretty-printed reply matches a compact one).
	expects []string
}

// docWalk runs the shell blocks of a document in the document's order, as a reader would, and
// knows which have run: a block the test skips, or a new block nobody runs, fails the test.
type docWalk struct {
	path   string
	blocks []docBlock
	next   int
	env    []string
	dir    string
}

// newDocWalk reads the "sh NAME" blocks of the document at path (relative to the repository
// root). Blocks run in root with env added to the test's environment.
func newDocWalk(t *testing.T, path string, env ...string) *docWalk {
	t.Helper()
	root, _ := filepath.Abs("../..")
	f, err := os.Open(filepath.Join(root, path))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := &docWalk{path: path, dir: root, env: append(os.Environ(), env...)}
	var cur *docBlock
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case cur == nil && strings.HasPrefix(line, "```sh "):
			cur = &docBlock{name: strings.TrimSpace(strings.TrimPrefix(line, "```sh "))}
		case cur == nil && (line == "```sh" || line == "```bash" || line == "```console"):
			t.Fatalf("%s: a shell block without a name (```sh NAME): name it and run it in the test", path)
		case cur != nil && line == "```":
			w.blocks = append(w.blocks, *cur)
			cur = nil
		case cur != nil:
			cur.script += line + "\n"
			if _, want, ok := strings.Cut(line, "# → "); ok {
				cur.expects = append(cur.expects, strings.TrimSpace(want))
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(w.blocks) == 0 {
		t.Fatalf("%s has no ```sh NAME blocks", path)
	}
	return w
}

// run runs the next block, which must be the one named, and checks its output.
func (w *docWalk) run(t *testing.T, name string) string {
	t.Helper()
	if w.next >= len(w.blocks) {
		t.Fatalf("%s: no block %q left to run", w.path, name)
	}
	b := w.blocks[w.next]
	if b.name != name {
		t.Fatalf("%s: the next block is %q, the test runs %q: keep the test in the document's order", w.path, b.name, name)
	}
	w.next++
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", b.script)
	cmd.Dir, cmd.Env = w.dir, w.env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s, block %q failed: %v\n--- script\n%s--- output\n%s", w.path, name, err, b.script, out)
	}
	squeezed := strings.Join(strings.Fields(string(out)), "")
	for _, want := range b.expects {
		if !strings.Contains(squeezed, strings.Join(strings.Fields(want), "")) {
			t.Errorf("%s, block %q: the output lacks %q\n--- output\n%s", w.path, name, want, out)
		}
	}
	t.Logf("%s, block %q:\n%s", w.path, name, out)
	return string(out)
}

// done checks every block ran.
func (w *docWalk) done(t *testing.T) {
	t.Helper()
	for _, b := range w.blocks[w.next:] {
		t.Errorf("%s: block %q is not run by any test", w.path, b.name)
	}
}

// userPath returns a directory holding the commands a user of the documents has on PATH (the
// pinned kubectl, kn-actor), to put first on PATH.
func userPath(t *testing.T, bins map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, bin := range bins {
		if bin == "" {
			t.Fatalf("%s is not built", name)
		}
		if err := os.Symlink(bin, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}
