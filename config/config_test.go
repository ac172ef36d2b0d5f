package config

import (
	"bufio"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/knactor/knactor/autoscaler"
	"github.com/knactor/knactor/router"
)

const configMapFile = "400-config-knactor.yaml"

// exampleConfigMap reads 400-config-knactor.yaml and returns the ConfigMap and the settings of
// its _example block, parsed as the data block a user would copy them into.
func exampleConfigMap(t *testing.T) (*corev1.ConfigMap, map[string]string) {
	t.Helper()
	b, err := os.ReadFile(configMapFile)
	if err != nil {
		t.Fatal(err)
	}
	var cm corev1.ConfigMap
	if err := yaml.UnmarshalStrict(b, &cm); err != nil {
		t.Fatalf("%s: %v", configMapFile, err)
	}
	example, ok := cm.Data[ExampleKey]
	if !ok {
		t.Fatalf("%s has no %s key", configMapFile, ExampleKey)
	}
	var data map[string]string
	if err := yaml.UnmarshalStrict([]byte(example), &data); err != nil {
		t.Fatalf("%s: %s is not a block of key: \"value\" lines: %v", configMapFile, ExampleKey, err)
	}
	return &cm, data
}

// TestExampleIsDefaults is Knative's check of its config maps: the defaults that _example
// documents are the code's, every key is documented, and no documented key is unknown.
func TestExampleIsDefaults(t *testing.T) {
	cm, example := exampleConfigMap(t)
	if cm.Name != ConfigMapName || cm.Namespace != SystemNamespace {
		t.Errorf("ConfigMap is %s/%s, want %s/%s", cm.Namespace, cm.Name, SystemNamespace, ConfigMapName)
	}
	// The shipped ConfigMap only documents: it installs the code's defaults.
	for key := range cm.Data {
		if key != ExampleKey {
			t.Errorf("%s sets %q outside %s; document it in %s instead", configMapFile, key, ExampleKey, ExampleKey)
		}
	}
	if !strings.HasPrefix(cm.Data[ExampleKey], "################################\n") ||
		!strings.Contains(cm.Data[ExampleKey], "# This block is not actually functional configuration,") {
		t.Errorf("%s does not start with Knative's banner", ExampleKey)
	}

	documented := slices.Sorted(func(yield func(string) bool) {
		for k := range example {
			if !yield(k) {
				return
			}
		}
	})
	if diff := cmp.Diff(slices.Sorted(slices.Values(Keys())), documented); diff != "" {
		t.Errorf("keys documented in %s differ from config.Keys() (-code +documented):\n%s", ExampleKey, diff)
	}
	// Each key, one by one, so that a wrong default names its key.
	for _, key := range Keys() {
		value, ok := example[key]
		if !ok {
			continue // reported above
		}
		got, err := FromMap(map[string]string{key: value})
		if err != nil {
			t.Errorf("documented %s: %q: %v", key, value, err)
			continue
		}
		if diff := cmp.Diff(Defaults(), got); diff != "" {
			t.Errorf("documented default %s: %q is not the code's default (-code +documented):\n%s", key, value, diff)
		}
	}
	got, err := FromMap(example)
	if err != nil {
		t.Fatalf("FromMap(_example): %v", err)
	}
	if diff := cmp.Diff(Defaults(), got); diff != "" {
		t.Errorf("FromMap(_example) (-Defaults +documented):\n%s", diff)
	}
}

// TestExampleDocumentsEveryKey checks that each key line of _example follows a comment: the
// key's documentation.
func TestExampleDocumentsEveryKey(t *testing.T) {
	cm, _ := exampleConfigMap(t)
	keyLine := regexp.MustCompile(`^([a-z0-9-]+): "(.*)"$`)
	sc := bufio.NewScanner(strings.NewReader(cm.Data[ExampleKey]))
	prev, n := "", 0
	for sc.Scan() {
		line := sc.Text()
		if m := keyLine.FindStringSubmatch(line); m != nil {
			n++
			if !strings.HasPrefix(prev, "#") {
				t.Errorf("%s: key %s has no documentation comment above it", ExampleKey, m[1])
			}
		} else if line != "" && !strings.HasPrefix(line, "#") {
			t.Errorf("%s: line %q is neither a comment nor `key: \"value\"`", ExampleKey, line)
		}
		prev = line
	}
	if n != len(Keys()) {
		t.Errorf("%s has %d key lines, want one per key (%d)", ExampleKey, n, len(Keys()))
	}
}

// alternatives are a valid non-default value of every key, with the Config field it sets.
var alternatives = map[string]struct {
	value string
	field string
}{
	KeyCallTimeout:                       {"45s", "Router.CallTimeout"},
	KeyMaxQueuePerActor:                  {"50", "Router.MaxQueuePerActor"},
	KeyMaxPayloadBytes:                   {"2048", "Router.MaxPayloadBytes"},
	KeyMaxStateBytes:                     {"4096", "Router.MaxStateBytes"},
	KeyStoreTimeout:                      {"3s", "Router.StoreTimeout"},
	KeyIdempotencyKeys:                   {"16", "Router.IdempotencyKeys"},
	KeyIdempotencyTTL:                    {"1h", "Router.IdempotencyTTL"},
	KeyIdempotencyBytes:                  {"65536", "Router.IdempotencyBytes"},
	KeyScanInterval:                      {"5s", "Router.ScanInterval"},
	KeyTimerConcurrency:                  {"16", "Router.TimerConcurrency"},
	KeyScrapeInterval:                    {"500ms", "Autoscaler.ScrapeInterval"},
	KeyScaleTimeout:                      {"3s", "Autoscaler.ScaleTimeout"},
	KeyStableWindow:                      {"2m", "Autoscaler.StableWindow"},
	KeyPanicWindowPercentage:             {"20", "Autoscaler.PanicWindowPercentage"},
	KeyPanicThresholdPercentage:          {"300", "Autoscaler.PanicThresholdPercentage"},
	KeyMaxScaleUpRate:                    {"10", "Autoscaler.MaxScaleUpRate"},
	KeyMaxScaleDownRate:                  {"4", "Autoscaler.MaxScaleDownRate"},
	KeyScaleToZeroGracePeriod:            {"1m", "Autoscaler.ScaleToZeroGracePeriod"},
	KeyContainerConcurrencyTargetDefault: {"25", "Autoscaler.ContainerConcurrencyTargetDefault"},
	KeyTargetUtilizationPercentage:       {"85", "Autoscaler.TargetUtilizationPercentage"},
}

// leafFields lists the paths of every non-struct field of v ("Router.CallTimeout", ...).
func leafFields(v reflect.Value, prefix string) []string {
	var out []string
	for i := range v.NumField() {
		f := v.Type().Field(i)
		if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeFor[time.Duration]() {
			out = append(out, leafFields(v.Field(i), prefix+f.Name+".")...)
			continue
		}
		out = append(out, prefix+f.Name)
	}
	return out
}

// changedFields lists the leaf fields where a and b differ.
func changedFields(a, b Config) []string {
	var out []string
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	for _, path := range leafFields(va, "") {
		fa, fb := va, vb
		for name := range strings.SplitSeq(path, ".") {
			fa, fb = fa.FieldByName(name), fb.FieldByName(name)
		}
		if !fa.Equal(fb) {
			out = append(out, path)
		}
	}
	return out
}

// TestEveryFieldHasAKey checks that each key sets exactly its own field and that every field of
// Config has a key: a field added to Config without a key (and so without documentation) fails.
func TestEveryFieldHasAKey(t *testing.T) {
	covered := map[string]string{}
	for _, key := range Keys() {
		alt, ok := alternatives[key]
		if !ok {
			t.Errorf("key %s has no alternative value in this test", key)
			continue
		}
		got, err := FromMap(map[string]string{key: alt.value})
		if err != nil {
			t.Errorf("FromMap(%s: %q): %v", key, alt.value, err)
			continue
		}
		changed := changedFields(Defaults(), got)
		if !slices.Equal(changed, []string{alt.field}) {
			t.Errorf("%s: %q changed fields %v, want [%s]", key, alt.value, changed, alt.field)
		}
		for _, f := range changed {
			covered[f] = key
		}
	}
	for _, f := range leafFields(reflect.ValueOf(Defaults()), "") {
		if _, ok := covered[f]; !ok {
			t.Errorf("Config field %s has no ConfigMap key", f)
		}
	}
	if err := Defaults().Validate(); err != nil {
		t.Errorf("Defaults().Validate() = %v", err)
	}
}

func TestFromMapErrors(t *testing.T) {
	tests := []struct {
		name string
		data map[string]string
		want []string // substrings of the error, each on its own line
	}{{
		name: "unknown key",
		data: map[string]string{"call-timout": "30s"},
		want: []string{`unknown key "call-timout" (known keys: call-timeout, max-queue-per-actor,`},
	}, {
		name: "bad duration",
		data: map[string]string{KeyCallTimeout: "thirty"},
		want: []string{`call-timeout: invalid value "thirty": not a duration`},
	}, {
		name: "duration without unit",
		data: map[string]string{KeyStableWindow: "60"},
		want: []string{`stable-window: invalid value "60": not a duration`},
	}, {
		name: "bad integer",
		data: map[string]string{KeyMaxQueuePerActor: "1e3"},
		want: []string{`max-queue-per-actor: invalid value "1e3": not a whole number: invalid syntax`},
	}, {
		name: "integer out of range",
		data: map[string]string{KeyMaxStateBytes: "99999999999999999999"},
		want: []string{`max-state-bytes: invalid value "99999999999999999999": not a whole number: value out of range`},
	}, {
		name: "bad float",
		data: map[string]string{KeyMaxScaleUpRate: "fast"},
		want: []string{`max-scale-up-rate: invalid value "fast": not a number: invalid syntax`},
	}, {
		name: "infinite float",
		data: map[string]string{KeyMaxScaleUpRate: "+Inf"},
		want: []string{`max-scale-up-rate: invalid value "+Inf": not a finite number`},
	}, {
		name: "every problem at once, sorted by key",
		data: map[string]string{KeyScaleTimeout: "x", "zzz": "1", KeyCallTimeout: "y"},
		want: []string{`call-timeout: invalid value "y"`, `scale-timeout: invalid value "x"`, `unknown key "zzz"`},
	}, {
		name: "zero call timeout",
		data: map[string]string{KeyCallTimeout: "0s"},
		want: []string{"call-timeout: 0s must be positive"},
	}, {
		name: "zero queue",
		data: map[string]string{KeyMaxQueuePerActor: "0"},
		want: []string{"max-queue-per-actor: 0 must be at least 1"},
	}, {
		name: "negative payload and state",
		data: map[string]string{KeyMaxPayloadBytes: "-1", KeyMaxStateBytes: "0"},
		want: []string{"max-payload-bytes: -1 must be at least 1", "max-state-bytes: 0 must be at least 1"},
	}, {
		name: "zero scrape interval and scale timeout",
		data: map[string]string{KeyScrapeInterval: "0s", KeyScaleTimeout: "-1s"},
		want: []string{"scrape-interval: 0s must be positive", "scale-timeout: -1s must be positive"},
	}, {
		name: "stable window out of range",
		data: map[string]string{KeyStableWindow: "2h"},
		want: []string{"stable-window: 2h0m0s must be in [6s, 1h0m0s]"},
	}, {
		name: "stable window not whole seconds",
		data: map[string]string{KeyStableWindow: "10.5s"},
		want: []string{"stable-window: 10.5s must be whole seconds"},
	}, {
		name: "panic percentages out of range",
		data: map[string]string{KeyPanicWindowPercentage: "0.5", KeyPanicThresholdPercentage: "100"},
		want: []string{"panic-window-percentage: 0.5 must be in [1, 100]", "panic-threshold-percentage: 100 must be in [110, 1000]"},
	}, {
		name: "rates not above 1",
		data: map[string]string{KeyMaxScaleUpRate: "1", KeyMaxScaleDownRate: "0.5"},
		want: []string{"max-scale-up-rate: 1 must be greater than 1", "max-scale-down-rate: 0.5 must be greater than 1"},
	}, {
		name: "zero grace period",
		data: map[string]string{KeyScaleToZeroGracePeriod: "0s"},
		want: []string{"scale-to-zero-grace-period: 0s must be positive"},
	}, {
		name: "target default too small",
		data: map[string]string{KeyContainerConcurrencyTargetDefault: "0"},
		want: []string{"container-concurrency-target-default: 0 must be at least 0.01"},
	}, {
		name: "utilization as a fraction",
		data: map[string]string{KeyTargetUtilizationPercentage: "0.7"},
		want: []string{"target-utilization-percentage: 0.7% must be in [1, 100]"},
	}, {
		name: "utilization over 100",
		data: map[string]string{KeyTargetUtilizationPercentage: "150"},
		want: []string{"target-utilization-percentage: 150% must be in [1, 100]"},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := FromMap(tc.data)
			if err == nil {
				t.Fatalf("FromMap(%v) = %+v, want an error", tc.data, got)
			}
			if got != (Config{}) {
				t.Errorf("FromMap returned %+v with its error, want the zero Config", got)
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tc.want) {
				t.Fatalf("FromMap error has %d lines, want %d:\n%v", len(lines), len(tc.want), err)
			}
			for i, w := range tc.want {
				if !strings.Contains(lines[i], w) {
					t.Errorf("error line %d = %q, want it to contain %q", i, lines[i], w)
				}
			}
		})
	}
}

func TestFromMap(t *testing.T) {
	got, err := FromMap(map[string]string{
		ExampleKey:                     "# anything: \"at all\"",
		KeyCallTimeout:                 " 1m ",
		KeyMaxQueuePerActor:            "10",
		KeyTargetUtilizationPercentage: "80",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := Defaults()
	want.Router.CallTimeout = time.Minute
	want.Router.MaxQueuePerActor = 10
	want.Autoscaler.TargetUtilizationPercentage = 80
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("FromMap (-want +got):\n%s", diff)
	}
	if got, err := FromMap(nil); err != nil || got != Defaults() {
		t.Errorf("FromMap(nil) = %+v, %v; want Defaults()", got, err)
	}
}

func TestApplyRouter(t *testing.T) {
	c := Defaults()
	c.Router = RouterDefaults{CallTimeout: 5 * time.Second, MaxQueuePerActor: 7, MaxPayloadBytes: 100, MaxStateBytes: 200}
	rc := router.Config{Listen: "10.0.0.1:8080", AuthTokens: []string{"0123456789abcdef"}, CallTimeout: time.Hour, ConflictRetries: 9}
	c.ApplyRouter(&rc)
	want := router.Config{Listen: "10.0.0.1:8080", AuthTokens: []string{"0123456789abcdef"}, ConflictRetries: 9,
		CallTimeout: 5 * time.Second, MaxQueuePerActor: 7, MaxPayloadBytes: 100, MaxStateBytes: 200}
	if diff := cmp.Diff(want, rc); diff != "" {
		t.Errorf("ApplyRouter (-want +got):\n%s", diff)
	}

	// The defaults change nothing in a defaulted router.Config.
	var def router.Config
	def.SetDefaults()
	applied := def
	Defaults().ApplyRouter(&applied)
	if diff := cmp.Diff(def, applied); diff != "" {
		t.Errorf("Defaults().ApplyRouter changed a defaulted router.Config (-before +after):\n%s", diff)
	}
}

func TestAutoscalerConfig(t *testing.T) {
	if got, want := Defaults().AutoscalerConfig(), (autoscaler.Config{ScrapeInterval: time.Second, ScaleTimeout: 10 * time.Second}); got != want {
		t.Errorf("Defaults().AutoscalerConfig() = %+v, want %+v", got, want)
	}
}

func TestDefaultSpec(t *testing.T) {
	// The defaults make the autoscaler's own default spec, with the default target spelled out.
	want := autoscaler.DefaultSpec()
	want.Target = autoscaler.DefaultTargetConcurrency
	if diff := cmp.Diff(want, Defaults().DefaultSpec()); diff != "" {
		t.Errorf("Defaults().DefaultSpec() (-want +got):\n%s", diff)
	}
	if got, want := Defaults().DefaultSpec().TargetPerPod(), autoscaler.DefaultSpec().TargetPerPod(); got != want {
		t.Errorf("TargetPerPod = %v, want %v (the autoscaler's default)", got, want)
	}
}

func TestApplyAutoscaler(t *testing.T) {
	cluster := Defaults()
	cluster.Autoscaler = AutoscalerDefaults{
		ScrapeInterval: time.Second, ScaleTimeout: time.Second,
		StableWindow: 2 * time.Minute, PanicWindowPercentage: 20, PanicThresholdPercentage: 300,
		MaxScaleUpRate: 10, MaxScaleDownRate: 4, ScaleToZeroGracePeriod: time.Minute,
		ContainerConcurrencyTargetDefault: 25, TargetUtilizationPercentage: 50,
	}
	// fn is a function's spec as parsed from a manifest that sets the annotated values.
	fn := func(modify func(*autoscaler.Spec)) autoscaler.Spec {
		s := autoscaler.DefaultSpec()
		s.Target = autoscaler.DefaultTargetConcurrency // as the manifest parser resolves it
		if modify != nil {
			modify(&s)
		}
		return s
	}
	// clustered is a spec with every cluster default applied.
	clustered := func(modify func(*autoscaler.Spec)) autoscaler.Spec {
		s := fn(nil)
		s.StableWindow, s.PanicWindowPercentage, s.PanicThresholdPercentage = 2*time.Minute, 20, 300
		s.MaxScaleUpRate, s.MaxScaleDownRate, s.ScaleToZeroGracePeriod = 10, 4, time.Minute
		s.Target, s.TargetUtilization = 25, 0.5
		if modify != nil {
			modify(&s)
		}
		return s
	}
	tests := []struct {
		name        string
		spec        autoscaler.Spec
		annotations map[string]string
		want        autoscaler.Spec
	}{{
		name: "nothing set: every default applies",
		spec: fn(nil),
		want: clustered(nil),
	}, {
		name: "annotations win",
		spec: fn(func(s *autoscaler.Spec) {
			s.StableWindow, s.PanicWindowPercentage, s.PanicThresholdPercentage, s.TargetUtilization = 30*time.Second, 5, 150, 0.9
		}),
		annotations: map[string]string{autoscaler.AnnotationWindow: "30s", autoscaler.AnnotationPanicWindowPercentage: "5", autoscaler.AnnotationPanicThresholdPercentage: "150", autoscaler.AnnotationTargetUtilization: "90"},
		want: clustered(func(s *autoscaler.Spec) {
			s.StableWindow, s.PanicWindowPercentage, s.PanicThresholdPercentage, s.TargetUtilization = 30*time.Second, 5, 150, 0.9
		}),
	}, {
		name:        "a target annotation keeps the target",
		spec:        fn(func(s *autoscaler.Spec) { s.Target = 40 }),
		annotations: map[string]string{autoscaler.AnnotationTarget: "40"},
		want:        clustered(func(s *autoscaler.Spec) { s.Target = 40 }),
	}, {
		name: "containerConcurrency keeps the target",
		spec: fn(func(s *autoscaler.Spec) { s.ContainerConcurrency, s.Target = 10, 10 }),
		want: clustered(func(s *autoscaler.Spec) { s.ContainerConcurrency, s.Target = 10, 10 }),
	}, {
		name: "rps keeps its target",
		spec: fn(func(s *autoscaler.Spec) { s.Metric, s.Target = autoscaler.MetricRPS, autoscaler.DefaultTargetRPS }),
		want: clustered(func(s *autoscaler.Spec) { s.Metric, s.Target = autoscaler.MetricRPS, autoscaler.DefaultTargetRPS }),
	}, {
		name: "other fields untouched",
		spec: fn(func(s *autoscaler.Spec) {
			s.MinScale, s.MaxScale, s.ScaleDownDelay, s.TargetActorsPerPod = 1, 9, time.Minute, 50
		}),
		want: clustered(func(s *autoscaler.Spec) {
			s.MinScale, s.MaxScale, s.ScaleDownDelay, s.TargetActorsPerPod = 1, 9, time.Minute, 50
		}),
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := cluster.ApplyAutoscaler(tc.spec, tc.annotations)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ApplyAutoscaler (-want +got):\n%s", diff)
			}
			if err := got.Validate(); err != nil {
				t.Errorf("result does not validate: %v", err)
			}
		})
	}

	// With the defaults, a function parsed from a manifest keeps the autoscaling it had.
	for _, s := range []autoscaler.Spec{fn(nil), fn(func(s *autoscaler.Spec) { s.ContainerConcurrency, s.Target = 10, 10 })} {
		if got := Defaults().ApplyAutoscaler(s, nil); got != s {
			t.Errorf("Defaults().ApplyAutoscaler changed %+v to %+v", s, got)
		}
	}
}

func Example() {
	cfg, err := FromMap(map[string]string{"stable-window": "2m", "target-utilization-percentage": "80"})
	if err != nil {
		panic(err)
	}
	spec := cfg.DefaultSpec()
	fmt.Println(spec.StableWindow, spec.TargetUtilization, spec.TargetPerPod())
	// Output: 2m0s 0.8 80
}
