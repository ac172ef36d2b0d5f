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

// SetDefaults fills zero fields with the defaults.
func (l *Limits) SetDefaults() {
	if l.Keys == 0 {
		l.Keys = DefaultKeys
	}
	if l.TTL == 0 {
		l.TTL = DefaultTTL
	}
	if l.Bytes == 0 {
		l.Bytes = DefaultKeyBytes
	}
}

// Validate reports limits that cannot work.
func (l Limits) Validate() error {
	if l.Keys < 1 || l.TTL <= 0 || l.Bytes < 1 {
		return fmt.Errorf("idempotency limits: keys (%d), ttl (%v) and bytes (%d) must be positive", l.Keys, l.TTL, l.Bytes)
	}
	return nil
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
	RawReply bool   // Reply is bytes (reply_b64), not JSON
	Commit   string // the commit id of the turn that answered it
}

func (e *Entry) size() int { return len(e.Key) + len(e.Reply) + len(e.Commit) + 48 }

// Record is an actor's stored value, decoded. The zero Record is an actor without state or keys.
//
// State aliases the decoded bytes, and the remembered keys stay in their encoded form (oldest
// first): a turn scans them without allocating and copies them as one block when it writes, so
// 128 remembered keys cost a keyed call a scan and a copy, not 128 decodes.
type Record struct {
	State    []byte
	HasState bool
	keys     []byte // the encoded entries, oldest first; validated by Decode
	n        int    // entries in keys
}

// magic starts every value in record form. A JSON state never starts with a NUL byte; a binary
// state that starts with magic is stored in record form, so the two forms never mix up.
var magic = []byte("\x00KNR")

const (
	formatV1     = 1
	flagHasState = 1
	flagRawReply = 1
)

// ErrCorrupt reports a value in record form that cannot be decoded.
var ErrCorrupt = errors.New("corrupt actor record")

// Decode reads a stored value. exists is whether the store holds a value for the key; a value
// without the record header is a bare state. Decode checks every entry, so later scans of a
// decoded Record cannot fail.
func Decode(value []byte, exists bool) (Record, error) {
	if !exists {
		return Record{}, nil
	}
	rest, ok := bytes.CutPrefix(value, magic)
	if !ok {
		return Record{State: value, HasState: true}, nil
	}
	d := decoder{b: rest}
	if f := d.byte(); f != formatV1 {
		return Record{}, fmt.Errorf("%w: unknown format %d", ErrCorrupt, f)
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
	r.keys, r.n = d.b, int(n)
	for i := uint64(0); i < n && d.err == nil; i++ {
		d.entry()
	}
	if d.err == nil && len(d.b) > 0 {
		d.err = fmt.Errorf("%d bytes after the last entry", len(d.b))
	}
	if d.err != nil {
		return Record{}, fmt.Errorf("%w: %v", ErrCorrupt, d.err)
	}
	return r, nil
}

// Keys returns how many keys the record remembers (expired ones included until the next write).
func (r *Record) Keys() int { return r.n }

// Entries returns the remembered entries, oldest first.
func (r *Record) Entries() []Entry {
	out := make([]Entry, 0, r.n)
	d := decoder{b: r.keys}
	for range r.n {
		out = append(out, d.entry().entry())
	}
	return out
}

// Find returns the entry of key if it is remembered and younger than ttl at now.
func (r *Record) Find(key string, now time.Time, ttl time.Duration) (Entry, bool) {
	d := decoder{b: r.keys}
	var found rawEntry
	ok := false
	for range r.n {
		if e := d.entry(); string(e.key) == key { // the conversion does not allocate
			found, ok = e, true // keep scanning: the newest of a key wins
		}
	}
	if !ok || now.Sub(time.Unix(0, found.at)) >= ttl {
		return Entry{}, false
	}
	return found.entry(), true
}

// Remember adds e (its key must not be remembered yet, or must have expired) and drops what
// the limits no longer allow: expired entries, then the oldest beyond the count or the bytes.
func (r *Record) Remember(e Entry, lim Limits) {
	old := r.keys
	n := r.n
	if _, found := r.Find(e.Key, e.At, time.Duration(1<<63-1)); found {
		old, n = without(old, n, e.Key) // an expired key used again: rare
	}
	keys := make([]byte, 0, len(old)+e.size()+16)
	keys = append(keys, old...)
	r.keys, r.n = appendEntry(keys, &e), n+1
	r.Prune(e.At, lim)
}

// without returns the entries of keys (n of them) other than key's, and their count.
func without(keys []byte, n int, key string) ([]byte, int) {
	var out []byte
	kept := 0
	d := decoder{b: keys}
	for range n {
		if e := d.entry(); string(e.key) != key {
			out = append(out, e.raw...)
			kept++
		}
	}
	return out, kept
}

// Prune drops entries older than lim.TTL at now, then the oldest beyond lim.Keys and lim.Bytes.
// The newest entry stays whatever its size. It only moves the start of the entries: no copy.
func (r *Record) Prune(now time.Time, lim Limits) {
	if r.n == 0 {
		return
	}
	// Entries are oldest first: drop from the front while a limit is exceeded.
	d := decoder{b: r.keys}
	size := len(r.keys)
	for left := r.n; left > 1; left-- {
		e := d.entry()
		expired := now.Sub(time.Unix(0, e.at)) >= lim.TTL
		if !expired && left <= lim.Keys && size <= lim.Bytes {
			break
		}
		size -= len(e.raw)
		r.keys, r.n = r.keys[len(e.raw):], r.n-1
	}
	if r.n == 1 && now.Sub(time.Unix(0, decoder{b: r.keys}.peekAt())) >= lim.TTL {
		r.keys, r.n = nil, 0
	}
}

// Empty reports whether the record holds neither state nor keys: the actor can be deleted.
func (r *Record) Empty() bool { return !r.HasState && r.n == 0 }

// Append appends the stored form of r to b: the bare state when no keys are remembered (and the
// state cannot be mistaken for a record), else the record form. An Empty record encodes as
// nothing; delete the key instead of storing it.
func (r *Record) Append(b []byte) []byte {
	if r.n == 0 && r.HasState && !bytes.HasPrefix(r.State, magic) {
		return append(b, r.State...)
	}
	b = append(b, magic...)
	var flags byte
	if r.HasState {
		flags |= flagHasState
	}
	b = append(b, formatV1, flags)
	b = appendBytes(b, r.State)
	b = binary.AppendUvarint(b, uint64(r.n))
	return append(b, r.keys...)
}

// appendEntry appends e's encoding:
//
//	len(key) key | digest (16) | unix nanos (varint) | status | flags | len(reply) reply | len(commit) commit
func appendEntry(b []byte, e *Entry) []byte {
	b = appendBytes(b, []byte(e.Key))
	b = append(b, e.Digest[:]...)
	b = binary.AppendVarint(b, e.At.UnixNano())
	b = binary.AppendUvarint(b, uint64(e.Status))
	var f byte
	if e.RawReply {
		f = flagRawReply
	}
	b = append(b, f)
	b = appendBytes(b, e.Reply)
	return appendBytes(b, []byte(e.Commit))
}

// rawEntry is an entry as it sits in the encoded keys, its fields aliasing them.
type rawEntry struct {
	raw, key, reply, commit []byte
	digest                  []byte
	at                      int64
	status                  uint64
	rawReply                bool
}

func (e rawEntry) entry() Entry {
	out := Entry{Key: string(e.key), At: time.Unix(0, e.at), Status: int(e.status), RawReply: e.rawReply,
		Reply: e.reply, Commit: string(e.commit)}
	copy(out.Digest[:], e.digest)
	return out
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

// entry reads one entry.
func (d *decoder) entry() rawEntry {
	start := d.b
	var e rawEntry
	e.key = d.bytes()
	e.digest = d.fixed(len(Digest{}))
	e.at = d.varint()
	e.status = d.uvarint()
	e.rawReply = d.byte()&flagRawReply != 0
	e.reply = d.bytes()
	e.commit = d.bytes()
	e.raw = start[:len(start)-len(d.b)]
	return e
}

// peekAt returns the time of the entry d is at.
func (d decoder) peekAt() int64 { return d.entry().at }

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
