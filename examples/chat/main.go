// Command chat is a chat room actor: function "chat", one actor per room (the actor id is the
// room's name), reached by its members over knactor's WebSocket endpoint.
//
// # State
//
// A room's state is its members and its last messages:
//
//	{"members": ["ann", "bob"],
//	 "messages": [{"from": "ann", "text": "hi", "seq": 1}, {"from": "bob", "text": "hello", "seq": 2}]}
//
// Every message gets a seq one higher than the room's previous message (the first is 1), so seqs
// only increase and a client can tell what it has already seen. The room keeps the last
// MaxMessages messages and forgets older ones. The bound is deliberate: the router ships the
// whole state to the function on every turn and back, stores it, and pushes it to every
// subscriber on every change, so an unbounded history would make each message cost more than
// the one before and would, after a few hundred long messages, pass the router's 1 MiB state
// limit, after which every turn of the room fails with 502 bad_function_reply. With the limits
// below (MaxMessages, MaxTextChars, MaxNameChars, MaxMembers) the largest possible state stays
// under that limit whatever characters are sent. A permanent archive belongs in another actor
// or store, fed through effects.
//
// Handlers are deterministic, as the function contract requires (the router re-runs a turn
// after a version conflict), which is why messages carry no timestamp of the function's own.
//
// # Actions
//
//	join    {"name": "ann"}                 adds ann to the members; replies {"members": [...]}
//	leave   {"name": "ann"}                 removes ann; replies {"members": [...]}
//	say     {"from": "ann", "text": "hi"}   appends a message; replies {"seq": n}
//	history {"since": n}                    replies {"messages": [...]}: the kept messages with seq > n
//
// Names are 1 to MaxNameChars characters without control characters, texts 1 to MaxTextChars
// characters; anything else is 400 bad_payload. Joining as a member or leaving as a non-member
// changes nothing and replies the members. say from a name that is not a member is refused with
// 403 not_a_member. A room holds at most MaxMembers members; one more is 409 room_full. history
// of a new room, or with since at or past the last seq, replies no messages; when the first
// message replied has a seq above since+1, the messages in between are no longer kept.
//
// # Talking over a WebSocket
//
// Clients do not call the function: they open knactor's WebSocket endpoint for the room,
//
//	GET /v1/actors/chat/{room}/ws?subscribe=1
//
// (escape a '/' in a room name as %2F). Every text message the client sends,
// {"id": ..., "action": ..., "payload": ...}, is one turn of the room, run like any other call
// of the actor (one turn per room at a time, the state stored before the answer), and answered on
// the same socket with the same id: {"id": ..., "version": ..., "reply": ...}, or
// {"id": ..., "error": {"status", "code", "message"}} when it fails. With subscribe=1 the router
// also pushes every committed change of the room's state to the socket,
//
//	{"event": "state", "version": "...", "state": {"members": [...], "messages": [...]}}
//
// whoever caused it: a member on another socket, a plain HTTP call
// (POST /v1/actors/chat/{room}/say) or an effect. So when ann says something, every subscribed
// member, ann included, receives the room's new state with her message last; a client shows the
// messages whose seq it has not shown yet. Turns that change nothing (history, a repeated join)
// push nothing. A push for the client's own turn can arrive before that turn's reply.
//
// The router pushes changes only: on connect, or after reconnecting (the router closes a
// socket that reads too slowly with 1008, and all sockets with 1001 when it shuts down), a
// client asks for history since the last seq it has seen. With websocat, against a router on
// its default address:
//
//	$ websocat 'ws://127.0.0.1:8080/v1/actors/chat/lobby/ws?subscribe=1'
//	> {"id":1,"action":"join","payload":{"name":"ann"}}
//	< {"event":"state","version":"…","state":{"members":["ann"],"messages":[]}}
//	< {"id":1,"version":"…","reply":{"members":["ann"]}}
//	> {"id":2,"action":"history","payload":{"since":0}}
//	< {"id":2,"version":"…","reply":{"messages":[]}}
//	> {"id":3,"action":"say","payload":{"from":"ann","text":"hi all"}}
//	< {"event":"state","version":"…","state":{"members":["ann"],"messages":[{"from":"ann","text":"hi all","seq":1}]}}
//	< {"id":3,"version":"…","reply":{"seq":1}}
//	> {"id":4,"action":"say","payload":{"from":"eve","text":"hi"}}
//	< {"id":4,"error":{"status":403,"code":"not_a_member","message":"eve is not a member of the room; join first"}}
//
// Lines marked > are sent, < received. Any WebSocket client works the same way; from a
// browser, new WebSocket(url) and JSON.parse of each message event.
//
// It serves the function contract (docs/protocol.md) on $PORT like every function on the SDK;
// service.yaml deploys it.
package main

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/knactor/knactor/sdk"
)

// Limits of a room. Together they bound the state: in the worst case every character is one
// that JSON escapes to six bytes (a control character in a text, or <, > and & that
// encoding/json escapes), giving 100 × (1000 + 64) × 6 bytes of messages and 500 × 64 × 6 bytes
// of members plus punctuation, about 840 kB: under the router's default 1 MiB state limit.
const (
	// MaxMessages is how many of its latest messages a room keeps.
	MaxMessages = 100
	// MaxTextChars is the longest message text, in characters (Unicode code points).
	MaxTextChars = 1000
	// MaxNameChars is the longest member name, in characters.
	MaxNameChars = 64
	// MaxMembers is the most members a room holds at once.
	MaxMembers = 500
)

// State is the state of one room.
type State struct {
	// Members are the names of the room's members, in the order they joined.
	Members []string `json:"members"`
	// Messages are the room's latest messages, at most MaxMessages, oldest first.
	Messages []Message `json:"messages"`
}

// MarshalJSON encodes s with empty lists as [] rather than null, so that clients always see
// lists.
func (s State) MarshalJSON() ([]byte, error) {
	type plain State // without the MarshalJSON method
	if s.Members == nil {
		s.Members = []string{}
	}
	if s.Messages == nil {
		s.Messages = []Message{}
	}
	return json.Marshal(plain(s))
}

// nextSeq returns the seq of the room's next message: one more than the last one's.
func (s *State) nextSeq() int64 {
	if len(s.Messages) == 0 {
		return 1
	}
	return s.Messages[len(s.Messages)-1].Seq + 1
}

// Message is one message said in a room.
type Message struct {
	From string `json:"from"`
	Text string `json:"text"`
	Seq  int64  `json:"seq"`
}

// NamePayload is the payload of actions "join" and "leave".
type NamePayload struct {
	Name string `json:"name"`
}

// SayPayload is the payload of action "say".
type SayPayload struct {
	From string `json:"from"`
	Text string `json:"text"`
}

// HistoryPayload is the payload of action "history".
type HistoryPayload struct {
	Since int64 `json:"since"`
}

// MembersReply is the reply of actions "join" and "leave".
type MembersReply struct {
	Members []string `json:"members"`
}

// SayReply is the reply of action "say".
type SayReply struct {
	Seq int64 `json:"seq"`
}

// HistoryReply is the reply of action "history".
type HistoryReply struct {
	Messages []Message `json:"messages"`
}

func main() {
	sdk.Main(newActor())
}

// newActor returns the chat room actor.
func newActor() *sdk.Actor[State] {
	a := sdk.NewActor[State]()
	sdk.Handle(a, "join", join)
	sdk.Handle(a, "leave", leave)
	sdk.Handle(a, "say", say)
	sdk.Handle(a, "history", history)
	return a
}

// join adds p.Name to the members.
func join(_ context.Context, t *sdk.Turn[State], p NamePayload) (MembersReply, error) {
	if err := checkName("name", p.Name); err != nil {
		return MembersReply{}, err
	}
	if !slices.Contains(t.State.Members, p.Name) {
		if len(t.State.Members) >= MaxMembers {
			return MembersReply{}, sdk.Errorf(http.StatusConflict, "room_full", "the room has %d members, the most it holds", MaxMembers)
		}
		t.State.Members = append(t.State.Members, p.Name)
	}
	return members(t), nil
}

// leave removes p.Name from the members.
func leave(_ context.Context, t *sdk.Turn[State], p NamePayload) (MembersReply, error) {
	if err := checkName("name", p.Name); err != nil {
		return MembersReply{}, err
	}
	if i := slices.Index(t.State.Members, p.Name); i >= 0 {
		t.State.Members = slices.Delete(t.State.Members, i, i+1)
	}
	return members(t), nil
}

// say appends a message from p.From, who must be a member, keeping the last MaxMessages.
func say(_ context.Context, t *sdk.Turn[State], p SayPayload) (SayReply, error) {
	if err := checkName("from", p.From); err != nil {
		return SayReply{}, err
	}
	if n := utf8.RuneCountInString(p.Text); n < 1 || n > MaxTextChars {
		return SayReply{}, sdk.Errorf(http.StatusBadRequest, "bad_payload", "text must be 1 to %d characters, got %d", MaxTextChars, n)
	}
	if !slices.Contains(t.State.Members, p.From) {
		return SayReply{}, sdk.Errorf(http.StatusForbidden, "not_a_member", "%s is not a member of the room; join first", p.From)
	}
	m := Message{From: p.From, Text: p.Text, Seq: t.State.nextSeq()}
	msgs := append(t.State.Messages, m)
	if len(msgs) > MaxMessages {
		// Copy rather than reslice, so the dropped messages do not stay behind in the array.
		msgs = slices.Clone(msgs[len(msgs)-MaxMessages:])
	}
	t.State.Messages = msgs
	return SayReply{Seq: m.Seq}, nil
}

// history returns the kept messages with a seq above p.Since.
func history(_ context.Context, t *sdk.Turn[State], p HistoryPayload) (HistoryReply, error) {
	msgs := []Message{}
	for _, m := range t.State.Messages {
		if m.Seq > p.Since {
			msgs = append(msgs, m)
		}
	}
	return HistoryReply{Messages: msgs}, nil
}

// members returns the reply listing the turn's members.
func members(t *sdk.Turn[State]) MembersReply {
	return MembersReply{Members: append([]string{}, t.State.Members...)}
}

// checkName returns a 400 bad_payload error unless name, the value of the named payload field,
// is 1 to MaxNameChars characters none of which is a control character.
func checkName(field, name string) error {
	if n := utf8.RuneCountInString(name); n < 1 || n > MaxNameChars {
		return sdk.Errorf(http.StatusBadRequest, "bad_payload", "%s must be 1 to %d characters, got %d", field, MaxNameChars, n)
	}
	if strings.IndexFunc(name, unicode.IsControl) >= 0 {
		return sdk.Errorf(http.StatusBadRequest, "bad_payload", "%s must not hold control characters, got %q", field, name)
	}
	return nil
}
