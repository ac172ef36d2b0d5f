package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/spf13/cobra"
)

// functionStatus is one function of GET /v1/functions (router.FunctionStatus).
type functionStatus struct {
	Function     string `json:"function"`
	ReadyPods    int    `json:"ready_pods"`
	StartingPods int    `json:"starting_pods"`
	DesiredPods  int    `json:"desired_pods"`
	Panicking    bool   `json:"panicking"`
	ActiveActors int    `json:"active_actors"`
	ScaleError   string `json:"scale_error,omitempty"`
}

// functionList is the answer of GET /v1/functions and list's -o json|yaml output.
type functionList struct {
	Functions []functionStatus `json:"functions"`
}

func newListCommand(g *globals) *cobra.Command {
	var (
		output  string
		cluster clusterFlags
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the functions of a local knactor with their pods and autoscaling",
		Long: `List the deployed functions of a local knactor ("knactor up"): ready, starting and desired
pods, whether the autoscaler is in panic mode, and the actors active in its newest snapshot.

With --cluster, the Knative Services of knactor's autoscaling class in the namespace: Ready,
ready and desired pods of the latest ready revision (from its PodAutoscaler) and the URL.`,
		Example: `  kn-actor list
  kn-actor list -o json
  kn-actor list --cluster -n default`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := parseFormat(output)
			if err != nil {
				return err
			}
			if cluster.enabled {
				l, err := clusterList(cmd.Context(), &cluster)
				if err != nil {
					return err
				}
				if f != formatHuman {
					return printStructured(cmd.OutOrStdout(), f, l)
				}
				return printTable(cmd.OutOrStdout(), []string{"NAME", "READY", "PODS", "DESIRED", "REVISION", "URL"}, l.rows())
			}
			c, err := g.newClient()
			if err != nil {
				return err
			}
			ans, err := c.do(cmd.Context(), http.MethodGet, "/v1/functions", nil, nil)
			var ae *apiError
			if errors.As(err, &ae) && ae.Code == "not_found" {
				return &explained{err: err, msg: fmt.Sprintf(
					"listing functions is not yet supported against a cluster (%s has no /v1/functions): use `kubectl get ksvc`", c.base)}
			}
			if err != nil {
				return c.explain(err, "")
			}
			var list functionList
			if err := json.Unmarshal(ans.body, &list); err != nil {
				return fmt.Errorf("reading the function list of %s: %w", c.base, err)
			}
			return printFunctions(cmd.OutOrStdout(), cmd.ErrOrStderr(), f, list)
		},
	}
	cluster.register(cmd.Flags())
	addOutputFlag(cmd, &output, "a table")
	return cmd
}

// printFunctions prints the function list; with the table, scaling errors follow on stderr.
func printFunctions(w, errw io.Writer, f format, list functionList) error {
	if list.Functions == nil {
		list.Functions = []functionStatus{}
	}
	if f != formatHuman {
		return printStructured(w, f, list)
	}
	if len(list.Functions) == 0 {
		_, err := fmt.Fprintln(w, "No functions are deployed. Deploy one with `kn-actor deploy -f service.yaml`.")
		return err
	}
	rows := make([][]string, 0, len(list.Functions))
	for _, fs := range list.Functions {
		panicking := "no"
		if fs.Panicking {
			panicking = "yes"
		}
		rows = append(rows, []string{fs.Function, strconv.Itoa(fs.ReadyPods), strconv.Itoa(fs.StartingPods),
			strconv.Itoa(fs.DesiredPods), panicking, strconv.Itoa(fs.ActiveActors)})
	}
	if err := printTable(w, []string{"NAME", "READY", "STARTING", "DESIRED", "PANIC", "ACTORS"}, rows); err != nil {
		return err
	}
	for _, fs := range list.Functions {
		if fs.ScaleError != "" {
			fmt.Fprintf(errw, "function %q cannot scale: %s; `kn-actor logs %s` shows its pods' output\n", fs.Function, fs.ScaleError, fs.Function)
		}
	}
	return nil
}
