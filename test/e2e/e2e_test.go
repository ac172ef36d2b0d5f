// Package e2e runs knactor end to end: the knactor binary, real function processes built from
// examples/, a real MinIO, real HTTP and WebSocket clients. `go test -short` skips it.
package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/knactor/knactor/test/miniotest"
	"github.com/knactor/knactor/test/proctest"
)

func TestMain(m *testing.M) { proctest.Main(m) }

func skipShort(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: builds and runs real processes; run without -short")
	}
}

// startCounter runs a counter pod and returns its address.
func startCounter(t *testing.T) string {
	t.Helper()
	port := proctest.FreePort(t)
	p := proctest.Start(t, "counter-"+strconv.Itoa(port), []string{"PORT=" + strconv.Itoa(port)}, proctest.Build(t, "examples/counter"))
	addr := "127.0.0.1:" + strconv.Itoa(port)
	proctest.WaitHealthy(t, p, "http://"+addr+"/healthz")
	return addr
}

// routerProc is a `knactor router` process.
type routerProc struct {
	*proctest.Process
	url string
}

func startRouter(t *testing.T, env []string, args ...string) routerProc {
	t.Helper()
	port := proctest.FreePort(t)
	listen := "127.0.0.1:" + strconv.Itoa(port)
	p := proctest.Start(t, "router-"+strconv.Itoa(port), env, proctest.Build(t, "cmd/knactor"), append([]string{"router", "--listen", listen}, args...)...)
	url := "http://" + listen
	proctest.WaitHealthy(t, p, url+"/readyz")
	return routerProc{Process: p, url: url}
}

// minioRouterArgs point a router at srv with write-through state.
func minioRouterArgs(srv *miniotest.Server) (env, args []string) {
	return []string{"KNACTOR_S3_ACCESS_KEY=" + miniotest.AccessKey, "KNACTOR_S3_SECRET_KEY=" + miniotest.SecretKey},
		[]string{"--s3-endpoint", srv.Endpoint, "--s3-bucket", "e2e", "--s3-create-bucket"}
}

var client = &http.Client{Timeout: 30 * time.Second}

// add increments a counter actor and returns the new value and the pod that ran the turn.
func add(r routerProc, actor string, by int) (value int, pod string, err error) {
	resp, err := client.Post(r.url+"/v1/actors/counter/"+actor+"/add", "application/json", strings.NewReader(fmt.Sprintf(`{"by":%d}`, by)))
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return 0, "", fmt.Errorf("add %s: %d %s", actor, resp.StatusCode, body)
	}
	var v struct{ Value int }
	if err := json.Unmarshal(body, &v); err != nil {
		return 0, "", err
	}
	return v.Value, resp.Header.Get("X-Knactor-Pod"), nil
}

// stateOf reads the actor's state through the router (0 for an actor without state).
func stateOf(t *testing.T, r routerProc, actor string) int {
	t.Helper()
	resp, err := client.Get(r.url + "/v1/actors/counter/" + actor)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == 404 {
		return 0
	}
	var v struct{ Value int }
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil || resp.StatusCode != 200 {
		t.Fatalf("state of %s: %d %v", actor, resp.StatusCode, err)
	}
	return v.Value
}

func TestConcurrentCallsEndAtExactCountsAndStickToOnePod(t *testing.T) {
	skipShort(t)
	srv := miniotest.Start(t)
	pods := []string{startCounter(t), startCounter(t), startCounter(t)}
	env, args := minioRouterArgs(srv)
	r := startRouter(t, env, append(args, "--function", "counter="+strings.Join(pods, ","))...)

	const actors, calls, workers = 50, 1000, 64
	var (
		mu     sync.Mutex
		owner  = map[string]map[string]int{} // actor → pod → calls
		errs   []error
		wg     sync.WaitGroup
		next   = make(chan int)
		byPods = map[string]int{}
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				actor := "user-" + strconv.Itoa(i%actors)
				_, pod, err := add(r, actor, 1)
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				} else {
					if owner[actor] == nil {
						owner[actor] = map[string]int{}
					}
					owner[actor][pod]++
					byPods[pod]++
				}
				mu.Unlock()
			}
		}()
	}
	for i := range calls {
		next <- i
	}
	close(next)
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d of %d calls failed, first: %v", len(errs), calls, errs[0])
	}
	for a := range actors {
		actor := "user-" + strconv.Itoa(a)
		if got := stateOf(t, r, actor); got != calls/actors {
			t.Errorf("%s = %d, want %d", actor, got, calls/actors)
		}
		if len(owner[actor]) != 1 {
			t.Errorf("%s ran on pods %v, want one owner", actor, owner[actor])
		}
	}
	if len(byPods) != len(pods) {
		t.Errorf("turns ran on %d pods (%v), want all %d to own some actors", len(byPods), byPods, len(pods))
	}
}

func TestRouterKilledWithSIGKILLKeepsAcknowledgedWrites(t *testing.T) {
	skipShort(t)
	srv := miniotest.Start(t)
	pod := startCounter(t)
	env, args := minioRouterArgs(srv)
	args = append(args, "--function", "counter="+pod)
	r := startRouter(t, env, args...)

	const actors = 10
	var (
		mu    sync.Mutex
		acked = map[string]int{} // highest value each actor acknowledged
		tried = map[string]int{} // calls sent, acknowledged or not
		wg    sync.WaitGroup
		stop  = make(chan struct{})
		total int
	)
	for a := range actors {
		actor := "acct-" + strconv.Itoa(a)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				mu.Lock()
				tried[actor]++
				mu.Unlock()
				v, _, err := add(r, actor, 1)
				if err != nil {
					return // the router is gone
				}
				mu.Lock()
				acked[actor] = max(acked[actor], v)
				total++
				mu.Unlock()
			}
		}()
	}
	for {
		mu.Lock()
		n := total
		mu.Unlock()
		if n >= 300 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	r.Signal(syscall.SIGKILL) // mid-load, no chance to flush anything
	close(stop)
	wg.Wait()

	r2 := startRouter(t, env, args...)
	for a := range actors {
		actor := "acct-" + strconv.Itoa(a)
		got := stateOf(t, r2, actor)
		// Every acknowledged increment is there; a call cut off by the kill may have committed
		// without its reply reaching us, never more than the calls sent.
		if got < acked[actor] || got > tried[actor] {
			t.Errorf("%s = %d after restart, acknowledged %d of %d sent", actor, got, acked[actor], tried[actor])
		}
	}
}

func TestWebSocketSeesRepliesAndOtherClientsChanges(t *testing.T) {
	skipShort(t)
	pod := startCounter(t)
	r := startRouter(t, nil, "--state-dir", t.TempDir(), "--function", "counter="+pod)
	wsURL := "ws" + strings.TrimPrefix(r.url, "http") + "/v1/actors/counter/room/ws?subscribe=1"
	c, _, err := websocket.DefaultDialer.Dial(wsURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	read := func() map[string]any {
		t.Helper()
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		var m map[string]any
		if err := c.ReadJSON(&m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	if err := c.WriteJSON(map[string]any{"id": "mine", "action": "add", "payload": map[string]int{"by": 2}}); err != nil {
		t.Fatal(err)
	}
	// Its own call: a push of the new state and the reply, in either order.
	seen := map[string]bool{}
	for range 2 {
		m := read()
		switch {
		case m["id"] == "mine" && m["reply"].(map[string]any)["value"] == 2.0:
			seen["reply"] = true
		case m["event"] == "state" && m["state"].(map[string]any)["value"] == 2.0:
			seen["push"] = true
		default:
			t.Fatalf("unexpected message %v", m)
		}
	}
	if !seen["reply"] || !seen["push"] {
		t.Fatalf("saw %v, want the reply and the push", seen)
	}
	if v, _, err := add(r, "room", 3); err != nil || v != 5 {
		t.Fatalf("HTTP add: %d %v", v, err)
	}
	if m := read(); m["event"] != "state" || m["state"].(map[string]any)["value"] != 5.0 {
		t.Fatalf("push of another client's call: %v", m)
	}
	// A graceful stop closes the socket with 1001.
	r.Signal(syscall.SIGTERM)
	if r.ExitCode() != 0 {
		t.Fatalf("router exited with %d after SIGTERM", r.ExitCode())
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := c.ReadMessage(); !websocket.IsCloseError(err, websocket.CloseGoingAway) {
		t.Fatalf("after SIGTERM: %v, want close 1001", err)
	}
}
