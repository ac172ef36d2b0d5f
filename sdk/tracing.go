package sdk

import (
	"context"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// propagator reads the trace context the router sends in the envelope's metadata: W3C Trace
// Context (traceparent, tracestate) and Baggage (baggage), the router's own propagators.
var propagator = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})

// continueTrace returns ctx carrying the trace context of the envelope's metadata, as a remote
// parent span (and baggage), so that spans a handler starts with OpenTelemetry are children of
// the router's function call. A ctx that already has a span is kept as it is: HTTP middleware
// (otelhttp) made it from the same context, which the router also sends as HTTP headers.
func continueTrace(ctx context.Context, md map[string]string) context.Context {
	if md["traceparent"] == "" || trace.SpanContextFromContext(ctx).IsValid() {
		return ctx
	}
	return propagator.Extract(ctx, propagation.MapCarrier(md))
}
