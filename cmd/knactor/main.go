// Command knactor is knactor's one server binary: `knactor router` serves the public API in
// front of a fixed set of function pods; `knactor up` (all-in-one local mode) and the Kubernetes
// components join it as their issues land.
package main

import (
	"os"

	"github.com/knactor/knactor/pods/local"
)

func main() {
	local.RunShimIfAsked() // a pod's shim runs before anything else of knactor
	if err := newRootCommand().Execute(); err != nil {
		os.Exit(1)
	}
}
