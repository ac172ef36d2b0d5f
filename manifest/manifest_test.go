package manifest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"knative.dev/serving/pkg/apis/autoscaling"
)

// defaults is what a manifest that sets nothing gets: Knative's defaults and knactor's.
func defaults(name, image string) Function {
	return Function{
		Name:                 name,
		Image:                image,
		Timeout:              300 * time.Second,
		ContainerConcurrency: 0,
		Autoscaling: Autoscaling{
			Class:                    autoscaling.KPA,
			Metric:                   autoscaling.Concurrency,
			Target:                   100,
			TargetUtilization:        0.7,
			MinScale:                 0,
			MaxScale:                 0,
			InitialScale:             1,
			ActivationScale:          1,
			Window:                   60 * time.Second,
			PanicWindowPercentage:    10,
			PanicThresholdPercentage: 200,
			ScaleDownDelay:           0,
		},
		PassivateAfter: 10 * time.Minute,
		MaxStateBytes:  1 << 20,
	}
}

// with returns f changed by edit.
func with(f Function, edit func(*Function)) Function {
	edit(&f)
	return f
}

// comparable drops what the tables do not spell out: the decoded Service and Knative's warnings.
func comparable(fns []Function) []Function {
	out := make([]Function, len(fns))
	for i, f := range fns {
		f.Service, f.Warnings = nil, nil
		out[i] = f
	}
	return out
}

func TestParseFile(t *testing.T) {
	for _, tc := range []struct {
		file string
		want []Function
	}{
		{"../examples/counter/service.yaml", []Function{
			with(defaults("counter", "ko://github.com/knactor/knactor/examples/counter"), func(f *Function) {
				f.Command = []string{"go", "run", "./examples/counter"}
			}),
		}},
		{"testdata/minimal.yaml", []Function{defaults("hello", "ghcr.io/knactor/hello")}},
		{"testdata/all-annotations.yaml", []Function{{
			Name:      "chat",
			Namespace: "actors",
			Image:     "ghcr.io/knactor/chat:v1",
			Env: []corev1.EnvVar{
				{Name: "GREETING", Value: "hi"},
				{Name: "TOKEN", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
					LocalObjectReference: corev1.LocalObjectReference{Name: "chat"}, Key: "token"}}},
			},
			Command:              []string{"python3", "-u", "server with space.py", "--greeting", "hello world", "--empty", "", "a b"},
			WorkingDir:           filepath.Join("testdata", "fn"),
			Timeout:              120 * time.Second,
			ContainerConcurrency: 10,
			Autoscaling: Autoscaling{
				Class:                    ActorClass,
				Metric:                   autoscaling.RPS,
				Target:                   50, // rps targets are not capped by containerConcurrency
				TargetUtilization:        0.85,
				MinScale:                 1,
				MaxScale:                 20,
				InitialScale:             3,
				ActivationScale:          2,
				Window:                   2 * time.Minute,
				PanicWindowPercentage:    5,
				PanicThresholdPercentage: 150,
				ScaleDownDelay:           30 * time.Second,
				TargetActorsPerPod:       500,
			},
			WriteMode:         WriteBehind, // the template's annotation wins over the Service's
			PassivateAfter:    90 * time.Second,
			PassivateAfterSet: true,
			MaxStateBytes:     4 << 20,
			Stateless:         false,
		}}},
		{"testdata/stateless.yaml", []Function{
			with(defaults("thumbnail", "ghcr.io/knactor/thumbnail@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"), func(f *Function) {
				f.Command = []string{"./thumbnail", "--port=$PORT"} // no expansion
				f.WorkingDir = "/srv/thumbnail"                     // absolute: kept
				f.PassivateAfter, f.PassivateAfterSet = 0, true
				f.Stateless = true
				f.Autoscaling.Class = autoscaling.HPA
				f.Autoscaling.Metric = autoscaling.CPU
				f.Autoscaling.Target = 80
				f.Autoscaling.MaxScale = 5
			}),
		}},
		{"testdata/targets.yaml", []Function{
			with(defaults("cc-only", "ghcr.io/knactor/a"), func(f *Function) {
				f.ContainerConcurrency = 10
				f.Autoscaling.Target = 10
			}),
			with(defaults("target-above-cc", "ghcr.io/knactor/a"), func(f *Function) {
				f.ContainerConcurrency = 10
				f.Autoscaling.Target = 10
			}),
			with(defaults("target-below-cc", "ghcr.io/knactor/a"), func(f *Function) {
				f.ContainerConcurrency = 10
				f.Autoscaling.Class = ActorClass
				f.Autoscaling.Target = 2.5
			}),
			with(defaults("rps-default", "ghcr.io/knactor/a"), func(f *Function) {
				f.Autoscaling.Metric = autoscaling.RPS
				f.Autoscaling.Target = 200
			}),
		}},
		{"testdata/multi.yaml", []Function{
			defaults("first", "ghcr.io/knactor/first"),
			with(defaults("second", "ghcr.io/knactor/second"), func(f *Function) { f.Namespace = "team-b" }),
		}},
		{"testdata/service.json", []Function{
			with(defaults("counter-json", "ghcr.io/knactor/counter-js"), func(f *Function) {
				f.Env = []corev1.EnvVar{{Name: "MODE", Value: "json"}}
				f.Command = []string{"node", "counter.js"}
				f.WriteMode = WriteBehind
				f.ContainerConcurrency = 1
				f.Autoscaling.Target = 1
				f.Autoscaling.MinScale = 1
			}),
		}},
	} {
		t.Run(filepath.Base(tc.file), func(t *testing.T) {
			fns, err := ParseFile(tc.file)
			if err != nil {
				t.Fatalf("ParseFile: %v", err)
			}
			if got := comparable(fns); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("ParseFile(%s):\n got %+v\nwant %+v", tc.file, got, tc.want)
			}
			for _, f := range fns {
				if f.Service == nil || f.Service.Name != f.Name || f.Service.Namespace != f.Namespace {
					t.Errorf("%s: Service = %v, want the decoded object", f.Name, f.Service)
				}
			}
		})
	}
}

// wantErr is one expected problem: its document, its exact field, and part of its message.
type wantErr struct {
	doc   int
	field string
	msg   string
}

// checkErrors asserts err is an ErrorList with exactly the wanted problems, in order, each
// naming file (when given).
func checkErrors(t *testing.T, err error, file string, want []wantErr) {
	t.Helper()
	var list ErrorList
	if !errors.As(err, &list) {
		t.Fatalf("error %v (%T), want an ErrorList", err, err)
	}
	for i, e := range list {
		if i >= len(want) {
			t.Errorf("unexpected error %d: %v", i, e)
			continue
		}
		w := want[i]
		if e.File != file || e.Document != w.doc || e.Field != w.field || !strings.Contains(e.Message, w.msg) {
			t.Errorf("error %d = %#v\n           want file %q, document %d, field %q, message containing %q", i, e, file, w.doc, w.field, w.msg)
		}
		s := e.Error()
		if !strings.Contains(s, fmt.Sprintf("document %d", w.doc)) || !strings.Contains(s, w.field) || (file != "" && !strings.HasPrefix(s, file+": ")) {
			t.Errorf("error %d reads %q: it must name the file, the document and the field", i, s)
		}
	}
	if len(list) < len(want) {
		t.Errorf("got %d errors, want %d:\n%v", len(list), len(want), err)
	}
}

func TestErrors(t *testing.T) {
	const (
		tmplAnn = "spec.template.metadata.annotations"
		svcAnn  = "metadata.annotations"
	)
	ann := func(base, key string) string { return base + "[" + key + "]" }
	for _, tc := range []struct {
		file string
		want []wantErr
	}{
		{"bad-values.yaml", []wantErr{
			{1, ann(svcAnn, WriteModeAnnotation), `"fast" is not write-through or write-behind`},
			{2, ann(tmplAnn, PassivateAfterAnnotation), `"soon" is not a duration`},
			{3, ann(svcAnn, PassivateAfterAnnotation), `"-1m" is negative`},
			{4, ann(svcAnn, MaxStateBytesAnnotation), `"100Mi" is more than 64Mi`},
			{5, ann(svcAnn, MaxStateBytesAnnotation), `"0" is less than 1 byte`},
			{6, ann(svcAnn, MaxStateBytesAnnotation), `"lots" is not a byte count`},
			{7, ann(svcAnn, MaxStateBytesAnnotation), `"1.5" is not a whole number of bytes`},
			{8, ann(svcAnn, StatelessAnnotation), `"yes" is not true or false`},
			{9, ann(tmplAnn, StatelessAnnotation), `"TRUE" is not true or false`},
			{10, ann(tmplAnn, TargetActorsPerPodAnnotation), `"-3" is not an integer`},
			{11, ann(svcAnn, CommandAnnotation), `unterminated double quote`},
			{12, ann(svcAnn, WorkDirAnnotation), `must not be empty`},
			{13, ann(svcAnn, "knactor.dev/writemode"), `unknown knactor annotation`},
			{14, ann(tmplAnn, autoscaling.ClassAnnotationKey), `"foo.example.com" is not actor.autoscaling.knactor.dev`},
			{15, ann(tmplAnn, autoscaling.ClassAnnotationKey), `invalid value: fancy.autoscaling.knative.dev`},
			{16, ann(tmplAnn, autoscaling.MetricAnnotationKey), `invalid value: cpu`},
			{17, ann(tmplAnn, autoscaling.MetricAnnotationKey), `"cpu" is not concurrency or rps`},
			{18, ann(tmplAnn, autoscaling.MinScaleAnnotationKey), `expected 0 <= -1`},
			{19, ann(tmplAnn, autoscaling.MaxScaleAnnotationKey) + ", " + ann(tmplAnn, autoscaling.MinScaleAnnotationKey), `max-scale=2 is less than min-scale=3`},
			{20, ann(tmplAnn, autoscaling.TargetUtilizationPercentageKey), `expected 1 <= 150 <= 100`},
			{21, ann(tmplAnn, autoscaling.WindowAnnotationKey), `expected 6s <= 2s <= 1h0m0s`},
			{22, ann(tmplAnn, autoscaling.PanicWindowPercentageAnnotationKey), `expected 1 <= 0.5 <= 100`},
			{23, ann(tmplAnn, autoscaling.PanicThresholdPercentageAnnotationKey), `expected 110 <= 50 <= 1000`},
			{24, ann(tmplAnn, autoscaling.ScaleDownDelayAnnotationKey), `expected 0s <= 2h <= 1h0m0s`},
			{25, ann(tmplAnn, autoscaling.InitialScaleAnnotationKey), `invalid value: 0 (autoscaling.knative.dev/initial-scale=0 not allowed by cluster)`},
			{26, ann(tmplAnn, autoscaling.ActivationScaleKey), `activation-scale=1 must be greater than 1`},
			{27, ann(tmplAnn, autoscaling.TargetAnnotationKey), `target 0 should be at least 0.01`},
			{28, svcAnn, `invalid key name "autoscaling.knative.dev/min-scale": autoscaling annotations must be put under "spec.template.metadata.annotations"`},
			{29, "spec.template.spec.timeoutSeconds", `expected 0 <= 9999 <= 600`},
			{30, "spec.template.spec.containerConcurrency", `expected 0 <= 5000 <= 1000`},
		}},
		{"typos.yaml", []wantErr{
			{1, "metadata.annotation", "unknown field"},
			{1, "spec.template.spec.containerConcurency", "unknown field"},
			{1, "spec.template.spec.containers[0].Env", "unknown field"}, // field names are case-sensitive
			{2, "spec.template.spec.containers[0].imagee", "unknown field"},
			{2, "spec.template.spec.containers[0].image", "missing field(s)"},
			{3, "spec.template.spec.timeoutSeconds", "expected int64, got string"},
		}},
		{"wrong-kind.yaml", []wantErr{
			{1, "apiVersion", `"apps/v1" is not serving.knative.dev/v1`},
			{1, "kind", `"Deployment" is not Service`},
			{2, "apiVersion", `"serving.knative.dev/v1beta1" is not serving.knative.dev/v1`},
			{3, "apiVersion", "required"},
			{3, "kind", "required"},
			{4, "kind", `"Route" is not Service`},
			{5, "", "not an object"},
		}},
		{"missing-image.yaml", []wantErr{
			{1, "spec.template.spec.containers[0].image", "missing field(s)"},
			{2, "spec.template.spec.containers", "missing field(s)"},
		}},
		{"invalid-name.yaml", []wantErr{
			{1, "metadata.name", "not a DNS 1035 label"},
			{2, "metadata.name", "not a DNS 1035 label"},
			{3, "metadata.name", "generateName is not supported"},
			{4, "metadata.name", "required"},
			{5, "metadata.namespace", `"Bad_NS" is not a DNS-1123 label`},
		}},
		{"duplicate.yaml", []wantErr{
			{2, "metadata.name", `function "default/twice" is already defined in document 1`},
		}},
		{"bad-yaml.yaml", []wantErr{
			{2, "", "yaml: line 15: mapping values are not allowed"}, // line numbers count from the file's start
			{3, "", `line 21: key "name" already set in map`},
		}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			path := filepath.Join("testdata", tc.file)
			fns, err := ParseFile(path)
			if fns != nil {
				t.Errorf("ParseFile returned functions %v along with errors", fns)
			}
			checkErrors(t, err, path, tc.want)
		})
	}
}

func TestParseBytes(t *testing.T) {
	const svc = `apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: wd
  annotations:
    knactor.dev/workdir: %s
spec:
  template:
    spec:
      containers:
        - image: ghcr.io/knactor/wd
`
	for _, tc := range []struct{ workdir, dir, want string }{
		{"fn", "", "fn"}, // no directory known: stays relative to wherever the caller runs it
		{"./fn/../fn2", "/base", "/base/fn2"},
		{"/abs/fn", "/base", "/abs/fn"},
	} {
		fns, err := Parse(fmt.Appendf(nil, svc, tc.workdir), tc.dir)
		if err != nil {
			t.Fatalf("Parse: %v", err)
		}
		if got := fns[0].WorkingDir; got != tc.want {
			t.Errorf("workdir %q in %q = %q, want %q", tc.workdir, tc.dir, got, tc.want)
		}
	}

	// Parsed from bytes, errors name no file but still the document and the field.
	_, err := Parse([]byte(strings.Replace(svc, "%s", "''", 1)), "")
	checkErrors(t, err, "", []wantErr{{1, "metadata.annotations[knactor.dev/workdir]", "must not be empty"}})
	var e *Error
	if !errors.As(err, &e) || e.Field != "metadata.annotations[knactor.dev/workdir]" {
		t.Errorf("errors.As(%v, *Error) = %v", err, e)
	}
	if got, want := err.Error(), "document 1 (line 1): metadata.annotations[knactor.dev/workdir]: must not be empty"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

func TestNoDocuments(t *testing.T) {
	for _, in := range []string{"", "\n\n", "# nothing here\n---\n---\n# still nothing\n"} {
		_, err := Parse([]byte(in), "")
		if err == nil || !strings.Contains(err.Error(), "no documents") {
			t.Errorf("Parse(%q) = %v, want a no-documents error", in, err)
		}
	}
}

func TestJSONOrFlowYAML(t *testing.T) {
	// Broken JSON in a .json file is reported as JSON, with the line.
	path := filepath.Join(t.TempDir(), "broken.json")
	if err := os.WriteFile(path, []byte(`{"apiVersion": "serving.knative.dev/v1",`+"\n"+`"kind": }`), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := ParseFile(path)
	checkErrors(t, err, path, []wantErr{{1, "", "invalid JSON at line 2: invalid character '}'"}})

	// Text that opens with '{' but is not JSON is YAML in flow style.
	fns, err := Parse([]byte(`{apiVersion: serving.knative.dev/v1, kind: Service, metadata: {name: flow},
  spec: {template: {spec: {containers: [{image: ghcr.io/knactor/flow}]}}}}`), "")
	if err != nil || len(fns) != 1 || fns[0].Name != "flow" {
		t.Errorf("flow-style YAML: %v, %v", fns, err)
	}
}

func TestServiceIsAsWritten(t *testing.T) {
	fns, err := ParseFile("testdata/minimal.yaml")
	if err != nil {
		t.Fatal(err)
	}
	spec := fns[0].Service.Spec.Template.Spec
	if spec.TimeoutSeconds != nil || spec.ContainerConcurrency != nil || spec.Containers[0].Name != "" || len(fns[0].Service.Spec.Traffic) != 0 {
		t.Errorf("Service was defaulted: %+v", fns[0].Service.Spec)
	}
}

func TestWarnings(t *testing.T) {
	const svc = `apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: warned
spec:
  template:
    metadata:
      annotations:
        queue.sidecar.serving.knative.dev/resource-percentage: "20"
    spec:
      containers:
        - image: ghcr.io/knactor/warned
`
	fns, err := Parse([]byte(svc), "")
	if err != nil {
		t.Fatalf("a warning must not fail the manifest: %v", err)
	}
	if len(fns[0].Warnings) != 1 {
		t.Errorf("Warnings = %q, want only the deprecation (not Knative's insecure-securityContext nag)", fns[0].Warnings)
	}
	found := false
	for _, w := range fns[0].Warnings {
		// Knative gives this warning no field path.
		if strings.HasPrefix(w, "document 1 (line 1): ") && strings.Contains(w, "Queue proxy resource percentage annotation is deprecated") {
			found = true
		}
	}
	if !found {
		t.Errorf("Warnings = %q, want Knative's deprecation warning", fns[0].Warnings)
	}
}

func TestParseDir(t *testing.T) {
	fns, err := ParseDir("testdata/dir")
	if err != nil {
		t.Fatalf("ParseDir: %v", err)
	}
	var names []string
	for _, f := range fns {
		names = append(names, f.Name)
	}
	// a.yaml then b.json; README.md is not a manifest and sub/ is not read.
	if want := []string{"alpha", "beta"}; !reflect.DeepEqual(names, want) {
		t.Errorf("ParseDir names = %v, want %v", names, want)
	}

	// The same function in two files names both.
	dir := t.TempDir()
	for _, name := range []string{"one.yaml", "two.yml"} {
		data, err := os.ReadFile("testdata/minimal.yaml")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	_, err = ParseDir(dir)
	two := filepath.Join(dir, "two.yml")
	checkErrors(t, err, two, []wantErr{{1, "metadata.name", `function "default/hello" is already defined in ` + filepath.Join(dir, "one.yaml") + ": document 1"}})

	// A file that defines a function twice is reported once, not again by ParseDir.
	dup := t.TempDir()
	data, err := os.ReadFile("testdata/duplicate.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dup, "dup.yaml"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = ParseDir(dup)
	checkErrors(t, err, filepath.Join(dup, "dup.yaml"), []wantErr{{2, "metadata.name", `function "default/twice" is already defined in document 1`}})

	if _, err := ParseDir(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ParseDir(missing) = %v, want ErrNotExist", err)
	}
	if _, err := ParseFile(filepath.Join(dir, "missing.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ParseFile(missing) = %v, want ErrNotExist", err)
	}
}

// Parse shares one validation context; parsing from many goroutines must be safe.
func TestConcurrentParse(t *testing.T) {
	data, err := os.ReadFile("testdata/all-annotations.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 20 {
				if _, err := Parse(data, "testdata"); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestFromServiceMatchesParse(t *testing.T) {
	const doc = `apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: counter
spec:
  template:
    metadata:
      annotations:
        autoscaling.knative.dev/target: "5"
        autoscaling.knative.dev/max-scale: "4"
        knactor.dev/write-mode: write-behind
    spec:
      containerConcurrency: 10
      containers:
        - image: ko://example.com/counter
`
	parsed, err := Parse([]byte(doc), "")
	if err != nil {
		t.Fatal(err)
	}
	got, err := Options{}.FromService(parsed[0].Service, "deployment default/counter-00001")
	if err != nil {
		t.Fatal(err)
	}
	got.Service, parsed[0].Service = nil, nil
	if !reflect.DeepEqual(got, parsed[0]) {
		t.Errorf("FromService = %+v\nParse       = %+v", got, parsed[0])
	}

	// Knative's webhook writes an empty metric on the PodAutoscaler of a class it does not
	// know: that is the default, concurrency.
	svc, _ := Parse([]byte(doc), "")
	svc[0].Service.Spec.Template.Annotations["autoscaling.knative.dev/class"] = ActorClass
	svc[0].Service.Spec.Template.Annotations["autoscaling.knative.dev/metric"] = ""
	if fn, err := (Options{}).FromService(svc[0].Service, "podautoscaler default/counter-00001"); err != nil || fn.Autoscaling.Metric != "concurrency" {
		t.Errorf("FromService with an empty metric: %+v, %v; want the concurrency metric", fn.Autoscaling, err)
	}

	svc, _ = Parse([]byte(doc), "")
	svc[0].Service.Spec.Template.Annotations["autoscaling.knative.dev/max-scale"] = "-1"
	_, err = Options{}.FromService(svc[0].Service, "deployment default/counter-00001")
	if err == nil || !strings.Contains(err.Error(), "deployment default/counter-00001") || !strings.Contains(err.Error(), "max-scale") {
		t.Errorf("FromService with a bad annotation: err = %v, want one naming the source and the annotation", err)
	}
}
