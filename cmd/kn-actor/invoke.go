package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/knactor/knactor/router/record"
)

// validAction is the API's action name rule.
var validAction = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,128}$`)

func newInvokeCommand(g *globals) *cobra.Command {
	var (
		file, output, idemKey string
		retries               int
	)
	cmd := &cobra.Command{
		Use:   "invoke FUNCTION ID ACTION [JSON]",
		Short: "Call one action of an actor and print its reply",
		Long: `Call ACTION of the actor ID of FUNCTION once, as one turn, and print the function's reply.

The payload is the JSON argument, or the contents of -f FILE (-f - reads standard input; a
file that is not JSON is sent as bytes). Without either, the call has no payload.

--idempotency-key names the call: the actor remembers the key with the call's reply, and a
repeat of the same key (from this CLI, curl or any router) gets that reply again instead of
running the call twice. With a key, --retry N retries a call that failed for a reason that
may pass (no answer, 429, 502, 503, 504) up to N times, safely.

-o json or -o yaml print {"reply", "version", "pod", "replayed"}: the reply ("reply_b64" when
it is not JSON), the actor's state version after the turn, the pod that ran it, and whether
the answer is a replay of an earlier call with the same key.`,
		Example: `  kn-actor invoke counter alice add '{"by":2}'
  kn-actor invoke counter alice add '{"by":2}' --idempotency-key order-1234 --retry 5
  kn-actor invoke counter alice get -o json
  echo '{"by":2}' | kn-actor invoke counter alice add -f -`,
		Args: argsBetween(3, 4, "FUNCTION ID ACTION [JSON]"),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := parseFormat(output)
			if err != nil {
				return err
			}
			fn, id, action := args[0], args[1], args[2]
			if err := checkActor(fn, id); err != nil {
				return err
			}
			if !validAction.MatchString(action) {
				return fmt.Errorf("action %q: use 1-128 characters of A-Z a-z 0-9 _ . -", action)
			}
			if idemKey != "" && !record.ValidKey(idemKey) {
				return fmt.Errorf("--idempotency-key %q: use 1-%d printable ASCII characters", idemKey, record.MaxKeyLen)
			}
			if retries < 0 || (retries > 0 && idemKey == "") {
				return errors.New("--retry needs --idempotency-key: without a key a retried call may run twice")
			}
			payload, err := invokePayload(args[3:], file, g.stdin)
			if err != nil {
				return err
			}
			c, err := g.newClient()
			if err != nil {
				return err
			}
			header := http.Header{}
			if len(payload) > 0 {
				header.Set("Content-Type", contentTypeOf(payload))
			}
			if idemKey != "" {
				header.Set("Idempotency-Key", idemKey)
			}
			var ans *answer
			for attempt := 0; ; attempt++ {
				ans, err = c.do(cmd.Context(), http.MethodPost, actorPath(fn, id, action), bytes.NewReader(payload), header)
				if err == nil || attempt >= retries || !mayPass(err) {
					break
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "retrying (%d of %d): %v\n", attempt+1, retries, err)
				select {
				case <-time.After(retryPause):
				case <-cmd.Context().Done():
					return cmd.Context().Err()
				}
			}
			if err != nil {
				return c.explain(err, fn)
			}
			return printReply(cmd.OutOrStdout(), f, ans)
		},
	}
	cmd.Flags().StringVarP(&file, "filename", "f", "", "read the payload from FILE (- for standard input)")
	cmd.Flags().StringVar(&idemKey, "idempotency-key", "", "name the call so a repeat is answered from the actor's record, never run twice (1-255 printable ASCII)")
	cmd.Flags().IntVar(&retries, "retry", 0, "with --idempotency-key: retry a call that failed for a reason that may pass up to N times")
	addOutputFlag(cmd, &output, "the reply as it came")
	return cmd
}

// checkActor checks a FUNCTION and ID argument the way the router would, so a typo gets a
// local answer.
func checkActor(function, id string) error {
	if function == "" {
		return errors.New("FUNCTION is empty: give the function's name (`kn-actor list` shows them)")
	}
	if id == "" || len(id) > 1024 {
		return fmt.Errorf("actor ID %q: use 1-1024 bytes", id)
	}
	return nil
}

// invokePayload returns the payload of invoke: the JSON argument, or file's contents ("-":
// stdin), or nothing.
func invokePayload(args []string, file string, stdin io.Reader) ([]byte, error) {
	switch {
	case len(args) > 0 && file != "":
		return nil, errors.New("give the payload as the JSON argument or with -f, not both")
	case len(args) > 0:
		p := []byte(args[0])
		if !json.Valid(p) {
			return nil, fmt.Errorf("payload %q is not JSON: quote it for the shell, e.g. '{\"by\":1}', or send bytes with -f FILE", args[0])
		}
		return p, nil
	case file == "-":
		p, err := io.ReadAll(stdin)
		if err != nil {
			return nil, fmt.Errorf("reading the payload from standard input: %w", err)
		}
		return p, nil
	case file != "":
		p, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("reading the payload: %w", err)
		}
		return p, nil
	}
	return nil, nil
}

func contentTypeOf(v []byte) string {
	if json.Valid(v) {
		return "application/json"
	}
	return "application/octet-stream"
}

// mayPass reports a failed call worth retrying with its key: no answer at all, or a status that
// says to come back (busy actor, no pod or store yet, a timeout, a broken hop).
func mayPass(err error) bool {
	var ae *apiError
	if !errors.As(err, &ae) {
		return true // no answer: the call may or may not have run, and the key settles which
	}
	switch ae.Status {
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// retryPause is the wait before a retry: the router's Retry-After for 429 and 503.
const retryPause = time.Second

// invokeResult is invoke's -o json|yaml output.
type invokeResult struct {
	Reply    json.RawMessage `json:"reply,omitempty"`
	ReplyB64 []byte          `json:"reply_b64,omitempty"`
	Version  string          `json:"version"`
	Pod      string          `json:"pod"`
	Replayed bool            `json:"replayed,omitempty"`
}

// printReply prints an actor call's answer.
func printReply(w io.Writer, f format, ans *answer) error {
	isJSON := !strings.HasPrefix(ans.header.Get("Content-Type"), "application/octet-stream")
	if f == formatHuman {
		return printValue(w, ans.body, isJSON)
	}
	res := invokeResult{Version: ans.header.Get("X-Knactor-State-Version"), Pod: ans.header.Get("X-Knactor-Pod"),
		Replayed: ans.header.Get("Idempotent-Replayed") == "true"}
	if isJSON {
		res.Reply, res.ReplyB64 = jsonOrBase64(ans.body)
	} else {
		res.ReplyB64 = ans.body
	}
	return printStructured(w, f, res)
}
