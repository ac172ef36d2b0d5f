// Package sdk is the Go SDK for knactor actor functions.
//
// A knactor function is an ordinary HTTP server. The router ships an actor's state to the function
// with every call and stores the new state the function answers with, so the function itself keeps
// nothing between calls. The wire format is the function contract in docs/protocol.md; this package
// implements it with typed handlers:
//
//	type State struct{ Value int64 `json:"value"` }
//	type Add struct{ By int64 `json:"by"` }
//
//	func main() {
//		a := sdk.NewActor[State]()
//		sdk.Handle(a, "add", func(ctx context.Context, t *sdk.Turn[State], p Add) (State, error) {
//			t.State.Value += p.By
//			return t.State, nil
//		})
//		sdk.Main(a)
//	}
//
// A handler sees the actor's current state in [Turn.State] (the zero value for a new actor) and
// changes it in place; the SDK sends the state back only if its JSON encoding changed. Returning an
// error made by [Errorf] answers the caller with that 4xx status; any other error is a function
// failure, which the router reports to the caller as 502 and which leaves the state unchanged.
//
// Handlers must be deterministic functions of the state and the payload: the router re-runs a turn
// when another writer changed the state first, and only the committed run counts. Side effects go
// into [Turn.Effect], which the router runs after the turn commits.
//
// Values of type []byte travel as raw bytes: a []byte state, payload or reply is carried in the
// contract's base64 fields (state_b64, payload_b64, reply_b64) instead of as JSON.
//
// # Tracing
//
// The router sends the W3C trace context of each turn's function call in the envelope's metadata
// (traceparent, and tracestate and baggage when there are any; docs/protocol.md). The ctx a
// handler gets continues it: trace.SpanContextFromContext(ctx) is the router's span, as a remote
// parent, and baggage.FromContext(ctx) its baggage, so a handler that starts OpenTelemetry spans
//
//	ctx, span := otel.Tracer("counter").Start(ctx, "add")
//	defer span.End()
//
// makes them children of the router's call in the caller's trace. If an HTTP middleware in front
// of the Actor (otelhttp.NewHandler) already started a span from the same context (the router
// also sends it as HTTP headers), the SDK keeps the middleware's. The SDK itself exports nothing:
// set up an OpenTelemetry SDK and exporter in main as for any Go service.
package sdk
