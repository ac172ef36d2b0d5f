package router

import (
	"log/slog"
	"net/http"
	"strings"
	"testing"
)

// TestLogLinesAboutACallCarryItsRequestIDAndActor: an operator follows a failed call from the
// caller's X-Request-Id to every log line about it (docs/observability.md, Logs).
func TestLogLinesAboutACallCarryItsRequestIDAndActor(t *testing.T) {
	tests := []struct {
		name    string
		handler http.HandlerFunc
		status  int
		lines   []string // messages of the lines that must carry the call's request id and actor
	}{{
		name: "the function pod breaks off",
		handler: func(w http.ResponseWriter, r *http.Request) {
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				conn.Close()
			}
		},
		status: 502,
		lines:  []string{"function pod unreachable", "call failed"},
	}, {
		name: "the function fails",
		handler: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(500)
			_, _ = w.Write([]byte(`{"error":{"status":500,"code":"internal_error","message":"boom"}}`))
		},
		status: 502, // the router's function_failed
		lines:  []string{"call failed"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logs := &logCapture{}
			h := newHarnessOn(t, Config{}, localStore(t), func(o *Options) { o.Logger = slog.New(logs) })
			h.deploy(counterFn, tt.handler)
			rp := h.do("POST", "/v1/actors/counter/bob-7/add", `{"by":1}`)
			if rp.status != tt.status {
				t.Fatalf("got %d %s, want %d", rp.status, rp.body, tt.status)
			}
			id := rp.header.Get(HeaderRequestID)
			if id == "" {
				t.Fatalf("the answer has no %s", HeaderRequestID)
			}
			for _, msg := range tt.lines {
				line := logs.find(msg)
				if line == "" {
					t.Fatalf("no log line %q in %q", msg, logs.all())
				}
				for _, want := range []string{"request_id=" + id, "function=counter", "actor=bob-7"} {
					if !strings.Contains(line, want) {
						t.Errorf("log line %q lacks %s", line, want)
					}
				}
			}
		})
	}
}
