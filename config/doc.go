// Package config holds the Kubernetes manifests that install knactor on a cluster: namespace,
// CRDs, RBAC, the router and autoscaler Deployments and Services, and ConfigMaps whose defaults
// are documented in Knative's _example convention. The Go package only carries tests that keep
// those documented defaults equal to the code's.
package config
