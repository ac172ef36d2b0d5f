package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// GroupName is knactor's API group. It is a domain knactor owns, so its kinds never collide with
// another project's.
const GroupName = "knactor.dev"

// Kind and ListKind name the ActorSystem kind and its list in API requests and YAML.
const (
	Kind     = "ActorSystem"
	ListKind = "ActorSystemList"
)

// SchemeGroupVersion is the group and version of the types in this package.
var SchemeGroupVersion = schema.GroupVersion{Group: GroupName, Version: "v1alpha1"}

// Resource is the ActorSystem resource, for the dynamic client (see Get, List, UpdateStatus).
var Resource = SchemeGroupVersion.WithResource("actorsystems")

var (
	// SchemeBuilder registers this package's types with a runtime.Scheme.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)
	// AddToScheme adds ActorSystem and ActorSystemList to a scheme (e.g. for a fake dynamic
	// client, or to decode the kind from YAML with a codec factory).
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(scheme *runtime.Scheme) error {
	scheme.AddKnownTypes(SchemeGroupVersion, &ActorSystem{}, &ActorSystemList{})
	metav1.AddToGroupVersion(scheme, SchemeGroupVersion)
	return nil
}
