package routing

import (
	"math/rand/v2"

	"github.com/cespare/xxhash/v2"
)

// Split is one share of a Route: a percentage of the function's calls and the target (in
// Kubernetes mode, a Knative revision) whose pods serve it.
type Split struct {
	// Target names the pods that serve the share: a revision (Targets.Target, Backends.Ready).
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
	// Splits are the route's shares, in order; their percentages add up to 100.
	Splits []Split
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
