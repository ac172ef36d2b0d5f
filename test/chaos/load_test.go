package chaos

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/knactor/knactor/statecache"
)

// attemptTimeout bounds one HTTP attempt of the load's client: longer than the routers'
// --store-timeout in these tests, so a call that waits out a store fault is not cut short.
const attemptTimeout = 20 * time.Second

// retryGiveUp bounds how long a keyed call is retried before the test fails: the faults last
// seconds, so a call that cannot succeed in a minute means something is stuck.
const retryGiveUp = 60 * time.Second

// load is a set of callers that add 1 to counter actors through one or more routers.
//
// A keyed load sends each distinct call with its own Idempotency-Key and retries it, with the
// same key, until it succeeds. A keyless load sends each call once and counts the answers.
type load struct {
	name    string
	keyed   bool
	actors  int
	routers func() []string // the routers' base URLs now (they change as routers restart)
	client  *http.Client

	next atomic.Int64 // distinct calls started

	mu       sync.Mutex
	expected map[string]int // keyed: distinct calls per actor
	acked    int            // calls answered 200
	failed   int            // keyless: calls that failed (not retried)
	attempts int            // HTTP attempts that failed (keyed: each was retried)
	replays  int            // answers marked Idempotent-Replayed
	gaveUp   []error        // keyed calls that never succeeded: always a test failure
}

func newLoad(name string, keyed bool, actors int, routers func() []string) *load {
	return &load{
		name: name, keyed: keyed, actors: actors, routers: routers,
		client:   &http.Client{Timeout: attemptTimeout, Transport: &http.Transport{MaxIdleConnsPerHost: 64}},
		expected: map[string]int{},
	}
}

func (l *load) actor(i int64) string { return l.name + "-" + strconv.FormatInt(i%int64(l.actors), 10) }

// start runs workers callers until stop is closed; the returned func waits for them. A keyed
// caller finishes (retries) the call it is on before it stops.
func (l *load) start(workers int, stop <-chan struct{}) (wait func()) {
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
			for {
				select {
				case <-stop:
					return
				default:
				}
				l.call(rng, l.next.Add(1))
			}
		}()
	}
	return wg.Wait
}

// call makes distinct call i.
func (l *load) call(rng *rand.Rand, i int64) {
	actor := l.actor(i)
	key := ""
	if l.keyed {
		key = fmt.Sprintf("%s-op-%d", l.name, i)
	}
	deadline := time.Now().Add(retryGiveUp)
	for {
		urls := l.routers()
		url := urls[rng.IntN(len(urls))]
		replayed, err := l.send(url, actor, key)
		l.mu.Lock()
		switch {
		case err == nil:
			l.acked++
			if replayed {
				l.replays++
			}
			if l.keyed {
				l.expected[actor]++
			}
		case !l.keyed:
			l.failed++
		default:
			l.attempts++
			if time.Now().After(deadline) {
				l.gaveUp = append(l.gaveUp, fmt.Errorf("call %s on %s: %w", key, actor, err))
				// It may still have committed: count it so lost and twice stay honest.
				l.expected[actor]++
				err = nil
			}
		}
		l.mu.Unlock()
		if err != nil {
			time.Sleep(20 * time.Millisecond) // a failed attempt: give a restarting router a moment
		}
		if err == nil || !l.keyed {
			return
		}
	}
}

// send makes one HTTP attempt; replayed reports the router's Idempotent-Replayed.
func (l *load) send(url, actor, key string) (replayed bool, err error) {
	_, replayed, err = l.sendReply(url, actor, key)
	return replayed, err
}

// sendReply is send that also returns the reply.
func (l *load) sendReply(url, actor, key string) (reply string, replayed bool, err error) {
	req, err := http.NewRequest(http.MethodPost, url+"/v1/actors/counter/"+actor+"/add", strings.NewReader(`{"by":1}`))
	if err != nil {
		return "", false, err
	}
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := l.client.Do(req)
	if err != nil {
		return "", false, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", false, err
	}
	if resp.StatusCode != http.StatusOK {
		return "", false, fmt.Errorf("HTTP %d: %s", resp.StatusCode, body)
	}
	return strings.TrimSpace(string(body)), resp.Header.Get("Idempotent-Replayed") == "true", nil
}

// storedValues reads every actor of the load from the store itself (not through a router,
// whose cache could be stale with several routers).
func storedValues(t *testing.T, store statecache.Store, name string, actors int) map[string]int {
	t.Helper()
	got := map[string]int{}
	for i := range actors {
		actor := name + "-" + strconv.Itoa(i)
		v, err := readRecord(context.Background(), store, actor)
		if err != nil {
			t.Fatalf("reading %s: %v", actor, err)
		}
		got[actor] = v
	}
	return got
}

// sendToAll makes distinct call i of a keyed load on every router at once, with one key,
// retrying each router until it answers 200. It returns a description when the routers'
// replies differ (they must not: one ran the call, the others replayed it).
func (l *load) sendToAll(i int64) (mismatch string) {
	actor := l.actor(i)
	key := fmt.Sprintf("%s-op-%d", l.name, i)
	urls := l.routers()
	replies := make([]string, len(urls))
	var wg sync.WaitGroup
	for j, url := range urls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			deadline := time.Now().Add(retryGiveUp)
			for {
				reply, replayed, err := l.sendReply(url, actor, key)
				l.mu.Lock()
				if err == nil && replayed {
					l.replays++
				}
				if err != nil {
					l.attempts++
				}
				l.mu.Unlock()
				if err == nil || time.Now().After(deadline) {
					replies[j] = reply
					if err != nil {
						replies[j] = "error: " + err.Error()
					}
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	l.mu.Lock()
	l.expected[actor]++
	l.acked++
	l.mu.Unlock()
	for _, r := range replies[1:] {
		if r != replies[0] {
			return fmt.Sprintf("key %s: %q vs %q", key, replies[0], r)
		}
	}
	return ""
}

// result is one chaos run's figures: a row of docs/reliability.md.
type result struct {
	test, faults           string
	duration               time.Duration
	calls, failedAttempts  int // keyed: distinct calls, and attempts that failed and were retried
	replays, lost, twice   int
	acked, failed, stored  int // keyless
	keylessOK, keylessSeen bool
}

// check compares the stores' totals with the loads' and fails t on any loss or double apply.
func check(t *testing.T, store statecache.Store, keyed, keyless *load) result {
	t.Helper()
	var res result
	if keyed != nil {
		stored := storedValues(t, store, keyed.name, keyed.actors)
		keyed.mu.Lock()
		for actor, want := range keyed.expected {
			got := stored[actor]
			res.lost += max(0, want-got)
			res.twice += max(0, got-want)
			res.calls += want
		}
		res.failedAttempts, res.replays = keyed.attempts, keyed.replays
		gaveUp := keyed.gaveUp
		keyed.mu.Unlock()
		if len(gaveUp) > 0 {
			t.Errorf("%d keyed calls never succeeded, e.g. %v", len(gaveUp), gaveUp[0])
		}
		if res.lost != 0 || res.twice != 0 {
			t.Errorf("keyed calls: %d lost, %d applied twice (of %d distinct calls)", res.lost, res.twice, res.calls)
		}
	}
	if keyless != nil {
		stored := storedValues(t, store, keyless.name, keyless.actors)
		for _, v := range stored {
			res.stored += v
		}
		keyless.mu.Lock()
		res.acked, res.failed = keyless.acked, keyless.failed
		keyless.mu.Unlock()
		res.keylessSeen = true
		res.keylessOK = res.stored >= res.acked && res.stored <= res.acked+res.failed
		if !res.keylessOK {
			t.Errorf("keyless calls: stored %d, want between acknowledged %d and acknowledged+failed %d", res.stored, res.acked, res.acked+res.failed)
		}
	}
	return res
}

// report logs a run's figures (res, with the faults it survived since start) and, with
// KNACTOR_CHAOS_DOCS set, writes its row into that file's table (between the chaos:begin and
// chaos:end markers), replacing the test's earlier row.
func report(t *testing.T, start time.Time, faults string, res result) {
	t.Helper()
	res.test, res.faults, res.duration = t.Name(), faults, time.Since(start)
	row := res.row()
	t.Logf("figures: %s", row)
	path := os.Getenv("KNACTOR_CHAOS_DOCS")
	if path == "" {
		return
	}
	docMu.Lock()
	defer docMu.Unlock()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("KNACTOR_CHAOS_DOCS: %v", err)
	}
	const begin, end = "<!-- chaos:begin -->\n", "<!-- chaos:end -->"
	doc := string(b)
	i, j := strings.Index(doc, begin), strings.Index(doc, end)
	if i < 0 || j < i {
		t.Fatalf("%s has no %q ... %q section", path, strings.TrimSpace(begin), end)
	}
	var rows []string
	for _, line := range strings.Split(doc[i+len(begin):j], "\n") {
		if strings.HasPrefix(line, "| `Test") && !strings.HasPrefix(line, "| `"+res.test+"`") {
			rows = append(rows, line)
		}
	}
	rows = append(rows, row)
	slices.Sort(rows)
	table := tableHeader + strings.Join(rows, "\n") + "\n"
	if err := os.WriteFile(path, []byte(doc[:i+len(begin)]+table+doc[j:]), 0o644); err != nil {
		t.Fatal(err)
	}
}

var docMu sync.Mutex

const tableHeader = "| test | faults | time | keyed calls | failed attempts (retried) | replays | lost | applied twice | keyless acknowledged | keyless failed | keyless stored |\n" +
	"|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n"

func (r result) row() string {
	keyless := "| – | – | –"
	if r.keylessSeen {
		keyless = fmt.Sprintf("| %d | %d | %d", r.acked, r.failed, r.stored)
	}
	return fmt.Sprintf("| `%s` | %s | %.0f s | %d | %d | %d | **%d** | **%d** %s |",
		r.test, r.faults, r.duration.Seconds(), r.calls, r.failedAttempts, r.replays, r.lost, r.twice, keyless)
}
