// Package crds holds knactor's own Kubernetes custom resources: their Go types, one package per
// API version (v1alpha1: the ActorSystem kind of the knactor.dev group), and the CRD YAML that
// hack/codegen.sh generates from them with controller-gen (knactor.dev_actorsystems.yaml, copied
// to config/300-actorsystem.yaml). samples/ has an ActorSystem to start from.
package crds
