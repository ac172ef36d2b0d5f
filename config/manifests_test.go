package config

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"

	"github.com/knactor/knactor/crds/v1alpha1"
)

// koImage is the image of every knactor container: ko builds cmd/knactor and replaces it.
const koImage = "ko://github.com/knactor/knactor/cmd/knactor"

// object is one document of a manifest, decoded.
type object struct {
	file string
	doc  int
	obj  runtime.Object
	meta interface {
		GetName() string
		GetNamespace() string
	}
}

func (o object) String() string {
	return o.file + "#" + strconv.Itoa(o.doc) + " " + o.obj.GetObjectKind().GroupVersionKind().Kind + " " + o.meta.GetName()
}

// loadManifests decodes every YAML document of every *.yaml file in dir strictly (unknown or
// duplicate fields fail) into the types of client-go's scheme and apiextensions/v1.
func loadManifests(t *testing.T, dir string) []object {
	t.Helper()
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, apiextensionsv1.AddToScheme, v1alpha1.AddToScheme} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	decoder := serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer()

	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in %s: %v", dir, err)
	}
	var out []object
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
		for doc := 1; ; doc++ {
			raw, err := r.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s document %d: %v", file, doc, err)
			}
			if isEmptyDocument(raw) {
				continue
			}
			obj, gvk, err := decoder.Decode(raw, nil, nil)
			if err != nil {
				t.Errorf("%s document %d: %v", file, doc, err)
				continue
			}
			obj.GetObjectKind().SetGroupVersionKind(*gvk)
			m, err := meta.Accessor(obj)
			if err != nil {
				t.Fatalf("%s document %d: %v", file, doc, err)
			}
			out = append(out, object{file: filepath.Base(file), doc: doc, obj: obj, meta: m})
		}
	}
	return out
}

// isEmptyDocument reports whether a YAML document holds only comments and blank lines.
func isEmptyDocument(doc []byte) bool {
	for line := range strings.SplitSeq(string(doc), "\n") {
		if l := strings.TrimSpace(line); l != "" && l != "---" && !strings.HasPrefix(l, "#") {
			return false
		}
	}
	return true
}

// typed returns the objects of type T.
func typed[T runtime.Object](objs []object) []T {
	var out []T
	for _, o := range objs {
		if v, ok := o.obj.(T); ok {
			out = append(out, v)
		}
	}
	return out
}

func TestManifestsDecode(t *testing.T) {
	objs := loadManifests(t, ".")
	kinds := map[string]int{}
	for _, o := range objs {
		kinds[o.obj.GetObjectKind().GroupVersionKind().Kind]++
	}
	want := map[string]int{
		"Namespace": 1, "ServiceAccount": 2, "ClusterRole": 2, "Role": 2, "ClusterRoleBinding": 2, "RoleBinding": 2,
		"Secret": 1, "CustomResourceDefinition": 1, "ConfigMap": 1, "Deployment": 2, "Service": 2, "NetworkPolicy": 1,
	}
	for kind, n := range want {
		if kinds[kind] != n {
			t.Errorf("%d objects of kind %s, want %d", kinds[kind], kind, n)
		}
	}
	for kind := range kinds {
		if _, ok := want[kind]; !ok {
			t.Errorf("unexpected kind %s: add it to this test", kind)
		}
	}
	// No secret is written in a file: the shared secret's Secret is declared empty and filled by
	// the first component that starts.
	for _, sec := range typed[*corev1.Secret](objs) {
		if sec.Name != InternalSecretName || len(sec.Data) != 0 || len(sec.StringData) != 0 {
			t.Errorf("Secret %s/%s: config/ declares only %s, and without a value", sec.Namespace, sec.Name, InternalSecretName)
		}
	}
	for _, o := range objs {
		if !manifestName.MatchString(o.file) {
			t.Errorf("%s: file name is not NNN-name.yaml (Knative's numbering: the number orders kubectl apply)", o.file)
		}
		if l := o.obj.(metaObject).GetLabels(); l["app.kubernetes.io/part-of"] != "knactor" {
			t.Errorf("%s: no label app.kubernetes.io/part-of: knactor", o)
		}
	}
}

type metaObject interface{ GetLabels() map[string]string }

var manifestName = regexp.MustCompile(`^[0-9]{3}-[a-z0-9-]+\.yaml$`)

// servedNamespaces are the namespaces whose functions the Deployments serve (their --namespace).
func servedNamespaces(t *testing.T, objs []object) map[string]bool {
	served := map[string]bool{}
	for _, d := range typed[*appsv1.Deployment](objs) {
		for _, c := range d.Spec.Template.Spec.Containers {
			for _, a := range c.Args {
				if ns, ok := strings.CutPrefix(a, "--namespace="); ok {
					served[ns] = true
				}
			}
		}
	}
	if len(served) == 0 {
		t.Fatal("no Deployment has --namespace")
	}
	return served
}

func TestManifestsNamespaces(t *testing.T) {
	objs := loadManifests(t, ".")
	namespaces := typed[*corev1.Namespace](objs)
	if len(namespaces) != 1 || namespaces[0].Name != SystemNamespace {
		t.Errorf("want exactly the Namespace %s", SystemNamespace)
	}
	for _, o := range objs {
		ns := o.meta.GetNamespace()
		switch o.obj.(type) {
		case *corev1.Namespace, *rbacv1.ClusterRole, *rbacv1.ClusterRoleBinding, *apiextensionsv1.CustomResourceDefinition:
			if ns != "" {
				t.Errorf("%s: cluster-scoped object has namespace %q", o, ns)
			}
		default:
			if ns != SystemNamespace {
				t.Errorf("%s: is in namespace %q, want %s", o, ns, SystemNamespace)
			}
		}
	}
}

func TestManifestsRBAC(t *testing.T) {
	objs := loadManifests(t, ".")
	accounts := map[string]bool{}
	for _, sa := range typed[*corev1.ServiceAccount](objs) {
		accounts[sa.Namespace+"/"+sa.Name] = true
	}
	roles := map[string]bool{}
	for _, r := range typed[*rbacv1.ClusterRole](objs) {
		roles["ClusterRole/"+r.Name] = true
		for _, rule := range r.Rules {
			for _, verb := range rule.Verbs {
				if verb == "*" || slices.Contains(rule.Resources, "*") || slices.Contains(rule.APIGroups, "*") {
					t.Errorf("ClusterRole %s: wildcard in %+v", r.Name, rule)
				}
				// Secrets are read by name only.
				if slices.Contains(rule.Resources, "secrets") && verb != "get" {
					t.Errorf("ClusterRole %s: %q on secrets, want only get", r.Name, verb)
				}
			}
		}
	}
	for _, r := range typed[*rbacv1.Role](objs) {
		roles["Role/"+r.Namespace+"/"+r.Name] = true
		// Writing a Secret is confined to the components' own shared secret.
		for _, rule := range r.Rules {
			if slices.Contains(rule.Resources, "secrets") && !slices.Equal(rule.ResourceNames, []string{InternalSecretName}) {
				t.Errorf("Role %s: a rule on secrets that is not confined to %s: %+v", r.Name, InternalSecretName, rule)
			}
		}
	}
	// A binding's name (for errors), namespace ("" for a ClusterRoleBinding), role and subjects.
	type binding struct {
		name, namespace string
		roleRef         rbacv1.RoleRef
		subjects        []rbacv1.Subject
	}
	var bindings []binding
	for _, b := range typed[*rbacv1.ClusterRoleBinding](objs) {
		bindings = append(bindings, binding{"ClusterRoleBinding " + b.Name, "", b.RoleRef, b.Subjects})
	}
	for _, b := range typed[*rbacv1.RoleBinding](objs) {
		bindings = append(bindings, binding{"RoleBinding " + b.Namespace + "/" + b.Name, b.Namespace, b.RoleRef, b.Subjects})
	}
	bound := map[string]bool{} // ServiceAccounts that some binding grants to
	for _, b := range bindings {
		ref := "ClusterRole/" + b.roleRef.Name
		if b.roleRef.Kind == "Role" {
			ref = "Role/" + b.namespace + "/" + b.roleRef.Name
		}
		if !roles[ref] {
			t.Errorf("%s: %s is not defined in config/", b.name, ref)
		}
		for _, s := range b.subjects {
			if s.Kind != "ServiceAccount" || !accounts[s.Namespace+"/"+s.Name] {
				t.Errorf("%s: subject %s %s/%s is not a ServiceAccount of config/", b.name, s.Kind, s.Namespace, s.Name)
			}
			bound[s.Namespace+"/"+s.Name] = true
		}
	}
	for _, d := range typed[*appsv1.Deployment](objs) {
		sa := d.Namespace + "/" + d.Spec.Template.Spec.ServiceAccountName
		if !accounts[sa] {
			t.Errorf("Deployment %s: ServiceAccount %s is not defined in config/", d.Name, sa)
		}
		if !bound[sa] {
			t.Errorf("Deployment %s: ServiceAccount %s is bound to no role", d.Name, sa)
		}
	}
}

func TestManifestsDeployments(t *testing.T) {
	objs := loadManifests(t, ".")
	services := typed[*corev1.Service](objs)
	deployments := typed[*appsv1.Deployment](objs)
	if len(deployments) == 0 {
		t.Fatal("no Deployments")
	}
	for _, d := range deployments {
		spec := d.Spec.Template.Spec
		sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
		if err != nil || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
			t.Errorf("Deployment %s: selector does not match its pod template (%v)", d.Name, err)
		}
		if spec.SecurityContext == nil || spec.SecurityContext.RunAsNonRoot == nil || !*spec.SecurityContext.RunAsNonRoot {
			t.Errorf("Deployment %s: pod does not set runAsNonRoot", d.Name)
		}
		if spec.TerminationGracePeriodSeconds == nil || *spec.TerminationGracePeriodSeconds != 30 {
			t.Errorf("Deployment %s: terminationGracePeriodSeconds is not 30", d.Name)
		}
		for _, c := range spec.Containers {
			if c.Image != koImage {
				t.Errorf("Deployment %s container %s: image %q, want %q", d.Name, c.Name, c.Image, koImage)
			}
			sc := c.SecurityContext
			if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
				sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
				sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
				t.Errorf("Deployment %s container %s: securityContext %+v is not read-only, unprivileged, without capabilities", d.Name, c.Name, sc)
			}
			// The router's readiness fails once it shuts down (/readyz); the others have /healthz.
			probe := "/healthz"
			if strings.Contains(d.Name, "router") {
				probe = "/readyz"
			}
			if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != probe {
				t.Errorf("Deployment %s container %s: no readiness probe on %s", d.Name, c.Name, probe)
			}
			if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() {
				t.Errorf("Deployment %s container %s: no cpu and memory requests", d.Name, c.Name)
			}
			env := map[string]string{}
			for _, e := range c.Env {
				if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
					env[e.Name] = e.ValueFrom.FieldRef.FieldPath
				}
			}
			for name, path := range map[string]string{"POD_IP": "status.podIP", "POD_NAME": "metadata.name", "SYSTEM_NAMESPACE": "metadata.namespace"} {
				if env[name] != path {
					t.Errorf("Deployment %s container %s: env %s is not the field %s", d.Name, c.Name, name, path)
				}
			}
			if !slices.Contains(c.Args, "--listen=$(POD_IP):8080") {
				t.Errorf("Deployment %s container %s: args %q do not listen on $(POD_IP):8080", d.Name, c.Name, c.Args)
			}
		}
		// Each Deployment has a Service selecting its pods on a port the container declares.
		found := false
		for _, s := range services {
			if s.Name != d.Name || !labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) {
				continue
			}
			found = true
			for _, p := range s.Spec.Ports {
				if !declaresPort(spec.Containers, p.TargetPort.String()) {
					t.Errorf("Service %s: targetPort %s is no container port of Deployment %s", s.Name, p.TargetPort.String(), d.Name)
				}
			}
		}
		if !found {
			t.Errorf("Deployment %s: no Service of the same name selects its pods", d.Name)
		}
	}
}

func declaresPort(containers []corev1.Container, port string) bool {
	for _, c := range containers {
		for _, p := range c.Ports {
			if p.Name == port || strconv.Itoa(int(p.ContainerPort)) == port {
				return true
			}
		}
	}
	return false
}

// TestRouterFindsAutoscaler checks the router's --autoscaler-url against the autoscaler's
// Service: name, namespace and port.
func TestRouterFindsAutoscaler(t *testing.T) {
	objs := loadManifests(t, ".")
	var routerURL string
	for _, d := range typed[*appsv1.Deployment](objs) {
		for _, a := range d.Spec.Template.Spec.Containers[0].Args {
			if v, ok := strings.CutPrefix(a, "--autoscaler-url="); ok {
				routerURL = v
			}
		}
	}
	u, err := url.Parse(routerURL)
	if err != nil || u.Scheme != "ws" || u.Path != "/stats" {
		t.Fatalf("router --autoscaler-url=%q, want ws://.../stats (%v)", routerURL, err)
	}
	for _, s := range typed[*corev1.Service](objs) {
		if u.Hostname() == s.Name+"."+s.Namespace+".svc.cluster.local" {
			for _, p := range s.Spec.Ports {
				if strconv.Itoa(int(p.Port)) == u.Port() {
					return
				}
			}
			t.Fatalf("Service %s has no port %s", s.Name, u.Port())
		}
	}
	t.Fatalf("no Service answers %s", u.Host)
}

func TestManifestsCRD(t *testing.T) {
	objs := loadManifests(t, ".")
	crds := typed[*apiextensionsv1.CustomResourceDefinition](objs)
	if len(crds) != 1 {
		t.Fatalf("%d CRDs, want 1", len(crds))
	}
	crd := crds[0]
	gvr := v1alpha1.Resource
	if crd.Name != gvr.Resource+"."+gvr.Group || crd.Spec.Group != gvr.Group || crd.Spec.Names.Plural != gvr.Resource ||
		crd.Spec.Names.Kind != v1alpha1.Kind || crd.Spec.Scope != apiextensionsv1.NamespaceScoped {
		t.Errorf("CRD %s: group %s, plural %s, kind %s, scope %s; want %s, namespaced", crd.Name, crd.Spec.Group,
			crd.Spec.Names.Plural, crd.Spec.Names.Kind, crd.Spec.Scope, gvr)
	}
	if len(crd.Spec.Versions) != 1 || crd.Spec.Versions[0].Name != gvr.Version || !crd.Spec.Versions[0].Served ||
		!crd.Spec.Versions[0].Storage || crd.Spec.Versions[0].Subresources == nil || crd.Spec.Versions[0].Subresources.Status == nil {
		t.Errorf("CRD %s: versions %+v, want %s served and stored with a status subresource", crd.Name, crd.Spec.Versions, gvr.Version)
	}
	// The copy here is the generated file itself (hack/codegen.sh writes both).
	generated, err := os.ReadFile(filepath.Join("..", "crds", "knactor.dev_actorsystems.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	copied, err := os.ReadFile("300-actorsystem.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(generated, copied) {
		t.Error("300-actorsystem.yaml differs from crds/knactor.dev_actorsystems.yaml: run hack/codegen.sh")
	}
}

func TestManifestsConfigMap(t *testing.T) {
	objs := loadManifests(t, ".")
	for _, cm := range typed[*corev1.ConfigMap](objs) {
		if cm.Name != ConfigMapName {
			t.Errorf("unexpected ConfigMap %s", cm.Name)
			continue
		}
		if _, err := FromMap(cm.Data); err != nil {
			t.Errorf("ConfigMap %s: %v", cm.Name, err)
		}
	}
}

// TestSample checks crds/samples: it decodes, and its ActorSystem is valid, in the namespace
// and with the name the Deployments serve, naming a Secret the sample defines.
func TestSample(t *testing.T) {
	served := servedNamespaces(t, loadManifests(t, "."))
	objs := loadManifests(t, filepath.Join("..", "crds", "samples"))
	secrets := map[string]*corev1.Secret{}
	for _, s := range typed[*corev1.Secret](objs) {
		secrets[s.Namespace+"/"+s.Name] = s
	}
	systems := typed[*v1alpha1.ActorSystem](objs)
	if len(systems) != 1 {
		t.Fatalf("%d ActorSystems in crds/samples, want 1", len(systems))
	}
	as := systems[0]
	if !served[as.Namespace] || as.Name != "default" {
		t.Errorf("sample ActorSystem %s/%s is not the one config/ serves (--namespace %v, --actor-system=default)", as.Namespace, as.Name, served)
	}
	if err := as.Spec.Validate(); err != nil {
		t.Errorf("sample ActorSystem: %v", err)
	}
	defaulted := as.Spec.DeepCopy()
	defaulted.SetDefaults()
	if diff := cmp.Diff(*defaulted, as.Spec); diff != "" {
		t.Errorf("the sample's optional fields are said to be the defaults but differ (-defaults +sample):\n%s", diff)
	}
	sec := secrets[as.Namespace+"/"+as.Spec.Store.S3.CredentialsSecretRef.Name]
	if sec == nil {
		t.Fatalf("sample Secret %s/%s is missing", as.Namespace, as.Spec.Store.S3.CredentialsSecretRef.Name)
	}
	for _, k := range []string{v1alpha1.SecretKeyAccessKey, v1alpha1.SecretKeySecretKey} {
		if sec.StringData[k] == "" {
			t.Errorf("sample Secret %s has no %s", sec.Name, k)
		}
	}
}

// allowed reports whether the ServiceAccount knactor-system/sa may verb resource (group/resource,
// "" group for core) in namespace under config/'s RBAC.
func allowed(objs []object, sa, verb, group, resource, namespace string) bool {
	rules := func(kind, ns, name string) []rbacv1.PolicyRule {
		for _, o := range objs {
			switch r := o.obj.(type) {
			case *rbacv1.ClusterRole:
				if kind == "ClusterRole" && r.Name == name {
					return r.Rules
				}
			case *rbacv1.Role:
				if kind == "Role" && r.Namespace == ns && r.Name == name {
					return r.Rules
				}
			}
		}
		return nil
	}
	grants := func(rs []rbacv1.PolicyRule) bool {
		for _, r := range rs {
			if slices.Contains(r.Verbs, verb) && slices.Contains(r.APIGroups, group) && slices.Contains(r.Resources, resource) {
				return true
			}
		}
		return false
	}
	subject := func(subjects []rbacv1.Subject) bool {
		return slices.ContainsFunc(subjects, func(s rbacv1.Subject) bool {
			return s.Kind == "ServiceAccount" && s.Namespace == SystemNamespace && s.Name == sa
		})
	}
	for _, o := range objs {
		switch b := o.obj.(type) {
		case *rbacv1.ClusterRoleBinding:
			if subject(b.Subjects) && grants(rules(b.RoleRef.Kind, "", b.RoleRef.Name)) {
				return true
			}
		case *rbacv1.RoleBinding:
			if b.Namespace == namespace && subject(b.Subjects) && grants(rules(b.RoleRef.Kind, b.Namespace, b.RoleRef.Name)) {
				return true
			}
		}
	}
	return false
}

// TestManifestsPermissions pins what each component may and may not do.
func TestManifestsPermissions(t *testing.T) {
	objs := loadManifests(t, ".")
	const fn = "default" // a namespace of functions
	type perm struct{ verb, group, resource, namespace string }
	reads := func(ns string) []perm {
		var out []perm
		for _, verb := range []string{"get", "list", "watch"} {
			out = append(out,
				perm{verb, "", "pods", ns},
				perm{verb, "apps", "deployments", ns},
				perm{verb, "knactor.dev", "actorsystems", ns},
				perm{verb, "", "configmaps", SystemNamespace})
		}
		return append(out, perm{"get", "", "secrets", ns})
	}
	tests := []struct {
		sa       string
		may, not []perm
	}{{
		sa:  "knactor-router",
		may: reads(fn),
		not: []perm{
			{"list", "", "secrets", fn}, {"watch", "", "secrets", fn}, {"get", "", "configmaps", fn},
			{"update", "apps", "deployments/scale", fn}, {"update", "knactor.dev", "actorsystems/status", fn},
			{"create", "", "events", fn}, {"update", "apps", "deployments", fn}, {"create", "", "pods", fn},
			{"delete", "", "pods", fn},
		},
	}, {
		sa: "knactor-autoscaler",
		may: append(reads(fn),
			perm{"get", "apps", "deployments/scale", fn}, perm{"update", "apps", "deployments/scale", fn},
			perm{"patch", "apps", "deployments/scale", fn},
			perm{"get", "knactor.dev", "actorsystems/status", fn}, perm{"update", "knactor.dev", "actorsystems/status", fn},
			perm{"patch", "knactor.dev", "actorsystems/status", fn},
			perm{"create", "", "events", fn}, perm{"patch", "", "events", fn}),
		not: []perm{
			{"list", "", "secrets", fn}, {"get", "", "configmaps", fn}, {"update", "apps", "deployments", fn},
			{"patch", "apps", "deployments", fn}, {"update", "knactor.dev", "actorsystems", fn},
			{"delete", "", "pods", fn}, {"create", "", "pods", fn}, {"delete", "", "events", fn},
		},
	}}
	for _, tc := range tests {
		t.Run(tc.sa, func(t *testing.T) {
			for _, p := range tc.may {
				if !allowed(objs, tc.sa, p.verb, p.group, p.resource, p.namespace) {
					t.Errorf("%s may not %s %s/%s in %s", tc.sa, p.verb, p.group, p.resource, p.namespace)
				}
			}
			for _, p := range tc.not {
				if allowed(objs, tc.sa, p.verb, p.group, p.resource, p.namespace) {
					t.Errorf("%s may %s %s/%s in %s", tc.sa, p.verb, p.group, p.resource, p.namespace)
				}
			}
		})
	}
}
