package router

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net"
	"path/filepath"
	"slices"
	"strings"

	"github.com/valyala/fasthttp"
)

// FunctionStatus is one deployed function as GET /v1/functions reports it.
type FunctionStatus struct {
	// Function is the function's name.
	Function string `json:"function"`
	// Revision is the revision these pods are of, when the function is scaled per revision
	// (Kubernetes mode's status page); empty in local mode.
	Revision string `json:"revision,omitempty"`
	// ReadyPods are the pods serving calls now; StartingPods those not ready yet.
	ReadyPods    int `json:"ready_pods"`
	StartingPods int `json:"starting_pods"`
	// DesiredPods is the autoscaler's latest decision.
	DesiredPods int `json:"desired_pods"`
	// Panicking reports the autoscaler's panic mode at its latest decision.
	Panicking bool `json:"panicking"`
	// ActiveActors is the number of actors with calls in the autoscaler's newest snapshot.
	ActiveActors int `json:"active_actors"`
	// ScaleError is the latest failed attempt to scale the function ("" when it succeeded).
	ScaleError string `json:"scale_error,omitempty"`
}

// FunctionLister reports the deployed functions for GET /v1/functions. `knactor up` implements
// it from its autoscaler and local runtime; a router without one answers 404.
type FunctionLister interface {
	// FunctionStatuses returns every deployed function, sorted by name.
	FunctionStatuses() []FunctionStatus
}

// Results of one function's deployment.
const (
	DeployCreated   = "created"   // the function was not deployed before
	DeployUpdated   = "updated"   // the function's settings changed
	DeployUnchanged = "unchanged" // the manifest says what is deployed already
)

// Deployment is what a Deployer did with one function of a manifest.
type Deployment struct {
	// Function is the function's name.
	Function string `json:"function"`
	// Result is DeployCreated, DeployUpdated or DeployUnchanged.
	Result string `json:"result"`
	// Warnings are the manifest's non-fatal problems for this function.
	Warnings []string `json:"warnings,omitempty"`
}

// Deployer deploys the functions of a manifest for POST /v1/functions. `knactor up` implements
// it with its local runtime; a router without one answers 404.
type Deployer interface {
	// Deploy deploys every function of manifest (Knative Services, YAML or JSON), all or none.
	// dir is the manifest's absolute directory on the deployer's machine, against which a
	// relative knactor.dev/workdir is resolved ("" when the caller gave none). Errors wrapping
	// ErrBadManifest answer 400, those wrapping ErrDeployConflict 409, any other 500.
	Deploy(ctx context.Context, manifest []byte, dir string) ([]Deployment, error)
}

var (
	// ErrBadManifest marks a manifest a Deployer refuses as invalid.
	ErrBadManifest = errors.New("invalid manifest")
	// ErrDeployConflict marks a manifest that conflicts with what is deployed (a change that
	// needs a restart).
	ErrDeployConflict = errors.New("conflicts with the deployed function")
)

const (
	// MaxManifestBytes bounds the body of POST /v1/functions: a manifest is a few KiB.
	MaxManifestBytes = 1 << 20
	// HeaderManifestDir carries the absolute directory of the manifest being deployed.
	HeaderManifestDir = "X-Knactor-Manifest-Dir"
)

// manifestTypes are the content types POST /v1/functions accepts. None is one a browser may
// send cross-origin without a CORS preflight, which the router never grants.
var manifestTypes = []string{"application/yaml", "application/x-yaml", "text/yaml", "application/json"}

var (
	pathFunctions   = []byte("/v1/functions")
	errNoLister     = errorf(fasthttp.StatusNotFound, CodeNotFound, "this router does not list functions (only `knactor up` does); on a cluster, list the Knative Services with `kubectl get ksvc`")
	errNoDeployer   = errorf(fasthttp.StatusNotFound, CodeNotFound, "this router does not deploy functions (only `knactor up` does); on a cluster, use `kubectl apply -f FILE`")
	errBrowserOrig  = errorf(fasthttp.StatusForbidden, CodeForbidden, "deploying from a browser (a request with an Origin header) is refused")
	errOpenDeployer = errorf(fasthttp.StatusForbidden, CodeForbidden, "deploying is refused on a router that listens beyond loopback without auth tokens: set auth tokens")
)

// serveFunctions serves /v1/functions: GET lists the deployed functions, POST deploys a
// manifest.
func (r *Router) serveFunctions(ctx *fasthttp.RequestCtx, a access) {
	if err := a.mayUseAll(); err != nil {
		writeError(ctx, err)
		return
	}
	switch method := string(ctx.Method()); method {
	case fasthttp.MethodGet, fasthttp.MethodHead:
		r.serveListFunctions(ctx)
	case fasthttp.MethodPost:
		if err := a.mayWrite(); err != nil {
			writeError(ctx, err)
			return
		}
		r.serveDeploy(ctx)
	default:
		writeError(ctx, errorf(fasthttp.StatusMethodNotAllowed, CodeMethodNotAllowed, "%s /v1/functions: use GET (list) or POST (deploy)", method))
	}
}

func (r *Router) serveListFunctions(ctx *fasthttp.RequestCtx) {
	if r.functions == nil {
		writeError(ctx, errNoLister)
		return
	}
	list := r.functions.FunctionStatuses()
	if list == nil {
		list = []FunctionStatus{}
	}
	writeJSON(ctx, struct {
		Functions []FunctionStatus `json:"functions"`
	}{list})
}

// serveDeploy deploys the manifest in the body. Deploying runs commands on the router's
// machine, so besides the bearer token it refuses what a browser could send (an Origin header,
// a content type that needs no preflight) and, without tokens, any listener beyond loopback.
func (r *Router) serveDeploy(ctx *fasthttp.RequestCtx) {
	if r.deployer == nil {
		writeError(ctx, errNoDeployer)
		return
	}
	if len(ctx.Request.Header.Peek("Origin")) > 0 {
		writeError(ctx, errBrowserOrig)
		return
	}
	if len(r.grants) == 0 && !r.loopbackOnly() {
		writeError(ctx, errOpenDeployer)
		return
	}
	ct, _, err := mime.ParseMediaType(string(ctx.Request.Header.ContentType()))
	if err != nil || !slices.Contains(manifestTypes, strings.ToLower(ct)) {
		ctx.SetConnectionClose()
		writeError(ctx, errorf(fasthttp.StatusUnsupportedMediaType, CodeBadRequest, "send the manifest as %s", strings.Join(manifestTypes, ", ")))
		return
	}
	dir := string(ctx.Request.Header.Peek(HeaderManifestDir))
	if dir != "" && !filepath.IsAbs(dir) {
		writeError(ctx, errorf(fasthttp.StatusBadRequest, CodeBadRequest, "%s must be an absolute path, got %q", HeaderManifestDir, dir))
		return
	}
	body, err := readLimited(ctx, min(MaxManifestBytes, r.cfg.MaxPayloadBytes))
	if err != nil {
		writeError(ctx, err)
		return
	}
	c, cancel := context.WithTimeout(context.Background(), r.cfg.CallTimeout)
	defer cancel()
	deployed, err := r.deployer.Deploy(c, body, dir)
	switch {
	case errors.Is(err, ErrBadManifest):
		writeError(ctx, errorf(fasthttp.StatusBadRequest, CodeBadRequest, "%v", err))
		return
	case errors.Is(err, ErrDeployConflict):
		writeError(ctx, errorf(fasthttp.StatusConflict, CodeConflict, "%v", err))
		return
	case err != nil:
		writeError(ctx, errorf(fasthttp.StatusInternalServerError, CodeInternal, "deploying: %v", err))
		return
	}
	for _, d := range deployed {
		r.log.Info("deployed", "function", d.Function, "result", d.Result)
	}
	writeJSON(ctx, struct {
		Functions []Deployment `json:"functions"`
	}{deployed})
}

// loopbackOnly reports whether the router listens on a loopback address only.
func (r *Router) loopbackOnly() bool {
	host, _, err := net.SplitHostPort(r.cfg.Listen)
	return err == nil && isLoopback(host)
}

// readLimited reads the request body up to limit bytes: 413 beyond it.
func readLimited(ctx *fasthttp.RequestCtx, limit int) ([]byte, error) {
	return readLimitedInto(ctx, limit, nil)
}

// readLimitedInto is readLimited into dst's room when a body of known length fits it, so that a
// caller with a pooled buffer reads without allocating.
func readLimitedInto(ctx *fasthttp.RequestCtx, limit int, dst []byte) ([]byte, error) {
	if n := ctx.Request.Header.ContentLength(); n > limit {
		ctx.SetConnectionClose() // the unread body would otherwise be parsed as the next request
		return nil, errorf(fasthttp.StatusRequestEntityTooLarge, CodeTooLarge, "request body is %d bytes, the limit is %d", n, limit)
	}
	if n := ctx.Request.Header.ContentLength(); n >= 0 {
		// The length is known (and within the limit): read exactly that, in dst's room or in
		// one allocation.
		body := dst[:0]
		if cap(body) < n {
			body = make([]byte, n)
		}
		body = body[:n]
		if n == 0 {
			return body, nil
		}
		if _, err := io.ReadFull(ctx.RequestBodyStream(), body); err != nil {
			return nil, bodyReadError(ctx, err)
		}
		return body, nil
	}
	body, err := io.ReadAll(io.LimitReader(ctx.RequestBodyStream(), int64(limit)+1))
	if err != nil {
		return nil, bodyReadError(ctx, err)
	}
	if len(body) > limit {
		ctx.SetConnectionClose()
		return nil, errorf(fasthttp.StatusRequestEntityTooLarge, CodeTooLarge, "request body is over the limit of %d bytes", limit)
	}
	return body, nil
}

// writeJSON answers 200 with v as JSON.
func writeJSON(ctx *fasthttp.RequestCtx, v any) {
	var b bytes.Buffer
	if err := json.NewEncoder(&b).Encode(v); err != nil {
		writeError(ctx, errorf(fasthttp.StatusInternalServerError, CodeInternal, "encoding the answer: %v", err))
		return
	}
	ctx.SetContentTypeBytes(contentJSON)
	ctx.SetBody(b.Bytes())
}
