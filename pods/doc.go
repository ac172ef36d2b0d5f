// Package pods holds knactor's runtimes: the places a function's pods run. pods/local runs them
// as OS processes on this machine (knactor up, tests); pods/kube finds them on a cluster, as the
// pods of a Knative revision. Both report each function's ready pods to the router and carry out
// the autoscaler's decisions.
package pods
