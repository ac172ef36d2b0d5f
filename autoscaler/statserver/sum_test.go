package statserver_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/knactor/knactor/autoscaler/statserver"
	"github.com/knactor/knactor/router/stats"
	"github.com/knactor/knactor/test/proctest"
)

func TestRoutersAddUp(t *testing.T) {
	type routerLoad struct{ held, done int }
	tests := []struct {
		name    string
		routers []routerLoad
	}{
		{"one router", []routerLoad{{held: 2, done: 3}}},
		{"two routers add up", []routerLoad{{held: 2, done: 3}, {held: 1, done: 4}}},
		{"three routers, one idle", []routerLoad{{held: 3, done: 1}, {held: 0, done: 0}, {held: 5, done: 0}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, statserver.Config{})
			var sims []*routerSim
			var held, requests int
			for i, load := range tc.routers {
				name := fmt.Sprintf("router-%d", i)
				sims = append(sims, startRouter(t, e, name, func(rec *stats.Recorder) {
					hold(rec, "f", name+"-a", load.held)
					complete(rec, "f", load.done)
				}))
				held += load.held
				requests += load.held + load.done
			}
			// The first message of each (on connecting) covers no time; one tick later the
			// second covers one second with the held requests in flight throughout.
			for _, r := range sims {
				e.waitMessages(t, r.name, 1)
				r.clk.Step(time.Second)
				e.waitMessages(t, r.name, 2)
			}
			if got := e.metric(t, "knactor_autoscaler_routers", ""); got != float64(len(sims)) {
				t.Errorf("routers gauge = %v, want %d", got, len(sims))
			}

			got := e.srv.Snapshot("f")
			want := stats.Snapshot{Function: "f", Time: t0, Window: time.Second, InFlight: held,
				AverageConcurrency: float64(held), Requests: uint64(requests), ActiveActors: held}
			if got != want {
				t.Errorf("first Snapshot = %+v\nwant %+v", got, want)
			}

			// No message since: every router is alive and contributes its latest in-flight
			// requests, and no new request.
			e.clk.Step(time.Second)
			got = e.srv.Snapshot("f")
			want = stats.Snapshot{Function: "f", Time: t0.Add(time.Second), Window: time.Second, InFlight: held,
				AverageConcurrency: float64(held), ActiveActors: held}
			if got != want {
				t.Errorf("Snapshot without messages = %+v\nwant %+v", got, want)
			}

			if got := e.srv.Snapshot("unknown"); got != (stats.Snapshot{Function: "unknown", Time: t0.Add(time.Second)}) {
				t.Errorf("Snapshot of a function no router reports = %+v", got)
			}
		})
	}
}

func TestMessagesBetweenSnapshotsAreTimeWeighted(t *testing.T) {
	e := newEnv(t, statserver.Config{})
	c := e.dial(t)
	// Two windows since the previous Snapshot: 1 s at 4, then 3 s at 2 → (4 + 6) / 4 = 2.5.
	send(t, c, `{"router":"r","stats":[{"function":"f","windowSeconds":1,"inFlight":4,"averageConcurrency":4,"requests":10,"activeActors":3}]}`)
	send(t, c, `{"router":"r","stats":[{"function":"f","windowSeconds":3,"inFlight":1,"averageConcurrency":2,"requests":5,"activeActors":2}]}`)
	e.waitMessages(t, "r", 2)
	got := e.srv.Snapshot("f")
	want := stats.Snapshot{Function: "f", Time: t0, Window: 4 * time.Second, InFlight: 1,
		AverageConcurrency: 2.5, Requests: 15, ActiveActors: 3}
	if got != want {
		t.Errorf("Snapshot = %+v\nwant %+v", got, want)
	}
	// A message that leaves f out: the router forgot it (idle), so it is in flight nowhere.
	send(t, c, `{"router":"r"}`)
	e.waitMessages(t, "r", 3)
	e.clk.Step(time.Second)
	if got := e.srv.Snapshot("f"); got != (stats.Snapshot{Function: "f", Time: t0.Add(time.Second)}) {
		t.Errorf("Snapshot after the router forgot f = %+v", got)
	}
}

func TestDisconnectStopsContributing(t *testing.T) {
	tests := []struct {
		name       string
		disconnect func(t *testing.T, e *env, r *routerSim)
		reason     string
		// flushed is the requests the router sends after the last tick and before it leaves.
		flushed uint64
	}{
		{
			name: "router stops",
			disconnect: func(t *testing.T, e *env, r *routerSim) {
				complete(r.rec, "f", 4) // sent by the Reporter's last message
				r.shutdown(t)
			},
			reason:  "closed",
			flushed: 4,
		},
		{
			name:       "server side of the connection dies",
			disconnect: func(t *testing.T, e *env, r *routerSim) { _ = e.lastConn(t).Close() },
			reason:     "error",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, statserver.Config{})
			r := startRouter(t, e, "r", func(rec *stats.Recorder) { hold(rec, "f", "a", 2) })
			e.waitMessages(t, "r", 1)
			if got := e.srv.Snapshot("f"); got.InFlight != 2 || got.Requests != 2 {
				t.Fatalf("Snapshot before the disconnect = %+v, want 2 in flight, 2 requests", got)
			}

			tc.disconnect(t, e, r)
			e.waitGone(t, "r")
			proctest.Eventually(t, "the reporter to notice", func() bool { return !r.rep.Connected() })

			// What the router reported before leaving counts once; its in-flight requests
			// no longer count.
			e.clk.Step(time.Second)
			got := e.srv.Snapshot("f")
			if got.InFlight != 0 || got.Requests != tc.flushed {
				t.Errorf("Snapshot after the disconnect = %+v, want 0 in flight, %d requests", got, tc.flushed)
			}
			e.clk.Step(time.Second)
			if got := e.srv.Snapshot("f"); got != (stats.Snapshot{Function: "f", Time: t0.Add(2 * time.Second)}) {
				t.Errorf("second Snapshot after the disconnect = %+v, want nothing", got)
			}
			if got := e.metric(t, "knactor_autoscaler_router_disconnects_total", `reason="`+tc.reason+`"`); got != 1 {
				t.Errorf("disconnects{reason=%s} = %v, want 1", tc.reason, got)
			}
			if got := e.metric(t, "knactor_autoscaler_routers", ""); got != 0 {
				t.Errorf("routers gauge = %v, want 0", got)
			}
			proctest.Eventually(t, "the disconnect to be logged with reason="+tc.reason, func() bool {
				logs := e.logs.String()
				return strings.Contains(logs, "router disconnected") && strings.Contains(logs, "reason="+tc.reason)
			})
		})
	}
}
