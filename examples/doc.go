// Package examples holds example actor functions, each a directory with its code and a Knative
// Service manifest (service.yaml) that knactor deploys locally and on a cluster alike: counter
// (Go, on the sdk).
package examples
