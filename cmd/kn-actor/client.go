package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"syscall"
	"time"
)

// maxAnswerBytes bounds what kn-actor reads of one answer: the router's largest reply (4 MiB
// by default) with room to spare.
const maxAnswerBytes = 64 << 20

// client calls the router's public API (docs/api.md).
type client struct {
	base      *url.URL // scheme, host and optional path prefix; no trailing '/'
	token     string   // bearer token; "" sends none
	tokenFrom string   // where token came from, for messages
	http      *http.Client
}

// newClient returns a client for the server and token the flags and environment name.
func (g *globals) newClient() (*client, error) {
	base, err := parseServer(g.server)
	if err != nil {
		return nil, err
	}
	token, from, err := g.token()
	if err != nil {
		return nil, err
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.DialContext = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	return &client{base: base, token: token, tokenFrom: from, http: &http.Client{Transport: transport}}, nil
}

// parseServer parses --server: an http or https URL, "http://" assumed when it has no scheme.
func parseServer(s string) (*url.URL, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, fmt.Errorf("--server is empty: give the router's URL, e.g. %s", defaultServer)
	}
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("--server %q is not a URL (e.g. %s): %w", s, defaultServer, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("--server %q: use an http:// or https:// URL", s)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("--server %q has no host, e.g. %s", s, defaultServer)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("--server %q: give scheme, host and path only (the token goes in $%s)", s, envToken)
	}
	u.Path, u.RawPath = strings.TrimRight(u.Path, "/"), ""
	return u, nil
}

// token returns the bearer token from --token-file or $KNACTOR_TOKEN ("" for none) and where
// it came from.
func (g *globals) token() (token, from string, err error) {
	if g.tokenFile != "" {
		b, err := os.ReadFile(g.tokenFile)
		if err != nil {
			return "", "", fmt.Errorf("reading the token: %w", err)
		}
		t := strings.TrimSpace(string(b))
		if t == "" {
			return "", "", fmt.Errorf("--token-file %s is empty: put the bearer token in it", g.tokenFile)
		}
		return t, "--token-file " + g.tokenFile, nil
	}
	if t := strings.TrimSpace(g.getenv(envToken)); t != "" {
		return t, "$" + envToken, nil
	}
	return "", "", nil
}

// actorPath is /v1/actors/{function}/{id}[/{action}], each segment percent-encoded (a '/' in
// an id becomes %2F, as the API wants).
func actorPath(function, id string, action ...string) string {
	p := "/v1/actors/" + url.PathEscape(function) + "/" + url.PathEscape(id)
	for _, a := range action {
		p += "/" + url.PathEscape(a)
	}
	return p
}

// answer is a successful (2xx) answer of the router.
type answer struct {
	status int
	header http.Header
	body   []byte
}

// do sends one request; path is escaped already. Answers that are not 2xx come back as an
// *apiError; failures to reach the router as errors that say what to check.
func (c *client) do(ctx context.Context, method, path string, body io.Reader, header http.Header) (*answer, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base.String()+path, body)
	if err != nil {
		return nil, fmt.Errorf("building the request: %w", err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, c.connError(ctx, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes))
	if err != nil {
		return nil, fmt.Errorf("reading the answer of %s: %w", c.base, err)
	}
	if resp.StatusCode < http.StatusOK || resp.StatusCode >= http.StatusMultipleChoices {
		return nil, parseAPIError(resp.StatusCode, b)
	}
	return &answer{status: resp.StatusCode, header: resp.Header, body: b}, nil
}

// connError explains a request that never got an answer.
func (c *client) connError(ctx context.Context, err error) error {
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("interrupted: %w", ctx.Err())
	case errors.Is(err, syscall.ECONNREFUSED):
		return &explained{err: err, msg: fmt.Sprintf(
			"no knactor at %s: start one with `knactor up`, or point --server or $%s at a running one", c.base, envURL)}
	default:
		return &explained{err: err, msg: fmt.Sprintf(
			"cannot reach knactor at %s (%v): check --server or $%s", c.base, err, envURL)}
	}
}

// apiError is an error answer of the router: {"error":{"code","message"}} with its status.
type apiError struct {
	Status  int
	Code    string
	Message string
}

func (e *apiError) Error() string {
	if e.Code == "" {
		return fmt.Sprintf("%d %s", e.Status, e.Message)
	}
	return fmt.Sprintf("%s (%d %s)", e.Message, e.Status, e.Code)
}

// parseAPIError reads an error answer. A body that is not the API's error form (another
// server at the URL) keeps its first line as the message.
func parseAPIError(status int, body []byte) *apiError {
	var e struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && e.Error.Code != "" {
		return &apiError{Status: status, Code: e.Error.Code, Message: e.Error.Message}
	}
	msg, _, _ := strings.Cut(strings.TrimSpace(string(body)), "\n")
	if len(msg) > 200 {
		msg = msg[:200] + "..."
	}
	return &apiError{Status: status, Message: strings.TrimSpace(http.StatusText(status) + " " + msg)}
}

// explained is an error with a message that says what to do next; it wraps the error it
// explains.
type explained struct {
	msg string
	err error
}

func (e *explained) Error() string { return e.msg }
func (e *explained) Unwrap() error { return e.err }

// routerCodes are the error codes the router itself answers; any other code is a function's.
var routerCodes = map[string]bool{
	"bad_request": true, "unauthorized": true, "forbidden": true, "not_found": true,
	"unknown_function": true, "actor_not_found": true, "method_not_allowed": true,
	"version_conflict": true, "conflict": true, "too_large": true, "actor_busy": true,
	"function_failed": true, "bad_function_reply": true, "no_capacity": true,
	"store_unavailable": true, "function_timeout": true, "shutting_down": true, "internal": true,
	"idempotency_key_reused": true, "encryption_key_missing": true, "state_unreadable": true,
	"too_many_connections": true, "workflow_cycle": true, "workflow_too_long": true,
}

// explain turns an error of a call about function into one that says what to do next.
// Anything but an *apiError is returned as it is.
func (c *client) explain(err error, function string) error {
	var ae *apiError
	if !errors.As(err, &ae) {
		return err
	}
	logsHint := fmt.Sprintf("`kn-actor logs %s` shows its pods' output (local knactor)", function)
	var msg string
	switch {
	case ae.Status == http.StatusUnauthorized && c.token == "":
		msg = fmt.Sprintf("knactor at %s wants a bearer token: set $%s (or --token-file) to one of its tokens ($KNACTOR_AUTH_TOKENS of the router)", c.base, envToken)
	case ae.Status == http.StatusUnauthorized:
		msg = fmt.Sprintf("knactor at %s refused the bearer token from %s: set $%s (or --token-file) to one of its tokens ($KNACTOR_AUTH_TOKENS of the router)", c.base, c.tokenFrom, envToken)
	case ae.Code == "unknown_function":
		msg = fmt.Sprintf("no function %q is deployed at %s: deploy it with `kn-actor deploy -f service.yaml` (`kn-actor list` shows the deployed ones)", function, c.base)
	case ae.Code == "" && ae.Status == http.StatusNotFound:
		msg = fmt.Sprintf("%s answered %s, not as a knactor router does: check --server or $%s", c.base, ae.Message, envURL)
	case ae.Code == "actor_busy":
		msg = fmt.Sprintf("%s: retry in a moment", ae.Message)
	case ae.Code == "too_large":
		msg = fmt.Sprintf("%s: send less (the router's --max-payload-bytes)", ae.Message)
	case ae.Code == "function_failed" || ae.Code == "bad_function_reply":
		msg = fmt.Sprintf("function %q failed: %s; %s", function, ae.Message, logsHint)
	case ae.Code == "function_timeout":
		msg = fmt.Sprintf("function %q timed out: %s; %s", function, ae.Message, logsHint)
	case ae.Code == "no_capacity":
		msg = fmt.Sprintf("function %q has no pod to run the call: %s; retry, and if it persists %s", function, ae.Message, logsHint)
	case ae.Code == "idempotency_key_reused":
		msg = fmt.Sprintf("%s: the key already names another call of this actor; pick a new key for a new call", ae.Message)
	case ae.Code == "store_unavailable":
		msg = fmt.Sprintf("%s: the state store is down; retry once it is back", ae.Message)
	case ae.Code == "shutting_down":
		msg = fmt.Sprintf("%s: retry once it is back", ae.Message)
	case ae.Code != "" && !routerCodes[ae.Code]:
		msg = fmt.Sprintf("function %q answered %d %s: %s", function, ae.Status, ae.Code, ae.Message)
	default:
		msg = fmt.Sprintf("%s answered %v", c.base, ae)
	}
	return &explained{msg: msg, err: err}
}
