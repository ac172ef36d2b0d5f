// Command conform checks a running knactor function, written in any language, against the
// function contract (docs/protocol.md). It runs the checks of package conformance and prints one
// PASS, FAIL or SKIP line per check, then a line "N passed, N failed". It exits with status 1 if a
// check failed and 2 on a usage error.
//
// Usage:
//
//	conform -url http://127.0.0.1:8080 -action 'add={"by":2}' -action get [-state '{"value":5}']
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/knactor/knactor/test/conformance"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// actionFlags collects repeated -action name=payload flags.
type actionFlags []conformance.Action

// String implements flag.Value.
func (f *actionFlags) String() string {
	names := make([]string, len(*f))
	for i, a := range *f {
		names[i] = a.Name
	}
	return strings.Join(names, ",")
}

// Set implements flag.Value.
func (f *actionFlags) Set(s string) error {
	name, payload, found := strings.Cut(s, "=")
	a := conformance.Action{Name: name}
	if found {
		if !json.Valid([]byte(payload)) {
			return fmt.Errorf("payload of action %q is not valid JSON: %s", name, payload)
		}
		a.Payload = json.RawMessage(payload)
	}
	*f = append(*f, a)
	return nil
}

// run runs the command with the given arguments and returns its exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("conform", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("url", "", "base URL of the running function, e.g. http://127.0.0.1:8080 (required)")
	function := fs.String("function", "conformance", "function name sent in envelopes")
	state := fs.String("state", "{}", "a stored state, as JSON, valid for every action")
	timeout := fs.Duration("timeout", 30*time.Second, "timeout of each request")
	var actions actionFlags
	fs.Var(&actions, "action", "an action and a sample payload as name=JSON, or name alone for a null payload (repeatable, at least one)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *url == "" || len(actions) == 0 || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "conform: -url and at least one -action are required, and no other arguments")
		fs.Usage()
		return 2
	}
	checks, err := conformance.Checks(*url, conformance.Options{
		Function: *function,
		Actions:  actions,
		State:    json.RawMessage(*state),
		Client:   &http.Client{Timeout: *timeout},
	})
	if err != nil {
		fmt.Fprintf(stderr, "conform: %v\n", err)
		return 2
	}
	passed, failed := 0, 0
	for _, c := range checks {
		switch err := c.Run(ctx); {
		case errors.Is(err, conformance.ErrSkipped):
			fmt.Fprintf(stdout, "SKIP %s: %v\n", c.Name, err)
		case err != nil:
			failed++
			fmt.Fprintf(stdout, "FAIL %s: %s\n", c.Name, strings.ReplaceAll(err.Error(), "\n", "; "))
		default:
			passed++
			fmt.Fprintf(stdout, "PASS %s\n", c.Name)
		}
	}
	fmt.Fprintf(stdout, "%d passed, %d failed\n", passed, failed)
	if failed > 0 {
		return 1
	}
	return 0
}
