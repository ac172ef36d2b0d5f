package router

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/knactor/knactor/statecache"
	"github.com/knactor/knactor/test/proctest"
)

// Issue 16, point 6: an actor's owner router changes (a rolling update, a scale, a peer that
// cannot be dialled) while calls run. With write-through caches that confirm every cached read
// with the store, as Kubernetes mode builds them (cmd/knactor's state with several routers, where
// a function annotated write-behind runs write-through), no acknowledged write is lost and none
// applies twice; with write-behind caches acknowledged writes are lost, which is why Kubernetes
// mode refuses write-behind.

// kubeCache is the state cache of Kubernetes mode: write-through, every cached read revalidated
// (cmd/knactor: stateFlags.revalidate, severalRouters).
var kubeCache = statecache.Config{Mode: statecache.WriteThrough, Revalidate: true}

// ownerView is where a router sends an actor's calls.
type ownerView int32

const (
	ownSelf  ownerView = iota // this router owns the actor: it runs the turn
	ownOther                  // the other router owns it: the call is forwarded there
	ownGone                   // a router that is gone owns it: the dial is refused, the turn runs here
)

// ownerPhases are the views of the owner the two routers take in turn: either router owning it,
// the owner gone (both run turns through the dial fallback), and the moments while routers
// come and go when they disagree (both run turns, or each forwards to the other).
var ownerPhases = [][2]ownerView{
	{ownSelf, ownOther}, {ownOther, ownSelf}, {ownGone, ownGone}, {ownSelf, ownSelf}, {ownOther, ownOther},
}

// movingOwnerPair is two routers on one store, each with its own cache configured by cc, whose
// views of every actor's owner are views (set with setPhase).
type movingOwnerPair struct {
	routers [2]*harness
	addrs   [2]atomic.Value // each router's host:port, set once both run
	views   [2]atomic.Int32 // each router's ownerView
}

func newMovingOwnerPair(t *testing.T, cc statecache.Config) *movingOwnerPair {
	t.Helper()
	store := localStore(t)
	gone := proctest.ClosedAddr(t)
	p := &movingOwnerPair{}
	for i := range p.routers {
		peers := peersFunc(func(string) (string, bool) {
			switch ownerView(p.views[i].Load()) {
			case ownOther:
				return p.addrs[1-i].Load().(string), true
			case ownGone:
				return gone, true
			}
			return "", false
		})
		p.routers[i] = newHarnessCache(t, peerConfig, store, cc, func(o *Options) { o.Peers = peers })
	}
	a := newTestActor()
	for i, h := range p.routers {
		p.addrs[i].Store(strings.TrimPrefix(h.url, "http://"))
		h.deploy(counterFn, a)
	}
	p.setPhase(ownerPhases[0])
	return p
}

func (p *movingOwnerPair) setPhase(views [2]ownerView) {
	for i, v := range views {
		p.views[i].Store(int32(v))
	}
}

// postAdd posts an add of by to actor through h with an idempotency key, a turn that takes ms
// milliseconds (slow-add). err is a transport error (the call may or may not have run).
func postAdd(client *http.Client, h *harness, actor string, by, ms int, key string) (status int, body string, replayed bool, err error) {
	req, err := http.NewRequest("POST", h.url+"/v1/actors/counter/"+actor+"/slow-add", strings.NewReader(fmt.Sprintf(`{"by":%d,"ms":%d}`, by, ms)))
	if err != nil {
		return 0, "", false, err
	}
	req.Header.Set(HeaderIdempotencyKey, key)
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", false, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header.Get(HeaderReplayed) == "true", err
}

// retryOutcome reports whether a caller retries a call's outcome with its key: a transport error
// or a 5xx (a timeout, a forward that broke, the store unavailable) leave open whether it ran; a
// 429, or a 409 version_conflict (two routers ran the actor's turns at once, while they disagreed
// about its owner, and this one lost every attempt), say it did not run and to retry.
func retryOutcome(status int, body string, err error) bool {
	return err != nil || status >= 500 || status == http.StatusTooManyRequests ||
		(status == http.StatusConflict && strings.Contains(body, `"code":"`+CodeVersionConflict+`"`))
}

// Two routers share one store while every actor's owner moves between them every few
// milliseconds, to a router that is gone (the dial fallback runs the turn on the router that has
// the call) and through moments where they disagree, and 8 callers drive adds through both
// routers on a handful of actors. Each add carries its own idempotency key, and an outcome that
// leaves open whether it ran, or says to retry (retryOutcome), is retried with it (on the other
// router every second try) until it is answered 200; one add in eight takes 40 ms and its first
// try gives up after 15 ms, so retries of calls that did run happen. Then each actor's value is
// exactly the sum of its acknowledged adds: none lost, none applied twice. The caches are
// Kubernetes mode's (kubeCache).
func TestOwnershipMovesUnderLoadLoseNoWrite(t *testing.T) {
	load, actors := 3*time.Second, 5
	if testing.Short() {
		load, actors = 700*time.Millisecond, 3
	}
	const callers = 8
	p := newMovingOwnerPair(t, kubeCache)

	stop := make(chan struct{})
	var flips atomic.Int64
	flipped := make(chan struct{})
	go func() { // the owner moves every 1-4 ms, through every phase
		defer close(flipped)
		rng := rand.New(rand.NewPCG(1, 6))
		for i := 1; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond + time.Duration(rng.IntN(3000))*time.Microsecond):
			}
			p.setPhase(ownerPhases[i%len(ownerPhases)])
			flips.Add(1)
		}
	}()

	acked := make([]atomic.Int64, actors) // per actor: the sum of the adds answered 200
	var calls, retries, replays atomic.Int64
	client := &http.Client{Timeout: 5 * time.Second}
	impatient := &http.Client{Timeout: 15 * time.Millisecond} // gives up on a 40 ms add
	deadline := time.Now().Add(load)
	var wg sync.WaitGroup
	for c := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(c), 16))
			for n := 0; time.Now().Before(deadline); n++ {
				actor, by, key := rng.IntN(actors), 1+rng.IntN(3), fmt.Sprintf("caller-%d-add-%d", c, n)
				ms, first := rng.IntN(3), client
				if rng.IntN(8) == 0 {
					ms, first = 40, impatient
				}
				giveUp := time.Now().Add(20 * time.Second)
				for try := 0; ; try++ {
					h, cl := p.routers[(c+try/2)%2], client
					if try == 0 {
						cl = first
					}
					status, body, replayed, err := postAdd(cl, h, fmt.Sprint("a", actor), by, ms, key)
					if !retryOutcome(status, body, err) {
						if status != http.StatusOK {
							t.Errorf("add %s via router %d: %d %s", key, (c+try/2)%2, status, body)
							return
						}
						acked[actor].Add(int64(by))
						calls.Add(1)
						if replayed {
							replays.Add(1)
						}
						break
					}
					if time.Now().After(giveUp) {
						t.Errorf("add %s still ambiguous after %d tries: %d %s %v", key, try+1, status, body, err)
						return
					}
					retries.Add(1)
					time.Sleep(time.Millisecond)
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	<-flipped
	p.setPhase(ownerPhases[0])
	t.Logf("%d adds acknowledged over %d owner moves; %d answers retried, %d answered as replays",
		calls.Load(), flips.Load(), retries.Load(), replays.Load())
	if calls.Load() < int64(actors) || flips.Load() < 50 || retries.Load() == 0 {
		t.Fatalf("too little load to prove anything: %d adds, %d owner moves, %d retries", calls.Load(), flips.Load(), retries.Load())
	}

	for i := range actors {
		want := acked[i].Load()
		for r, h := range p.routers { // each router's cache agrees with the store
			rp := h.do("GET", fmt.Sprintf("/v1/actors/counter/a%d", i), "")
			var got counterState
			if rp.status != http.StatusOK || json.Unmarshal([]byte(rp.body), &got) != nil {
				t.Fatalf("actor a%d via router %d: %d %s", i, r, rp.status, rp.body)
			}
			if got.Value != want {
				t.Errorf("actor a%d via router %d holds %d, but adds of %d were acknowledged (%+d)", i, r, got.Value, want, got.Value-want)
			}
		}
	}
}

// Why Kubernetes mode refuses write-behind: with write-behind caches, an add acknowledged by the
// owner but not yet flushed is invisible to the next owner, which answers from the stale store
// state; when both flush, the later flush conflicts and is dropped. Two adds were acknowledged,
// one survives. Flushes are explicit (the interval is an hour), so the loss is certain.
func TestWriteBehindLosesAcknowledgedWritesWhenOwnershipMoves(t *testing.T) {
	p := newMovingOwnerPair(t, statecache.Config{Mode: statecache.WriteBehind, FlushInterval: time.Hour})
	a, b := p.routers[0], p.routers[1]

	p.setPhase([2]ownerView{ownSelf, ownOther}) // a owns the actor: b forwards to it
	b.do("POST", "/v1/actors/counter/x/add", `{"by":1}`).want(t, 200, `{"value":1}`)
	p.setPhase([2]ownerView{ownOther, ownSelf}) // the actor moves to b
	// b has not seen a's buffered add: its acknowledged answer already misses it.
	a.do("POST", "/v1/actors/counter/x/add", `{"by":1}`).want(t, 200, `{"value":1}`)

	ctx := context.Background()
	if err := a.cache.Flush(ctx); err != nil {
		t.Fatalf("the first owner's flush: %v", err)
	}
	_ = b.cache.Flush(ctx) // conflicts with a's: b's acknowledged add is dropped
	if lost := b.cache.Stats().LostConflicts; lost != 1 {
		t.Errorf("the new owner dropped %d buffered writes as conflicts, want 1", lost)
	}
	for r, h := range p.routers {
		if rp := h.do("GET", "/v1/actors/counter/x", ""); rp.status != 200 || rp.body != `{"value":1}` {
			t.Errorf("via router %d the actor is %d %s, want the loss observed: {\"value\":1} after 2 acknowledged adds", r, rp.status, rp.body)
		}
	}
}
