//go:build tools

// Package hack pins modules that go.mod must keep at versions measured to build together on
// this machine (see the toolchain notes), ahead of the packages that will import them. An
// import moves out of this file once real code uses it.
package hack

import (
	_ "k8s.io/client-go/kubernetes" // the Kubernetes runtime and pod watcher (issue 5)
)
