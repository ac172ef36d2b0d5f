package conformance

import (
	"net/http"
	"strings"
	"testing"
)

func TestParseAnswer(t *testing.T) {
	const jsonType = "application/json"
	tests := []struct {
		name        string
		status      int
		contentType string
		body        string
		wantErr     string // a substring of the error; "" for a valid answer
	}{
		{"empty success", 200, jsonType, `{}`, ""},
		{"full success", 200, "application/json; charset=utf-8",
			`{"state":{"v":1},"reply":[1],"effects":[{"function":"f","actor":"a","action":"go","payload":1,"delay_ms":86400000}]}`, ""},
		{"null state stores null", 200, jsonType, `{"state":null}`, ""},
		{"binary state and reply", 200, jsonType, `{"state_b64":"AAE=","reply_b64":""}`, ""},
		{"delete", 200, jsonType, `{"delete":true,"reply":"bye"}`, ""},
		{"workflow fields", 200, jsonType, `{"timers":[{"name":"t","action":"x","in_ms":5},{"name":"u","cancel":true},{"name":"v","action":"x","every_ms":100,"at":"2026-12-04T12:00:00Z"}],"pipe":{"function":"g","actor":"a","action":"x"},"broadcast":[{"channel":"c-1","action":"x","payload":{}}],"subscribe":["c-1"],"unsubscribe":["c.2"]}`, ""},
		{"null fields are absent", 200, jsonType, `{"state_b64":null,"delete":null,"effects":null,"error":null}`, ""},
		{"unknown fields are ignored", 200, jsonType, `{"future":1}`, ""},
		{"error form with 200", 200, jsonType, `{"error":{"status":409,"code":"taken","message":"m"}}`, ""},
		{"error form with its status", 409, jsonType, `{"error":{"status":409,"code":"taken"}}`, ""},

		{"server error", 500, jsonType, `{"error":{"status":500,"code":"x"}}`, "function failure: HTTP 500"},
		{"wrong content type", 200, "text/plain", `{}`, "Content-Type"},
		{"not JSON", 200, jsonType, `ok`, "not a JSON object"},
		{"not an object", 200, jsonType, `[1]`, "not a JSON object"},
		{"null body", 200, jsonType, `null`, "not a JSON object"},
		{"too large", 200, jsonType, `{"reply":"` + strings.Repeat("x", maxAnswerBytes) + `"}`, "exceeds"},
		{"4xx without error form", 404, jsonType, `{}`, "without the error form"},
		{"error status mismatch", 400, jsonType, `{"error":{"status":409,"code":"taken"}}`, "differs"},
		{"error status out of range", 200, jsonType, `{"error":{"status":503,"code":"busy"}}`, "outside 400..499"},
		{"error status missing", 200, jsonType, `{"error":{"code":"busy"}}`, "status is missing"},
		{"error code not snake case", 200, jsonType, `{"error":{"status":400,"code":"Bad Code"}}`, "code must be"},
		{"error code missing", 200, jsonType, `{"error":{"status":400}}`, "code must be"},
		{"error not an object", 200, jsonType, `{"error":"boom"}`, "error form"},
		{"state and state_b64", 200, jsonType, `{"state":1,"state_b64":"AA=="}`, "both state and state_b64"},
		{"reply and reply_b64", 200, jsonType, `{"reply":1,"reply_b64":"AA=="}`, "both reply and reply_b64"},
		{"delete with state", 200, jsonType, `{"delete":true,"state":null}`, "delete is true"},
		{"delete not a bool", 200, jsonType, `{"delete":"yes"}`, `field "delete"`},
		{"bad base64", 200, jsonType, `{"state_b64":"!!"}`, `field "state_b64"`},
		{"effects not a list", 200, jsonType, `{"effects":{}}`, `field "effects"`},
		{"effect without actor", 200, jsonType, `{"effects":[{"action":"go"}]}`, "effect 0: actor id"},
		{"effect with bad action", 200, jsonType, `{"effects":[{"actor":"a","action":"a b"}]}`, "invalid action name"},
		{"effect delay too long", 200, jsonType, `{"effects":[{"actor":"a","action":"go","delay_ms":86400001}]}`, "outside"},
		{"effect delay not an integer", 200, jsonType, `{"effects":[{"actor":"a","action":"go","delay_ms":1.5}]}`, `field "effects"`},
		{"too many effects", 200, jsonType, `{"effects":[` + strings.Repeat(`{"actor":"a","action":"go"},`, 64) + `{"actor":"a","action":"go"}]}`, "65 effects"},
		{"forward without action", 200, jsonType, `{"forward":{"actor":"a"}}`, "forward: invalid action"},
		{"forward and pipe", 200, jsonType, `{"forward":{"actor":"a","action":"x"},"pipe":{"actor":"a","action":"x"}}`, "both forward and pipe"},
		{"timer without a time", 200, jsonType, `{"timers":[{"name":"t","action":"x"}]}`, "needs in_ms, at or every_ms"},
		{"timer too frequent", 200, jsonType, `{"timers":[{"name":"t","action":"x","every_ms":99}]}`, "outside"},
		{"timer bad at", 200, jsonType, `{"timers":[{"name":"t","action":"x","at":"tomorrow"}]}`, "RFC 3339"},
		{"broadcast bad channel", 200, jsonType, `{"broadcast":[{"channel":"a/b","action":"x"}]}`, "invalid channel"},
		{"subscribe hidden channel", 200, jsonType, `{"subscribe":[".x"]}`, "invalid channel name"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{"Content-Type": {tc.contentType}}
			_, err := parseAnswer(tc.status, h, []byte(tc.body))
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("parseAnswer = %v, want no error", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("parseAnswer = %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestParseAnswerFields(t *testing.T) {
	body := `{"state":{"v":1},"reply_b64":"AAE=","effects":[{"actor":"a","action":"go","payload":{"x":1},"delay_ms":5}]}`
	a, err := parseAnswer(200, http.Header{"Content-Type": {"application/json"}}, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if string(a.State) != `{"v":1}` || a.Reply != nil || string(a.ReplyB64) != "\x00\x01" || a.StateB64 != nil || a.Delete {
		t.Errorf("parseAnswer = %+v", a)
	}
	if len(a.Effects) != 1 || a.Effects[0].Actor != "a" || string(a.Effects[0].Payload) != `{"x":1}` || a.Effects[0].DelayMS != 5 {
		t.Errorf("effects = %+v", a.Effects)
	}
}
