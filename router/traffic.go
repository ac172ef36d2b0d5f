package router

import (
	"bytes"
	"math/rand/v2"

	"github.com/cespare/xxhash/v2"
	"github.com/valyala/fasthttp"
)

// Split is one share of a Route: a percentage of the function's calls and the target (in
// Kubernetes mode, a Knative revision) whose pods serve it.
type Split struct {
	// Target names the pods that serve the share (Backends.Target).
	Target string
	// Percent is the share of calls, 0–100. A Route's splits add up to 100.
	Percent int
	// Headers are set on every stateless request of the share (Knative's appendHeaders, e.g.
	// Knative-Serving-Revision).
	Headers map[string]string
}

// Route divides one function's calls between targets: a Knative Route's traffic block, as the
// Ingress of knactor's class spells it. Routes are immutable once handed to the router.
type Route struct {
	// Function is the function (Knative Service) every split belongs to: an actor's state is the
	// function's, whichever target runs its turns.
	Function string
	Splits   []Split
}

// percentiles is the resolution of a split: an actor hashes to one of this many slots, so
// percentages are honoured to a hundredth of a percent.
const percentiles = 10000

// ForActor returns the split that runs the turns of the actor with key (statecache.Key's
// String). The actor's slot is a fixed hash of its key, so it keeps its split, and its pods'
// warm state, for as long as the split percentages stay; when they move, only the actors whose
// slot changes hands move. It returns nil for a route without splits.
func (rt *Route) ForActor(key string) *Split {
	return rt.at(int(xxhash.Sum64String(key) % percentiles))
}

// Random returns a split drawn in proportion to the percentages, for a stateless call; nil for a
// route without splits.
func (rt *Route) Random() *Split {
	return rt.at(rand.IntN(percentiles))
}

// at returns the split whose cumulative range holds slot. Percentages that add up to less than
// 100 (a Route being rewritten) leave the rest to the last split, so no slot is unserved.
func (rt *Route) at(slot int) *Split {
	if len(rt.Splits) == 0 {
		return nil
	}
	upTo := 0
	for i := range rt.Splits {
		upTo += rt.Splits[i].Percent * (percentiles / 100)
		if slot < upTo {
			return &rt.Splits[i]
		}
	}
	return &rt.Splits[len(rt.Splits)-1]
}

// Traffic tells the router how a function's calls divide between its targets. The Knative
// ingress class (router/ingress) implements it from the Ingresses of its class; without it every
// call goes to the target Backends.Function names.
type Traffic interface {
	// Host returns the route that serves a request's Host header (a Knative Service's URL, or a
	// tag's), port allowed.
	Host(host string) (*Route, bool)
	// Function returns the route of the calls that name the function in their path
	// (/v1/actors/{function}/..., /v1/functions/{function}/...): its Service's main URL's.
	Function(function string) (*Route, bool)
}

// route returns the route a call of function came by: host's when it came by a host, else the
// function's main route; nil when the router has no traffic or the function no route.
func (r *Router) route(function, host string) *Route {
	if r.traffic == nil {
		return nil
	}
	var (
		rt *Route
		ok bool
	)
	if host != "" {
		rt, ok = r.traffic.Host(host)
	}
	if !ok {
		// Also when the host's route is gone (a tag removed while a WebSocket session or a
		// forwarded call still names it): the main route, not whatever revision is newest.
		rt, ok = r.traffic.Function(function)
	}
	if !ok || rt.Function != function {
		return nil
	}
	return rt
}

// current returns fn as the backends know it now: for calls made from a Function held since
// earlier (a WebSocket session's, a delayed effect's), so they follow a rollout or a
// redeployment. A call that has just looked its function up needs no second lookup.
func (r *Router) current(fn Function) Function {
	if cur, ok := r.backends.Function(fn.Name); ok {
		return cur
	}
	return fn
}

// target returns fn as the target its route's pick chooses, with that target's settings; fn
// itself when the call has no route. A target the backends do not know yet (a revision whose
// pods are still being created) keeps fn's settings: the activator holds its calls until its
// pods are ready.
func (r *Router) target(fn Function, host string, pick func(*Route) *Split) Function {
	rt := r.route(fn.Name, host)
	if rt == nil {
		return fn
	}
	sp := pick(rt)
	if sp == nil || sp.Target == "" {
		return fn
	}
	if t, ok := r.backends.(Targets); ok {
		if tf, ok := t.Target(fn.Name, sp.Target); ok {
			return tf
		}
	}
	fn.Target = sp.Target
	return fn
}

// serveHost serves a request that came by a route's host (a Knative Service's URL): the actor
// API under /v1/actors/{function}/..., where function must be the host's; every other path
// passes through to one of the function's pods, drawn from the route's split.
func (r *Router) serveHost(ctx *fasthttp.RequestCtx, a access, rt *Route, path []byte) {
	host := string(ctx.Host())
	if rest, ok := bytes.CutPrefix(path, prefixActors); ok {
		if fn, _, _ := bytes.Cut(rest, []byte("/")); string(fn) != rt.Function {
			writeError(ctx, errorf(fasthttp.StatusNotFound, CodeUnknownFunction, "%s serves function %q: call /v1/actors/%s/{id}/{action}", host, rt.Function, rt.Function))
			return
		}
		r.serveActor(ctx, a, rest, host)
		return
	}
	r.servePassThrough(ctx, a, rt.Function, bytes.TrimPrefix(path, []byte("/")), host)
}
