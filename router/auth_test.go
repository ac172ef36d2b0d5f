package router

import (
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/knactor/knactor/router/routing"
	"github.com/knactor/knactor/statecache"
)

// peerConfig is the config of a router that shares its secret with peers (Kubernetes mode).
var peerConfig = Config{PeerToken: strings.Repeat("peer-secret-", 3)}

func TestParseAuthToken(t *testing.T) {
	const tok = "tok-0123456789abcdef"
	tests := []struct {
		name    string
		entry   string
		want    AuthToken
		wantErr string
	}{
		{name: "plain", entry: tok, want: AuthToken{Token: tok}},
		{name: "spaces around", entry: "  " + tok + "\n", want: AuthToken{Token: tok}},
		{name: "functions", entry: tok + ":functions=cart+checkout", want: AuthToken{Token: tok, Functions: []string{"cart", "checkout"}}},
		{name: "read-only", entry: tok + ":read-only", want: AuthToken{Token: tok, ReadOnly: true}},
		{name: "both", entry: tok + ":functions=cart;read-only", want: AuthToken{Token: tok, Functions: []string{"cart"}, ReadOnly: true}},
		{name: "short", entry: "short-token", wantErr: "shorter than 16"},
		{name: "short with scope", entry: "short:read-only", wantErr: "shorter than 16"},
		{name: "unknown scope", entry: tok + ":admin", wantErr: `unknown scope "admin"`},
		{name: "empty functions", entry: tok + ":functions=", wantErr: "one list"},
		{name: "two function lists", entry: tok + ":functions=a;functions=b", wantErr: "one list"},
		{name: "bad function name", entry: tok + ":functions=Cart", wantErr: `"Cart" is not a function name`},
		{name: "read-only with a value", entry: tok + ":read-only=yes", wantErr: "takes no value"},
		{name: "space inside", entry: "tok 0123456789abcdef", wantErr: "white space"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseAuthToken(tc.entry)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseAuthToken(%q) = %v, want error with %q", tc.entry, err, tc.wantErr)
				}
				if strings.Contains(err.Error(), "0123456789") {
					t.Fatalf("error quotes the token: %v", err)
				}
				return
			}
			if err != nil || got.Token != tc.want.Token || got.ReadOnly != tc.want.ReadOnly ||
				strings.Join(got.Functions, ",") != strings.Join(tc.want.Functions, ",") || (got.Functions == nil) != (tc.want.Functions == nil) {
				t.Fatalf("ParseAuthToken(%q) = %+v, %v; want %+v", tc.entry, got, err, tc.want)
			}
		})
	}
}

// One team's token cannot call another team's actors, a read-only token runs no turn, and only
// a token for every function reaches channels, metrics and the function list.
func TestScopedTokens(t *testing.T) {
	const (
		admin  = "admin-token-0123456789"
		team   = "team-token-0123456789"
		viewer = "viewer-token-0123456789"
		teamRO = "team-ro-token-0123456789"
	)
	h := newHarness(t, Config{AuthTokens: []string{admin, team + ":functions=counter", viewer + ":read-only", teamRO + ":functions=counter;read-only"}})
	h.deploy(counterFn, newTestActor())
	h.deploy(routing.Function{Name: "other"}, newTestActor())
	echo := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "auth="+r.Header.Get("Authorization")+" peer="+r.Header.Get(HeaderPeerToken))
	})
	h.deploy(routing.Function{Name: "echo"}, echo)
	h.do("POST", "/v1/actors/counter/a/add", `{"by":1}`, "Authorization", "Bearer "+admin).want(t, 200, `{"value":1}`)
	h.do("POST", "/v1/actors/other/a/add", `{"by":1}`, "Authorization", "Bearer "+admin).want(t, 200, `{"value":1}`)

	tests := []struct {
		token, method, path string
		want                int
	}{
		{team, "POST", "/v1/actors/counter/a/add", 200},
		{team, "POST", "/v1/actors/other/a/add", 403},
		{team, "GET", "/v1/actors/other/a", 403},
		{team, "GET", "/v1/actors/other/a/ws", 403},
		{team, "GET", "/v1/functions/other/x", 403},
		{team, "GET", "/metrics", 403},
		{team, "GET", "/v1/functions", 403},
		{team, "GET", "/v1/channels/room/ws", 403},
		{viewer, "GET", "/v1/actors/counter/a", 200},
		{viewer, "GET", "/v1/actors/other/a?view=record", 200},
		{viewer, "POST", "/v1/actors/counter/a/add", 403},
		{viewer, "DELETE", "/v1/actors/counter/a", 403},
		{viewer, "GET", "/v1/functions/echo/x", 200},
		{viewer, "POST", "/v1/functions/echo/x", 403},
		{viewer, "GET", "/metrics", 200},
		{teamRO, "GET", "/v1/actors/counter/a", 200},
		{teamRO, "GET", "/v1/actors/other/a", 403},
		{teamRO, "POST", "/v1/actors/counter/a/add", 403},
		{admin, "GET", "/metrics", 200},
	}
	for _, tc := range tests {
		t.Run(tc.method+" "+tc.path+" as "+strings.SplitN(tc.token, "-", 2)[0], func(t *testing.T) {
			rp := h.do(tc.method, tc.path, `{"by":1}`, "Authorization", "Bearer "+tc.token)
			if rp.status != tc.want {
				t.Fatalf("got %d %s, want %d", rp.status, rp.body, tc.want)
			}
			if tc.want == 403 && !strings.Contains(rp.body, `"forbidden"`) {
				t.Fatalf("403 without the forbidden code: %s", rp.body)
			}
		})
	}
	// Refused calls changed nothing: counter/a saw the admin's and the team's add only.
	h.do("GET", "/v1/actors/counter/a", "", "Authorization", "Bearer "+admin).want(t, 200, `{"value":2}`)
	h.do("GET", "/v1/actors/other/a", "", "Authorization", "Bearer "+admin).want(t, 200, `{"value":1}`)
	// The function sees neither knactor's token nor a routers' secret.
	rp := h.do("GET", "/v1/functions/echo/x", "", "Authorization", "Bearer "+viewer)
	if rp.body != "auth= peer=" {
		t.Fatalf("pass-through handed the function %q", rp.body)
	}
}

// The internal headers and routes answer only to a router's secret: a caller cannot say its
// call was forwarded (to use the reserved keys of effects, or run a turn on a router that does
// not own the actor) or push to a channel's sockets.
func TestInternalDoorsNeedThePeerSecret(t *testing.T) {
	owner, front := forwardingPair(t)
	a := newTestActor()
	owner.deploy(counterFn, a)
	front.deploy(counterFn, a)

	// A forged X-Knactor-Forwarded on the front router: the call still goes to the owner.
	front.do("POST", "/v1/actors/counter/a/add", `{"by":1}`, HeaderForwarded, "1").want(t, 200, `{"value":1}`)
	if fns := front.r.Stats().Functions(); len(fns) != 0 {
		t.Fatalf("the front router ran a turn because a caller said it was forwarded: %v", fns)
	}
	// A reserved key with a forged header is refused; from a peer it is accepted.
	front.do("POST", "/v1/actors/counter/a/add", `{"by":1}`, HeaderForwarded, "1", HeaderIdempotencyKey, "effect:x:0").want(t, 400, "")
	owner.do("POST", "/v1/actors/counter/a/add", `{"by":1}`, HeaderForwarded, "1", HeaderIdempotencyKey, "effect:x:0",
		HeaderPeerToken, peerConfig.PeerToken).want(t, 200, `{"value":2}`)
	// A wrong secret is refused outright, even with a valid-looking call.
	owner.do("POST", "/v1/actors/counter/a/add", `{"by":1}`, HeaderPeerToken, strings.Repeat("x", 36)).want(t, 401, "")
	// Channel pushes: peers only.
	owner.do("POST", "/v1/channels/room/push", `{"event":"broadcast"}`, HeaderForwarded, "1").want(t, 403, "")
	owner.do("POST", "/v1/channels/room/push", `{"event":"broadcast"}`, HeaderPeerToken, peerConfig.PeerToken).want(t, 204, "")
	// A router without a secret takes no call as a peer's.
	solo := newHarness(t, Config{})
	solo.do("POST", "/v1/channels/room/push", `{}`, HeaderPeerToken, peerConfig.PeerToken).want(t, 401, "")

	owner.do("GET", "/v1/actors/counter/a", "").want(t, 200, `{"value":2}`)
}

func TestPeersNeedASharedSecret(t *testing.T) {
	cache, err := statecache.NewCache(&statecache.MemStore{}, statecache.Config{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = New(Config{}, Options{Backends: routing.NewStatic(), State: cache, Peers: peersFunc(func(string) (string, bool) { return "", false })})
	if err == nil || !strings.Contains(err.Error(), "PeerToken") {
		t.Fatalf("New with Peers and no secret = %v, want an error naming PeerToken", err)
	}
	if err := (&Config{Listen: DefaultListen, PeerToken: "short"}).Validate(); err == nil || !strings.Contains(err.Error(), "shorter than 32") {
		t.Fatalf("Validate of a short secret = %v", err)
	}
}

// A router without tokens on loopback cannot be driven by web pages (issue 16, point 8): a page
// of another origin is refused by its Origin, and a DNS-rebinding page (its own host name, now
// resolving to 127.0.0.1) by its Host. curl, the CLI, the status page and routes still work.
func TestTokenlessRouterRefusesOtherOriginsAndHosts(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		headers []string
		status  int
	}{
		{name: "curl", status: 200},
		{name: "localhost", headers: []string{"Host", "localhost"}, status: 200},
		{name: "IPv6 loopback", headers: []string{"Host", "[::1]:8080"}, status: 200},
		{name: "the router's own page", headers: []string{"Origin", "SELF"}, status: 200},
		{name: "a page of another origin", headers: []string{"Origin", "http://evil.example"}, status: 403},
		{name: "a page of a loopback port of another app", headers: []string{"Origin", "http://127.0.0.1:1"}, status: 403},
		{name: "DNS rebinding", headers: []string{"Host", "evil.example:8080", "Origin", "http://evil.example:8080"}, status: 403},
		{name: "a foreign host name", headers: []string{"Host", "evil.example"}, status: 403},
		{name: "an allowed origin", cfg: Config{AllowedOrigins: []string{"https://app.example"}},
			headers: []string{"Origin", "https://app.example"}, status: 200},
		{name: "with tokens the token decides", cfg: Config{AuthTokens: []string{"browser-test-token-0123456789"}},
			headers: []string{"Host", "evil.example", "Origin", "http://evil.example", "Authorization", "Bearer browser-test-token-0123456789"}, status: 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, tt.cfg)
			h.deploy(counterFn, newTestActor())
			headers := slices.Clone(tt.headers)
			for i := range headers {
				if headers[i] == "SELF" {
					headers[i] = h.url
				}
			}
			rp := h.do("POST", "/v1/actors/counter/browser/add", `{"by":1}`, headers...)
			if rp.status != tt.status {
				t.Fatalf("got %d %s, want %d", rp.status, rp.body, tt.status)
			}
			want := `{"value":1}`
			if tt.status != 200 {
				want = `actor_not_found` // the refused call changed nothing
				if !strings.Contains(rp.body, `"code":"forbidden"`) {
					t.Errorf("refusal body %s, want code forbidden", rp.body)
				}
			}
			got := h.do("GET", "/v1/actors/counter/browser", "", "Authorization", "Bearer browser-test-token-0123456789")
			if !strings.Contains(got.body, want) {
				t.Errorf("state after the call: %d %s, want %s", got.status, got.body, want)
			}
		})
	}
}

func TestLoopbackHost(t *testing.T) {
	tests := []struct {
		host string
		want bool
	}{
		{"127.0.0.1", true}, {"127.0.0.1:8080", true}, {"127.1.2.3:1", true}, {"localhost", true},
		{"LocalHost:8080", true}, {"[::1]:8080", true}, {"[::1]", true}, {"::1", true},
		{"[0:0:0:0:0:0:0:1]:80", true},
		{"evil.example", false}, {"evil.example:8080", false}, {"127.evil.example", false},
		{"localhost.evil.example", false}, {"10.0.0.1:80", false}, {"[::2]:80", false}, {"", false},
	}
	for _, tt := range tests {
		if got := loopbackHost([]byte(tt.host)); got != tt.want {
			t.Errorf("loopbackHost(%q) = %v, want %v", tt.host, got, tt.want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { loopbackHost([]byte("127.0.0.1:8080")) }); n != 0 && !raceEnabled {
		t.Errorf("loopbackHost allocates %v times on a usual host", n)
	}
}
