// Command kn-actor is knactor's command-line client, standalone and as a kn plugin: once
// kn-actor is on PATH, `kn actor ...` runs it (kn runs kn-NAME for `kn NAME`).
//
// It calls actors (invoke), reads and deletes their state (state get|delete) and opens
// interactive WebSocket sessions (ws) through the router's public API (docs/api.md), against a
// local `knactor up` or a cluster's router alike; it deploys manifests to and lists the
// functions of a local knactor (deploy, list), and prints its pods' logs (logs).
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := execute(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}
