package router

import (
	"bytes"

	"github.com/knactor/knactor/router/routing"
	"github.com/valyala/fasthttp"
)

// route returns the route a call of function came by: host's when it came by a host, else the
// function's main route; nil when the router has no traffic or the function no route.
func (r *Router) route(function, host string) *routing.Route {
	if r.traffic == nil {
		return nil
	}
	var (
		rt *routing.Route
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
func (r *Router) current(fn routing.Function) routing.Function {
	if cur, ok := r.backends.Function(fn.Name); ok {
		return cur
	}
	return fn
}

// target returns fn as the target its route's pick chooses, with that target's settings; fn
// itself when the call has no route. A target the backends do not know yet (a revision whose
// pods are still being created) keeps fn's settings: the activator holds its calls until its
// pods are ready.
func (r *Router) target(fn routing.Function, host string, pick func(*routing.Route) *routing.Split) routing.Function {
	rt := r.route(fn.Name, host)
	if rt == nil {
		return fn
	}
	sp := pick(rt)
	if sp == nil || sp.Target == "" {
		return fn
	}
	if t, ok := r.backends.(routing.Targets); ok {
		if tf, ok := t.Target(fn.Name, sp.Target); ok {
			return tf
		}
	}
	fn.Revision = sp.Target
	return fn
}

// targetNote names fn's target in an error message, when it is not the function itself.
func targetNote(fn *routing.Function) string {
	if fn.Revision == "" || fn.Revision == fn.Name {
		return ""
	}
	return " (revision " + fn.Revision + ")"
}

// serveHost serves a request that came by a route's host (a Knative Service's URL): the actor
// API under /v1/actors/{function}/..., where function must be the host's; every other path
// passes through to one of the function's pods, drawn from the route's split.
func (r *Router) serveHost(ctx *fasthttp.RequestCtx, a access, rt *routing.Route, path []byte) {
	host := string(ctx.Host())
	if rest, ok := bytes.CutPrefix(path, prefixActors); ok {
		if fn, _, _ := bytes.Cut(rest, []byte("/")); string(fn) != rt.Function {
			writeError(ctx, errorf(fasthttp.StatusNotFound, CodeUnknownFunction, "%s serves function %q: call /v1/actors/%s/{id}/{action}", host, rt.Function, rt.Function))
			return
		}
		r.serveActor(ctx, a, rest, host)
		return
	}
	r.servePassThrough(ctx, a, rt.Function, true, bytes.TrimPrefix(path, []byte("/")), host)
}
