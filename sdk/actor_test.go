package sdk_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/knactor/knactor/sdk"
)

type counter struct {
	N int `json:"n"`
}

type addPayload struct {
	By int `json:"by"`
}

type metaReply struct {
	Exists      bool              `json:"exists"`
	Function    string            `json:"function"`
	Actor       string            `json:"actor"`
	Version     string            `json:"version"`
	Metadata    map[string]string `json:"metadata"`
	HasDeadline bool              `json:"has_deadline"`
}

var errSentinel = errors.New("sentinel")

// newCounter returns the actor used by the tests.
func newCounter() *sdk.Actor[counter] {
	a := sdk.NewActor[counter]()
	sdk.Handle(a, "add", func(_ context.Context, t *sdk.Turn[counter], p addPayload) (counter, error) {
		t.State.N += p.By
		return t.State, nil
	})
	sdk.Handle(a, "get", func(_ context.Context, t *sdk.Turn[counter], _ json.RawMessage) (int, error) {
		return t.State.N, nil
	})
	sdk.Handle(a, "reset", func(_ context.Context, t *sdk.Turn[counter], _ struct{}) (any, error) {
		t.State.N = 7
		t.Delete()
		return nil, nil
	})
	sdk.Handle(a, "notify", func(_ context.Context, t *sdk.Turn[counter], p addPayload) (string, error) {
		t.Effect(sdk.Effect{Actor: "b", Action: "add", Payload: p})
		t.Effect(sdk.Effect{Function: "audit", Actor: "log/1", Action: "append", Payload: "added", Delay: 1500 * time.Millisecond})
		return "ok", nil
	})
	sdk.Handle(a, "bad_effect", func(_ context.Context, t *sdk.Turn[counter], _ any) (any, error) {
		t.Effect(sdk.Effect{Actor: "b", Action: "no spaces"})
		return nil, nil
	})
	sdk.Handle(a, "meta", func(ctx context.Context, t *sdk.Turn[counter], _ any) (metaReply, error) {
		_, ok := ctx.Deadline()
		return metaReply{t.Exists(), t.Function, t.Actor, t.Version, t.Metadata, ok}, nil
	})
	sdk.Handle(a, "reject", func(_ context.Context, t *sdk.Turn[counter], _ any) (any, error) {
		t.State.N = 100
		return nil, sdk.Errorf(http.StatusConflict, "too_many", "limit %d: %w", 3, errSentinel)
	})
	sdk.Handle(a, "bad_status", func(context.Context, *sdk.Turn[counter], any) (any, error) {
		return nil, sdk.Errorf(http.StatusServiceUnavailable, "busy", "try later")
	})
	sdk.Handle(a, "fail", func(context.Context, *sdk.Turn[counter], any) (any, error) {
		return nil, errors.New("disk on fire")
	})
	sdk.Handle(a, "panic", func(context.Context, *sdk.Turn[counter], any) (any, error) {
		panic("boom")
	})
	return a
}

// post sends body to url's /v1/invoke and returns the status and body of the answer.
func post(t *testing.T, url, body string) (int, []byte) {
	t.Helper()
	resp, err := http.Post(url+"/v1/invoke", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatalf("POST: %v", err)
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read answer: %v", err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	return resp.StatusCode, got
}

// assertJSON fails t unless got and want are equal JSON values.
func assertJSON(t *testing.T, got []byte, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("answer %s is not JSON: %v", got, err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("bad test: %v", err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("answer = %s\nwant     %s", got, want)
	}
}

func TestInvoke(t *testing.T) {
	srv := httptest.NewServer(newCounter())
	defer srv.Close()

	tests := []struct {
		name       string
		envelope   string
		wantStatus int
		want       string
	}{{
		name:       "new actor, state set",
		envelope:   `{"function":"c","actor":"a","action":"add","payload":{"by":2}}`,
		wantStatus: http.StatusOK,
		want:       `{"state":{"n":2},"reply":{"n":2}}`,
	}, {
		name:       "new actor with null state, state left at zero",
		envelope:   `{"function":"c","actor":"a","action":"add","state":null,"version":"","payload":{"by":0}}`,
		wantStatus: http.StatusOK,
		want:       `{"reply":{"n":0}}`,
	}, {
		name:       "existing actor, state changed",
		envelope:   `{"function":"c","actor":"a","action":"add","state":{"n":5},"version":"v1","payload":{"by":-2}}`,
		wantStatus: http.StatusOK,
		want:       `{"state":{"n":3},"reply":{"n":3}}`,
	}, {
		name:       "existing actor, state unchanged despite different formatting",
		envelope:   `{"function":"c","actor":"a","action":"get","state":{ "n" : 5, "extra": true },"version":"v1"}`,
		wantStatus: http.StatusOK,
		want:       `{"reply":5}`,
	}, {
		name:       "no payload decodes to the zero value",
		envelope:   `{"function":"c","actor":"a","action":"add","state":{"n":5},"version":"v1"}`,
		wantStatus: http.StatusOK,
		want:       `{"reply":{"n":5}}`,
	}, {
		name:       "delete ignores state changes",
		envelope:   `{"function":"c","actor":"a","action":"reset","state":{"n":5},"version":"v1","payload":{}}`,
		wantStatus: http.StatusOK,
		want:       `{"reply":null,"delete":true}`,
	}, {
		name:       "effects",
		envelope:   `{"function":"c","actor":"a","action":"notify","payload":{"by":4}}`,
		wantStatus: http.StatusOK,
		want: `{"reply":"ok","effects":[
			{"actor":"b","action":"add","payload":{"by":4}},
			{"function":"audit","actor":"log/1","action":"append","payload":"added","delay_ms":1500}]}`,
	}, {
		name: "metadata and turn fields",
		envelope: `{"function":"c","actor":"ü/☃","action":"meta","state":null,"version":"v9",
			"metadata":{"request_id":"r1","attempt":"2","deadline":"2999-01-01T00:00:00Z","tenant":"x"}}`,
		wantStatus: http.StatusOK,
		want: `{"reply":{"exists":true,"function":"c","actor":"ü/☃","version":"v9","has_deadline":true,
			"metadata":{"request_id":"r1","attempt":"2","deadline":"2999-01-01T00:00:00Z","tenant":"x"}}}`,
	}, {
		name:       "unknown envelope fields are ignored",
		envelope:   `{"function":"c","actor":"a","action":"add","payload":{"by":1},"future":{"x":[1]}}`,
		wantStatus: http.StatusOK,
		want:       `{"state":{"n":1},"reply":{"n":1}}`,
	}, {
		name:       "reported error keeps its status, state unchanged",
		envelope:   `{"function":"c","actor":"a","action":"reject","state":{"n":1},"version":"v1"}`,
		wantStatus: http.StatusConflict,
		want:       `{"error":{"status":409,"code":"too_many","message":"limit 3: sentinel"}}`,
	}, {
		name:       "reported error outside 4xx is a failure",
		envelope:   `{"function":"c","actor":"a","action":"bad_status"}`,
		wantStatus: http.StatusInternalServerError,
		want:       `{"error":{"status":500,"code":"internal_error","message":"503 busy: try later"}}`,
	}, {
		name:       "plain error is a failure",
		envelope:   `{"function":"c","actor":"a","action":"fail"}`,
		wantStatus: http.StatusInternalServerError,
		want:       `{"error":{"status":500,"code":"internal_error","message":"disk on fire"}}`,
	}, {
		name:       "panic is a failure",
		envelope:   `{"function":"c","actor":"a","action":"panic"}`,
		wantStatus: http.StatusInternalServerError,
		want:       `{"error":{"status":500,"code":"internal_error","message":"action \"panic\" panicked: boom"}}`,
	}, {
		name:       "invalid effect is a failure",
		envelope:   `{"function":"c","actor":"a","action":"bad_effect"}`,
		wantStatus: http.StatusInternalServerError,
		want:       `{"error":{"status":500,"code":"internal_error","message":"effect 0: invalid action name \"no spaces\""}}`,
	}, {
		name:       "unknown action",
		envelope:   `{"function":"c","actor":"a","action":"nope"}`,
		wantStatus: http.StatusNotFound,
		want:       `{"error":{"status":404,"code":"unknown_action","message":"unknown action \"nope\""}}`,
	}, {
		name:       "payload does not decode",
		envelope:   `{"function":"c","actor":"a","action":"add","payload":{"by":"two"}}`,
		wantStatus: http.StatusBadRequest,
		want: `{"error":{"status":400,"code":"bad_payload",
			"message":"payload of action \"add\": json: cannot unmarshal string into Go struct field addPayload.by of type int"}}`,
	}, {
		name:       "binary payload for a JSON action",
		envelope:   `{"function":"c","actor":"a","action":"add","payload_b64":"AAE="}`,
		wantStatus: http.StatusBadRequest,
		want: `{"error":{"status":400,"code":"bad_payload",
			"message":"payload of action \"add\": binary data (base64 field) needs a value of type []byte"}}`,
	}, {
		name:       "binary state for a JSON actor",
		envelope:   `{"function":"c","actor":"a","action":"get","state_b64":"AAE=","version":"v1"}`,
		wantStatus: http.StatusUnprocessableEntity,
		want: `{"error":{"status":422,"code":"bad_state",
			"message":"stored state does not fit the actor's state type: binary data (base64 field) needs a value of type []byte"}}`,
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, body := post(t, srv.URL, tc.envelope)
			if status != tc.wantStatus {
				t.Errorf("status = %d, want %d", status, tc.wantStatus)
			}
			assertJSON(t, body, tc.want)
		})
	}
}

func TestInvokeMalformedEnvelope(t *testing.T) {
	srv := httptest.NewServer(newCounter())
	defer srv.Close()

	tests := []struct {
		name     string
		envelope string
	}{
		{"empty", ``},
		{"truncated", `{"actor":"a","action":`},
		{"not an object", `[1,2]`},
		{"wrong field type", `{"actor":5,"action":"get"}`},
		{"no actor", `{"action":"get"}`},
		{"actor too long", `{"actor":"` + strings.Repeat("x", 1025) + `","action":"get"}`},
		{"bad action name", `{"actor":"a","action":"get it"}`},
		{"state and state_b64", `{"actor":"a","action":"get","state":{},"state_b64":"AA=="}`},
		{"payload and payload_b64", `{"actor":"a","action":"get","payload":1,"payload_b64":"AA=="}`},
		{"bad base64", `{"actor":"a","action":"get","state_b64":"!!"}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, body := post(t, srv.URL, tc.envelope)
			if status != http.StatusBadRequest {
				t.Errorf("status = %d, want 400", status)
			}
			var got struct {
				Error struct {
					Status int
					Code   string
				}
			}
			if err := json.Unmarshal(body, &got); err != nil || got.Error.Status != 400 || got.Error.Code != "bad_envelope" {
				t.Errorf("answer = %s, want the error form with status 400, code bad_envelope", body)
			}
		})
	}
}

func TestInvokeTooLarge(t *testing.T) {
	srv := httptest.NewServer(newCounter())
	defer srv.Close()

	pad := strings.Repeat("x", sdk.MaxEnvelopeBytes)
	status, body := post(t, srv.URL, `{"actor":"a","action":"get","pad":"`+pad+`"}`)
	if status != http.StatusRequestEntityTooLarge {
		t.Errorf("status = %d, want 413", status)
	}
	assertJSON(t, body, `{"error":{"status":413,"code":"too_large","message":"envelope exceeds 4194304 bytes"}}`)
}

func TestInvokeBinary(t *testing.T) {
	a := sdk.NewActor[[]byte]()
	sdk.Handle(a, "append", func(_ context.Context, t *sdk.Turn[[]byte], p []byte) ([]byte, error) {
		t.State = append(t.State, p...)
		return t.State, nil
	})
	sdk.Handle(a, "peek", func(_ context.Context, t *sdk.Turn[[]byte], _ []byte) (int, error) {
		return len(t.State), nil
	})
	srv := httptest.NewServer(a)
	defer srv.Close()

	tests := []struct {
		name     string
		envelope string
		want     string
	}{{
		name:     "binary state and payload",
		envelope: `{"actor":"a","action":"append","state_b64":"AAE=","version":"v1","payload_b64":"/w=="}`,
		want:     `{"state_b64":"AAH/","reply_b64":"AAH/"}`,
	}, {
		name:     "JSON state and payload arrive as their bytes",
		envelope: `{"actor":"a","action":"append","state":"x","version":"v1","payload":[1]}`,
		want:     `{"state_b64":"IngiWzFd","reply_b64":"IngiWzFd"}`,
	}, {
		name:     "new actor stays absent while empty",
		envelope: `{"actor":"a","action":"append"}`,
		want:     `{"reply_b64":""}`,
	}, {
		name:     "empty binary state is kept",
		envelope: `{"actor":"a","action":"peek","state_b64":"","version":"v1"}`,
		want:     `{"reply":0}`,
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, body := post(t, srv.URL, tc.envelope)
			if status != http.StatusOK {
				t.Errorf("status = %d, want 200", status)
			}
			assertJSON(t, body, tc.want)
		})
	}
}

func TestActorRoutes(t *testing.T) {
	srv := httptest.NewServer(newCounter())
	defer srv.Close()

	tests := []struct {
		method, path string
		want         int
	}{
		{http.MethodGet, "/healthz", http.StatusOK},
		{http.MethodGet, "/v1/invoke", http.StatusMethodNotAllowed},
		{http.MethodPost, "/other", http.StatusNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, srv.URL+tc.path, bytes.NewReader(nil))
			if err != nil {
				t.Fatal(err)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("status = %d, want %d", resp.StatusCode, tc.want)
			}
		})
	}
}

func TestHandlePanics(t *testing.T) {
	noop := func(context.Context, *sdk.Turn[counter], any) (any, error) { return nil, nil }
	tests := []struct {
		name   string
		action string
		fn     func(context.Context, *sdk.Turn[counter], any) (any, error)
	}{
		{"empty name", "", noop},
		{"bad character", "a/b", noop},
		{"too long", strings.Repeat("a", 129), noop},
		{"duplicate", "get", noop},
		{"nil handler", "other", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := sdk.NewActor[counter]()
			sdk.Handle(a, "get", noop)
			defer func() {
				if recover() == nil {
					t.Error("Handle did not panic")
				}
			}()
			sdk.Handle(a, tc.action, tc.fn)
		})
	}
}

func TestErrorf(t *testing.T) {
	err := sdk.Errorf(http.StatusConflict, "taken", "name %q: %w", "x", errSentinel)
	if !errors.Is(err, errSentinel) {
		t.Error("errors.Is(err, errSentinel) = false, want true")
	}
	var e *sdk.Error
	if !errors.As(err, &e) {
		t.Fatal("errors.As(err, *sdk.Error) = false, want true")
	}
	want := sdk.Error{Status: http.StatusConflict, Code: "taken", Message: `name "x": sentinel`}
	if e.Status != want.Status || e.Code != want.Code || e.Message != want.Message {
		t.Errorf("Errorf = %+v, want %+v", *e, want)
	}
	if got, want := err.Error(), `409 taken: name "x": sentinel`; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}
