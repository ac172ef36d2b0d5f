// Package statserver receives the routers' per-function statistics over WebSockets and adds
// them up for the autoscaler, the way Knative's autoscaler receives its activators' stats
// (knative.dev/serving pkg/autoscaler/statserver). In Kubernetes mode every router process
// counts its own requests (router/stats.Recorder) and streams them here with the
// activator/statreporter package; the autoscaler reads the sum through Server.Snapshot, which
// implements autoscaler.StatsSource, and receives the routers' pokes through Config.Poke.
//
// # Wire format
//
// A router opens a WebSocket to the autoscaler (by convention ws://autoscaler:port/stats,
// optionally with an Authorization header) and sends JSON text frames, one object per frame.
// The autoscaler sends nothing but control frames (pongs and a close frame).
//
// A stats message, sent once per scrape interval (1 s):
//
//	{"router":"router-7d9f-abcde",
//	 "stats":[{"function":"counter","time":"2025-06-01T12:00:01.000000042Z","windowSeconds":1.0004,
//	           "inFlight":3,"averageConcurrency":2.5,"requests":41,"activeActors":7}]}
//
// A poke, sent as soon as a call finds a function with no ready pod:
//
//	{"router":"router-7d9f-abcde","poke":"counter"}
//
// The fields:
//
//   - router: the sender's identity (its pod name), 1 to MaxNameBytes bytes, in every message.
//     The first message of a connection names it; a later message naming another router is a
//     protocol error. A router that connects again under the same name replaces its previous
//     connection, which is closed.
//   - stats: one entry per function the router knows, each covering the router's window since
//     its previous message (stats.Snapshot): time is the end of the window on the router's
//     clock (RFC 3339 with nanoseconds, informational: routers' clocks are not compared with
//     the autoscaler's); windowSeconds its length; inFlight the requests in flight at its end;
//     averageConcurrency the time-weighted average of requests in flight over it; requests the
//     requests that began in it; activeActors the distinct actors that had a request in flight
//     in it. A function appears at most once per message. A router that could not send a
//     window sends it later merged with the next one (requests added, concurrency
//     time-weighted over the combined window, inFlight the latest, activeActors the larger).
//   - poke: a function for which a call found no ready pod; the autoscaler decides for it at
//     once.
//
// A message with neither stats nor poke only says the router is alive. Unknown fields are
// ignored, so either side can be newer. Anything else closes the connection: a binary frame
// (1003), a frame that is not such an object or breaks a rule above (1008), a frame over
// Config.MaxMessageBytes (1009). A router that sends nothing for longer than Config.StaleAfter
// is dropped and its connection closed (1008); the server closes every connection with 1001 when it
// shuts down. A router reconnects with capped exponential backoff after any close.
//
// # Adding routers up
//
// Snapshot(function) returns, for the autoscaler's window since its previous Snapshot of that
// function, the sum over the connected routers of what each reported since then:
//
//   - averageConcurrency: each router's time-weighted average over the windows it reported,
//     added up (concurrency is additive across routers);
//   - requests: added;
//   - inFlight: each router's latest, added;
//   - activeActors: each router's (largest since then), added. Routers can carry calls of the
//     same actor (an actor's calls may arrive through any router), so the sum is an upper
//     bound on the distinct active actors.
//
// A router that is connected but sent nothing since the previous Snapshot (its message is a
// little late) contributes its latest inFlight as its average and no requests: it is alive,
// and its load is most likely what it last said. A router that disconnects or goes stale
// contributes, once, what it reported before it left (so no reported request goes uncounted),
// and nothing after: its in-flight requests are no longer counted.
//
// # Noticing routers
//
// The server logs when a router connects, disconnects (and why) or goes stale, counts
// disconnects by reason, and exports the number of live routers (Collector). Staleness is
// judged on the injected clock whenever Snapshot or Routers runs (the autoscaler calls
// Snapshot for every function every second), so the server needs no goroutine of its own.
package statserver
