package statecache

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestObjectName(t *testing.T) {
	tests := []struct {
		name string
		key  Key
		want string
	}{
		{"plain", Key{Function: "counter", ID: "alice"}, "counter/alice"},
		{"slash", Key{Function: "counter", ID: "a/b"}, "counter/a%2Fb"},
		{"dot", Key{Function: "counter", ID: "."}, "counter/%2E"},
		{"dotdot", Key{Function: "counter", ID: ".."}, "counter/%2E."},
		{"traversal", Key{Function: "counter", ID: "../x"}, "counter/%2E.%2Fx"},
		{"inner dots kept", Key{Function: "counter", ID: "a.b"}, "counter/a.b"},
		{"percent", Key{Function: "counter", ID: "%2F"}, "counter/%252F"},
		{"space", Key{Function: "counter", ID: "a b"}, "counter/a%20b"},
		{"tilde escaped", Key{Function: "counter", ID: "~"}, "counter/%7E"},
		{"utf8", Key{Function: "counter", ID: "é"}, "counter/%C3%A9"},
		{"long id hashed", Key{Function: "counter", ID: strings.Repeat("a", 201)}, "counter/~"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.key.ObjectName()
			if err != nil {
				t.Fatal(err)
			}
			if strings.HasSuffix(tt.want, "~") {
				if !strings.HasPrefix(got, tt.want) || len(got) != len(tt.want)+64 {
					t.Fatalf("ObjectName = %q, want %q + 64 hex digits", got, tt.want)
				}
				return
			}
			if got != tt.want {
				t.Fatalf("ObjectName = %q, want %q", got, tt.want)
			}
			back, err := ParseObjectName(got)
			if err != nil || back != tt.key {
				t.Fatalf("ParseObjectName(%q) = %+v, %v; want %+v", got, back, err, tt.key)
			}
		})
	}
}

func TestParseObjectNameRejects(t *testing.T) {
	for _, name := range []string{
		"noslash", "counter/~" + strings.Repeat("0", 64), "counter/%2", "counter/%zz",
		"counter/a%2fb", // lower-case escape is not canonical
		"counter/a~b",   // '~' is always escaped
		"counter/.x",    // leading '.' is always escaped
		"Upper/x", "counter/",
	} {
		if k, err := ParseObjectName(name); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("ParseObjectName(%q) = %+v, %v; want ErrInvalidKey", name, k, err)
		}
	}
}

func TestValidateFunction(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"counter", true}, {"a", true}, {"chat-room", true}, {"a1", true}, {strings.Repeat("a", 63), true},
		{"", false}, {"-a", false}, {"a-", false}, {"A", false}, {"a_b", false}, {"a.b", false},
		{"a/b", false}, {"..", false}, {strings.Repeat("a", 64), false}, {"é", false},
	}
	for _, tt := range tests {
		if err := ValidateFunction(tt.name); (err == nil) != tt.ok {
			t.Errorf("ValidateFunction(%q) = %v, want ok=%v", tt.name, err, tt.ok)
		}
	}
}

// FuzzObjectName checks, for any valid id, that the name stays one safe path element inside the
// function's prefix and that escaped names parse back to the same key.
func FuzzObjectName(f *testing.F) {
	for _, s := range []string{"a", "..", "/", "%", "a/../b", "~", ".", " x ", "é"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		k := Key{Function: "fn", ID: id}
		name, err := k.ObjectName()
		if !utf8.ValidString(id) || id == "" || len(id) > MaxIDBytes {
			if !errors.Is(err, ErrInvalidKey) {
				t.Fatalf("ObjectName(%q) err = %v, want ErrInvalidKey", id, err)
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		seg, ok := strings.CutPrefix(name, "fn/")
		if !ok || seg == "" || seg == "." || seg == ".." || strings.ContainsAny(seg, "/\\\x00") || seg[0] == '.' || len(seg) > maxSegmentBytes+1 {
			t.Fatalf("ObjectName(%q) = %q is not one safe element under fn/", id, name)
		}
		if seg[0] == hashedMarker {
			return
		}
		back, err := ParseObjectName(name)
		if err != nil || back != k {
			t.Fatalf("ParseObjectName(%q) = %+v, %v; want %+v", name, back, err, k)
		}
	})
}

func TestNamedKeysAreTheSameActor(t *testing.T) {
	tests := []struct {
		name     string
		function string
		id       string
	}{
		{"plain", "counter", "alice"},
		{"id with slashes", "counter", "a/b/c"},
		{"unicode id", "chat", "ünïcødé"},
		{"one byte", "f", "x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plain := Key{Function: tt.function, ID: tt.id}
			for _, named := range []Key{NamedKey(tt.function, []byte(tt.id)), plain.Named()} {
				if named.Function != tt.function || named.ID != tt.id {
					t.Fatalf("named key is %q / %q, want %q / %q", named.Function, named.ID, tt.function, tt.id)
				}
				if !named.Equal(plain) || !plain.Equal(named) {
					t.Fatalf("%v and %v are not Equal", named, plain)
				}
				if named.String() != plain.String() || plain.String() != tt.function+"/"+tt.id {
					t.Fatalf("names %q and %q, want %q", named.String(), plain.String(), tt.function+"/"+tt.id)
				}
				if n, p := mustObjectName(t, named), mustObjectName(t, plain); n != p {
					t.Fatalf("object names %q and %q differ", n, p)
				}
			}
			if plain.Equal(Key{Function: tt.function, ID: tt.id + "x"}) {
				t.Fatal("keys of two actors are Equal")
			}
		})
	}
}

func mustObjectName(t *testing.T, k Key) string {
	t.Helper()
	name, err := k.ObjectName()
	if err != nil {
		t.Fatal(err)
	}
	return name
}

// A named key allocates its name once, whatever the id's length; String then costs nothing.
func TestNamedKeyAllocatesOnce(t *testing.T) {
	id := []byte(strings.Repeat("a-long-actor-id/", 8))
	var k Key
	if n := testing.AllocsPerRun(100, func() { k = NamedKey("counter", id) }); n != 1 {
		t.Fatalf("NamedKey allocates %.0f times, want 1", n)
	}
	if n := testing.AllocsPerRun(100, func() { _ = k.String() }); n != 0 {
		t.Fatalf("String of a named key allocates %.0f times", n)
	}
}

func TestParseNameInvertsString(t *testing.T) {
	for _, k := range []Key{{Function: "counter", ID: "alice"}, {Function: "f", ID: "a/b/c"}, {Function: "f", ID: "/"}} {
		got, ok := ParseName(k.String())
		if !ok || !got.Equal(k) || got.String() != k.String() {
			t.Errorf("ParseName(%q) = %+v, %v; want %+v", k.String(), got, ok, k)
		}
	}
	if _, ok := ParseName("no-slash"); ok {
		t.Error(`ParseName("no-slash") reported a key`)
	}
}
