package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Service names of knactor's processes in traces (resource attribute service.name), unless
// OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES says otherwise.
const (
	serviceRouter     = "knactor-router"
	serviceUp         = "knactor-up"
	serviceAutoscaler = "knactor-autoscaler"
)

// tracingFlushTimeout bounds the last export of spans at exit.
const tracingFlushTimeout = 5 * time.Second

// setupTracing sets up OpenTelemetry tracing for the process as the OpenTelemetry SDKs'
// environment variables say (docs/observability.md). Tracing is off unless
// OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set; OTEL_SDK_DISABLED=true
// or OTEL_TRACES_EXPORTER=none turn it off again. On, spans are batched (OTEL_BSP_*) and
// exported over OTLP/HTTP (OTEL_EXPORTER_OTLP_{,TRACES_}{ENDPOINT,HEADERS,TIMEOUT,COMPRESSION,
// CERTIFICATE,...}), sampled as OTEL_TRACES_SAMPLER says (default parentbased_always_on), from a
// resource named service (OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win); the provider and
// the W3C Trace Context and Baggage propagators become the global ones.
//
// It returns the provider (nil when tracing is off) and a function that flushes and stops it,
// to call at exit.
func setupTracing(ctx context.Context, service string) (trace.TracerProvider, func(), error) {
	off := func() {}
	endpoint := tracesEndpoint()
	exporter := strings.ToLower(strings.TrimSpace(os.Getenv("OTEL_TRACES_EXPORTER")))
	switch {
	case endpoint == "":
		slog.Debug("tracing off: set OTEL_EXPORTER_OTLP_ENDPOINT to export traces over OTLP")
		return nil, off, nil
	case strings.EqualFold(strings.TrimSpace(os.Getenv("OTEL_SDK_DISABLED")), "true"):
		slog.Info("tracing off: OTEL_SDK_DISABLED=true")
		return nil, off, nil
	case exporter == "none":
		slog.Info("tracing off: OTEL_TRACES_EXPORTER=none")
		return nil, off, nil
	case exporter != "" && exporter != "otlp":
		return nil, off, fmt.Errorf("OTEL_TRACES_EXPORTER=%s: knactor exports traces over OTLP only (otlp, or none)", exporter)
	}
	if p := firstEnv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"); p != "" && p != "http/protobuf" {
		return nil, off, fmt.Errorf("OTLP protocol %q: knactor exports traces over OTLP/HTTP only (http/protobuf; the collector's port 4318)", p)
	}
	exp, err := otlptracehttp.New(ctx) // it reads the OTEL_EXPORTER_OTLP_* variables itself
	if err != nil {
		return nil, off, fmt.Errorf("tracing: OTLP exporter: %w", err)
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", service)),
		resource.WithFromEnv(), // after: OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win
		resource.WithTelemetrySDK(),
		resource.WithHost(),
	)
	if err != nil {
		slog.Warn("tracing: resource attributes", "err", err) // partial: what was detected is used
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) { slog.Warn("tracing", "err", err) }))
	sampler := os.Getenv("OTEL_TRACES_SAMPLER")
	if sampler == "" {
		sampler = "parentbased_always_on"
	}
	name := service
	if v, ok := res.Set().Value("service.name"); ok {
		name = v.AsString()
	}
	slog.Info("tracing: exporting spans over OTLP/HTTP", "endpoint", endpoint, "service", name, "sampler", sampler)
	return tp, func() {
		sctx, cancel := context.WithTimeout(context.Background(), tracingFlushTimeout)
		defer cancel()
		if err := tp.Shutdown(sctx); err != nil {
			slog.Warn("tracing: flushing spans at exit", "err", err)
		}
	}, nil
}

// tracesEndpoint is where spans go: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT as it is, or
// OTEL_EXPORTER_OTLP_ENDPOINT with /v1/traces; "" when neither is set.
func tracesEndpoint() string {
	if e := strings.TrimSpace(os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")); e != "" {
		return e
	}
	if e := strings.TrimSpace(os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT")); e != "" {
		return strings.TrimSuffix(e, "/") + "/v1/traces"
	}
	return ""
}

// firstEnv returns the first of the variables that is set and not empty.
func firstEnv(names ...string) string {
	for _, n := range names {
		if v := strings.TrimSpace(os.Getenv(n)); v != "" {
			return v
		}
	}
	return ""
}
