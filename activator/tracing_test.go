package activator

import (
	"context"
	"errors"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/knactor/knactor/router/placement"
	"github.com/knactor/knactor/test/proctest"
)

// A held call of a traced caller gets a hold span under the caller's span, from the caller's
// provider; a call that is not held, or not traced, gets none.
func TestHoldSpan(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	ctx, parent := tp.Tracer("test").Start(context.Background(), "turn")

	pods := newFakePods()
	a := New(Config{}, pods, &countingPoker{})
	done := make(chan error, 1)
	go func() { c, err := try(ctx, a, 0); c.Release(); done <- err }()
	proctest.Eventually(t, "the held call", func() bool { return a.Waiting("fn") == 1 })
	pods.setPods(placement.Pod{Name: "p1", Addr: "127.0.0.1:1"})
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := try(ctx, a, 0); err != nil { // ready: not held, no span
		t.Fatal(err)
	}
	if _, err := try(context.Background(), a, 0); err != nil { // not traced
		t.Fatal(err)
	}
	// A hold that ends without a pod is an error of the span.
	short, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancel()
	cold := New(Config{}, newFakePods(), &countingPoker{})
	if _, err := try(short, cold, 0); !errors.Is(err, ErrNoPod) {
		t.Fatalf("err %v, want ErrNoPod", err)
	}
	parent.End()

	var holds []sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.Name() == spanHold {
			holds = append(holds, s)
		}
	}
	if len(holds) != 2 {
		t.Fatalf("%d hold spans, want 2", len(holds))
	}
	for _, s := range holds {
		if s.Parent().SpanID() != parent.SpanContext().SpanID() || s.InstrumentationScope().Name != tracerName {
			t.Errorf("hold span under %v from %q, want under the caller's span", s.Parent().SpanID(), s.InstrumentationScope().Name)
		}
	}
	if got := holds[1].Status().Code.String(); got != "Error" {
		t.Errorf("a hold that found no pod has status %s, want Error", got)
	}
	if got := holds[0].Status().Code.String(); got == "Error" {
		t.Errorf("a hold released by a ready pod is an error")
	}
}
