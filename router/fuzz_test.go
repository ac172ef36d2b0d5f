package router

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/valyala/fasthttp"

	"github.com/knactor/knactor/router/record"
	"github.com/knactor/knactor/statecache"
)

// Fuzz targets of the router's parsers and encoders; `hack/fuzz.sh` runs each for a bounded
// time, and their corpora are in testdata/fuzz.

// FuzzParseAnswer feeds arbitrary bytes to the parser of a function's answer: it never panics,
// and what it accepts keeps the contract's limits.
func FuzzParseAnswer(f *testing.F) {
	for _, s := range []string{
		`{"state":{"v":1},"reply":2}`, `{"error":{"status":409,"code":"x","message":"m"}}`,
		`{"state_b64":"AAE=","reply_b64":"aGk=","effects":[{"actor":"a","action":"go","delay_ms":5}]}`,
		`{"timers":[{"name":"t","action":"a","in_ms":5},{"name":"u","cancel":true}],"pipe":{"actor":"b","action":"c"}}`,
		`{"broadcast":[{"channel":"c","action":"a"}],"subscribe":["c"],"unsubscribe":["d"],"forward":{"actor":"x","action":"y"}}`,
		`{"delete":true}`, `null`, `[]`, `{"state":`,
		` { "reply" : "a\"b}" , "state" : [1,{"x":"}]\\"},true] } `, `{"state":null,"reply":1}`, `{"state":1,"state":2}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		const maxState, maxEffects = 1 << 10, 4
		out, err := parseAnswer(body, "self", maxState, maxEffects, nil)
		if fast, ok := parseCommonAnswer(body, maxState, nil); ok {
			// The fast path must agree with the full decoder on every answer it takes.
			full, ferr := parseFullAnswer(body, "self", maxState, maxEffects)
			if ferr != nil || !reflect.DeepEqual(fast, full) {
				t.Fatalf("fast path %+v, full decoder %+v %v", fast, full, ferr)
			}
		}
		if err != nil {
			if statusOf(err) != 502 {
				t.Fatalf("a bad answer must be a 502, got %v", err)
			}
			return
		}
		if out.fnErr != nil {
			if out.fnErr.status < 400 || out.fnErr.status > 499 {
				t.Fatalf("error form with status %d accepted", out.fnErr.status)
			}
			return
		}
		switch {
		case len(out.newState) > maxState:
			t.Fatalf("state of %d bytes accepted", len(out.newState))
		case len(out.effects)+len(out.broadcasts) > maxEffects:
			t.Fatalf("%d effects accepted", len(out.effects)+len(out.broadcasts))
		case out.newState != nil && out.delete:
			t.Fatal("both a state and a delete accepted")
		case out.reply == nil:
			t.Fatal("no reply")
		}
		for _, e := range out.effects {
			if err := (statecache.Key{Function: e.Function, ID: e.Actor}).Validate(); err != nil {
				t.Fatalf("effect to an invalid actor accepted: %v", err)
			}
		}
	})
}

// FuzzEnvelope encodes envelopes of arbitrary state, payload, ids and metadata: the result is
// always valid JSON that gives back the same bytes (as JSON, or base64 when they are not).
func FuzzEnvelope(f *testing.F) {
	f.Add("c1", "add", []byte(`{"v":1}`), []byte(`{"by":2}`), "tenant", "acme")
	f.Add("ü ☃/x", "a.b-c", []byte{0xff, 0x00}, []byte(""), "", "")
	f.Add("\"quoted\"", "x", []byte(`null`), []byte(`  [1, 2] `), "k\n", "v\x00")
	f.Fuzz(func(t *testing.T, actor, action string, state, payload []byte, mk, mv string) {
		env := envelope{function: "f", actor: actor, action: action, payload: payload,
			state:    statecache.Entry{Value: state, Exists: true, Version: "v1"},
			metadata: []metaPair{{mk, mv}}}
		b := env.appendJSON(nil)
		if !json.Valid(b) {
			t.Fatalf("invalid JSON: %q", b)
		}
		var got struct {
			Actor      string            `json:"actor"`
			State      json.RawMessage   `json:"state"`
			StateB64   *string           `json:"state_b64"`
			Payload    json.RawMessage   `json:"payload"`
			PayloadB64 *string           `json:"payload_b64"`
			Metadata   map[string]string `json:"metadata"`
		}
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatal(err)
		}
		if utf8.ValidString(actor) && got.Actor != actor {
			t.Fatalf("actor %q came back as %q", actor, got.Actor)
		}
		same := func(name string, js json.RawMessage, b64 *string, want []byte) {
			switch {
			case b64 != nil:
				dec, err := base64.StdEncoding.DecodeString(*b64)
				if err != nil || !bytes.Equal(dec, want) {
					t.Fatalf("%s_b64 %q does not give back %q", name, *b64, want)
				}
			case len(want) == 0 && name == "payload":
				if string(js) != "null" {
					t.Fatalf("empty payload sent as %s", js)
				}
			case !bytes.Equal(js, bytes.Trim(want, " \t\r\n")): // JSON sent as it is; the decoder trims
				t.Fatalf("%s %q sent as %q", name, want, js)
			}
		}
		same("state", got.State, got.StateB64, state)
		same("payload", got.Payload, got.PayloadB64, payload)
	})
}

// FuzzRecordDecode feeds arbitrary stored values to the record decoder: it never panics, and a
// value it decodes encodes to a value that decodes the same.
func FuzzRecordDecode(f *testing.F) {
	var r record.Record
	r.State, r.HasState = []byte(`{"v":1}`), true
	r.SetTimer(record.Timer{Name: "t", Action: "a"})
	r.AddOutgoing(record.Outgoing{Key: "k", Function: "f", Actor: "a", Action: "x"})
	r.Subscribe("c")
	f.Add(r.Value())
	f.Add([]byte(`{"plain":"state"}`))
	f.Add([]byte("\x00KNR\x01\x01\x00\x00"))
	f.Fuzz(func(t *testing.T, value []byte) {
		rec, err := record.Decode(value, true)
		if err != nil {
			return
		}
		rec.Entries() // parses every remembered entry
		again, err := record.Decode(rec.Value(), true)
		if err != nil {
			t.Fatalf("re-encoded record does not decode: %v", err)
		}
		if !bytes.Equal(again.State, rec.State) || again.HasState != rec.HasState || again.Keys() != rec.Keys() ||
			len(again.Timers()) != len(rec.Timers()) || len(again.Outbox()) != len(rec.Outbox()) || len(again.Channels()) != len(rec.Channels()) {
			t.Fatal("re-encoded record differs")
		}
	})
}

// FuzzWSMessage feeds arbitrary WebSocket messages to a channel session's reader path: every
// message gets an answer that is valid JSON.
func FuzzWSMessage(f *testing.F) {
	f.Add([]byte(`{"id":1,"action":"add","payload":{"by":1}}`))
	f.Add([]byte(`{"id":"x","action":"bad action"}`))
	f.Add([]byte(`not json`))
	s := &wsSession{hub: &hub{r: &Router{}}, target: &wsTarget{channel: "c"}}
	f.Fuzz(func(t *testing.T, msg []byte) {
		if out := s.invoke(msg); !json.Valid(out) {
			t.Fatalf("answer %q to %q is not JSON", out, msg)
		}
	})
}

// FuzzHopHeaders checks pass-through's fast look for hop-by-hop headers against the slow one:
// whenever rawHasHopHeader finds none in a request's header bytes, stripHopHeaders would strip
// nothing either, so skipping it never forwards a hop-by-hop header.
func FuzzHopHeaders(f *testing.F) {
	for _, seed := range []string{
		"Host: a\r\n", "Host: a\r\nConnection: X-A\r\nX-A: 1\r\n", "Host: a\r\nkeep-alive: 1\r\n",
		"Host: a\r\nTE: trailers\r\nTrailer: X\r\n", "Host: a\r\nX-Connection: 1\r\nUpgradeX: 1\r\n",
		"Host: a\r\nConnection : close\r\n", "Host: a\r\nProxy-Connection: keep-alive\r\n",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, headers string) {
		var req fasthttp.Request
		if err := req.Read(bufio.NewReader(strings.NewReader("GET / HTTP/1.1\r\n" + headers + "\r\n"))); err != nil {
			return // not a request the server would have taken
		}
		if rawHasHopHeader(req.Header.RawHeaders()) {
			return
		}
		var stripped fasthttp.RequestHeader
		req.Header.CopyTo(&stripped)
		stripHopHeaders(&stripped)
		if before, after := req.Header.String(), stripped.String(); before != after {
			t.Fatalf("no hop-by-hop header found in %q, but stripping changes\n%q\nto\n%q", headers, before, after)
		}
	})
}
