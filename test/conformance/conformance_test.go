package conformance_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/knactor/knactor/sdk"
	"github.com/knactor/knactor/test/conformance"
)

// fake is a function written against the contract without the SDK, with switches that break it.
type fake struct {
	notReady       bool   // /healthz answers 503
	crashMalformed bool   // a malformed envelope gets a 500
	anyAction      bool   // unknown actions succeed
	strictFields   bool   // unknown envelope fields are rejected
	crashBinary    bool   // state_b64 gets a 500
	nondeterminism bool   // every reply differs
	answer         string // the success answer, if set

	counter atomic.Int64
}

func (f *fake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/healthz":
		if f.notReady {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	case "/v1/invoke":
		f.invoke(w, r)
	default:
		http.NotFound(w, r)
	}
}

func (f *fake) invoke(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var env struct {
		Function, Actor, Action, Version string
		State                            json.RawMessage
		StateB64                         *string `json:"state_b64"`
		Payload                          json.RawMessage
		PayloadB64                       *string `json:"payload_b64"`
		Metadata                         map[string]string
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if f.strictFields {
		dec.DisallowUnknownFields()
	}
	switch err := dec.Decode(&env); {
	case err != nil && f.crashMalformed:
		http.Error(w, "crash", http.StatusInternalServerError)
	case err != nil:
		reply(w, 400, `{"error":{"status":400,"code":"bad_envelope","message":"bad"}}`)
	case env.StateB64 != nil && f.crashBinary:
		http.Error(w, "crash", http.StatusInternalServerError)
	case env.StateB64 != nil:
		reply(w, 422, `{"error":{"status":422,"code":"bad_state","message":"binary"}}`)
	case env.Action != "echo" && !f.anyAction:
		reply(w, 404, `{"error":{"status":404,"code":"unknown_action","message":"no"}}`)
	case f.nondeterminism:
		reply(w, 200, fmt.Sprintf(`{"reply":%d}`, f.counter.Add(1)))
	case f.answer != "":
		reply(w, 200, f.answer)
	default:
		reply(w, 200, `{"reply":{"payload":`+string(orNull(env.Payload))+`}}`)
	}
}

func orNull(js json.RawMessage) json.RawMessage {
	if js == nil {
		return json.RawMessage("null")
	}
	return js
}

func reply(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	io.WriteString(w, body)
}

// failures runs every check against h and returns the names of the failed ones.
func failures(t *testing.T, h http.Handler, opts conformance.Options) []string {
	t.Helper()
	srv := httptest.NewServer(h)
	defer srv.Close()
	checks, err := conformance.Checks(srv.URL, opts)
	if err != nil {
		t.Fatal(err)
	}
	var failed []string
	for _, c := range checks {
		if err := c.Run(t.Context()); err != nil && !errors.Is(err, conformance.ErrSkipped) {
			failed = append(failed, c.Name)
		}
	}
	return failed
}

func TestChecks(t *testing.T) {
	echo := conformance.Options{Actions: []conformance.Action{{Name: "echo", Payload: json.RawMessage(`{"x":1}`)}}}
	tests := []struct {
		name string
		fn   *fake
		opts conformance.Options
		want []string
	}{
		{"conforming", &fake{}, echo, nil},
		{"not ready", &fake{notReady: true}, echo, []string{"healthz"}},
		{"crashes on a malformed envelope", &fake{crashMalformed: true}, echo, []string{"malformed_envelope"}},
		{"accepts unknown actions", &fake{anyAction: true}, echo, []string{"unknown_action"}},
		{"rejects unknown fields", &fake{strictFields: true}, echo, []string{"unknown_fields"}},
		{"crashes on binary state", &fake{crashBinary: true}, echo, []string{"binary_state"}},
		{"nondeterministic", &fake{nondeterminism: true}, echo, []string{"deterministic/echo", "unknown_fields", "null_state"}},
		{"sends an invalid pipe", &fake{answer: `{"pipe":{}}`}, echo,
			[]string{"action/echo", "deterministic/echo", "unknown_fields", "null_state", "concurrent_actors", "large_state", "binary_payload"}},
		{"fails Expect", &fake{}, conformance.Options{Actions: []conformance.Action{{
			Name:   "echo",
			Expect: func(*conformance.Answer) error { return errors.New("nope") },
		}}}, []string{"action/echo"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := failures(t, tc.fn, tc.opts); !slices.Equal(got, tc.want) {
				t.Errorf("failed checks = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestChecksInvalidOptions(t *testing.T) {
	tests := []struct {
		name string
		opts conformance.Options
	}{
		{"no actions", conformance.Options{}},
		{"bad action name", conformance.Options{Actions: []conformance.Action{{Name: "a b"}}}},
		{"duplicate action", conformance.Options{Actions: []conformance.Action{{Name: "a"}, {Name: "a"}}}},
		{"bad payload", conformance.Options{Actions: []conformance.Action{{Name: "a", Payload: json.RawMessage(`{`)}}}},
		{"bad state", conformance.Options{Actions: []conformance.Action{{Name: "a"}}, State: json.RawMessage(`x`)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := conformance.Checks("http://127.0.0.1:1", tc.opts); err == nil {
				t.Error("Checks = nil error, want an error")
			}
		})
	}
}

func TestLargeStateSkipped(t *testing.T) {
	srv := httptest.NewServer(&fake{})
	defer srv.Close()
	checks, err := conformance.Checks(srv.URL, conformance.Options{
		Actions: []conformance.Action{{Name: "echo"}},
		State:   json.RawMessage(`[1,2]`),
	})
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(checks, func(c conformance.Check) bool { return c.Name == "large_state" })
	if err := checks[i].Run(t.Context()); !errors.Is(err, conformance.ErrSkipped) {
		t.Errorf("large_state with an array state = %v, want ErrSkipped", err)
	}
}

// TestRunSDK runs the kit against a function built with the SDK, given a base URL with a trailing
// slash.
func TestRunSDK(t *testing.T) {
	type state struct {
		Items []string `json:"items"`
	}
	a := sdk.NewActor[state]()
	sdk.Handle(a, "push", func(_ context.Context, t *sdk.Turn[state], item string) (int, error) {
		t.State.Items = append(t.State.Items, item)
		t.Effect(sdk.Effect{Actor: "audit", Action: "log", Payload: item})
		return len(t.State.Items), nil
	})
	sdk.Handle(a, "clear", func(_ context.Context, t *sdk.Turn[state], _ any) (any, error) {
		t.Delete()
		return nil, nil
	})
	srv := httptest.NewServer(a)
	defer srv.Close()

	conformance.Run(t, srv.URL+"/", conformance.Options{
		Function: "stack",
		State:    json.RawMessage(`{"items":["a"]}`),
		Actions: []conformance.Action{{
			Name:    "push",
			Payload: json.RawMessage(`"x"`),
			Expect: func(a *conformance.Answer) error {
				want := []conformance.Effect{{Actor: "audit", Action: "log", Payload: json.RawMessage(`"x"`)}}
				if string(a.State) != `{"items":["x"]}` || string(a.Reply) != "1" || !reflect.DeepEqual(a.Effects, want) {
					return errors.New("want state {items:[x]}, reply 1 and one audit effect")
				}
				return nil
			},
		}, {
			Name: "clear",
		}},
	})
}
