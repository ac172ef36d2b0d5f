package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/spf13/cobra"
)

func newStateCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "state",
		Short: "Read or delete an actor's state",
		Long: `Read or delete an actor's state through the router, without calling the function.

state get prints the state as stored; state delete deletes it as a turn of the actor (never
between another turn's read and write).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return fmt.Errorf("%s wants a subcommand: get or delete; see %s --help", cmd.CommandPath(), cmd.CommandPath())
		},
	}
	cmd.AddCommand(newStateGetCommand(g), newStateDeleteCommand(g))
	return cmd
}

// stateResult is state get's -o json|yaml output.
type stateResult struct {
	Function string          `json:"function"`
	ID       string          `json:"id"`
	Version  string          `json:"version"`
	State    json.RawMessage `json:"state,omitempty"`
	StateB64 []byte          `json:"state_b64,omitempty"`
}

func newStateGetCommand(g *globals) *cobra.Command {
	var output string
	var whole bool
	cmd := &cobra.Command{
		Use:   "get FUNCTION ID",
		Short: "Print an actor's state",
		Long: `Print the state of the actor ID of FUNCTION as stored (GET /v1/actors/FUNCTION/ID).

-o json or -o yaml print {"function", "id", "version", "state"} ("state_b64" when the state is
not JSON).

--record prints the actor's whole record (GET ...?view=record): its state, version, timers
(name, due time, period, action, payload), the number of effects not delivered yet, the
channels it subscribes to and the idempotency keys it remembers.`,
		Example: `  kn-actor state get counter alice
  kn-actor state get counter alice -o yaml
  kn-actor state get auction lot-1 --record`,
		Args: argsBetween(2, 2, "FUNCTION ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := parseFormat(output)
			if err != nil {
				return err
			}
			fn, id := args[0], args[1]
			if err := checkActor(fn, id); err != nil {
				return err
			}
			c, err := g.newClient()
			if err != nil {
				return err
			}
			path := actorPath(fn, id)
			if whole {
				path += "?view=record"
			}
			ans, err := c.do(cmd.Context(), http.MethodGet, path, nil, nil)
			if err != nil {
				return stateError(c, err, fn, id)
			}
			if whole {
				return printRecord(cmd.OutOrStdout(), f, ans)
			}
			return printState(cmd.OutOrStdout(), f, fn, id, ans)
		},
	}
	addOutputFlag(cmd, &output, "the state as stored")
	cmd.Flags().BoolVar(&whole, "record", false, "print the whole record: state, timers, pending effects, channels")
	return cmd
}

func newStateDeleteCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "delete FUNCTION ID",
		Short:   "Delete an actor's state",
		Long:    `Delete the state of the actor ID of FUNCTION (DELETE /v1/actors/FUNCTION/ID). Deleting an actor without state succeeds.`,
		Example: `  kn-actor state delete counter alice`,
		Args:    argsBetween(2, 2, "FUNCTION ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			fn, id := args[0], args[1]
			if err := checkActor(fn, id); err != nil {
				return err
			}
			c, err := g.newClient()
			if err != nil {
				return err
			}
			if _, err := c.do(cmd.Context(), http.MethodDelete, actorPath(fn, id), nil, nil); err != nil {
				return stateError(c, err, fn, id)
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "actor %q of function %q deleted\n", id, fn)
			return err
		},
	}
}

// stateError explains an error of state get or delete.
func stateError(c *client, err error, function, id string) error {
	var ae *apiError
	if errors.As(err, &ae) && ae.Code == "actor_not_found" {
		return &explained{err: err, msg: fmt.Sprintf("actor %q of function %q has no state", id, function)}
	}
	return c.explain(err, function)
}

// printState prints state get's answer.
// printRecord prints GET ...?view=record: indented JSON, or YAML with -o yaml.
func printRecord(w io.Writer, f format, ans *answer) error {
	var v map[string]any
	if err := json.Unmarshal(ans.body, &v); err != nil {
		return fmt.Errorf("the router's record view is not JSON: %w", err)
	}
	if f == formatHuman {
		f = formatJSON
	}
	return printStructured(w, f, v)
}

func printState(w io.Writer, f format, function, id string, ans *answer) error {
	if f == formatHuman {
		return printValue(w, ans.body, json.Valid(ans.body))
	}
	res := stateResult{Function: function, ID: id, Version: ans.header.Get("X-Knactor-State-Version")}
	res.State, res.StateB64 = jsonOrBase64(ans.body)
	return printStructured(w, f, res)
}
