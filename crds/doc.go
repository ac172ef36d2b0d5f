// Package crds holds the Go types of knactor's own Kubernetes custom resources (such as
// ActorSystem: state store, cache size, write mode, auth) and the CRD YAML generated from them.
package crds
