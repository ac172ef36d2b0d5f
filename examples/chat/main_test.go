package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/knactor/knactor/test/conformance"
	"github.com/knactor/knactor/test/proctest"
)

// sampleState is a room with one member and one message, the conformance kit's existing actor.
const sampleState = `{"members":["ann"],"messages":[{"from":"ann","text":"hi","seq":1}]}`

// options are the conformance options for the chat room. "say" is not among the actions: the kit
// requires every action to succeed on a new actor, and a new room has no members, so it refuses
// every "say" with 403 not_a_member by design. TestSemantics covers "say".
var options = conformance.Options{
	Function: "chat",
	State:    json.RawMessage(sampleState),
	Actions: []conformance.Action{{
		Name:    "join",
		Payload: json.RawMessage(`{"name":"bob"}`),
		Expect:  expect(`{"members":["bob"],"messages":[]}`, `{"members":["bob"]}`),
	}, {
		Name:    "leave",
		Payload: json.RawMessage(`{"name":"ann"}`),
		Expect:  expect("", `{"members":[]}`),
	}, {
		Name:    "history",
		Payload: json.RawMessage(`{"since":0}`),
		Expect:  expect("", `{"messages":[]}`),
	}},
}

// expect returns a check that a new actor's answer has the given state ("" for none) and reply.
func expect(state, reply string) func(*conformance.Answer) error {
	return func(a *conformance.Answer) error {
		if string(a.State) != state || string(a.Reply) != reply || a.Delete || len(a.Effects) > 0 {
			return fmt.Errorf("want state %q and reply %s only", state, reply)
		}
		return nil
	}
}

func TestMain(m *testing.M) { proctest.Main(m) }

// TestSemantics sends envelopes straight to the SDK handler and checks the answers.
func TestSemantics(t *testing.T) {
	full := roomWith(MaxMessages) // messages 1..100
	tests := []struct {
		name    string
		action  string
		state   string // "" for a new room
		payload string
		status  int
		want    string
	}{{
		name:    "join a new room",
		action:  "join",
		payload: `{"name":"ann"}`,
		status:  http.StatusOK,
		want:    `{"state":{"members":["ann"],"messages":[]},"reply":{"members":["ann"]}}`,
	}, {
		name:    "join appends to the members",
		action:  "join",
		state:   sampleState,
		payload: `{"name":"bob"}`,
		status:  http.StatusOK,
		want:    `{"state":{"members":["ann","bob"],"messages":[{"from":"ann","text":"hi","seq":1}]},"reply":{"members":["ann","bob"]}}`,
	}, {
		name:    "join as a member changes nothing",
		action:  "join",
		state:   sampleState,
		payload: `{"name":"ann"}`,
		status:  http.StatusOK,
		want:    `{"reply":{"members":["ann"]}}`,
	}, {
		name:    "join with Unicode name",
		action:  "join",
		payload: `{"name":"Zoë ☃ 🙂"}`,
		status:  http.StatusOK,
		want:    `{"state":{"members":["Zoë ☃ 🙂"],"messages":[]},"reply":{"members":["Zoë ☃ 🙂"]}}`,
	}, {
		name:    "join without a name",
		action:  "join",
		payload: `{}`,
		status:  http.StatusBadRequest,
		want:    `{"error":{"status":400,"code":"bad_payload","message":"name must be 1 to 64 characters, got 0"}}`,
	}, {
		name:    "join with a null payload",
		action:  "join",
		payload: `null`,
		status:  http.StatusBadRequest,
		want:    `{"error":{"status":400,"code":"bad_payload","message":"name must be 1 to 64 characters, got 0"}}`,
	}, {
		name:    "join with a name too long",
		action:  "join",
		payload: `{"name":"` + strings.Repeat("é", MaxNameChars+1) + `"}`,
		status:  http.StatusBadRequest,
		want:    `{"error":{"status":400,"code":"bad_payload","message":"name must be 1 to 64 characters, got 65"}}`,
	}, {
		name:    "join with the longest name",
		action:  "join",
		payload: `{"name":"` + strings.Repeat("é", MaxNameChars) + `"}`,
		status:  http.StatusOK,
		want:    `{"state":{"members":["` + strings.Repeat("é", MaxNameChars) + `"],"messages":[]},"reply":{"members":["` + strings.Repeat("é", MaxNameChars) + `"]}}`,
	}, {
		name:    "join with a control character",
		action:  "join",
		payload: `{"name":"ann\n"}`,
		status:  http.StatusBadRequest,
		want:    `{"error":{"status":400,"code":"bad_payload","message":"name must not hold control characters, got \"ann\\n\""}}`,
	}, {
		name:    "join with a name of the wrong type",
		action:  "join",
		payload: `{"name":7}`,
		status:  http.StatusBadRequest,
		want:    `{"error":{"status":400,"code":"bad_payload","message":"payload of action \"join\": json: cannot unmarshal number into Go struct field NamePayload.name of type string"}}`,
	}, {
		name:    "join a full room",
		action:  "join",
		state:   fullMembers(),
		payload: `{"name":"one more"}`,
		status:  http.StatusConflict,
		want:    `{"error":{"status":409,"code":"room_full","message":"the room has 500 members, the most it holds"}}`,
	}, {
		name:    "join a full room as a member",
		action:  "join",
		state:   fullMembers(),
		payload: `{"name":"m0"}`,
		status:  http.StatusOK,
		want:    `{"reply":{"members":` + membersJSON(MaxMembers) + `}}`,
	}, {
		name:    "leave removes the member and keeps the messages",
		action:  "leave",
		state:   `{"members":["ann","bob","cy"],"messages":[{"from":"bob","text":"bye","seq":4}]}`,
		payload: `{"name":"bob"}`,
		status:  http.StatusOK,
		want:    `{"state":{"members":["ann","cy"],"messages":[{"from":"bob","text":"bye","seq":4}]},"reply":{"members":["ann","cy"]}}`,
	}, {
		name:    "the last member leaves",
		action:  "leave",
		state:   sampleState,
		payload: `{"name":"ann"}`,
		status:  http.StatusOK,
		want:    `{"state":{"members":[],"messages":[{"from":"ann","text":"hi","seq":1}]},"reply":{"members":[]}}`,
	}, {
		name:    "leave as a non-member changes nothing",
		action:  "leave",
		state:   sampleState,
		payload: `{"name":"bob"}`,
		status:  http.StatusOK,
		want:    `{"reply":{"members":["ann"]}}`,
	}, {
		name:    "leave a new room stores nothing",
		action:  "leave",
		payload: `{"name":"bob"}`,
		status:  http.StatusOK,
		want:    `{"reply":{"members":[]}}`,
	}, {
		name:    "leave without a name",
		action:  "leave",
		state:   sampleState,
		payload: `{"name":""}`,
		status:  http.StatusBadRequest,
		want:    `{"error":{"status":400,"code":"bad_payload","message":"name must be 1 to 64 characters, got 0"}}`,
	}, {
		name:    "say appends with the next seq",
		action:  "say",
		state:   sampleState,
		payload: `{"from":"ann","text":"anyone <here>?"}`,
		status:  http.StatusOK,
		want:    `{"state":{"members":["ann"],"messages":[{"from":"ann","text":"hi","seq":1},{"from":"ann","text":"anyone \u003chere\u003e?","seq":2}]},"reply":{"seq":2}}`,
	}, {
		name:    "say first message is seq 1",
		action:  "say",
		state:   `{"members":["ann"],"messages":[]}`,
		payload: `{"from":"ann","text":"first"}`,
		status:  http.StatusOK,
		want:    `{"state":{"members":["ann"],"messages":[{"from":"ann","text":"first","seq":1}]},"reply":{"seq":1}}`,
	}, {
		name:    "say keeps the last 100 messages and counts on",
		action:  "say",
		state:   full,
		payload: `{"from":"ann","text":"m101"}`,
		status:  http.StatusOK,
		want:    `{"state":` + roomFrom(2, MaxMessages+1) + `,"reply":{"seq":101}}`,
	}, {
		name:    "say continues after a gap in the seqs",
		action:  "say",
		state:   `{"members":["ann"],"messages":[{"from":"ann","text":"old","seq":41}]}`,
		payload: `{"from":"ann","text":"new"}`,
		status:  http.StatusOK,
		want:    `{"state":{"members":["ann"],"messages":[{"from":"ann","text":"old","seq":41},{"from":"ann","text":"new","seq":42}]},"reply":{"seq":42}}`,
	}, {
		name:    "say the longest text with a new line",
		action:  "say",
		state:   `{"members":["ann"],"messages":[]}`,
		payload: `{"from":"ann","text":"` + strings.Repeat("☃", MaxTextChars-2) + `\n."}`,
		status:  http.StatusOK,
		want:    `{"state":{"members":["ann"],"messages":[{"from":"ann","text":"` + strings.Repeat("☃", MaxTextChars-2) + `\n.","seq":1}]},"reply":{"seq":1}}`,
	}, {
		name:    "say a text too long",
		action:  "say",
		state:   sampleState,
		payload: `{"from":"ann","text":"` + strings.Repeat("x", MaxTextChars+1) + `"}`,
		status:  http.StatusBadRequest,
		want:    `{"error":{"status":400,"code":"bad_payload","message":"text must be 1 to 1000 characters, got 1001"}}`,
	}, {
		name:    "say an empty text",
		action:  "say",
		state:   sampleState,
		payload: `{"from":"ann","text":""}`,
		status:  http.StatusBadRequest,
		want:    `{"error":{"status":400,"code":"bad_payload","message":"text must be 1 to 1000 characters, got 0"}}`,
	}, {
		name:    "say without from",
		action:  "say",
		state:   sampleState,
		payload: `{"text":"hi"}`,
		status:  http.StatusBadRequest,
		want:    `{"error":{"status":400,"code":"bad_payload","message":"from must be 1 to 64 characters, got 0"}}`,
	}, {
		name:    "say from a non-member",
		action:  "say",
		state:   sampleState,
		payload: `{"from":"eve","text":"hi"}`,
		status:  http.StatusForbidden,
		want:    `{"error":{"status":403,"code":"not_a_member","message":"eve is not a member of the room; join first"}}`,
	}, {
		name:    "say in a new room",
		action:  "say",
		payload: `{"from":"ann","text":"hi"}`,
		status:  http.StatusForbidden,
		want:    `{"error":{"status":403,"code":"not_a_member","message":"ann is not a member of the room; join first"}}`,
	}, {
		name:    "history since 0 replies every kept message",
		action:  "history",
		state:   `{"members":[],"messages":[{"from":"ann","text":"a","seq":7},{"from":"bob","text":"b","seq":8}]}`,
		payload: `{"since":0}`,
		status:  http.StatusOK,
		want:    `{"reply":{"messages":[{"from":"ann","text":"a","seq":7},{"from":"bob","text":"b","seq":8}]}}`,
	}, {
		name:    "history since a seq replies the later messages",
		action:  "history",
		state:   full,
		payload: `{"since":97}`,
		status:  http.StatusOK,
		want:    `{"reply":{"messages":[{"from":"ann","text":"m98","seq":98},{"from":"ann","text":"m99","seq":99},{"from":"ann","text":"m100","seq":100}]}}`,
	}, {
		name:    "history since the last seq is empty",
		action:  "history",
		state:   full,
		payload: `{"since":100}`,
		status:  http.StatusOK,
		want:    `{"reply":{"messages":[]}}`,
	}, {
		name:    "history with no payload replies everything",
		action:  "history",
		state:   sampleState,
		payload: `null`,
		status:  http.StatusOK,
		want:    `{"reply":{"messages":[{"from":"ann","text":"hi","seq":1}]}}`,
	}, {
		name:    "history of a new room",
		action:  "history",
		payload: `{"since":5}`,
		status:  http.StatusOK,
		want:    `{"reply":{"messages":[]}}`,
	}, {
		name:    "history with a bad since",
		action:  "history",
		state:   sampleState,
		payload: `{"since":"yesterday"}`,
		status:  http.StatusBadRequest,
		want:    `{"error":{"status":400,"code":"bad_payload","message":"payload of action \"history\": json: cannot unmarshal string into Go struct field HistoryPayload.since of type int64"}}`,
	}, {
		name:    "a state that is not a room",
		action:  "history",
		state:   `{"members":"everyone"}`,
		payload: `{"since":0}`,
		status:  http.StatusUnprocessableEntity,
		want:    `{"error":{"status":422,"code":"bad_state","message":"stored state does not fit the actor's state type: json: cannot unmarshal string into Go struct field State.members of type []string"}}`,
	}, {
		name:    "an unknown action",
		action:  "kick",
		state:   sampleState,
		payload: `{"name":"ann"}`,
		status:  http.StatusNotFound,
		want:    `{"error":{"status":404,"code":"unknown_action","message":"unknown action \"kick\""}}`,
	}}
	a := newActor()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, body := invoke(t, a, envelope(tc.action, tc.state, tc.payload))
			if status != tc.status || body != tc.want {
				t.Errorf("answer = %d %s\nwant     %d %s", status, body, tc.status, tc.want)
			}
		})
	}
}

// TestConversation runs a conversation turn by turn, feeding each turn's new state into the next
// as the router does, and checks the room at the end.
func TestConversation(t *testing.T) {
	a := newActor()
	state := "" // a new room
	run := func(action, payload string) json.RawMessage {
		t.Helper()
		status, body := invoke(t, a, envelope(action, state, payload))
		if status != http.StatusOK {
			t.Fatalf("%s %s = %d %s", action, payload, status, body)
		}
		var ans struct {
			State json.RawMessage `json:"state"`
			Reply json.RawMessage `json:"reply"`
		}
		if err := json.Unmarshal([]byte(body), &ans); err != nil {
			t.Fatal(err)
		}
		if ans.State != nil {
			state = string(ans.State)
		}
		return ans.Reply
	}
	run("join", `{"name":"ann"}`)
	run("join", `{"name":"bob"}`)
	for i := 1; i <= 150; i++ {
		from := []string{"ann", "bob"}[i%2]
		if got, want := string(run("say", fmt.Sprintf(`{"from":%q,"text":"m%d"}`, from, i))), fmt.Sprintf(`{"seq":%d}`, i); got != want {
			t.Fatalf("say #%d replied %s, want %s", i, got, want)
		}
	}
	run("leave", `{"name":"ann"}`)

	var room State
	if err := json.Unmarshal([]byte(state), &room); err != nil {
		t.Fatal(err)
	}
	if len(room.Messages) != MaxMessages || room.Messages[0].Seq != 51 || room.Messages[MaxMessages-1].Seq != 150 {
		t.Errorf("room keeps %d messages, seqs %d..%d; want %d, 51..150", len(room.Messages), room.Messages[0].Seq, room.Messages[len(room.Messages)-1].Seq, MaxMessages)
	}
	if fmt.Sprint(room.Members) != "[bob]" {
		t.Errorf("members = %v, want [bob]", room.Members)
	}
	var hist HistoryReply
	if err := json.Unmarshal(run("history", `{"since":148}`), &hist); err != nil {
		t.Fatal(err)
	}
	if len(hist.Messages) != 2 || hist.Messages[0] != (Message{From: "bob", Text: "m149", Seq: 149}) || hist.Messages[1] != (Message{From: "ann", Text: "m150", Seq: 150}) {
		t.Errorf("history since 148 = %+v", hist.Messages)
	}
}

// TestLargestState checks the claim of the limits' doc: the largest room the actions can build,
// with every character one that JSON escapes to six bytes, stays under the router's 1 MiB state
// limit.
func TestLargestState(t *testing.T) {
	const routerStateLimit = 1 << 20
	longName := func(i int) string { // MaxNameChars characters, distinct per i, all escaped
		s := strconv.Itoa(i)
		return s + strings.Repeat("<", MaxNameChars-len(s))
	}
	var room State
	for i := range MaxMembers {
		room.Members = append(room.Members, longName(i))
	}
	for i := range MaxMessages {
		room.Messages = append(room.Messages, Message{
			From: longName(i),
			Text: strings.Repeat("\x01", MaxTextChars),
			Seq:  1<<63 - 1 - int64(MaxMessages-i),
		})
	}
	b, err := json.Marshal(room)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) >= routerStateLimit {
		t.Errorf("largest state is %d bytes, want under %d", len(b), routerStateLimit)
	}
	t.Logf("largest state: %d bytes", len(b))

	// One more message on the largest room is still kept within the bound.
	room.Members[0] = "ann"
	state, err := json.Marshal(room)
	if err != nil {
		t.Fatal(err)
	}
	status, body := invoke(t, newActor(), envelope("say", string(state), `{"from":"ann","text":"`+strings.Repeat(`\u0001`, MaxTextChars)+`"}`))
	var ans struct{ State json.RawMessage }
	if err := json.Unmarshal([]byte(body), &ans); err != nil || status != http.StatusOK {
		t.Fatalf("say on the largest room = %d %.200s", status, body)
	}
	if len(ans.State) >= routerStateLimit {
		t.Errorf("say on the largest room: new state is %d bytes, want under %d", len(ans.State), routerStateLimit)
	}
}

func TestConformance(t *testing.T) {
	srv := httptest.NewServer(newActor())
	defer srv.Close()
	conformance.Run(t, srv.URL, options)
}

// TestChatProcess builds the chat function, runs it as a process the way knactor's local runtime
// does and checks it against the contract and for a clean exit on SIGTERM.
func TestChatProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping in -short mode: builds the chat binary and runs it as a process")
	}
	port := proctest.FreePort(t)
	p := proctest.Start(t, "chat", []string{"PORT=" + strconv.Itoa(port)}, proctest.Build(t, "examples/chat"))
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	proctest.WaitHealthy(t, p, url+"/healthz")
	conformance.Run(t, url, options)

	resp, err := http.Post(url+"/v1/invoke", "application/json", strings.NewReader(envelope("say", sampleState, `{"from":"ann","text":"over the wire"}`)))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	want := `{"state":{"members":["ann"],"messages":[{"from":"ann","text":"hi","seq":1},{"from":"ann","text":"over the wire","seq":2}]},"reply":{"seq":2}}`
	if resp.StatusCode != http.StatusOK || string(body) != want {
		t.Errorf("say = %d %s\nwant  200 %s", resp.StatusCode, body, want)
	}

	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Error(err)
	} else if p.ExitCode() != 0 {
		t.Errorf("chat exited with %v after SIGTERM, want a clean exit", p.Cmd().ProcessState)
	}
}

// envelope returns the envelope invoking action with payload on room "lobby" with the given
// state ("" for a new room).
func envelope(action, state, payload string) string {
	env := map[string]any{
		"function": "chat",
		"actor":    "lobby",
		"action":   action,
		"version":  "",
		"payload":  json.RawMessage(payload),
		"metadata": map[string]string{"request_id": "r1", "attempt": "1"},
	}
	if state != "" {
		env["state"], env["version"] = json.RawMessage(state), "v1"
	}
	b, err := json.Marshal(env)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// invoke posts the envelope to h's /v1/invoke and returns the answer's status and body.
func invoke(t *testing.T, h http.Handler, env string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v1/invoke", strings.NewReader(env)))
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	return rec.Code, rec.Body.String()
}

// roomWith returns the state of a room whose member ann said messages "m1".."mN" with seqs 1..n.
func roomWith(n int) string { return roomFrom(1, n) }

// roomFrom returns the state of a room whose member ann said messages with seqs first..last.
func roomFrom(first, last int) string {
	var msgs []string
	for i := first; i <= last; i++ {
		msgs = append(msgs, fmt.Sprintf(`{"from":"ann","text":"m%d","seq":%d}`, i, i))
	}
	return `{"members":["ann"],"messages":[` + strings.Join(msgs, ",") + `]}`
}

// membersJSON returns the JSON list of members "m0".."m{n-1}".
func membersJSON(n int) string {
	names := make([]string, n)
	for i := range names {
		names[i] = strconv.Quote("m" + strconv.Itoa(i))
	}
	return "[" + strings.Join(names, ",") + "]"
}

// fullMembers returns the state of a room with MaxMembers members and no messages.
func fullMembers() string {
	return `{"members":` + membersJSON(MaxMembers) + `,"messages":[]}`
}
