package main

import (
	"context"
	"strings"
	"testing"

	"go.opentelemetry.io/otel"

	"github.com/knactor/knactor/test/otlptest"
)

// setupTracing follows the OpenTelemetry SDKs' environment variables: off unless an OTLP
// endpoint is set, off again with OTEL_SDK_DISABLED or OTEL_TRACES_EXPORTER=none; on, spans go
// to the endpoint over OTLP/HTTP, flushed at exit, from the service OTEL_SERVICE_NAME names
// (else knactor's own name), with OTEL_RESOURCE_ATTRIBUTES.
func TestSetupTracing(t *testing.T) {
	cases := []struct {
		name        string
		env         map[string]string // "{receiver}" is the receiver's URL
		wantOn      bool
		wantErr     string
		wantService string
		wantEnv     string // the resource's deployment.environment
	}{
		{name: "no endpoint: off", env: map[string]string{}},
		{name: "OTEL_SDK_DISABLED", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "{receiver}", "OTEL_SDK_DISABLED": "true"}},
		{name: "OTEL_TRACES_EXPORTER=none", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "{receiver}", "OTEL_TRACES_EXPORTER": "none"}},
		{name: "endpoint", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "{receiver}"}, wantOn: true, wantService: serviceRouter},
		{name: "traces endpoint and a service name", env: map[string]string{
			"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "{receiver}/v1/traces", "OTEL_SERVICE_NAME": "edge-router",
			"OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=test"}, wantOn: true, wantService: "edge-router", wantEnv: "test"},
		{name: "gRPC is refused", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "{receiver}", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
			wantErr: "OTLP/HTTP only"},
		{name: "another exporter is refused", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "{receiver}", "OTEL_TRACES_EXPORTER": "zipkin"},
			wantErr: "OTLP only"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			global := otel.GetTracerProvider()
			t.Cleanup(func() { otel.SetTracerProvider(global) })
			rc := otlptest.Start(t)
			for _, k := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_SDK_DISABLED",
				"OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
				"OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES", "OTEL_TRACES_SAMPLER"} {
				t.Setenv(k, tc.env[k])
			}
			for k, v := range tc.env {
				t.Setenv(k, strings.ReplaceAll(v, "{receiver}", rc.URL))
			}
			tp, stop, err := setupTracing(context.Background(), serviceRouter)
			switch {
			case tc.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want one saying %q", err, tc.wantErr)
				}
				return
			case err != nil:
				t.Fatal(err)
			}
			if (tp != nil) != tc.wantOn {
				t.Fatalf("provider %v, want tracing on: %v", tp, tc.wantOn)
			}
			if !tc.wantOn {
				stop()
				// The global provider is still OpenTelemetry's no-op: a span from it goes nowhere.
				_, span := otel.Tracer("test").Start(context.Background(), "nothing")
				if span.IsRecording() {
					t.Error("with tracing off, the global tracer records spans")
				}
				span.End()
				if n := rc.Requests(); n != 0 {
					t.Errorf("the receiver got %d export requests with tracing off", n)
				}
				return
			}
			if otel.GetTracerProvider() != tp {
				t.Error("the provider is not the global one")
			}
			_, span := tp.Tracer("test").Start(context.Background(), "one span")
			span.End()
			stop() // flushes
			spans := rc.Spans()
			if len(spans) != 1 || spans[0].Name != "one span" || spans[0].Service != tc.wantService {
				t.Fatalf("received %+v, want one span from %s", spans, tc.wantService)
			}
			if got := spans[0].Resource["deployment.environment"]; got != tc.wantEnv {
				t.Errorf("resource deployment.environment %q, want %q", got, tc.wantEnv)
			}
		})
	}
}
