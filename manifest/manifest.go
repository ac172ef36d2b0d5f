package manifest

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"knative.dev/pkg/apis"
	"knative.dev/serving/pkg/apis/autoscaling"
	"knative.dev/serving/pkg/apis/config"
	servingv1 "knative.dev/serving/pkg/apis/serving/v1"
)

// What a manifest must be.
const (
	APIVersion = "serving.knative.dev/v1" // servingv1.SchemeGroupVersion
	Kind       = "Service"
)

// ActorClass is the autoscaling.knative.dev/class value of knactor's own autoscaler (a Knative
// PodAutoscaler class). Knative's kpa.autoscaling.knative.dev and hpa.autoscaling.knative.dev are
// accepted too; any other class is refused.
const ActorClass = "actor.autoscaling.knactor.dev"

// knactor's own annotations. They may be set on the Service's metadata or on
// spec.template.metadata; the template's value wins. Any other knactor.dev/ key is an error.
const (
	AnnotationPrefix             = "knactor.dev/"
	CommandAnnotation            = "knactor.dev/command"
	WorkDirAnnotation            = "knactor.dev/workdir"
	WriteModeAnnotation          = "knactor.dev/write-mode"
	PassivateAfterAnnotation     = "knactor.dev/passivate-after"
	MaxStateBytesAnnotation      = "knactor.dev/max-state-bytes"
	StatelessAnnotation          = "knactor.dev/stateless"
	TargetActorsPerPodAnnotation = "knactor.dev/target-actors-per-pod"
)

// Values and defaults of knactor's annotations.
const (
	WriteThrough = "write-through" // the reply leaves after the state write is durable
	WriteBehind  = "write-behind"  // writes are coalesced and flushed later

	DefaultPassivateAfter = 10 * time.Minute
	DefaultMaxStateBytes  = 1 << 20  // 1 MiB
	MaxStateBytesLimit    = 64 << 20 // 64 MiB, the largest knactor.dev/max-state-bytes
)

// Function is everything knactor needs from one manifest.
type Function struct {
	Name      string             // metadata.name (a DNS-1035 label, as Knative requires)
	Namespace string             // metadata.namespace ("" = default)
	Service   *servingv1.Service // the decoded Knative object as written (not defaulted), for Kubernetes mode

	// From the serving container: spec.template.spec.containers[0], or with several containers
	// the one that declares a port, as Knative picks it.
	Image string
	Env   []corev1.EnvVar // as written; valueFrom entries are kept

	Command    []string // knactor.dev/command split like a shell (SplitCommand), for local mode; nil = none
	WorkingDir string   // knactor.dev/workdir joined to the manifest's directory when relative; "" = not set

	Timeout              time.Duration // spec.template.spec.timeoutSeconds (Knative's default 300 s)
	ContainerConcurrency int64         // spec.template.spec.containerConcurrency (0 = unlimited)
	Autoscaling          Autoscaling

	// WriteMode is knactor.dev/write-mode: WriteThrough or WriteBehind, or "" when the manifest
	// does not say, so the platform's default applies (knactor up --write-mode, or the
	// ActorSystem's writeMode in Kubernetes mode).
	WriteMode string
	// PassivateAfter is knactor.dev/passivate-after (0 = never) when PassivateAfterSet, else
	// DefaultPassivateAfter, and the platform's applies (knactor up --passivate-after, or the
	// ActorSystem's cache.passivateAfter in Kubernetes mode).
	PassivateAfter    time.Duration
	PassivateAfterSet bool
	MaxStateBytes     int  // knactor.dev/max-state-bytes (default 1 MiB, at most 64 MiB)
	Stateless         bool // knactor.dev/stateless: "true" = pass-through only

	// Warnings are Knative's warning-level findings (e.g. a deprecated annotation), each naming
	// the file, document and field (when Knative gives one) like an Error. They do not stop the
	// function from loading. Knative's warning that Kubernetes' default securityContext is
	// insecure, which it gives nearly every Service, is left out.
	Warnings []string
}

// Autoscaling is the function's autoscaling settings, resolved from Knative's
// autoscaling.knative.dev/* annotations on spec.template.metadata (Knative refuses them on the
// Service's own metadata) with Knative's defaults, exactly as Knative's autoscaler resolves them.
type Autoscaling struct {
	Class  string  // autoscaling.knative.dev/class (default kpa.autoscaling.knative.dev)
	Metric string  // autoscaling.knative.dev/metric (default concurrency; cpu for the hpa class)
	Target float64 // per-pod target before utilization: autoscaling.knative.dev/target, else containerConcurrency, else 100 (concurrency) / 200 (rps); with a containerConcurrency the smaller of the two
	// TargetUtilization is autoscaling.knative.dev/target-utilization-percentage (1..100) as a
	// fraction: 70 → 0.7 (the default).
	TargetUtilization float64

	MinScale        int32 // autoscaling.knative.dev/min-scale (default 0)
	MaxScale        int32 // autoscaling.knative.dev/max-scale (default 0 = unbounded)
	InitialScale    int32 // autoscaling.knative.dev/initial-scale (default 1)
	ActivationScale int32 // autoscaling.knative.dev/activation-scale (default 1; Knative only acts on values ≥ 2)

	Window                   time.Duration // autoscaling.knative.dev/window: the stable window (default 60s)
	PanicWindowPercentage    float64       // autoscaling.knative.dev/panic-window-percentage, percent of Window (default 10)
	PanicThresholdPercentage float64       // autoscaling.knative.dev/panic-threshold-percentage, percent of target (default 200)
	ScaleDownDelay           time.Duration // autoscaling.knative.dev/scale-down-delay (default 0)

	TargetActorsPerPod int // knactor.dev/target-actors-per-pod (default 0 = no actor-count signal)
}

// Parse reads every function in data: YAML (one or more documents separated by '---' lines;
// documents holding only comments or nothing are skipped) or JSON (one object). Each document
// must be a serving.knative.dev/v1 Service. dir is the manifest's directory, against which a
// relative knactor.dev/workdir is resolved ("" leaves it relative). Problems are returned as an
// ErrorList naming the document and field of each; Parse returns no functions when there are any.
func Parse(data []byte, dir string) ([]Function, error) { return Options{}.Parse(data, dir) }

// ParseFile reads the manifest at path; see Parse. Errors name the file.
func ParseFile(path string) ([]Function, error) { return Options{}.ParseFile(path) }

// ParseDir reads every *.yaml, *.yml and *.json file directly in dir (not in subdirectories, as
// kubectl apply -f dir), in lexical order of their names; see Parse. A function name defined
// twice (in the same namespace) is an error.
func ParseDir(dir string) ([]Function, error) { return Options{}.ParseDir(dir) }

// Options are the cluster-wide settings that change what a manifest may say. The zero value is
// Knative's default configuration.
type Options struct {
	// AllowZeroInitialScale accepts autoscaling.knative.dev/initial-scale: "0" (Knative's
	// allow-zero-initial-scale in config-autoscaler, off by default).
	AllowZeroInitialScale bool
}

// Parse is the package's Parse under these options.
func (o Options) Parse(data []byte, dir string) ([]Function, error) {
	located, errs := parse(data, dir, "", o)
	return finish(located, append(errs, duplicates(located)...))
}

// ParseFile is the package's ParseFile under these options.
func (o Options) ParseFile(path string) ([]Function, error) {
	located, errs, err := parseFile(path, o)
	if err != nil {
		return nil, err
	}
	return finish(located, append(errs, duplicates(located)...))
}

// ParseDir is the package's ParseDir under these options.
func (o Options) ParseDir(dir string) ([]Function, error) {
	entries, err := os.ReadDir(dir) // sorted by name
	if err != nil {
		return nil, err
	}
	var (
		all  []located
		errs ErrorList
	)
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		switch strings.ToLower(filepath.Ext(e.Name())) {
		case ".yaml", ".yml", ".json":
		default:
			continue
		}
		l, es, err := parseFile(filepath.Join(dir, e.Name()), o)
		if err != nil {
			return nil, err
		}
		all = append(all, l...)
		errs = append(errs, es...)
	}
	errs = append(errs, duplicates(all)...)
	return finish(all, errs)
}

// located is a function with where it came from.
type located struct {
	fn   Function
	file string
	doc  int
	line int
}

func parseFile(path string, o Options) ([]located, ErrorList, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	l, errs := parse(data, filepath.Dir(path), path, o)
	return l, errs, nil
}

func finish(l []located, errs ErrorList) ([]Function, error) {
	if len(errs) > 0 {
		return nil, errs
	}
	fns := make([]Function, len(l))
	for i := range l {
		fns[i] = l[i].fn
	}
	return fns, nil
}

func parse(data []byte, dir, file string, o Options) ([]located, ErrorList) {
	docs := splitDocuments(data, file)
	var (
		out  []located
		errs ErrorList
		n    int
	)
	for _, d := range docs {
		j, empty, derr := d.toJSON()
		if empty {
			continue
		}
		n++
		p := &docParser{file: file, doc: n, line: d.line, dir: dir, ctx: o.context()}
		if derr != nil {
			errs = append(errs, p.errorf("", "%s", derr))
			continue
		}
		fn, ok := p.parse(j)
		errs = append(errs, p.errs...)
		if ok {
			out = append(out, located{fn: fn, file: file, doc: n, line: d.line})
		}
	}
	if n == 0 {
		errs = append(errs, &Error{File: file, Message: "no documents: expected a " + APIVersion + " " + Kind})
	}
	return out, errs
}

// duplicates reports every function whose namespace and name an earlier one already has.
func duplicates(l []located) ErrorList {
	var errs ErrorList
	seen := make(map[string]located, len(l))
	for _, x := range l {
		k := cmp.Or(x.fn.Namespace, "default") + "/" + x.fn.Name
		first, dup := seen[k]
		if !dup {
			seen[k] = x
			continue
		}
		where := fmt.Sprintf("document %d", first.doc)
		if first.file != "" && first.file != x.file {
			where = first.file + ": " + where
		}
		errs = append(errs, &Error{File: x.file, Document: x.doc, Line: x.line, Field: "metadata.name",
			Message: fmt.Sprintf("function %q is already defined in %s", k, where)})
	}
	return errs
}

// insecureDefaultWarning starts the warning Knative gives every Service whose containers leave
// runAsNonRoot, allowPrivilegeEscalation, seccompProfile or capabilities at Kubernetes' defaults
// while its secure-pod-defaults feature is off. It is about the cluster's pod security, appears
// for nearly every manifest, and means nothing in local mode: Warnings leaves it out.
const insecureDefaultWarning = "Kubernetes default value is insecure"

// validationContexts are the contexts Knative's serving webhook hands to SetDefaults and
// Validate on create (its config store's ToContext, then apis.WithinCreate), here with the
// defaults of config-defaults, config-features and config-autoscaler.
var validationContexts = [2]func() context.Context{newValidationContext(false), newValidationContext(true)}

func newValidationContext(allowZeroInitialScale bool) func() context.Context {
	return sync.OnceValue(func() context.Context {
		ctx := context.Background()
		cfg := config.FromContextOrDefaults(ctx)
		as := *cfg.Autoscaler
		as.AllowZeroInitialScale = allowZeroInitialScale
		cfg.Autoscaler = &as
		return apis.WithinCreate(config.ToContext(ctx, cfg))
	})
}

// context returns the validation context of these options.
func (o Options) context() context.Context {
	if o.AllowZeroInitialScale {
		return validationContexts[1]()
	}
	return validationContexts[0]()
}

// docParser checks one document and collects its problems.
type docParser struct {
	file      string
	doc, line int
	dir       string
	ctx       context.Context // Knative's validation context (see validationContext)
	errs      ErrorList
}

func (p *docParser) errorf(field, format string, args ...any) *Error {
	return &Error{File: p.file, Document: p.doc, Line: p.line, Field: field, Message: fmt.Sprintf(format, args...)}
}

func (p *docParser) fail(field, format string, args ...any) {
	p.errs = append(p.errs, p.errorf(field, format, args...))
}

func (p *docParser) parse(j []byte) (Function, bool) {
	svc := p.decode(j)
	if svc == nil {
		return Function{}, false
	}
	ctx := p.ctx

	p.checkMetadata(svc)

	// Knative's own defaulting and validation, on a copy: Service stays as written.
	k := svc.DeepCopy()
	k.SetDefaults(ctx)
	var warnings []string
	if fe := k.Validate(ctx); fe != nil {
		for _, e := range fe.Filter(apis.ErrorLevel).WrappedErrors() {
			if svc.Name == "" && e.Message == "name or generateName is required" {
				continue // checkMetadata said so already
			}
			field, msg := knativeField(e)
			p.fail(field, "%s", msg)
		}
		for _, e := range fe.Filter(apis.WarningLevel).WrappedErrors() {
			if strings.HasPrefix(e.Message, insecureDefaultWarning) {
				continue
			}
			field, msg := knativeField(e)
			warnings = append(warnings, p.errorf(field, "%s", msg).Error())
		}
	}

	fn := Function{
		Name:           svc.Name,
		Namespace:      svc.Namespace,
		Service:        svc,
		PassivateAfter: DefaultPassivateAfter,
		MaxStateBytes:  DefaultMaxStateBytes,
		Warnings:       warnings,
	}
	p.knactorAnnotations(svc, &fn)
	p.checkAutoscalingClass(svc.Spec.Template.Annotations)
	if len(p.errs) > 0 {
		return Function{}, false
	}

	spec := &k.Spec.Template.Spec
	c := spec.Containers[servingContainer(spec.Containers)]
	fn.Image = c.Image
	fn.Env = c.Env // defaulting leaves env alone
	fn.Timeout = time.Duration(*spec.TimeoutSeconds) * time.Second
	fn.ContainerConcurrency = *spec.ContainerConcurrency
	fn.Autoscaling = resolveAutoscaling(ctx, k.Spec.Template.Annotations, fn.ContainerConcurrency, fn.Autoscaling.TargetActorsPerPod)
	return fn, true
}

// checkMetadata adds what knactor needs beyond Knative's own metadata checks.
func (p *docParser) checkMetadata(svc *servingv1.Service) {
	if svc.Name == "" {
		msg := "required: a function needs a fixed name"
		if svc.GenerateName != "" {
			msg += " (metadata.generateName is not supported)"
		}
		p.fail("metadata.name", "%s", msg)
	}
	if ns := svc.Namespace; ns != "" {
		if msgs := validateDNS1123Label(ns); len(msgs) > 0 {
			p.fail("metadata.namespace", "%q is not a DNS-1123 label: %s", ns, strings.Join(msgs, "; "))
		}
	}
}

// knativeField renders the paths of one of Knative's FieldErrors, writing an annotation's key
// in brackets as knactor does (Knative writes metadata.annotations.autoscaling.knative.dev/window,
// which reads as if the key were several fields), and its message. A few of Knative's messages
// put words into the path (autoscaling.knative.dev/initial-scale=0 not allowed by cluster): those
// words move to the message.
func knativeField(e *apis.FieldError) (field, message string) {
	message = e.Message
	if e.Details != "" {
		message += ": " + e.Details
	}
	paths := make([]string, len(e.Paths))
	for i, path := range e.Paths {
		if base, key, ok := strings.Cut(path, "annotations."); ok && (base == "" || strings.HasSuffix(base, ".")) {
			if j := strings.IndexAny(key, " ="); j > 0 {
				message += " (" + key + ")"
				key = key[:j]
			}
			path = annotationField(base+"annotations", key)
		}
		paths[i] = path
	}
	return strings.Join(paths, ", "), message
}

// servingContainer is the index of the container Knative serves traffic to: the only one, or
// the one that declares a port (Knative's validation guarantees exactly one does when there are
// several).
func servingContainer(cs []corev1.Container) int {
	if len(cs) > 1 {
		for i, c := range cs {
			if len(c.Ports) > 0 {
				return i
			}
		}
	}
	return 0
}

// checkAutoscalingClass adds knactor's rules to Knative's: the class must be one knactor knows,
// and knactor's autoscaler (like Knative's KPA) scales on concurrency or rps only.
func (p *docParser) checkAutoscalingClass(anns map[string]string) {
	const base = "spec.template.metadata.annotations"
	k, class, ok := autoscaling.ClassAnnotation.Get(anns)
	if ok {
		switch class {
		case ActorClass, autoscaling.KPA, autoscaling.HPA:
		default:
			// Knative itself refuses unknown *.knative.dev classes; say it once.
			if !strings.HasSuffix(class, ".knative.dev") {
				p.fail(annotationField(base, k), "%q is not %s, %s or %s", class, ActorClass, autoscaling.KPA, autoscaling.HPA)
			}
		}
	}
	if class != ActorClass {
		return // Knative validates the metric of its own classes
	}
	// Empty is the default (concurrency): Knative's webhook writes the metric annotation empty
	// on the PodAutoscaler of a class it does not know.
	if k, metric, ok := autoscaling.MetricAnnotation.Get(anns); ok && metric != "" && metric != autoscaling.Concurrency && metric != autoscaling.RPS {
		p.fail(annotationField(base, k), "%q is not %s or %s (class %s)", metric, autoscaling.Concurrency, autoscaling.RPS, ActorClass)
	}
}

// FromService checks and resolves svc as Parse does a manifest's document: Knative's defaulting
// and validation, then knactor's annotations. Kubernetes mode uses it for a function it learns
// from the cluster (a revision's pod template rebuilt into a Service), so a function scales the
// same whether its settings came from a file or from the API. source names where svc came from
// in errors (e.g. "deployment default/counter-00001").
func (o Options) FromService(svc *servingv1.Service, source string) (Function, error) {
	c := svc.DeepCopy()
	c.APIVersion, c.Kind = APIVersion, Kind
	j, err := json.Marshal(c)
	if err != nil {
		return Function{}, fmt.Errorf("%s: %w", source, err)
	}
	p := &docParser{file: source, doc: 1, ctx: o.context()}
	fn, ok := p.parse(j)
	if !ok {
		return Function{}, p.errs
	}
	return fn, nil
}
