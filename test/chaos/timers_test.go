package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/knactor/knactor/router/record"
	"github.com/knactor/knactor/statecache"
	"github.com/knactor/knactor/test/miniotest"
	"github.com/knactor/knactor/test/proctest"
)

// (f) Durable timers through faults: 200 auctions on a router over MinIO, each with a close
// timer due while MinIO is frozen (SIGSTOP) and a repeating announce timer; after the freeze the
// router is SIGKILLed and started again. Every auction must close exactly once, read straight
// from the store.
func TestTimersThroughAStoreFreezeAndARouterKill(t *testing.T) {
	skipShort(t)
	start := time.Now()
	srv := miniotest.Start(t)
	port := proctest.FreePort(t)
	pod := "127.0.0.1:" + strconv.Itoa(port)
	p := proctest.Start(t, "auction", []string{"PORT=" + strconv.Itoa(port)}, proctest.Build(t, "examples/auction"))
	proctest.WaitHealthy(t, p, "http://"+pod+"/healthz")
	r := newServer(t, "router", s3Env(), "router", "--function", "auction="+pod, "--s3-endpoint", srv.Endpoint,
		"--s3-bucket", bucket, "--s3-create-bucket", "--log-level", "warn",
		"--s3-timeout", "1s", "--s3-attempts", "2", "--store-timeout", "2s")

	const lots = 200
	// Room for the opens and bids even when the other chaos tests share the two cores.
	closesAt := time.Now().Add(10 * time.Second)
	open := fmt.Sprintf(`{"item":"lamp","closes_at":%q,"announce_every_ms":2000}`, closesAt.UTC().Format(time.RFC3339Nano))
	var wg sync.WaitGroup
	for i := range lots {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lot := "lot-" + strconv.Itoa(i)
			post(t, r.url(), lot, "open", open)
			post(t, r.url(), lot, "bid", fmt.Sprintf(`{"bidder":"b%d","amount":%d}`, i, i+1))
		}()
		if i%16 == 15 {
			wg.Wait()
		}
	}
	wg.Wait()
	if time.Until(closesAt) < 2*time.Second {
		t.Fatalf("opening %d auctions took until %v before they close: the machine is too busy for this test's schedule", lots, time.Until(closesAt))
	}
	time.Sleep(time.Until(closesAt.Add(-time.Second)))
	if err := srv.Freeze(); err != nil { // the close timers come due while MinIO is frozen
		t.Fatal(err)
	}
	time.Sleep(4 * time.Second)
	if err := srv.Thaw(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	r.kill()
	r.start()

	store := s3Store(t, srv.Endpoint)
	var res result
	res.calls = lots
	deadline := time.Now().Add(60 * time.Second)
	for {
		res.lost, res.twice = 0, 0
		wrong := 0
		for i := range lots {
			a := storedAuction(t, store, "lot-"+strconv.Itoa(i))
			switch {
			case a.Closings == 0:
				res.lost++
			case a.Closings > 1:
				res.twice++
			case a.Winner != "b"+strconv.Itoa(i):
				wrong++
			}
		}
		if res.lost == 0 || time.Now().After(deadline) {
			if wrong > 0 {
				t.Errorf("%d auctions closed with the wrong winner", wrong)
			}
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if res.lost != 0 || res.twice != 0 {
		t.Errorf("of %d auctions, %d never closed and %d closed more than once", lots, res.lost, res.twice)
	}
	report(t, start, fmt.Sprintf("%d auctions' close timers due during a 4 s MinIO freeze (SIGSTOP), router SIGKILLed after; `keyed calls` = timers, each must close its auction once", lots), res)
}

// auctionState is the stored state of an examples/auction actor.
type auctionState struct {
	Winner   string `json:"winner"`
	Closings int    `json:"closings"`
}

// storedAuction reads an auction's state straight from the store.
func storedAuction(t *testing.T, store statecache.Store, id string) auctionState {
	t.Helper()
	e, err := store.Get(context.Background(), statecache.Key{Function: "auction", ID: id})
	if err != nil {
		t.Fatalf("reading %s: %v", id, err)
	}
	rec, err := record.Decode(e.Value, e.Exists)
	if err != nil {
		t.Fatalf("decoding %s: %v", id, err)
	}
	var a auctionState
	if rec.HasState {
		if err := json.Unmarshal(rec.State, &a); err != nil {
			t.Fatalf("state of %s: %v", id, err)
		}
	}
	return a
}

// post calls an auction's action and fails t unless it answers 200.
func post(t *testing.T, url, lot, action, body string) {
	resp, err := http.Post(url+"/v1/actors/auction/"+lot+"/"+action, "application/json", bytes.NewBufferString(body))
	if err != nil {
		t.Errorf("%s %s: %v", lot, action, err)
		return
	}
	defer resp.Body.Close()
	if b, _ := io.ReadAll(resp.Body); resp.StatusCode != 200 {
		t.Errorf("%s %s: %d %s", lot, action, resp.StatusCode, b)
	}
}
