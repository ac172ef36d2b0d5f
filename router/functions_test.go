package router

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/knactor/knactor/statecache"
)

type fakeLister []FunctionStatus

func (l fakeLister) FunctionStatuses() []FunctionStatus { return l }

// fakeDeployer records what it was asked to deploy and answers by the manifest's text.
type fakeDeployer struct {
	mu   sync.Mutex
	got  []string
	dirs []string
}

func (d *fakeDeployer) Deploy(_ context.Context, manifest []byte, dir string) ([]Deployment, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.got = append(d.got, string(manifest))
	d.dirs = append(d.dirs, dir)
	switch m := string(manifest); {
	case strings.Contains(m, "bad"):
		return nil, fmt.Errorf("%w: document 1: spec: missing", ErrBadManifest)
	case strings.Contains(m, "conflict"):
		return nil, fmt.Errorf("function %q %w: restart", "x", ErrDeployConflict)
	case strings.Contains(m, "boom"):
		return nil, fmt.Errorf("disk full")
	}
	return []Deployment{{Function: "x", Result: DeployCreated, Warnings: []string{"w"}}}, nil
}

func TestListFunctions(t *testing.T) {
	list := fakeLister{{Function: "counter", ReadyPods: 2, DesiredPods: 3, Panicking: true, ActiveActors: 7, StartingPods: 1}}
	token := "s3cret-token-0123456789"
	h := newHarnessOn(t, Config{AuthTokens: []string{token}}, newDirStore(t), func(o *Options) { o.Functions = list })
	h.do("GET", "/v1/functions", "").want(t, 401, "")
	auth := []string{"Authorization", "Bearer " + token}
	rp := h.do("GET", "/v1/functions", "", auth...)
	rp.want(t, 200, `{"functions":[{"function":"counter","ready_pods":2,"starting_pods":1,"desired_pods":3,"panicking":true,"active_actors":7}]}`)
	if ct := rp.header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("content type %q", ct)
	}
	h.do("DELETE", "/v1/functions", "", auth...).want(t, 405, "")
	// Without a deployer, POST is 404; the pass-through prefix is unaffected.
	rp = h.do("POST", "/v1/functions", "x", append(auth, "Content-Type", "application/yaml")...)
	if rp.status != 404 || !strings.Contains(rp.body, "kubectl apply") {
		t.Fatalf("deploy without deployer: %d %s", rp.status, rp.body)
	}

	empty := newHarness(t, Config{})
	rp = empty.do("GET", "/v1/functions", "")
	if rp.status != 404 || !strings.Contains(rp.body, CodeNotFound) {
		t.Fatalf("list without lister: %d %s", rp.status, rp.body)
	}
	none := newHarnessOn(t, Config{}, newDirStore(t), func(o *Options) { o.Functions = fakeLister(nil) })
	none.do("GET", "/v1/functions", "").want(t, 200, `{"functions":[]}`)
}

func TestDeployFunctions(t *testing.T) {
	d := &fakeDeployer{}
	h := newHarnessOn(t, Config{MaxPayloadBytes: 4096}, newDirStore(t), func(o *Options) { o.Deployer = d })
	yaml := []string{"Content-Type", "application/yaml"}
	tests := []struct {
		name   string
		body   string
		header []string
		status int
		code   string
	}{
		{"ok", "kind: Service", yaml, 200, ""},
		{"json", "{}", []string{"Content-Type", "application/json; charset=utf-8"}, 200, ""},
		{"text/plain is what a browser sends without preflight", "kind: Service", []string{"Content-Type", "text/plain"}, 415, CodeBadRequest},
		{"no content type", "kind: Service", nil, 415, CodeBadRequest},
		{"origin", "kind: Service", append([]string{"Origin", "http://evil.example"}, yaml...), 403, CodeForbidden},
		{"relative dir", "kind: Service", append([]string{HeaderManifestDir, "examples"}, yaml...), 400, CodeBadRequest},
		{"bad manifest", "bad", yaml, 400, CodeBadRequest},
		{"conflict", "conflict", yaml, 409, CodeConflict},
		{"deployer failure", "boom", yaml, 500, CodeInternal},
		{"too large", strings.Repeat("x", 5000), yaml, 413, CodeTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rp := h.do("POST", "/v1/functions", tc.body, tc.header...)
			if rp.status != tc.status {
				t.Fatalf("got %d %s, want %d", rp.status, rp.body, tc.status)
			}
			if tc.code == "" {
				var got struct{ Functions []Deployment }
				if err := json.Unmarshal([]byte(rp.body), &got); err != nil || len(got.Functions) != 1 || got.Functions[0].Result != DeployCreated || got.Functions[0].Warnings[0] != "w" {
					t.Fatalf("answer %s: %v", rp.body, err)
				}
				return
			}
			var e struct {
				Error struct{ Code, Message string }
			}
			if err := json.Unmarshal([]byte(rp.body), &e); err != nil || e.Error.Code != tc.code {
				t.Fatalf("error %s, want code %s", rp.body, tc.code)
			}
		})
	}
	h.do("POST", "/v1/functions", "kind: Service", append([]string{HeaderManifestDir, "/srv/fns"}, yaml...)...).want(t, 200, "")
	d.mu.Lock()
	defer d.mu.Unlock()
	if dir := d.dirs[len(d.dirs)-1]; dir != "/srv/fns" {
		t.Fatalf("dir %q, want /srv/fns", dir)
	}
	for _, m := range d.got {
		if strings.Contains(m, "xxxx") {
			t.Fatal("an oversized manifest reached the deployer")
		}
	}
}

func TestDeployRefusedBeyondLoopbackWithoutTokens(t *testing.T) {
	d := &fakeDeployer{}
	// The harness listens on loopback; the config says where the router was told to listen.
	h := newHarnessOn(t, Config{Listen: "0.0.0.0:0", AllowUnauthenticated: true}, newDirStore(t), func(o *Options) { o.Deployer = d })
	rp := h.do("POST", "/v1/functions", "kind: Service", "Content-Type", "application/yaml")
	if rp.status != 403 || !strings.Contains(rp.body, "auth tokens") {
		t.Fatalf("got %d %s, want 403", rp.status, rp.body)
	}
	if len(d.got) != 0 {
		t.Fatal("the deployer was called")
	}
}

func newDirStore(t *testing.T) statecache.Store {
	t.Helper()
	store, err := statecache.OpenDirStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return store
}
