package local

import (
	"slices"
	"strconv"
	"strings"
)

// inheritedEnv names the variables of knactor's own environment that a pod inherits: what a
// process needs to run at all (PATH, HOME, user, shell, locale, time zone, temp dir, terminal,
// TLS roots) and the Go toolchain's settings, for functions whose command is `go run`. Nothing
// else of knactor's environment reaches a function, KNACTOR_* secrets (API tokens, S3 keys,
// encryption keys) above all: a function gets its own settings from its manifest's env.
var inheritedEnv = []string{
	"PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TERM",
	"XDG_CACHE_HOME", "XDG_CONFIG_HOME", "SSL_CERT_FILE", "SSL_CERT_DIR",
	"GOPATH", "GOROOT", "GOCACHE", "GOMODCACHE", "GOENV", "GOFLAGS", "GOPROXY", "GOSUMDB",
	"GONOSUMDB", "GOPRIVATE", "GONOPROXY", "GOINSECURE", "GOTOOLCHAIN",
}

// inheritedPrefixes are prefixes of inherited variables (the locale's categories).
var inheritedPrefixes = []string{"LC_"}

// inherited reports whether a pod inherits the variable name from knactor's environment.
func inherited(name string) bool {
	if slices.Contains(inheritedEnv, name) {
		return true
	}
	for _, p := range inheritedPrefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// podEnv is the environment of one pod of spec: the inherited part of environ (knactor's), then
// the function's own env from its manifest, then what the runtime sets as Knative does, which
// wins: PORT, HOST (loopback), K_SERVICE, K_CONFIGURATION and K_REVISION (the function's name,
// its name again, and "{name}-local": a local function has one revision), and KNACTOR_POD (the
// pod's name).
func podEnv(environ []string, spec Function, port int, podName string) []string {
	env := make([]string, 0, len(inheritedEnv)+len(spec.Env)+6)
	for _, kv := range environ {
		if name, _, ok := strings.Cut(kv, "="); ok && inherited(name) {
			env = append(env, kv)
		}
	}
	env = append(env, spec.Env...)
	return append(env,
		// HOST keeps functions that honour it (the Go SDK, the examples) on loopback.
		"HOST=127.0.0.1", "PORT="+strconv.Itoa(port),
		"K_SERVICE="+spec.Name, "K_CONFIGURATION="+spec.Name, "K_REVISION="+spec.Name+"-local",
		"KNACTOR_POD="+podName)
}
