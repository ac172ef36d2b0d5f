// Package otlptest runs a real OTLP/HTTP trace receiver in-process, for tests that check the
// spans knactor exports: it serves POST /v1/traces, decodes each protobuf (or JSON)
// ExportTraceServiceRequest as an OpenTelemetry Collector would, and keeps the spans.
package otlptest

import (
	"bytes"
	"compress/gzip"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// Span is one received span, with its ids in hex (as W3C traceparent writes them) and the
// resource's service.name.
type Span struct {
	Name                    string
	Kind                    tracepb.Span_SpanKind
	TraceID, SpanID, Parent string // Parent: "" for a root span
	Service                 string
	Resource                map[string]string // the resource's attributes, service.name among them
	Scope                   string
	Attrs                   map[string]string // attribute values as strings
	Status                  tracepb.Status_StatusCode
	Links                   []string // span ids of linked spans
	Events                  []string // event names
}

// Receiver is an OTLP/HTTP receiver. Safe for concurrent use.
type Receiver struct {
	// URL is the receiver's base URL (http://127.0.0.1:port): OTEL_EXPORTER_OTLP_ENDPOINT.
	URL string

	mu       sync.Mutex
	spans    []Span
	requests int
}

// Start starts a receiver, stopped when the test ends.
func Start(t testing.TB) *Receiver {
	t.Helper()
	rc := &Receiver{}
	srv := httptest.NewServer(http.HandlerFunc(rc.serve))
	t.Cleanup(srv.Close)
	rc.URL = srv.URL
	return rc
}

func (rc *Receiver) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/v1/traces" {
		http.Error(w, "want POST /v1/traces", http.StatusNotFound)
		return
	}
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = zr
	}
	data, err := io.ReadAll(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var req coltracepb.ExportTraceServiceRequest
	jsonBody := r.Header.Get("Content-Type") == "application/json"
	if jsonBody {
		err = protojson.Unmarshal(data, &req)
	} else {
		err = proto.Unmarshal(data, &req)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rc.add(&req)
	var out []byte
	if jsonBody {
		out, _ = protojson.Marshal(&coltracepb.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/json")
	} else {
		out, _ = proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
	}
	_, _ = w.Write(out)
}

func (rc *Receiver) add(req *coltracepb.ExportTraceServiceRequest) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.requests++
	for _, rs := range req.GetResourceSpans() {
		res := map[string]string{}
		for _, kv := range rs.GetResource().GetAttributes() {
			res[kv.GetKey()] = valueString(kv.GetValue())
		}
		service := res["service.name"]
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				sp := Span{
					Name: s.GetName(), Kind: s.GetKind(), Service: service, Resource: res, Scope: ss.GetScope().GetName(),
					TraceID: hex.EncodeToString(s.GetTraceId()), SpanID: hex.EncodeToString(s.GetSpanId()),
					Attrs: map[string]string{}, Status: s.GetStatus().GetCode(),
				}
				if p := s.GetParentSpanId(); len(p) > 0 && !bytes.Equal(p, make([]byte, 8)) {
					sp.Parent = hex.EncodeToString(p)
				}
				for _, kv := range s.GetAttributes() {
					sp.Attrs[kv.GetKey()] = valueString(kv.GetValue())
				}
				for _, l := range s.GetLinks() {
					sp.Links = append(sp.Links, hex.EncodeToString(l.GetSpanId()))
				}
				for _, e := range s.GetEvents() {
					sp.Events = append(sp.Events, e.GetName())
				}
				rc.spans = append(rc.spans, sp)
			}
		}
	}
}

// Spans returns the spans received so far, in arrival order.
func (rc *Receiver) Spans() []Span {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]Span(nil), rc.spans...)
}

// Requests returns how many export requests arrived.
func (rc *Receiver) Requests() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.requests
}

// valueString renders an attribute value as a string: strings as they are, numbers and
// booleans as Go formats them, anything else as protobuf JSON.
func valueString(v *commonpb.AnyValue) string {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_IntValue:
		return strconv.FormatInt(x.IntValue, 10)
	case *commonpb.AnyValue_BoolValue:
		return strconv.FormatBool(x.BoolValue)
	case *commonpb.AnyValue_DoubleValue:
		return strconv.FormatFloat(x.DoubleValue, 'g', -1, 64)
	}
	b, _ := protojson.Marshal(v)
	return string(b)
}
