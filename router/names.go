package router

import (
	"sync"

	"github.com/valyala/fasthttp"
)

// maxNames bounds the function names a router interns. A router serves tens of functions; the
// bound only keeps a churn of deployments from growing the table for ever (a name past it is
// simply allocated per call, as before the table).
const maxNames = 4096

// names interns the names of deployed functions, so that a call names its function with the
// router's copy of the name instead of allocating one from its path. Only names that Backends
// knows are added, so a caller cannot grow the table with made-up names.
type names struct {
	mu sync.RWMutex
	m  map[string]string // guarded by mu
}

// of returns b as a string: the interned copy when there is one, else a new string, and whether
// it was interned.
func (n *names) of(b []byte) (string, bool) {
	n.mu.RLock()
	s, ok := n.m[string(b)] // the conversion in an index expression does not allocate
	n.mu.RUnlock()
	if ok {
		return s, true
	}
	return string(b), false
}

// add interns s, a deployed function's name.
func (n *names) add(s string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.m == nil {
		n.m = make(map[string]string)
	}
	if len(n.m) < maxNames {
		n.m[s] = s
	}
}

// methodName returns a request method as a string, without allocating for the usual methods.
func methodName(m []byte) string {
	switch string(m) { // a switch on a conversion does not allocate
	case fasthttp.MethodGet:
		return fasthttp.MethodGet
	case fasthttp.MethodPost:
		return fasthttp.MethodPost
	case fasthttp.MethodHead:
		return fasthttp.MethodHead
	case fasthttp.MethodPut:
		return fasthttp.MethodPut
	case fasthttp.MethodDelete:
		return fasthttp.MethodDelete
	case fasthttp.MethodPatch:
		return fasthttp.MethodPatch
	case fasthttp.MethodOptions:
		return fasthttp.MethodOptions
	}
	return string(m)
}
