package router

import "testing"

// The contract's endpoints are out of the pass-through's reach however the path is spelled
// (issue 16, point 1: "%761/invoke" reached the SDK's /v1/invoke with a forged state).
func TestContractPath(t *testing.T) {
	tests := []struct {
		path string
		want bool
	}{
		{"v1/invoke", true}, {"v1/invoke/", true}, {"healthz", true}, {"healthz//", true},
		{"%761/invoke", true}, {"v1%2Finvoke", true}, {"%68ealthz", true}, {"v1/%69nvoke", true},
		{"a/../v1/invoke", true}, {"./healthz", true}, {"//v1//invoke", true}, {"v1\\invoke", true},
		{"%zz", true}, // undecodable: refused
		{"hello", false}, {"v1/invoked", false}, {"v1/invoke/x", false}, {"healthz2", false},
		{"", false}, {"v1", false}, {"%68ello", false}, {"a/b/../c", false},
	}
	for _, tt := range tests {
		if got := contractPath([]byte(tt.path)); got != tt.want {
			t.Errorf("contractPath(%q) = %v, want %v", tt.path, got, tt.want)
		}
	}
}

// Through a real router to a real SDK function: spelled any way, the contract's endpoints
// answer 400 and the actor's state is untouched.
func TestPassThroughCannotReachTheContract(t *testing.T) {
	h := newHarness(t, Config{})
	h.deploy(counterFn, newTestActor())
	h.do("POST", "/v1/actors/counter/victim/add", `{"by":1}`).want(t, 200, `{"value":1}`)
	forged := `{"function":"counter","actor":"victim","action":"add","state":{"value":1000000},"version":"x","payload":{"by":1},"metadata":{}}`
	for _, p := range []string{"%761/invoke", "v1%2Finvoke", "a/..%2Fv1/invoke", "%68ealthz", "v1/invoke/"} {
		method := "POST"
		if p == "%68ealthz" {
			method = "GET"
		}
		if rp := h.do(method, "/v1/functions/counter/"+p, forged); rp.status != 400 {
			t.Errorf("%s /v1/functions/counter/%s: %d %s, want 400", method, p, rp.status, rp.body)
		}
	}
	h.do("GET", "/v1/actors/counter/victim", "").want(t, 200, `{"value":1}`)
}
