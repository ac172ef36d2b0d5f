package router

import "encoding/json"

// The fast path of parseAnswer. Nearly every turn answers {"state":...,"reply":...}; decoding
// that with encoding/json into the answer struct costs about 8 allocations and 1.8 µs, the
// largest share of the router's own work on a cache-hit call (docs/benchmarks.md). The fast
// path takes only that shape and leaves every other answer to the full decoder, so the two can
// only differ where the fast path applies — and FuzzParseAnswer checks that they agree there.

// parseCommonAnswer parses an answer that is a JSON object whose only members are "state"
// and "reply", neither null nor repeated. ok is false for any other body (including invalid
// JSON): parseAnswer then decodes it in full. The values are copied out of body (which the
// caller's response buffer owns) into room when they fit it, else into one allocation.
func parseCommonAnswer(body []byte, maxState int, room []byte) (o outcome, ok bool) {
	if !json.Valid(body) {
		return outcome{}, false
	}
	i := skipSpace(body, 0)
	if i >= len(body) || body[i] != '{' {
		return outcome{}, false
	}
	var state, reply []byte
	i = skipSpace(body, i+1)
	if i < len(body) && body[i] == '}' {
		return outcome{}, false // {}: rare, and the full decoder says what it means
	}
	for {
		// A key: a string without escapes (json.Valid vouched for the quotes).
		if i >= len(body) || body[i] != '"' {
			return outcome{}, false
		}
		end := i + 1
		for end < len(body) && body[end] != '"' && body[end] != '\\' {
			end++
		}
		if end >= len(body) || body[end] == '\\' {
			return outcome{}, false
		}
		key := body[i+1 : end]
		i = skipSpace(body, end+1)
		if i >= len(body) || body[i] != ':' {
			return outcome{}, false
		}
		i = skipSpace(body, i+1)
		start := i
		i = skipValue(body, i)
		if i < 0 {
			return outcome{}, false
		}
		v := body[start:i]
		if string(v) == "null" {
			return outcome{}, false
		}
		switch string(key) {
		case "state":
			if state != nil {
				return outcome{}, false
			}
			state = v
		case "reply":
			if reply != nil {
				return outcome{}, false
			}
			reply = v
		default:
			return outcome{}, false
		}
		i = skipSpace(body, i)
		if i >= len(body) {
			return outcome{}, false
		}
		if body[i] == '}' {
			break
		}
		if body[i] != ',' {
			return outcome{}, false
		}
		i = skipSpace(body, i+1)
	}
	if len(state) > maxState {
		return outcome{}, false // the full decoder words the refusal
	}
	buf := room[:0]
	if cap(buf) < len(state)+len(reply) {
		buf = make([]byte, 0, len(state)+len(reply))
	}
	buf = buf[:len(state)+len(reply)]
	n := copy(buf, state)
	copy(buf[n:], reply)
	if state != nil {
		o.newState = buf[:n:n]
	}
	if reply != nil {
		o.reply = buf[n:len(buf):len(buf)]
	} else {
		o.reply = nullJSON
	}
	return o, true
}

// nullJSON is the reply of an answer without one.
var nullJSON = []byte("null")

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipValue returns the index just past the JSON value starting at b[i], which json.Valid has
// vouched for, or -1 if there is none.
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				i = skipString(b, i)
				if i < 0 {
					return -1
				}
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return -1
	default: // a number, true, false or null: up to the next delimiter
		start := i
		for i < len(b) && b[i] != ',' && b[i] != '}' && b[i] != ']' && b[i] != ' ' && b[i] != '\t' && b[i] != '\n' && b[i] != '\r' {
			i++
		}
		if i == start {
			return -1
		}
		return i
	}
}

// skipString returns the index just past the string starting at b[i] (a '"'), or -1.
func skipString(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++ // the escaped character (json.Valid vouched for the escape)
		case '"':
			return i + 1
		}
	}
	return -1
}
