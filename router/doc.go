// Package router is knactor's front door: a fasthttp server for the public API.
//
// It gives each actor (function + id) a mailbox that runs one turn at a time, picks the actor's
// owner pod by rendezvous hashing over the function's ready pods, loads the actor's state from
// statecache, sends the function contract's envelope (docs/protocol.md) to the owner, and saves
// the new state with a conditional write before the caller hears the reply. The same write holds
// the actor's durable timers, its outbox of effects and broadcasts, and its channel
// subscriptions; a scheduler fires the timers and dispatches the outboxes, finding them after a
// restart through the store's due-time index, and forwards and pipes hand a call along a chain
// of actors. It also serves WebSocket sessions pinned to an actor or a channel, stateless
// pass-through to a function's pods, and the per-function concurrency statistics the autoscaler
// reads.
//
// What it shares with the runtimes, the Knative ingress class and cmd/knactor (functions and
// their targets, Backends, traffic routes, peers, the calls in flight per pod) is in
// router/routing, which imports none of the router.
package router
