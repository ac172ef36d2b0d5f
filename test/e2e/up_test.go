package e2e

import (
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/knactor/knactor/test/proctest"
)

// TestReadmeUpRunsTheExamples runs the README's first command as written — `knactor up` in the
// repository root with no flags but a free port and temp dirs — and calls every example.
func TestReadmeUpRunsTheExamples(t *testing.T) {
	skipShort(t)
	port := proctest.FreePort(t)
	listen := "127.0.0.1:" + strconv.Itoa(port)
	dir := t.TempDir()
	p := proctest.Start(t, "up", nil, proctest.Build(t, "cmd/knactor"), "up", "--listen", listen,
		"--state-dir", filepath.Join(dir, "state"), "--log-dir", filepath.Join(dir, "logs"))
	url := "http://" + listen
	proctest.WaitHealthy(t, p, url+"/readyz")
	calls := []struct{ path, body, want string }{
		{"/v1/actors/counter/alice/add", `{"by":2}`, `{"value":2}`},
		{"/v1/actors/pycounter/alice/add", `{"by":3}`, `{"value":3}`},
		{"/v1/actors/chat/lobby/join", `{"name":"ann"}`, `{"members":["ann"]}`},
		{"/v1/functions/hello/hello", ``, `{"hello":"world"}`},
		// The README's tour of timers and workflows.
		{"/v1/actors/auction/lot-1/open", `{"item":"vase","duration_ms":30000,"announce_every_ms":5000}`, ""},
		{"/v1/actors/bidder/ann/bid", `{"auction":"lot-1","amount":10}`, ""},
		{"/v1/actors/pycounter/bob/remind", `{"by":5,"in_ms":10000}`, `{"value":0,"reminder_in_ms":10000}`},
	}
	for _, c := range calls {
		resp, err := client.Post(url+c.path, "application/json", strings.NewReader(c.body))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || c.want != "" && strings.TrimSpace(string(body)) != c.want {
			t.Fatalf("POST %s: %d %s, want %s", c.path, resp.StatusCode, body, c.want)
		}
	}
	resp, err := client.Post(url+"/v1/actors/auction/lot-1/status", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `"high_bidder":"ann"`) {
		t.Fatalf("the auction after ann's bid through the bidder's pipe: %s", body)
	}
	p.Signal(syscall.SIGINT)
	if code := p.ExitCode(); code != 0 {
		t.Fatalf("knactor up exited with %d after Ctrl-C", code)
	}
}
