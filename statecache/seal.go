package statecache

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"unicode"
)

// Encryption at rest. A Cache with Config.Keys seals every value it writes to its Store and
// opens every value it reads; its memory holds plaintext. A sealed value is:
//
//	sealMagic (5) | len(key id) (1) | key id | nonce (12) | AES-256-GCM ciphertext of the value | tag (16)
//
// The associated data is the actor's Key.String() ("{function}/{id}": a function name never
// holds '/', so it names one actor), so a value copied onto another actor's object does not open.
// The header itself is not authenticated; changing it changes the key or the nonce, and the
// value then does not open either.
//
// sealMagic is "\x00KNR" followed by 0xE1. "\x00KNR" starts the router's record form
// (router/record), whose next byte is its format (1 or 2); a bare state that starts with "\x00KNR"
// is always stored in record form. So no plaintext value the router stores starts with
// sealMagic, and a plaintext value (written before keys were configured) is told from a sealed
// one by its first five bytes. Were a sealed value ever handed to the record decoder, it would be
// refused as an unknown format, never taken for state.
var sealMagic = []byte("\x00KNR\xe1")

const (
	// sealNonceBytes is GCM's standard nonce size. Nonces are random: 2^32 seals under one key
	// keep the chance of a repeat below 2^-32 (NIST SP 800-38D, 8.3); rotate keys well before.
	sealNonceBytes = 12
	// MaxKeyIDLen bounds an encryption key id (it is stored with every sealed value).
	MaxKeyIDLen = 32
	// encryptionKeyBytes is an AES-256 key.
	encryptionKeyBytes = 32
)

var (
	// ErrKeyMissing reports a stored value sealed with an encryption key that is not configured.
	// Keyring.Open and a Cache's reads return it as a *KeyMissingError, which names the key id.
	ErrKeyMissing = errors.New("encryption key not configured")

	// ErrSealBroken reports a sealed value that does not open with its key: tampered with,
	// truncated, or copied from another actor.
	ErrSealBroken = errors.New("sealed state does not decrypt")
)

// KeyMissingError is the ErrKeyMissing of one read: the actor's stored value was sealed with
// the key KeyID, which the Keyring does not hold (or no Keyring is configured).
type KeyMissingError struct {
	// Key is the actor whose value was read.
	Key Key
	// KeyID is the id of the key the value was sealed with.
	KeyID string
	// NoKeys reports that no encryption keys are configured at all.
	NoKeys bool
}

// Error names the actor and the missing key's id.
func (e *KeyMissingError) Error() string {
	if e.NoKeys {
		return fmt.Sprintf("state of %s was sealed with encryption key %q, but no encryption keys are configured (KNACTOR_ENCRYPTION_KEYS)", e.Key, e.KeyID)
	}
	return fmt.Sprintf("state of %s was sealed with encryption key %q, which is not configured (KNACTOR_ENCRYPTION_KEYS)", e.Key, e.KeyID)
}

// Is makes errors.Is(err, ErrKeyMissing) true.
func (e *KeyMissingError) Is(target error) bool { return target == ErrKeyMissing }

// Keyring holds the AES-256-GCM keys that seal and open actor state. The first key seals; every
// key opens, so a new key can be introduced before the old one is retired. A Keyring is
// immutable after ParseKeyring and safe for concurrent use. Its String never shows key material.
type Keyring struct {
	ids   []string
	aeads map[string]cipher.AEAD
}

// ParseKeyring reads a key specification: entries "id:key" separated by commas and/or white
// space, where id is 1 to MaxKeyIDLen characters of A-Z a-z 0-9 '.' '_' '-', and key is the
// base64 (standard or URL alphabet, padding optional) of 32 random bytes, e.g. from
// `openssl rand -base64 32`. The first entry is the active key. Errors name an entry by its
// position and id, never by its key material.
func ParseKeyring(spec string) (*Keyring, error) {
	entries := strings.FieldsFunc(spec, func(r rune) bool { return r == ',' || unicode.IsSpace(r) })
	if len(entries) == 0 {
		return nil, errors.New("encryption keys: none given (want id:base64-32-byte-key entries, separated by commas)")
	}
	kr := &Keyring{aeads: make(map[string]cipher.AEAD, len(entries))}
	first := make(map[string]int, len(entries))
	for i, e := range entries {
		n := i + 1
		id, b64, ok := strings.Cut(e, ":")
		if !ok {
			return nil, fmt.Errorf("encryption keys: entry #%d has no ':' (want id:base64-32-byte-key; the entry is not shown, it may be key material)", n)
		}
		if err := validKeyID(id); err != nil {
			return nil, fmt.Errorf("encryption keys: entry #%d: %w", n, err)
		}
		if prev, dup := first[id]; dup {
			return nil, fmt.Errorf("encryption keys: entry #%d: key id %q repeats entry #%d", n, id, prev)
		}
		first[id] = n
		key, ok := decodeKey(b64)
		if !ok {
			return nil, fmt.Errorf("encryption keys: entry #%d (key %q): the key is not base64", n, id)
		}
		if len(key) != encryptionKeyBytes {
			clear(key)
			return nil, fmt.Errorf("encryption keys: entry #%d (key %q): the key is %d bytes, want %d (AES-256: `openssl rand -base64 32`)", n, id, len(key), encryptionKeyBytes)
		}
		block, err := aes.NewCipher(key)
		clear(key) // the cipher keeps its own expanded copy
		if err != nil {
			return nil, fmt.Errorf("encryption keys: entry #%d (key %q): %w", n, id, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("encryption keys: entry #%d (key %q): %w", n, id, err)
		}
		kr.ids = append(kr.ids, id)
		kr.aeads[id] = aead
	}
	return kr, nil
}

// validKeyID reports whether id can name a key. An invalid id is not shown: a key pasted
// without its id would otherwise be printed.
func validKeyID(id string) error {
	if id == "" || len(id) > MaxKeyIDLen {
		return fmt.Errorf("key id must be 1 to %d characters, not %d", MaxKeyIDLen, len(id))
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("key id holds a character other than A-Z a-z 0-9 . _ - at position %d (the id is not shown, it may be key material)", i+1)
		}
	}
	return nil
}

// decodeKey decodes b64 in the standard or URL alphabet, padded or not.
func decodeKey(b64 string) ([]byte, bool) {
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if k, err := enc.DecodeString(b64); err == nil {
			return k, true
		}
	}
	return nil, false
}

// Active returns the id of the key that seals.
func (kr *Keyring) Active() string { return kr.ids[0] }

// IDs returns the ids of every key, the active one first.
func (kr *Keyring) IDs() []string { return append([]string(nil), kr.ids...) }

// String describes the keyring by its ids only.
func (kr *Keyring) String() string {
	if kr == nil {
		return "no encryption keys"
	}
	return fmt.Sprintf("encryption keys %s (active %q)", strings.Join(kr.ids, ","), kr.ids[0])
}

// GoString is String, so %#v shows no key material either.
func (kr *Keyring) GoString() string { return kr.String() }

// Seal returns plaintext sealed for key with the active key, in a new buffer. A nil Keyring
// seals nothing: it returns plaintext itself.
func (kr *Keyring) Seal(key Key, plaintext []byte) []byte {
	if kr == nil {
		return plaintext
	}
	id := kr.ids[0]
	aead := kr.aeads[id]
	out := make([]byte, 0, len(sealMagic)+1+len(id)+sealNonceBytes+len(plaintext)+aead.Overhead())
	out = append(out, sealMagic...)
	out = append(out, byte(len(id)))
	out = append(out, id...)
	nonce := out[len(out) : len(out)+sealNonceBytes]
	if _, err := rand.Read(nonce); err != nil {
		panic("statecache: crypto/rand failed: " + err.Error()) // crypto/rand does not fail on supported platforms
	}
	out = out[:len(out)+sealNonceBytes]
	return aead.Seal(out, nonce, plaintext, associatedData(key))
}

// Open returns the plaintext of a value read from the store for key. A value that is not sealed
// (written before keys were configured) is returned as it is. A value sealed with a key the
// Keyring lacks, or any sealed value when the Keyring is nil, is a *KeyMissingError; one that
// does not decrypt wraps ErrSealBroken.
func (kr *Keyring) Open(key Key, stored []byte) ([]byte, error) {
	plain, _, err := kr.open(key, stored)
	return plain, err
}

// open is Open that also reports whether stored was sealed.
func (kr *Keyring) open(key Key, stored []byte) (plain []byte, sealed bool, err error) {
	id, nonce, ct, sealed, err := parseSealed(stored)
	if !sealed {
		return stored, false, nil
	}
	if err != nil {
		return nil, true, fmt.Errorf("state of %s: %w: %v", key, ErrSealBroken, err)
	}
	if kr == nil {
		return nil, true, &KeyMissingError{Key: key, KeyID: string(id), NoKeys: true}
	}
	aead, ok := kr.aeads[string(id)] // no allocation: the conversion only indexes the map
	if !ok {
		return nil, true, &KeyMissingError{Key: key, KeyID: string(id)}
	}
	plain, err = aead.Open(nil, nonce, ct, associatedData(key))
	if err != nil {
		return nil, true, fmt.Errorf("state of %s: %w with key %q (tampered with, truncated, or another actor's)", key, ErrSealBroken, id)
	}
	if plain == nil {
		plain = []byte{} // an empty state is still a state
	}
	return plain, true, nil
}

// SealedKeyID reports the id of the key a stored value was sealed with, and false when the
// value is not sealed (or its header is damaged).
func SealedKeyID(stored []byte) (string, bool) {
	id, _, _, sealed, err := parseSealed(stored)
	return string(id), sealed && err == nil
}

// parseSealed splits a sealed value into its key id, nonce and ciphertext, slices of stored.
// sealed is false for a value without sealMagic; err reports a sealed value whose header is
// damaged.
func parseSealed(stored []byte) (id, nonce, ct []byte, sealed bool, err error) {
	rest, ok := bytes.CutPrefix(stored, sealMagic)
	if !ok {
		return nil, nil, nil, false, nil
	}
	if len(rest) < 1 {
		return nil, nil, nil, true, errors.New("truncated header")
	}
	n := int(rest[0])
	rest = rest[1:]
	if n == 0 || n > MaxKeyIDLen || len(rest) < n+sealNonceBytes {
		return nil, nil, nil, true, errors.New("truncated or damaged header")
	}
	id = rest[:n]
	if validKeyID(string(id)) != nil {
		return nil, nil, nil, true, errors.New("damaged key id")
	}
	rest = rest[n:]
	return id, rest[:sealNonceBytes], rest[sealNonceBytes:], true, nil
}

// associatedData is the identity a sealed value is bound to: its actor.
func associatedData(key Key) []byte {
	b := make([]byte, 0, len(key.Function)+1+len(key.ID))
	b = append(b, key.Function...)
	b = append(b, '/')
	return append(b, key.ID...)
}
