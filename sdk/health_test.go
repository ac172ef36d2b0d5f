package sdk

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestHealthServer(t *testing.T) {
	next := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusTeapot)
	})
	tests := []struct {
		name     string
		draining bool
		method   string
		path     string
		want     int
	}{
		{"serving", false, http.MethodGet, "/healthz", http.StatusOK},
		{"serving, HEAD", false, http.MethodHead, "/healthz", http.StatusOK},
		{"draining", true, http.MethodGet, "/healthz", http.StatusServiceUnavailable},
		{"other path goes to the handler", true, http.MethodGet, "/other", http.StatusTeapot},
		{"other method goes to the handler", false, http.MethodPost, "/healthz", http.StatusTeapot},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := &healthServer{next: next}
			s.draining.Store(tc.draining)
			rec := httptest.NewRecorder()
			s.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
			if rec.Code != tc.want {
				t.Errorf("status = %d, want %d", rec.Code, tc.want)
			}
		})
	}
}
