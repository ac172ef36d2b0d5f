package statecache

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestValidateChannel(t *testing.T) {
	tests := []struct {
		name    string
		channel string
		ok      bool
	}{
		{"letters", "news", true},
		{"upper case", "News", true},
		{"every allowed byte", "aZ09_.-", true},
		{"one character", "x", true},
		{"inner dots", "a..b", true},
		{"leading dash", "-a", true},
		{"leading underscore", "_a", true},
		{"128 characters", strings.Repeat("c", MaxChannelLen), true},
		{"empty", "", false},
		{"129 characters", strings.Repeat("c", MaxChannelLen+1), false},
		{"slash", "a/b", false},
		{"leading dot", ".x", false},
		{"dot", ".", false},
		{"dot dot", "..", false},
		{"space", "a b", false},
		{"tilde", "a~", false},
		{"percent", "a%20", false},
		{"colon", "a:b", false},
		{"unicode", "nëws", false},
		{"nul", "a\x00", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateChannel(tt.channel)
			if tt.ok && err != nil {
				t.Fatalf("ValidateChannel(%q) = %v, want nil", tt.channel, err)
			}
			if !tt.ok && !errors.Is(err, ErrInvalidKey) {
				t.Fatalf("ValidateChannel(%q) = %v, want ErrInvalidKey", tt.channel, err)
			}
		})
	}
}

func TestMemberName(t *testing.T) {
	long := strings.Repeat("x", MaxIDBytes)
	tests := []struct {
		name     string
		channel  string
		key      Key
		wantName string
		hashed   bool // the name holds the id's hash: only the id beside it recovers the key
	}{
		{"plain", "news", Key{Function: "counter", ID: "alice"}, "news/counter/alice", false},
		{"escaped id", "news", Key{Function: "counter", ID: "a/b c"}, "news/counter/a%2Fb%20c", false},
		{"unicode id", "news", Key{Function: "counter", ID: "é"}, "news/counter/%C3%A9", false},
		{"leading dot id", "news", Key{Function: "counter", ID: ".."}, "news/counter/%2E.", false},
		{"tilde id", "news", Key{Function: "counter", ID: "~x"}, "news/counter/%7Ex", false},
		{"hashed id", "news", Key{Function: "counter", ID: long}, "news/counter/" + idSegment(long), true},
		{"channel of every allowed byte", "aZ09_.-", Key{Function: "fn", ID: "a"}, "aZ09_.-/fn/a", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name, err := MemberName(tt.channel, tt.key)
			if err != nil {
				t.Fatal(err)
			}
			if name != tt.wantName {
				t.Fatalf("MemberName = %q, want %q", name, tt.wantName)
			}
			if got := strings.Contains(name, "/~"); got != tt.hashed {
				t.Fatalf("MemberName = %q: hashed %v, want %v", name, got, tt.hashed)
			}
			obj := strings.TrimPrefix(name, tt.channel+"/")
			if k, err := parseMember(obj, tt.key.ID); err != nil || k != tt.key {
				t.Fatalf("parseMember(%q, id) = %v, %v; want %v", obj, k, err, tt.key)
			}
			k, err := parseMember(obj, "")
			switch {
			case tt.hashed && !errors.Is(err, ErrInvalidKey):
				t.Fatalf("parseMember of a hashed name without its id = %v, %v; want ErrInvalidKey", k, err)
			case !tt.hashed && (err != nil || k != tt.key):
				t.Fatalf("parseMember(%q, \"\") = %v, %v; want %v", obj, k, err, tt.key)
			}
			// The id beside a name is checked against it only when the name needs it.
			_, err = parseMember(obj, tt.key.ID+"-another")
			if tt.hashed != errors.Is(err, ErrInvalidKey) {
				t.Fatalf("parseMember with another id: err = %v, want ErrInvalidKey %v", err, tt.hashed)
			}
		})
	}
}

func TestMemberNameRejects(t *testing.T) {
	tests := []struct {
		name    string
		channel string
		key     Key
	}{
		{"empty channel", "", Key{Function: "fn", ID: "a"}},
		{"channel with a slash", "a/b", Key{Function: "fn", ID: "a"}},
		{"channel with a leading dot", ".x", Key{Function: "fn", ID: "a"}},
		{"channel of 129 characters", strings.Repeat("c", MaxChannelLen+1), Key{Function: "fn", ID: "a"}},
		{"zero key", "news", Key{}},
		{"bad function", "news", Key{Function: "Fn", ID: "a"}},
		{"empty id", "news", Key{Function: "fn", ID: ""}},
		{"long id", "news", Key{Function: "fn", ID: strings.Repeat("x", MaxIDBytes+1)}},
		{"id not UTF-8", "news", Key{Function: "fn", ID: "\xff"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if name, err := MemberName(tt.channel, tt.key); !errors.Is(err, ErrInvalidKey) {
				t.Fatalf("MemberName(%q, %q) = %q, %v; want ErrInvalidKey", tt.channel, tt.key, name, err)
			}
		})
	}
}

// A channel's member names sort after channel + "/" and before membersEnd(channel); no other
// channel's do, whichever bytes follow the common part.
func TestMembersEndBoundsOneChannel(t *testing.T) {
	channels := []string{"a", "a-", "a.", "a0", "a_", "aa", "ab", "A", "b", "0", "-", "_"}
	ids := []string{"a", "~", "..", strings.Repeat("z", MaxIDBytes)}
	for _, ch := range channels {
		lo, hi := ch+"/", membersEnd(ch)
		for _, other := range channels {
			for _, id := range ids {
				name, err := MemberName(other, Key{Function: "fn", ID: id})
				if err != nil {
					t.Fatal(err)
				}
				if in := name > lo && name < hi; in != (other == ch) {
					t.Errorf("member name %.30q is within %q's bounds (%q, %q): %v", name, ch, lo, hi, in)
				}
			}
		}
	}
	if !slices.IsSorted([]string{"a/", "a/~", "a0"}) {
		t.Fatal("bytes do not sort as assumed")
	}
}
