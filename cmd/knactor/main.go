// Command knactor is knactor's one server binary: `knactor router` serves the public API in
// front of a fixed set of function pods; `knactor up` (all-in-one local mode) and the Kubernetes
// components join it as their issues land.
package main

import (
	"os"
)

func main() {
	if err := newRootCommand().Execute(); err != nil {
		os.Exit(1)
	}
}
