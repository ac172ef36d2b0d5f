package router

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/knactor/knactor/router/routing"
	"github.com/knactor/knactor/statecache"
)

// BenchmarkTimers arms n timers of n actors, due at one instant (burst) or spread evenly over
// a span, then measures how fast the router fires them (timers/s, from the first due time to
// the last firing) and how late (p50 and p99 of the function's clock at the firing minus the
// timer's due time), over the local store through a write-through cache, as `knactor up` runs:
//
//	go test -run XXX -bench Timers -benchtime 1x ./router/
func BenchmarkTimers(b *testing.B) {
	cases := []struct {
		n      int
		spread time.Duration
	}{{10_000, 0}, {10_000, 10 * time.Second}, {100_000, 0}, {100_000, 20 * time.Second}}
	for _, tc := range cases {
		n := tc.n
		name := "timers=" + strconv.Itoa(n) + "/burst"
		if tc.spread > 0 {
			name = "timers=" + strconv.Itoa(n) + "/spread=" + tc.spread.String()
		}
		b.Run(name, func(b *testing.B) {
			store, err := statecache.OpenPebbleStore(b.TempDir(), statecache.PebbleOptions{})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { store.Close() })
			cache, err := statecache.NewCache(store, statecache.Config{MaxBytes: 256 << 20})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = cache.Close(context.Background()) })
			var (
				mu   sync.Mutex
				late []time.Duration
				last time.Time
			)
			rig := newBenchRig(b, cache)
			rig.r.backends.(*routing.Static).Set(routing.Function{Name: "alarm"}, rig.pod("alarm:1", func(ctx *fasthttp.RequestCtx) {
				var env struct {
					Action   string
					Payload  struct{ At string }
					Metadata map[string]string
				}
				if err := json.Unmarshal(ctx.PostBody(), &env); err != nil {
					ctx.SetStatusCode(400)
					return
				}
				ctx.SetContentType("application/json")
				if env.Action == "arm" {
					fmt.Fprintf(ctx, `{"timers":[{"name":"t","action":"ring","at":%q}]}`, env.Payload.At)
					return
				}
				now := time.Now()
				due, _ := time.Parse(time.RFC3339Nano, env.Metadata["timer_due"])
				mu.Lock()
				late = append(late, now.Sub(due))
				last = now
				mu.Unlock()
				ctx.SetBodyString(`{}`)
			}))
			for i := range b.N {
				mu.Lock()
				late, last = late[:0], time.Time{}
				mu.Unlock()
				// Arm them for an instant a little after they can all be armed, or spread from it.
				due := time.Now().Add(time.Duration(n/5_000+2) * time.Second).Truncate(time.Second)
				dueOf := func(a int) []byte {
					at := due.Add(tc.spread * time.Duration(a) / time.Duration(n))
					return []byte(fmt.Sprintf(`{"at":%q}`, at.UTC().Format(time.RFC3339Nano)))
				}
				var next sync.WaitGroup
				work := make(chan int)
				for range 64 {
					next.Add(1)
					go func() {
						defer next.Done()
						req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
						defer fasthttp.ReleaseRequest(req)
						defer fasthttp.ReleaseResponse(resp)
						for a := range work {
							req.Reset()
							req.SetRequestURI(fmt.Sprintf("http://router/v1/actors/alarm/r%d-a%d/arm", i, a))
							req.Header.SetMethod("POST")
							req.SetBody(dueOf(a))
							rig.do(b, req, resp)
						}
					}()
				}
				for a := range n {
					work <- a
				}
				close(work)
				next.Wait()
				if time.Now().After(due) {
					b.Fatalf("arming %d timers took past their due time", n)
				}
				b.ResetTimer()
				deadline := due.Add(tc.spread + 5*time.Minute)
				for {
					mu.Lock()
					done := len(late)
					mu.Unlock()
					if done >= n || time.Now().After(deadline) {
						break
					}
					time.Sleep(10 * time.Millisecond)
				}
				b.StopTimer()
				mu.Lock()
				if len(late) != n {
					b.Fatalf("%d of %d timers fired", len(late), n)
				}
				slices.Sort(late)
				b.ReportMetric(float64(n)/last.Sub(due).Seconds(), "timers/s")
				b.ReportMetric(float64(late[n/2].Microseconds())/1000, "p50-late-ms")
				b.ReportMetric(float64(late[n*99/100].Microseconds())/1000, "p99-late-ms")
				mu.Unlock()
			}
		})
	}
}
