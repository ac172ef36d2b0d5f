package activator

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Tracing (docs/observability.md): a call the activator holds gets a span under the caller's
// span, from the caller's tracer provider, so the activator needs no configuration of its own
// and costs nothing when the call is not traced (or not held: a warm pod is the hot path).
const (
	tracerName = "github.com/knactor/knactor/activator"
	// spanHold covers a call held while its function has no ready pod (scale from zero).
	spanHold = "knactor.activator.hold"
	// spanSlot covers a call waiting for a free slot of a pod's containerConcurrency.
	spanSlot = "knactor.activator.slot"
)

// startSpan starts the span named name under ctx's span, if that one is recording; else nil.
func startSpan(ctx context.Context, name string, attrs ...attribute.KeyValue) trace.Span {
	parent := trace.SpanFromContext(ctx)
	if !parent.IsRecording() {
		return nil
	}
	_, span := parent.TracerProvider().Tracer(tracerName).Start(ctx, name, trace.WithAttributes(attrs...))
	return span
}

// endSpan ends span (nil: not traced), recording err.
func endSpan(span trace.Span, err error) {
	if span == nil {
		return
	}
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
		if errors.Is(err, ErrNoPod) {
			span.SetAttributes(attribute.String("error.type", "no_pod"))
		}
	}
	span.End()
}
