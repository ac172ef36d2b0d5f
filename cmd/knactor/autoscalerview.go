package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/knactor/knactor/router"
)

// autoscalerView is the Kubernetes-mode router's view of the autoscaler for its status page
// (router.Options.ScaleStatus): the autoscaler's GET /v1/functions, which knows the decisions
// and ready pods of every revision across all routers. A read is kept for viewFresh (the page
// polls once a second, from every browser that shows it); a failed one for viewRetry.
type autoscalerView struct {
	url    string
	header http.Header
	client *http.Client
	now    func() time.Time

	mu      sync.Mutex // held while fetching, so one read serves every caller
	list    []router.FunctionStatus
	err     error
	fetched time.Time
}

const (
	viewFresh   = 900 * time.Millisecond
	viewRetry   = 5 * time.Second
	viewTimeout = 2 * time.Second
)

var (
	_ router.FunctionLister = (*autoscalerView)(nil)
	_ router.ScaleViewError = (*autoscalerView)(nil)
)

// newAutoscalerView reads the autoscaler whose stats WebSocket is statsURL (--autoscaler-url:
// ws://host:port/stats), presenting the routers' shared secret.
func newAutoscalerView(statsURL, peerToken string) *autoscalerView {
	v := &autoscalerView{client: &http.Client{Timeout: viewTimeout}, now: time.Now,
		header: http.Header{"Authorization": {"Bearer " + peerToken}}}
	v.url, v.err = functionsURL(statsURL)
	return v
}

// functionsURL turns the autoscaler's stats WebSocket URL into its /v1/functions URL.
func functionsURL(statsURL string) (string, error) {
	u, err := url.Parse(statsURL)
	if err != nil {
		return "", fmt.Errorf("autoscaler URL %q: %w", statsURL, err)
	}
	switch u.Scheme {
	case "ws", "http":
		u.Scheme = "http"
	case "wss", "https":
		u.Scheme = "https"
	default:
		return "", fmt.Errorf("autoscaler URL %q: want ws://, wss://, http:// or https://", statsURL)
	}
	u.Path, u.RawPath, u.RawQuery, u.Fragment = "/v1/functions", "", "", ""
	return u.String(), nil
}

// FunctionStatuses implements router.FunctionLister: one entry per revision the autoscaler
// scales, sorted by function and revision; the last good read while the autoscaler does not
// answer (Err says why).
func (v *autoscalerView) FunctionStatuses() []router.FunctionStatus {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.url == "" {
		return nil
	}
	age := v.now().Sub(v.fetched)
	if (v.err == nil && age < viewFresh) || (v.err != nil && age < viewRetry && !v.fetched.IsZero()) {
		return v.list
	}
	list, err := v.fetch()
	v.fetched, v.err = v.now(), err
	if err == nil {
		v.list = list
	}
	return v.list
}

// Err implements router.ScaleViewError.
func (v *autoscalerView) Err() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.err
}

func (v *autoscalerView) fetch() ([]router.FunctionStatus, error) {
	ctx, cancel := context.WithTimeout(context.Background(), viewTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, v.url, nil)
	if err != nil {
		return nil, err
	}
	req.Header = v.header.Clone()
	resp, err := v.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("autoscaler view unavailable: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("autoscaler view unavailable: GET %s: %s", v.url, resp.Status)
	}
	var body struct {
		Functions []functionStatus `json:"functions"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 8<<20)).Decode(&body); err != nil {
		return nil, fmt.Errorf("autoscaler view unavailable: reading %s: %w", v.url, err)
	}
	if body.Functions == nil {
		return nil, errors.New("autoscaler view unavailable: the answer lists no functions")
	}
	out := make([]router.FunctionStatus, 0, len(body.Functions))
	for _, f := range body.Functions {
		out = append(out, router.FunctionStatus{Function: f.Function, Revision: f.Revision,
			ReadyPods: f.ReadyPods, DesiredPods: int(f.DesiredPods), Panicking: f.Panicking,
			ActiveActors: f.ActiveActors, ScaleError: f.ScaleError})
	}
	return out, nil
}
