package main

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"strconv"

	"github.com/spf13/pflag"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/retry"

	"github.com/knactor/knactor/manifest"
)

// actorClass is the autoscaling.knative.dev/class of functions knactor scales on a cluster
// (autoscaler/paclass.Class).
const actorClass = "actor.autoscaling.knactor.dev"

var (
	knativeServices = schema.GroupVersionResource{Group: "serving.knative.dev", Version: "v1", Resource: "services"}
	podAutoscalers  = schema.GroupVersionResource{Group: "autoscaling.internal.knative.dev", Version: "v1alpha1", Resource: "podautoscalers"}
)

// clusterFlags select a cluster instead of a local knactor.
type clusterFlags struct {
	enabled    bool
	kubeconfig string
	namespace  string
}

func (c *clusterFlags) register(fs *pflag.FlagSet) {
	fs.BoolVar(&c.enabled, "cluster", false, "act on the cluster of the current kubeconfig context (Knative Services) instead of a local knactor")
	fs.StringVar(&c.kubeconfig, "kubeconfig", "", "kubeconfig file with --cluster (default $KUBECONFIG, else ~/.kube/config)")
	fs.StringVarP(&c.namespace, "namespace", "n", "", "namespace with --cluster (default: the manifest's, else the context's, else default)")
}

// dynamicClient returns a dynamic client and the context's namespace.
func (c *clusterFlags) dynamicClient() (dynamic.Interface, string, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if c.kubeconfig != "" {
		rules.ExplicitPath = c.kubeconfig
	}
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{})
	cfg, err := cc.ClientConfig()
	if err != nil {
		return nil, "", &explained{err: err, msg: "no cluster to talk to: set --kubeconfig or $KUBECONFIG, or drop --cluster to use a local knactor"}
	}
	// The API server's warnings (Knative's webhook flags insecure defaults) are printed as
	// kubectl prints them, not as log lines.
	cfg.WarningHandler = rest.NewWarningWriter(os.Stderr, rest.WarningWriterOptions{Deduplicate: true})
	ns, _, _ := cc.Namespace()
	d, err := dynamic.NewForConfig(cfg)
	return d, cmp.Or(ns, "default"), err
}

// deployToCluster creates or updates a Knative Service of knactor's autoscaling class for every
// function of the manifest, checked as `knactor up -f` checks it. image, when set, replaces the
// serving container's image (a manifest's ko:// reference is resolved by ko, not here).
func deployToCluster(ctx context.Context, c *clusterFlags, data []byte, dir, image string) (deployResult, error) {
	fns, err := manifest.Parse(data, dir)
	if err != nil {
		return deployResult{}, err
	}
	dyn, ctxNS, err := c.dynamicClient()
	if err != nil {
		return deployResult{}, err
	}
	res := deployResult{Functions: []deployment{}}
	for _, fn := range fns {
		svc := fn.Service.DeepCopy()
		svc.APIVersion, svc.Kind = manifest.APIVersion, manifest.Kind
		svc.Namespace = cmp.Or(c.namespace, svc.Namespace, ctxNS)
		if svc.Spec.Template.Annotations == nil {
			svc.Spec.Template.Annotations = map[string]string{}
		}
		if _, set := svc.Spec.Template.Annotations["autoscaling.knative.dev/class"]; !set {
			svc.Spec.Template.Annotations["autoscaling.knative.dev/class"] = actorClass
		}
		if image != "" {
			for i := range svc.Spec.Template.Spec.Containers {
				if len(svc.Spec.Template.Spec.Containers) == 1 || len(svc.Spec.Template.Spec.Containers[i].Ports) > 0 {
					svc.Spec.Template.Spec.Containers[i].Image = image
					break
				}
			}
		}
		obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(svc)
		if err != nil {
			return res, err
		}
		u := &unstructured.Unstructured{Object: obj}
		unstructured.RemoveNestedField(u.Object, "status")
		unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
		client := dyn.Resource(knativeServices).Namespace(svc.Namespace)
		result := "created"
		// Knative's controller writes the Service's status while we update its spec, so a
		// conflict means "read again", not "give up".
		err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
			cur, err := client.Get(ctx, svc.Name, metav1.GetOptions{})
			switch {
			case apierrors.IsNotFound(err):
				result = "created"
				_, err = client.Create(ctx, u, metav1.CreateOptions{})
			case err == nil:
				result = "updated"
				u.SetResourceVersion(cur.GetResourceVersion())
				_, err = client.Update(ctx, u, metav1.UpdateOptions{})
			}
			return err
		})
		if err != nil {
			return res, clusterError(err, "create or update Knative Service "+svc.Namespace+"/"+svc.Name)
		}
		res.Functions = append(res.Functions, deployment{Function: svc.Name, Result: result, Warnings: fn.Warnings})
	}
	return res, nil
}

// clusterList lists the Knative Services of knactor's class with their PodAutoscalers' scale.
func clusterList(ctx context.Context, c *clusterFlags) (clusterFunctions, error) {
	dyn, ctxNS, err := c.dynamicClient()
	if err != nil {
		return clusterFunctions{}, err
	}
	ns := cmp.Or(c.namespace, ctxNS)
	svcs, err := dyn.Resource(knativeServices).Namespace(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return clusterFunctions{}, clusterError(err, "list Knative Services in "+ns)
	}
	out := clusterFunctions{Functions: []clusterFunction{}}
	for _, s := range svcs.Items {
		class, _, _ := unstructured.NestedString(s.Object, "spec", "template", "metadata", "annotations", "autoscaling.knative.dev/class")
		if class != actorClass {
			continue
		}
		f := clusterFunction{Function: s.GetName(), Namespace: ns, Ready: conditionStatus(&s, "Ready")}
		f.URL, _, _ = unstructured.NestedString(s.Object, "status", "url")
		f.Revision, _, _ = unstructured.NestedString(s.Object, "status", "latestReadyRevisionName")
		if f.Revision != "" {
			if pa, err := dyn.Resource(podAutoscalers).Namespace(ns).Get(ctx, f.Revision, metav1.GetOptions{}); err == nil {
				actual, _, _ := unstructured.NestedInt64(pa.Object, "status", "actualScale")
				desired, _, _ := unstructured.NestedInt64(pa.Object, "status", "desiredScale")
				f.ReadyPods, f.DesiredPods = int(actual), int(desired)
			}
		}
		out.Functions = append(out.Functions, f)
	}
	return out, nil
}

// clusterFunction is one function of `list --cluster`.
type clusterFunction struct {
	Function    string `json:"function"`
	Namespace   string `json:"namespace"`
	Ready       string `json:"ready"`
	Revision    string `json:"revision,omitempty"`
	ReadyPods   int    `json:"ready_pods"`
	DesiredPods int    `json:"desired_pods"`
	URL         string `json:"url,omitempty"`
}

// clusterFunctions is `list --cluster -o json|yaml`.
type clusterFunctions struct {
	Functions []clusterFunction `json:"functions"`
}

func (l clusterFunctions) rows() [][]string {
	var rows [][]string
	for _, f := range l.Functions {
		rows = append(rows, []string{f.Function, f.Ready, strconv.Itoa(f.ReadyPods), strconv.Itoa(f.DesiredPods), f.Revision, f.URL})
	}
	return rows
}

// conditionStatus returns the status of an object's condition, or "Unknown".
func conditionStatus(u *unstructured.Unstructured, typ string) string {
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		if m, ok := c.(map[string]any); ok && m["type"] == typ {
			return fmt.Sprint(m["status"])
		}
	}
	return "Unknown"
}

// clusterError says what to do about an API error.
func clusterError(err error, what string) error {
	switch {
	case apierrors.IsForbidden(err):
		return &explained{err: err, msg: what + ": forbidden: ask for RBAC on services.serving.knative.dev in that namespace"}
	case apierrors.IsNotFound(err):
		return &explained{err: err, msg: what + ": the cluster has no Knative Serving: install it, then knactor (config/)"}
	}
	return fmt.Errorf("%s: %w", what, err)
}
