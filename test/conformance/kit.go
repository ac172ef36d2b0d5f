package conformance

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Options describes the function under test.
type Options struct {
	// Function is the function name sent in envelopes; default "conformance".
	Function string
	// Actions are the function's actions with sample payloads; at least one is required. The
	// first one is used by the checks that need any action.
	Actions []Action
	// State is a stored state valid for every action, used for invocations of an existing actor;
	// default {}. The large_state check pads it and is skipped unless it is a JSON object.
	State json.RawMessage
	// Concurrency is the number of distinct actors invoked at once; default 16.
	Concurrency int
	// Client sends the requests; default a client with a 30 s timeout.
	Client *http.Client
}

// Action is an action of the function under test.
type Action struct {
	// Name is the action's name.
	Name string
	// Payload is a sample payload the action accepts; nil sends null.
	Payload json.RawMessage
	// Expect, if set, checks the answer to Payload sent to a new actor.
	Expect func(*Answer) error
	// RefusesNew and RefusesExisting, when set, are the error code the action answers Payload
	// with for a new actor, or for an actor with the sample State (a bid on an auction that is
	// not open yet, an auction opened twice): the checks then want that error form there
	// instead of a success answer.
	RefusesNew, RefusesExisting string
}

// Check is one conformance check.
type Check struct {
	// Name identifies the check, e.g. "unknown_action" or "action/add".
	Name string
	// Run runs the check; it returns nil on success and an error wrapping ErrSkipped when the
	// check does not apply to the function.
	Run func(ctx context.Context) error
}

// ErrSkipped is wrapped by the errors of checks that do not apply to the function under test.
var ErrSkipped = errors.New("skipped")

// Run runs every check against the function at baseURL, each as a subtest of t.
func Run(t *testing.T, baseURL string, opts Options) {
	t.Helper()
	checks, err := Checks(baseURL, opts)
	if err != nil {
		t.Fatalf("conformance: %v", err)
	}
	for _, c := range checks {
		t.Run(c.Name, func(t *testing.T) {
			switch err := c.Run(t.Context()); {
			case errors.Is(err, ErrSkipped):
				t.Skip(err)
			case err != nil:
				t.Error(err)
			}
		})
	}
}

// kit sends invocations to the function under test.
type kit struct {
	base     string
	opts     Options
	requests atomic.Int64
}

// newKit validates opts and fills in defaults.
func newKit(baseURL string, opts Options) (*kit, error) {
	if len(opts.Actions) == 0 {
		return nil, errors.New("no actions: Options.Actions needs at least one")
	}
	seen := make(map[string]bool)
	for _, a := range opts.Actions {
		switch {
		case !actionRE.MatchString(a.Name):
			return nil, fmt.Errorf("invalid action name %q", a.Name)
		case seen[a.Name]:
			return nil, fmt.Errorf("action %q listed twice", a.Name)
		case a.Payload != nil && !json.Valid(a.Payload):
			return nil, fmt.Errorf("payload of action %q is not valid JSON", a.Name)
		}
		seen[a.Name] = true
	}
	if opts.State == nil {
		opts.State = json.RawMessage(`{}`)
	}
	if !json.Valid(opts.State) {
		return nil, errors.New("state is not valid JSON")
	}
	if opts.Function == "" {
		opts.Function = "conformance"
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = 16
	}
	if opts.Client == nil {
		opts.Client = &http.Client{Timeout: 30 * time.Second}
	}
	return &kit{base: strings.TrimRight(baseURL, "/"), opts: opts}, nil
}

// envelope is the body of POST /v1/invoke.
type envelope struct {
	Function   string            `json:"function"`
	Actor      string            `json:"actor"`
	Action     string            `json:"action"`
	State      json.RawMessage   `json:"state,omitzero"`
	StateB64   []byte            `json:"state_b64,omitzero"`
	Version    string            `json:"version"`
	Payload    json.RawMessage   `json:"payload,omitzero"`
	PayloadB64 []byte            `json:"payload_b64,omitzero"`
	Metadata   map[string]string `json:"metadata"`
}

// newEnvelope returns an envelope invoking a on a new actor.
func (k *kit) newEnvelope(actor string, a Action) *envelope {
	payload := a.Payload
	if payload == nil {
		payload = json.RawMessage(`null`)
	}
	return &envelope{
		Function: k.opts.Function,
		Actor:    actor,
		Action:   a.Name,
		Payload:  payload,
		Metadata: map[string]string{
			"request_id": "conformance-" + strconv.FormatInt(k.requests.Add(1), 10),
			"attempt":    "1",
			"deadline":   time.Now().Add(time.Minute).UTC().Format(time.RFC3339),
		},
	}
}

// existingEnvelope returns an envelope invoking a on an actor with the stored state opts.State.
func (k *kit) existingEnvelope(actor string, a Action) *envelope {
	env := k.newEnvelope(actor, a)
	env.State, env.Version = k.opts.State, "conformance-v1"
	return env
}

// retry returns a copy of env as the router sends it when it re-runs the turn.
func (env *envelope) retry() *envelope {
	again := *env
	again.Metadata = map[string]string{"attempt": "2"}
	for k, v := range env.Metadata {
		if k != "attempt" {
			again.Metadata[k] = v
		}
	}
	return &again
}

// invoke sends env and returns the checked answer.
func (k *kit) invoke(ctx context.Context, env *envelope) (*Answer, error) {
	body, err := json.Marshal(env)
	if err != nil {
		return nil, fmt.Errorf("encode envelope: %w", err)
	}
	return k.post(ctx, body)
}

// post sends body to /v1/invoke and returns the checked answer.
func (k *kit) post(ctx context.Context, body []byte) (*Answer, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, k.base+"/v1/invoke", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := k.opts.Client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read answer: %w", err)
	}
	return parseAnswer(resp.StatusCode, resp.Header, got)
}

// succeed returns an error unless a is a success answer.
func succeed(a *Answer) error {
	if a.Error != nil {
		return fmt.Errorf("got error %d %s (%q), want a success answer", a.Error.Status, a.Error.Code, a.Error.Message)
	}
	return nil
}

// answered checks a against what the action is documented to answer: the error form with
// code refuses when it is set, else a success answer.
func answered(a *Answer, refuses string) error {
	switch {
	case refuses == "":
		return succeed(a)
	case a.Error == nil:
		return fmt.Errorf("got a success answer %s, want the error %s", clip(a.Body), refuses)
	case a.Error.Code != refuses:
		return fmt.Errorf("got error %d %s (%q), want the error %s", a.Error.Status, a.Error.Code, a.Error.Message, refuses)
	}
	return nil
}

// fail returns an error unless a is the error form, with the given status unless it is 0.
func fail(a *Answer, status int) error {
	switch {
	case a.Error == nil:
		return fmt.Errorf("got a success answer %s, want the error form", clip(a.Body))
	case status != 0 && a.Error.Status != status:
		return fmt.Errorf("got error status %d, want %d", a.Error.Status, status)
	}
	return nil
}

// same returns an error unless a and b are the same answer.
func same(a, b *Answer) error {
	ca, err := canonical(a.Body)
	if err != nil {
		return err
	}
	cb, err := canonical(b.Body)
	if err != nil {
		return err
	}
	if a.Status != b.Status || !bytes.Equal(ca, cb) {
		return fmt.Errorf("answers differ: %d %s and %d %s", a.Status, clip(ca), b.Status, clip(cb))
	}
	return nil
}
