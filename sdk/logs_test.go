package sdk_test

import (
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/knactor/knactor/test/proctest"
)

// TestErrorLogsCarryTheCallsRequestIDAndActor: the SDK's error lines name the call they are
// about, so they can be found from the caller's X-Request-Id (docs/observability.md, Logs).
func TestErrorLogsCarryTheCallsRequestIDAndActor(t *testing.T) {
	var logs proctest.Buffer
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&logs, nil)))
	t.Cleanup(func() { slog.SetDefault(prev) })
	srv := httptest.NewServer(newCounter())
	defer srv.Close()

	tests := []struct{ action, message string }{
		{"fail", "sdk: function failed"},
		{"panic", "sdk: handler panicked"},
	}
	for _, tt := range tests {
		t.Run(tt.action, func(t *testing.T) {
			id := "req-" + tt.action
			status, body := post(t, srv.URL, `{"function":"counter","actor":"ann/1","action":"`+tt.action+
				`","metadata":{"request_id":"`+id+`"}}`)
			if status != 500 {
				t.Fatalf("got %d %s, want 500", status, body)
			}
			var line string
			for _, l := range strings.Split(logs.String(), "\n") {
				if strings.Contains(l, tt.message) {
					line = l
				}
			}
			if line == "" {
				t.Fatalf("no %q line in the log:\n%s", tt.message, logs.String())
			}
			for _, want := range []string{"request_id=" + id, "function=counter", "actor=ann/1", "action=" + tt.action} {
				if !strings.Contains(line, want) {
					t.Errorf("log line %q lacks %s", line, want)
				}
			}
		})
	}
}
