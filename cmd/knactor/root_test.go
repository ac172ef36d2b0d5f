package main

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
)

func TestNewLogHandler(t *testing.T) {
	tests := []struct {
		name, format, level string
		wantErr             string
		check               func(t *testing.T, out string)
	}{
		{name: "text", format: "text", level: "info", check: func(t *testing.T, out string) {
			if !strings.Contains(out, `msg="call failed" request_id=r1`) || strings.Contains(out, "hidden") {
				t.Errorf("text log = %q", out)
			}
		}},
		{name: "json", format: "json", level: "info", check: func(t *testing.T, out string) {
			var line map[string]any
			if err := json.Unmarshal([]byte(strings.Split(out, "\n")[0]), &line); err != nil {
				t.Fatalf("json log %q: %v", out, err)
			}
			if line["msg"] != "call failed" || line["request_id"] != "r1" {
				t.Errorf("json log = %v", line)
			}
		}},
		{name: "debug shows debug", format: "text", level: "debug", check: func(t *testing.T, out string) {
			if !strings.Contains(out, "hidden") {
				t.Errorf("debug line missing from %q", out)
			}
		}},
		{name: "unknown format", format: "yaml", level: "info", wantErr: `--log-format "yaml": use text or json`},
		{name: "unknown level", format: "text", level: "loud", wantErr: `--log-level "loud": use debug, info, warn or error`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			h, err := newLogHandler(&out, tt.format, tt.level)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("err = %v, want %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			log := slog.New(h)
			log.Warn("call failed", "request_id", "r1")
			log.Debug("hidden")
			tt.check(t, out.String())
		})
	}
}
