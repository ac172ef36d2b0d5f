package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
)

// Environment variables kn-actor reads.
const (
	envURL   = "KNACTOR_URL"   // the router's URL, unless --server is given
	envToken = "KNACTOR_TOKEN" // the bearer token, unless --token-file is given
)

// defaultServer is where `knactor up` listens by default.
const defaultServer = "http://127.0.0.1:8080"

// globals are the settings every command shares: flags of the root command and the
// environment.
type globals struct {
	server    string
	tokenFile string
	getenv    func(string) string
	stdin     io.Reader
}

// execute runs kn-actor with args and returns its exit code: 0, or 1 after printing the error
// to stderr.
func execute(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	root := newRootCommand(&globals{getenv: getenv, stdin: stdin})
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintf(stderr, "Error: %v\n", err)
		return 1
	}
	return 0
}

func newRootCommand(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:   "kn-actor",
		Short: "Call knactor's stateful actors and manage the functions of a local knactor",
		Long: `kn-actor calls knactor's stateful actors and manages the functions of a local knactor.

It is also a kn plugin: installed on your PATH as kn-actor, it runs as "kn actor" (kn runs
kn-NAME for "kn NAME"), so "kn actor invoke counter alice add '{"by":1}'" works too.

It talks to the router's public API at --server (default $` + envURL + `, else ` + defaultServer + `,
where "knactor up" listens). The bearer token comes from $` + envToken + ` or --token-file, never
from a flag: flags show in process listings and shell history.

invoke, state and ws work against any knactor router, local or on a cluster. deploy and list
need a local knactor ("knactor up"); on a cluster, use "kubectl apply -f FILE" and
"kubectl get ksvc" for now. logs reads the pod log files a local knactor writes.`,
		Example: `  knactor up &                                  # a local knactor with the examples
  kn-actor invoke counter alice add '{"by":2}'   # {"value":2}
  kn-actor state get counter alice
  kn-actor list
  kn actor ws counter alice                      # the same binary as a kn plugin`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	server := g.getenv(envURL)
	if server == "" {
		server = defaultServer
	}
	fs := root.PersistentFlags()
	fs.StringVar(&g.server, "server", server, "URL of the knactor router ($"+envURL+" sets the default)")
	fs.StringVar(&g.tokenFile, "token-file", "", "file holding the bearer token (default: $"+envToken+")")
	root.AddCommand(newInvokeCommand(g), newStateCommand(g), newWSCommand(g), newListCommand(g),
		newDeployCommand(g), newLogsCommand(g))
	return root
}

// argsBetween accepts lo to hi arguments, and otherwise says what the command wants.
func argsBetween(lo, hi int, want string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) >= lo && len(args) <= hi {
			return nil
		}
		got := "no arguments"
		if len(args) > 0 {
			got = fmt.Sprintf("%d: %s", len(args), strings.Join(quoteAll(args), " "))
		}
		return fmt.Errorf("%s wants %s, got %s; see %s --help", cmd.CommandPath(), want, got, cmd.CommandPath())
	}
}

func quoteAll(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = fmt.Sprintf("%q", a)
	}
	return out
}
