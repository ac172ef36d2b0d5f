// Package v1alpha1 is version v1alpha1 of knactor's API group knactor.dev. Its one kind,
// ActorSystem, says where the actors of a namespace keep their state (an S3 bucket), how the
// router caches it, when writes become durable, and which bearer tokens the public API accepts.
//
// The types are plain Go structs with kubebuilder markers; hack/codegen.sh runs controller-gen
// over them to write zz_generated.deepcopy.go and the CRD (crds/knactor.dev_actorsystems.yaml,
// copied to config/300-actorsystem.yaml). The doc comments become the CRD's descriptions, which
// `kubectl explain actorsystem.spec` shows.
//
// There is no generated clientset: Get, List and UpdateStatus are small typed helpers over
// client-go's dynamic client, with Resource as the GroupVersionResource.
//
// +kubebuilder:object:generate=true
// +groupName=knactor.dev
package v1alpha1
