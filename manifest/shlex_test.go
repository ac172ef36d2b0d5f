package manifest

import (
	"reflect"
	"strings"
	"testing"
)

func TestSplitCommand(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"   \t\n", nil},
		{"go run ./examples/counter", []string{"go", "run", "./examples/counter"}},
		{"  spaced   out  ", []string{"spaced", "out"}},
		{`python3 "my server.py"`, []string{"python3", "my server.py"}},
		{`echo 'single "double" inside'`, []string{"echo", `single "double" inside`}},
		{`echo "double 'single' inside"`, []string{"echo", `double 'single' inside`}},
		{`a "" ''`, []string{"a", "", ""}},
		{`pre"quoted"post`, []string{"prequotedpost"}},
		{`a\ b c`, []string{"a b", "c"}},
		{`"esc \" \\ \$ \` + "`" + `" "keep \n \x"`, []string{"esc \" \\ $ `", `keep \n \x`}},
		{`'no \escapes $here'`, []string{`no \escapes $here`}},
		{"one \\\ntwo", []string{"one", "two"}},
		{"con\\\ntinued", []string{"continued"}},
		{"node server.js --port=$PORT # not a comment", []string{"node", "server.js", "--port=$PORT", "#", "not", "a", "comment"}},
		{"ünï \"cödé\"", []string{"ünï", "cödé"}},
	} {
		got, err := SplitCommand(tc.in)
		if err != nil {
			t.Errorf("SplitCommand(%q): %v", tc.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("SplitCommand(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	for in, want := range map[string]string{
		`go run "main.go`: "unterminated double quote",
		`echo 'oops`:      "unterminated single quote",
		`trailing \`:      "lone backslash",
	} {
		if _, err := SplitCommand(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("SplitCommand(%q) error = %v, want %q", in, err, want)
		}
	}
}
