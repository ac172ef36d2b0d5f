package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/knactor/knactor/sdk"
)

func TestRun(t *testing.T) {
	type state struct {
		N int `json:"n"`
	}
	a := sdk.NewActor[state]()
	sdk.Handle(a, "add", func(_ context.Context, t *sdk.Turn[state], by int) (int, error) {
		t.State.N += by
		return t.State.N, nil
	})
	good := httptest.NewServer(a)
	defer good.Close()
	broken := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "down", http.StatusInternalServerError)
	}))
	defer broken.Close()

	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  []string // lines that stdout must contain
	}{{
		name:     "conforming function",
		args:     []string{"-url", good.URL, "-action", "add=2", "-state", `{"n":1}`},
		wantCode: 0,
		wantOut:  []string{"PASS healthz\n", "PASS action/add\n", "PASS large_state\n", "11 passed, 0 failed\n"},
	}, {
		name:     "broken function",
		args:     []string{"-url", broken.URL, "-action", "add"},
		wantCode: 1,
		wantOut:  []string{"FAIL healthz: GET /healthz = 500, want 200\n", "FAIL unknown_action: function failure: HTTP 500", "0 passed, 11 failed\n"},
	}, {
		name:     "array state skips large_state",
		args:     []string{"-url", good.URL, "-action", "add=2", "-state", `[]`},
		wantCode: 1,
		wantOut:  []string{"SKIP large_state: skipped: the sample state is not a JSON object\n"},
	}, {
		name:     "no url",
		args:     []string{"-action", "add"},
		wantCode: 2,
	}, {
		name:     "no action",
		args:     []string{"-url", good.URL},
		wantCode: 2,
	}, {
		name:     "bad payload",
		args:     []string{"-url", good.URL, "-action", "add={"},
		wantCode: 2,
	}, {
		name:     "bad state",
		args:     []string{"-url", good.URL, "-action", "add", "-state", "{"},
		wantCode: 2,
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(t.Context(), tc.args, &stdout, &stderr); code != tc.wantCode {
				t.Errorf("exit status = %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.wantCode, &stdout, &stderr)
			}
			for _, want := range tc.wantOut {
				if !strings.Contains(stdout.String(), want) {
					t.Errorf("stdout does not contain %q:\n%s", want, &stdout)
				}
			}
		})
	}
}
