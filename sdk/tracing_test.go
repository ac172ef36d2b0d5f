package sdk_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/trace"

	"github.com/knactor/knactor/sdk"
)

// The handler's ctx continues the trace context the router sends in the envelope's metadata,
// unless middleware in front of the Actor already made a span of it; a missing or malformed
// traceparent changes nothing else.
func TestHandlerContinuesTheTrace(t *testing.T) {
	const (
		traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
		spanID  = "00f067aa0ba902b7"
		parent  = "00-" + traceID + "-" + spanID + "-01"
	)
	middlewareSC := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1}, SpanID: trace.SpanID{2}, TraceFlags: trace.FlagsSampled})
	cases := []struct {
		name       string
		metadata   string
		middleware bool
		want       trace.SpanContext // zero: none
		wantRemote bool
		wantTenant string
	}{
		{"continued", `{"traceparent":"` + parent + `","tracestate":"v=1","baggage":"tenant=acme"}`, false,
			mustSpanContext(t, traceID, spanID, "v=1"), true, "acme"},
		{"no trace context", `{"request_id":"r1"}`, false, trace.SpanContext{}, false, ""},
		{"malformed", `{"traceparent":"00-zz-yy-01"}`, false, trace.SpanContext{}, false, ""},
		{"middleware's span kept", `{"traceparent":"` + parent + `"}`, true, middlewareSC, false, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var got trace.SpanContext
			var tenant string
			a := sdk.NewActor[counter]()
			sdk.Handle(a, "look", func(ctx context.Context, _ *sdk.Turn[counter], _ any) (string, error) {
				got = trace.SpanContextFromContext(ctx)
				tenant = baggage.FromContext(ctx).Member("tenant").Value()
				return "ok", nil
			})
			var h http.Handler = a
			if tc.middleware {
				h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					a.ServeHTTP(w, r.WithContext(trace.ContextWithSpanContext(r.Context(), middlewareSC)))
				})
			}
			srv := httptest.NewServer(h)
			defer srv.Close()
			status, body := post(t, srv.URL,
				`{"function":"f","actor":"a","action":"look","version":"","payload":null,"metadata":`+tc.metadata+`}`)
			if status != 200 || !strings.Contains(string(body), "ok") {
				t.Fatalf("got %d %s", status, body)
			}
			if !got.Equal(tc.want) || got.IsRemote() != tc.wantRemote {
				t.Errorf("handler's span context %v (remote %v), want %v (remote %v)", got, got.IsRemote(), tc.want, tc.wantRemote)
			}
			if tenant != tc.wantTenant {
				t.Errorf("baggage tenant %q, want %q", tenant, tc.wantTenant)
			}
		})
	}
}

func mustSpanContext(t *testing.T, traceID, spanID, state string) trace.SpanContext {
	t.Helper()
	tid, err := trace.TraceIDFromHex(traceID)
	if err != nil {
		t.Fatal(err)
	}
	sid, err := trace.SpanIDFromHex(spanID)
	if err != nil {
		t.Fatal(err)
	}
	ts, err := trace.ParseTraceState(state)
	if err != nil {
		t.Fatal(err)
	}
	return trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled,
		TraceState: ts, Remote: true})
}
