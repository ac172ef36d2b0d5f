package main

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	servingv1 "knative.dev/serving/pkg/apis/serving/v1"

	"github.com/knactor/knactor/config"
	"github.com/knactor/knactor/manifest"
)

// kubeFlags are the flags every Kubernetes-mode command shares.
type kubeFlags struct {
	kubeconfig      string
	namespace       string
	actorSystem     string
	systemNamespace string
}

func (k *kubeFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&k.kubeconfig, "kubeconfig", "", "kubeconfig file (default $KUBECONFIG, else the in-cluster service account)")
	fs.StringVar(&k.namespace, "namespace", "default", "namespace of the functions and of their ActorSystem")
	fs.StringVar(&k.actorSystem, "actor-system", "default", "name of the ActorSystem (knactor.dev/v1alpha1) that configures state and auth")
	fs.StringVar(&k.systemNamespace, "system-namespace", cmp.Or(os.Getenv("SYSTEM_NAMESPACE"), config.SystemNamespace),
		"namespace of knactor's own ConfigMap ("+config.ConfigMapName+"); default $SYSTEM_NAMESPACE")
}

// kubeClients are the API clients of one Kubernetes-mode process.
type kubeClients struct {
	rest    *rest.Config
	kube    kubernetes.Interface
	dynamic dynamic.Interface
}

// clients builds the API clients: --kubeconfig, else $KUBECONFIG, else in-cluster.
func (k *kubeFlags) clients() (*kubeClients, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if k.kubeconfig != "" {
		rules.ExplicitPath = k.kubeconfig
	}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w (set --kubeconfig or $KUBECONFIG, or run in a pod)", err)
	}
	cfg.UserAgent = "knactor"
	kc, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	dc, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &kubeClients{rest: cfg, kube: kc, dynamic: dc}, nil
}

// loadConfig reads knactor's ConfigMap from the system namespace. A missing ConfigMap means the
// documented defaults (logged); a bad one is an error naming the key.
func (k *kubeFlags) loadConfig(ctx context.Context, c *kubeClients) (config.Config, error) {
	cm, err := c.kube.CoreV1().ConfigMaps(k.systemNamespace).Get(ctx, config.ConfigMapName, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		slog.Info("no ConfigMap: using the documented defaults", "configmap", k.systemNamespace+"/"+config.ConfigMapName)
		return config.Defaults(), nil
	case apierrors.IsForbidden(err):
		return config.Config{}, fmt.Errorf("knactor may not read ConfigMap %s/%s (apply config/ RBAC): %w", k.systemNamespace, config.ConfigMapName, err)
	case err != nil:
		return config.Config{}, fmt.Errorf("read ConfigMap %s/%s: %w", k.systemNamespace, config.ConfigMapName, err)
	}
	cfg, err := config.FromMap(cm.Data)
	if err != nil {
		return config.Config{}, fmt.Errorf("ConfigMap %s/%s: %w", k.systemNamespace, config.ConfigMapName, err)
	}
	return cfg, nil
}

// queueProxy is the name of the sidecar Knative adds to a revision's pods.
const queueProxy = "queue-proxy"

// functionFromTemplate rebuilds the Knative Service a revision's pod template came from, as far
// as knactor needs it (annotations, serving container, containerConcurrency), and checks it as a
// manifest is checked. Knative copies a revision's annotations onto its pods' template and passes
// containerConcurrency to the queue-proxy as CONTAINER_CONCURRENCY.
func functionFromTemplate(name, source string, tmpl *corev1.PodTemplateSpec) (manifest.Function, error) {
	svc := &servingv1.Service{}
	svc.Name = name
	anns := map[string]string{}
	for k, v := range tmpl.Annotations {
		if strings.HasPrefix(k, "autoscaling.knative.dev/") || strings.HasPrefix(k, manifest.AnnotationPrefix) {
			anns[k] = v
		}
	}
	svc.Spec.Template.Annotations = anns
	var cc *int64
	for _, c := range tmpl.Spec.Containers {
		if c.Name == queueProxy {
			for _, e := range c.Env {
				if e.Name == "CONTAINER_CONCURRENCY" {
					var n int64
					if _, err := fmt.Sscan(e.Value, &n); err == nil {
						cc = &n
					}
				}
			}
			continue
		}
		if len(svc.Spec.Template.Spec.Containers) == 0 {
			svc.Spec.Template.Spec.Containers = []corev1.Container{{Image: cmp.Or(c.Image, "unknown")}}
		}
	}
	if len(svc.Spec.Template.Spec.Containers) == 0 {
		return manifest.Function{}, fmt.Errorf("%s: no serving container", source)
	}
	svc.Spec.Template.Spec.ContainerConcurrency = cc
	// A discovered revision has had its initial scale applied already (Knative creates the
	// Deployment with it); what matters from now on is the pods it has.
	delete(anns, "autoscaling.knative.dev/initial-scale")
	fn, err := manifest.Options{AllowZeroInitialScale: true}.FromService(svc, source)
	if err != nil {
		return fn, err
	}
	fn.Autoscaling.InitialScale = 0
	return fn, nil
}
