// Package record is the stored form of an actor: its state and the idempotency keys of its
// recent calls, in one value, so a turn's new state and the memory that the turn ran are made
// durable by one atomic store write. A repeat of a remembered call is answered from the record
// and never runs again, whichever router, process or pod serves it later.
//
// An actor whose calls never carry a key is stored as its bare state, byte for byte, as before
// records existed; the record form (a binary header, the state, the key entries) is used only
// while keys are remembered, or when a bare state would be mistaken for one.
package record

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// Defaults of Limits. A key must outlive any sensible client retry loop (Stripe keeps keys 24 h),
// and the count and bytes bound what every write of a busy actor carries along.
const (
	DefaultKeys     = 128
	DefaultTTL      = 24 * time.Hour
	DefaultKeyBytes = 1 << 20
	// MaxKeyLen is the longest idempotency key accepted (the IETF draft's keys are UUIDs; 255
	// leaves room for a caller's own prefixes).
	MaxKeyLen = 255
)

// Limits bound the keys an actor remembers: at most Keys of them, none older than TTL, and the
// newest whose keys and replies fit in Bytes (the newest one is kept whatever its size).
type Limits struct {
	Keys  int
	TTL   time.Duration
	Bytes int
}

// ValidKey reports whether k is an idempotency key: 1-255 printable ASCII characters.
func ValidKey(k string) bool {
	if k == "" || len(k) > MaxKeyLen {
		return false
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x20 || k[i] > 0x7e {
			return false
		}
	}
	return true
}

// Digest identifies a call's content: its action and payload. A key sent again with another
// digest is a different call reusing the key.
type Digest [16]byte

// DigestOf returns the digest of a call of action with payload.
func DigestOf(action string, payload []byte) Digest {
	h := sha256.New()
	h.Write([]byte(action))
	h.Write([]byte{0})
	h.Write(payload)
	var d Digest
	copy(d[:], h.Sum(nil))
	return d
}

// Entry is one remembered call: its key and digest, when it committed, and its answer.
type Entry struct {
	Key      string
	Digest   Digest
	At       time.Time
	Status   int
	Reply    []byte
	RawReply bool // Reply is bytes (reply_b64), not JSON
	// Hop marks a call whose turn handed the call on (forward, pipe): Reply holds the hop's
	// encoding, and a repeat follows it to the final reply instead of answering Reply.
	Hop bool
}

// Record is an actor's stored value, decoded. The zero Record is an actor without state or keys.
//
// State aliases the decoded bytes, and the remembered keys stay in their encoded form, oldest
// first, each entry framed by its length: a turn finds a key by skipping from frame to frame,
// without decoding or allocating, and writes the window back as one block plus its own entry.
type Record struct {
	State    []byte
	HasState bool
	keys     []byte // framed entries, oldest first; the framing was checked by Decode
	n        int    // entries in keys
	added    []byte // the framed entry Remember added, written after keys
	absent   string // a key the latest Find saw nowhere in the window: Remember need not look
	sched    schedule
}

// magic starts every value in record form. A JSON state never starts with a NUL byte; a binary
// state that starts with magic is stored in record form, so the two forms never mix up.
var magic = []byte("\x00KNR")

const (
	formatV1 = 1
	formatV2 = 2 // format 1 and a schedule block (timers, outbox, channels)
	// Format byte 0xE1 is taken: statecache seals encrypted values behind magic and 0xE1, so a
	// sealed value never reads as a record (statecache's seal tests check it).
	flagHasState = 1
	flagRawReply = 1
	flagHop      = 2
)

// ErrCorrupt reports a value in record form that cannot be decoded.
var ErrCorrupt = errors.New("corrupt actor record")

// The record form:
//
//	magic | format (1 or 2) | flags (1) | len(state) state | count | entries [| schedule]
//	entry: len(body) body
//	body:  len(key) key | digest (16) | unix nanos (varint) | status | flags (1) | len(reply) reply
//
// Format 2 adds the schedule block (see schedule). Lengths and counts are uvarints.

// Decode reads a stored value. exists is whether the store holds a value for the key; a value
// without the record header is a bare state. Decode checks the framing of every entry and the
// key inside it; an entry whose other fields do not parse is never found or replayed.
func Decode(value []byte, exists bool) (Record, error) {
	if !exists {
		return Record{}, nil
	}
	rest, ok := bytes.CutPrefix(value, magic)
	if !ok {
		return Record{State: value, HasState: true}, nil
	}
	d := decoder{b: rest}
	format := d.byte()
	if format != formatV1 && format != formatV2 {
		return Record{}, fmt.Errorf("%w: unknown format %d (written by a newer knactor?)", ErrCorrupt, format)
	}
	var r Record
	r.HasState = d.byte()&flagHasState != 0
	r.State = d.bytes()
	if !r.HasState {
		r.State = nil
	}
	n := d.uvarint()
	if d.err == nil && n > uint64(len(d.b)) { // every entry takes more than a byte
		d.err = fmt.Errorf("%d entries in %d bytes", n, len(d.b))
	}
	if d.err == nil {
		r.keys, r.n = d.b, int(n)
		d.b, d.err = checkFraming(d.b, r.n)
		r.keys = r.keys[:len(r.keys)-len(d.b)] // format 2's schedule follows the entries
	}
	switch {
	case d.err != nil:
	case format == formatV2:
		r.sched, d.err = decodeSchedule(d.b)
	case len(d.b) > 0:
		d.err = fmt.Errorf("%d bytes after the last entry", len(d.b))
	}
	if d.err != nil {
		return Record{}, fmt.Errorf("%w: %v", ErrCorrupt, d.err)
	}
	return r, nil
}

// checkFraming checks that b starts with n framed entries, each starting with a framed key, and
// returns what follows them. It runs on every decode of a record, so it only reads lengths.
func checkFraming(b []byte, n int) ([]byte, error) {
	for i := range n {
		l, w := binary.Uvarint(b)
		if w <= 0 || l > uint64(len(b)-w) {
			return nil, fmt.Errorf("entry %d: truncated", i)
		}
		body := b[w : w+int(l)]
		kl, kw := binary.Uvarint(body)
		if kw <= 0 || kl > uint64(len(body)-kw) {
			return nil, fmt.Errorf("entry %d: truncated key", i)
		}
		b = b[w+int(l):]
	}
	return b, nil
}

// Keys returns how many keys the record remembers (expired ones included until the next write).
func (r *Record) Keys() int {
	if r.added != nil {
		return r.n + 1
	}
	return r.n
}

// each calls f with the body of every entry, oldest first, until f returns false. The framing
// was checked when the entries were decoded or encoded, so each only slices.
func (r *Record) each(f func(body []byte) bool) {
	b := r.keys
	for range r.n {
		n, w := binary.Uvarint(b)
		end := w + int(n)
		if !f(b[w:end]) {
			return
		}
		b = b[end:]
	}
	if r.added != nil {
		n, w := binary.Uvarint(r.added)
		f(r.added[w : w+int(n)])
	}
}

// Entries returns the remembered entries that parse, oldest first.
func (r *Record) Entries() []Entry {
	var out []Entry
	r.each(func(body []byte) bool {
		if e, ok := parseBody(body); ok {
			out = append(out, e)
		}
		return true
	})
	return out
}

// Find returns the entry of key if it is remembered and younger than ttl at now.
func (r *Record) Find(key string, now time.Time, ttl time.Duration) (Entry, bool) {
	r.absent = ""
	var found []byte
	r.each(func(body []byte) bool {
		if string(keyOf(body)) == key { // the conversion does not allocate
			found = body // keep going: the newest entry of a key wins
		}
		return true
	})
	if found == nil {
		r.absent = key
		return Entry{}, false
	}
	e, ok := parseBody(found)
	if !ok || now.Sub(e.At) >= ttl {
		return Entry{}, false
	}
	return e, true
}

// Remember adds e (its key must not be remembered yet, or must have expired) and drops what
// the limits no longer allow: expired entries, then the oldest beyond the count or the bytes.
func (r *Record) Remember(e Entry, lim Limits) {
	if r.added != nil { // a second key in one turn: fold the first into the window
		r.keys, r.n, r.added = append(append([]byte{}, r.keys...), r.added...), r.n+1, nil
	}
	if r.absent != e.Key && r.has(e.Key) {
		r.keys, r.n = r.without(e.Key) // an expired key used again: rare
	}
	r.absent = ""
	body := appendBody(make([]byte, 0, len(e.Key)+len(e.Reply)+40), &e)
	r.added = appendBytes(make([]byte, 0, len(body)+3), body)
	r.Prune(e.At, lim)
}

// has reports whether key is in the window.
func (r *Record) has(key string) bool {
	found := false
	r.each(func(body []byte) bool {
		found = string(keyOf(body)) == key
		return !found
	})
	return found
}

// without returns the window's entries other than key's, and their count.
func (r *Record) without(key string) ([]byte, int) {
	var out []byte
	kept := 0
	d := decoder{b: r.keys}
	for range r.n {
		start := d.b
		body := d.bytes()
		if string(keyOf(body)) != key {
			out = append(out, start[:len(start)-len(d.b)]...)
			kept++
		}
	}
	return out, kept
}

// Prune drops entries older than lim.TTL at now, then the oldest beyond lim.Keys and lim.Bytes.
// The newest entry stays whatever its size. It only moves the start of the window: no copy.
func (r *Record) Prune(now time.Time, lim Limits) {
	total := r.Keys()
	size := len(r.keys) + len(r.added)
	for r.n > 0 && (total > 1 || r.added == nil) {
		d := decoder{b: r.keys}
		body := d.bytes()
		frame := len(r.keys) - len(d.b)
		at, ok := atOf(body)
		if ok && now.Sub(at) < lim.TTL && total <= lim.Keys && size <= lim.Bytes {
			break
		}
		if total == 1 && ok && now.Sub(at) < lim.TTL {
			break // the newest stays whatever its size
		}
		r.keys, r.n = r.keys[frame:], r.n-1
		total--
		size -= frame
	}
	if r.n == 0 {
		r.keys = nil
		if r.added != nil { // the newest goes only when it has expired itself
			a := decoder{b: r.added}
			if at, ok := atOf(a.bytes()); !ok || now.Sub(at) >= lim.TTL {
				r.added = nil
			}
		}
	}
}

// Empty reports whether the record holds neither state nor keys: the actor can be deleted.
func (r *Record) Empty() bool { return !r.HasState && r.Keys() == 0 && r.sched.empty() }

// bare reports whether r is stored as its bare state: no keys, and a state that cannot be
// mistaken for a record.
func (r *Record) bare() bool {
	return r.Keys() == 0 && r.HasState && r.sched.empty() && !bytes.HasPrefix(r.State, magic)
}

// Value returns the stored form of r: the bare state itself (no copy) when it can be, else a new
// buffer with the record form. An Empty record has none; delete the key instead of storing it.
func (r *Record) Value() []byte {
	if r.bare() {
		return r.State
	}
	return r.Append(make([]byte, 0, len(magic)+2+2*binary.MaxVarintLen64+len(r.State)+len(r.keys)+len(r.added)))
}

// Append appends the stored form of r to b: the bare state when no keys are remembered (and the
// state cannot be mistaken for a record), else the record form. An Empty record encodes as
// nothing; delete the key instead of storing it.
func (r *Record) Append(b []byte) []byte {
	if r.bare() {
		return append(b, r.State...)
	}
	b = append(b, magic...)
	var flags byte
	if r.HasState {
		flags |= flagHasState
	}
	format := byte(formatV1)
	if !r.sched.empty() {
		format = formatV2
	}
	b = append(b, format, flags)
	b = appendBytes(b, r.State)
	b = binary.AppendUvarint(b, uint64(r.Keys()))
	b = append(b, r.keys...)
	b = append(b, r.added...)
	if format == formatV2 {
		b = r.sched.append(b)
	}
	return b
}

// appendBody appends the body of e's entry.
func appendBody(b []byte, e *Entry) []byte {
	b = appendBytes(b, []byte(e.Key))
	b = append(b, e.Digest[:]...)
	b = binary.AppendVarint(b, e.At.UnixNano())
	b = binary.AppendUvarint(b, uint64(e.Status))
	var f byte
	if e.RawReply {
		f |= flagRawReply
	}
	if e.Hop {
		f |= flagHop
	}
	b = append(b, f)
	return appendBytes(b, e.Reply)
}

// keyOf returns the key of an entry body (Decode checked that it is framed).
func keyOf(body []byte) []byte {
	n, w := binary.Uvarint(body)
	return body[w : w+int(n)]
}

// atOf returns when an entry committed, if its body parses that far.
func atOf(body []byte) (time.Time, bool) {
	d := decoder{b: body}
	d.bytes()
	d.fixed(len(Digest{}))
	at := d.varint()
	return time.Unix(0, at), d.err == nil
}

// parseBody decodes an entry body; ok is false for one that does not parse.
func parseBody(body []byte) (Entry, bool) {
	d := decoder{b: body}
	var e Entry
	e.Key = string(d.bytes())
	copy(e.Digest[:], d.fixed(len(Digest{})))
	e.At = time.Unix(0, d.varint())
	status := d.uvarint()
	f := d.byte()
	e.RawReply, e.Hop = f&flagRawReply != 0, f&flagHop != 0
	e.Reply = d.bytes()
	if d.err != nil || len(d.b) != 0 || status > 999 {
		return Entry{}, false
	}
	e.Status = int(status)
	return e, true
}

func appendBytes(b, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

// decoder reads the record form; the first error sticks and later reads return zero values.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("truncated %s", what)
	}
}

func (d *decoder) byte() byte {
	if d.err != nil || len(d.b) < 1 {
		d.fail("byte")
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) fixed(n int) []byte {
	if d.err != nil || len(d.b) < n {
		d.fail("field")
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("number")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("number")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err == nil && n > uint64(len(d.b)) {
		d.fail("bytes")
		return nil
	}
	return d.fixed(int(n))
}
