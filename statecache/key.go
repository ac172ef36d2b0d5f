package statecache

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

const (
	// MaxFunctionLen bounds a function name. Functions are Knative Services, whose names are
	// DNS-1123 labels (at most 63 characters).
	MaxFunctionLen = 63

	// MaxIDBytes bounds an actor id. 1 KiB holds any natural identifier (user ids, emails,
	// paths, UUID chains) while keeping per-actor bookkeeping small.
	MaxIDBytes = 1024

	// maxSegmentBytes bounds the escaped id used as the last element of an object name. 200
	// bytes leaves room under the usual 255-byte file-name limit for DirStore's temporary-file
	// suffix, and under S3's 1024-byte key limit for any prefix and function name. Longer ids are
	// named by their SHA-256 instead.
	maxSegmentBytes = 200

	// hashedMarker starts the segment of an id named by its hash. escapeID always escapes '~',
	// so no escaped id can start with it and the two forms never collide.
	hashedMarker = '~'
)

// ErrInvalidKey reports a function name or actor id that knactor cannot store.
var ErrInvalidKey = errors.New("invalid actor key")

// Key names one actor: the function it belongs to and its id within that function.
//
// A key made by NamedKey or Named carries its name (String), made once: the request path names
// an actor several times per call (its mailbox, its owner, its cache entry) and a name made per
// use would cost an allocation each. Two keys of one actor may differ in whether they carry it,
// so compare keys with Equal, not ==.
type Key struct {
	Function string
	ID       string

	name string // Function + "/" + ID, or "" when not made yet
}

// NamedKey returns the key of actor id of function, carrying its name. The name and the id
// share one allocation: the id is the name's tail.
func NamedKey(function string, id []byte) Key {
	var b strings.Builder
	b.Grow(len(function) + 1 + len(id))
	b.WriteString(function)
	b.WriteByte('/')
	b.Write(id)
	name := b.String()
	return Key{Function: function, ID: name[len(function)+1:], name: name}
}

// Named returns k carrying its name.
func (k Key) Named() Key {
	k.name = k.String()
	return k
}

// String returns the key's name, function "/" id: the name of its mailbox, its cache entry and
// its placement, and its readable form in logs and errors. It is not the object name.
func (k Key) String() string {
	if k.name != "" {
		return k.name
	}
	return k.Function + "/" + k.ID
}

// ParseName returns the key whose name (String) is name, carrying it: the function is name up
// to its first '/' (function names hold none), the id the rest. It reports false when name has
// no '/'. It checks nothing else (see Validate).
func ParseName(name string) (Key, bool) {
	fn, id, ok := strings.Cut(name, "/")
	if !ok {
		return Key{}, false
	}
	return Key{Function: fn, ID: id, name: name}, true
}

// Equal reports whether k and o name the same actor.
func (k Key) Equal(o Key) bool { return k.Function == o.Function && k.ID == o.ID }

// Validate reports whether the key can be stored: the function must be a DNS-1123 label and the
// id 1 to MaxIDBytes bytes of valid UTF-8. Any such id is safe; it is escaped, never trusted.
func (k Key) Validate() error {
	if err := ValidateFunction(k.Function); err != nil {
		return err
	}
	switch {
	case k.ID == "":
		return fmt.Errorf("%w: actor id is empty", ErrInvalidKey)
	case len(k.ID) > MaxIDBytes:
		return fmt.Errorf("%w: actor id is %d bytes, the limit is %d", ErrInvalidKey, len(k.ID), MaxIDBytes)
	case !utf8.ValidString(k.ID):
		return fmt.Errorf("%w: actor id is not valid UTF-8", ErrInvalidKey)
	}
	return nil
}

// ValidateFunction reports whether name is a valid function name: a DNS-1123 label, as Knative
// requires of Service names (lower-case letters, digits and '-', starting and ending with a
// letter or digit, at most 63 characters).
func ValidateFunction(name string) error {
	if name == "" {
		return fmt.Errorf("%w: function name is empty", ErrInvalidKey)
	}
	if len(name) > MaxFunctionLen {
		return fmt.Errorf("%w: function name %.20q... is longer than %d characters", ErrInvalidKey, name, MaxFunctionLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		alnum := c >= 'a' && c <= 'z' || c >= '0' && c <= '9'
		if alnum || c == '-' && i > 0 && i < len(name)-1 {
			continue
		}
		return fmt.Errorf("%w: function name %q must be a DNS-1123 label (a-z, 0-9 and '-', starting and ending with a letter or digit)", ErrInvalidKey, name)
	}
	return nil
}

// ObjectName returns the key's name inside a store: "{function}/{escaped id}". The escaped id is
// one path element that can never be "", "." or ".." and never holds '/', so no id reaches
// outside its function's prefix. Ids whose escaped form would exceed 200 bytes are named
// "~" followed by the hex SHA-256 of the id.
func (k Key) ObjectName() (string, error) {
	if err := k.Validate(); err != nil {
		return "", err
	}
	return k.Function + "/" + idSegment(k.ID), nil
}

// ParseObjectName is the inverse of ObjectName for ids that were escaped rather than hashed.
// For a hashed name it returns an error wrapping ErrInvalidKey: the id is not recoverable from
// the name alone.
func ParseObjectName(name string) (Key, error) {
	fn, seg, ok := strings.Cut(name, "/")
	if !ok {
		return Key{}, fmt.Errorf("%w: object name %q has no function prefix", ErrInvalidKey, name)
	}
	if seg != "" && seg[0] == hashedMarker {
		return Key{}, fmt.Errorf("%w: object name %q holds a hashed id", ErrInvalidKey, name)
	}
	id, err := unescapeID(seg)
	if err != nil {
		return Key{}, fmt.Errorf("%w: object name %q: %v", ErrInvalidKey, name, err)
	}
	k := Key{Function: fn, ID: id}
	if err := k.Validate(); err != nil {
		return Key{}, err
	}
	if idSegment(id) != seg {
		return Key{}, fmt.Errorf("%w: object name %q is not in canonical form", ErrInvalidKey, name)
	}
	return k, nil
}

// parseIndexedObject returns the actor an index entry names by obj, a Key.ObjectName. id is the
// actor id kept beside the entry: with it, the key is that id's if obj names it (the only way to
// recover an id named by its hash); with "", obj is parsed alone (ParseObjectName).
func parseIndexedObject(obj, id string) (Key, error) {
	if id == "" {
		return ParseObjectName(obj)
	}
	fn, _, _ := strings.Cut(obj, "/")
	k := Key{Function: fn, ID: id}
	if o, err := k.ObjectName(); err != nil || o != obj {
		return Key{}, fmt.Errorf("%w: object name %q does not name actor %q", ErrInvalidKey, obj, id)
	}
	return k, nil
}

// objectNameHashed reports whether obj ("{function}/{segment}") names its actor by the id's hash.
func objectNameHashed(obj string) bool {
	_, seg, _ := strings.Cut(obj, "/")
	return seg != "" && seg[0] == hashedMarker
}

func idSegment(id string) string {
	if seg, ok := escapeID(id); ok {
		return seg
	}
	sum := sha256.Sum256([]byte(id))
	return string(hashedMarker) + hex.EncodeToString(sum[:])
}

// unreserved reports the bytes an escaped id keeps as they are: RFC 3986's unreserved set less
// '~' (kept for hashedMarker). Every other byte, '/' and '%' included, is percent-encoded.
func unreserved(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.'
}

// escapeID percent-encodes id into one path element, or reports false when the result would be
// longer than maxSegmentBytes. A leading '.' is escaped too, so the element is never "." or ".."
// and never a hidden file name.
func escapeID(id string) (string, bool) {
	const hexDigits = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(id); i++ {
		c := id[i]
		if unreserved(c) && !(i == 0 && c == '.') {
			b.WriteByte(c)
		} else {
			b.WriteByte('%')
			b.WriteByte(hexDigits[c>>4])
			b.WriteByte(hexDigits[c&15])
		}
		if b.Len() > maxSegmentBytes {
			return "", false
		}
	}
	return b.String(), true
}

func unescapeID(seg string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(seg); i++ {
		c := seg[i]
		if c != '%' {
			b.WriteByte(c)
			continue
		}
		if i+2 >= len(seg) {
			return "", errors.New("truncated escape")
		}
		v, err := hex.DecodeString(seg[i+1 : i+3])
		if err != nil {
			return "", fmt.Errorf("bad escape %q", seg[i:i+3])
		}
		b.WriteByte(v[0])
		i += 2
	}
	return b.String(), nil
}
