package local

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/knactor/knactor/autoscaler"
	"github.com/knactor/knactor/manifest"
	"github.com/knactor/knactor/router"
	"github.com/knactor/knactor/router/routing"
	"github.com/knactor/knactor/statecache"
)

// Functions is knactor up's deployed functions: the router's Backends (the runtime's
// ready pods and each function's settings), its FunctionLister (GET /v1/functions) and its
// Deployer (POST /v1/functions, `kn-actor deploy -f`).
//
// Deploying checks every function of a manifest before it deploys any, so a manifest deploys
// whole or not at all. A function deployed again is updated in place: its autoscaling,
// timeout, containerConcurrency and state cap at once, its command, working directory and env
// for the pods started from then on (running pods keep theirs until they stop); a different
// knactor.dev/write-mode is refused, because the function's cached state would have to move
// between caches (restart knactor up to change it).
//
// deployMu serializes deployments and guards deployed. routes is the router's view, read on
// every call without a lock: a deployment stores a new map, never changes a stored one.
type Functions struct {
	*Runtime
	scaler *autoscaler.Autoscaler
	modes  WriteModes
	grace  time.Duration
	opts   manifest.Options

	deployMu sync.Mutex
	deployed map[string]functionSettings
	routes   atomic.Pointer[map[string]routing.Function]
}

var (
	_ routing.Backends      = (*Functions)(nil)
	_ router.FunctionLister = (*Functions)(nil)
	_ router.Deployer       = (*Functions)(nil)
)

// WriteModes is where the deployed functions' state settings are kept: knactor up's state, whose
// caches are one per write mode.
type WriteModes interface {
	// DefaultWriteMode is the write mode of a function whose manifest names none.
	DefaultWriteMode() statecache.WriteMode
	// PinMode makes function use mode ("" is the default) unless it already uses another one,
	// which is an error; changed reports a function seen for the first time.
	PinMode(function, mode string) (changed bool, err error)
	// SetPassivateAfter gives function's actors their own idle time before they leave the
	// cache (knactor.dev/passivate-after; 0: never); a negative d gives them the platform's.
	SetPassivateAfter(function string, d time.Duration)
}

// functionSettings is everything deploying one function sets, so a redeployment can tell an
// update from a no-op.
type functionSettings struct {
	pod   Function
	route routing.Function
	spec  autoscaler.Spec
	mode  statecache.WriteMode
	idle  time.Duration // knactor.dev/passivate-after; -1: the platform's
}

// NewFunctions returns knactor up's functions, none deployed yet: their pods run on rt, scaler
// autoscales them (ScaleToZeroGracePeriod grace), modes pins their state write modes, and
// Deploy parses manifests with opts.
func NewFunctions(rt *Runtime, scaler *autoscaler.Autoscaler, modes WriteModes, grace time.Duration, opts manifest.Options) *Functions {
	f := &Functions{Runtime: rt, scaler: scaler, modes: modes, grace: grace, opts: opts, deployed: map[string]functionSettings{}}
	f.routes.Store(&map[string]routing.Function{})
	return f
}

// Function implements routing.Backends.
func (f *Functions) Function(name string) (routing.Function, bool) {
	fn, ok := (*f.routes.Load())[name]
	return fn, ok
}

// Names returns the deployed functions' names, sorted.
func (f *Functions) Names() []string {
	return slices.Sorted(maps.Keys(*f.routes.Load()))
}

// FunctionStatuses implements router.FunctionLister: the runtime's pods now and the
// autoscaler's latest decision.
func (f *Functions) FunctionStatuses() []router.FunctionStatus {
	names := f.Names()
	out := make([]router.FunctionStatus, 0, len(names))
	for _, name := range names {
		fs := router.FunctionStatus{Function: name}
		for _, p := range f.Pods(name) {
			switch p.State {
			case "ready":
				fs.ReadyPods++
			case "starting":
				fs.StartingPods++
			}
		}
		if s, ok := f.scaler.Status(name); ok {
			fs.DesiredPods, fs.Panicking, fs.ActiveActors, fs.ScaleError = int(s.DesiredPods), s.Panicking, s.ActiveActors, s.ScaleError
		}
		out = append(out, fs)
	}
	return out
}

// Deploy implements router.Deployer: it parses the manifest as `knactor up -f` does and
// deploys its functions.
func (f *Functions) Deploy(_ context.Context, data []byte, dir string) ([]router.Deployment, error) {
	fns, err := f.opts.Parse(data, dir)
	if err != nil {
		return nil, marked(router.ErrBadManifest, err)
	}
	for _, fn := range fns {
		for _, w := range fn.Warnings {
			slog.Warn("manifest", "function", fn.Name, "warning", w)
		}
	}
	return f.DeployFunctions(fns)
}

// settings checks fn and resolves what deploying it sets.
func (f *Functions) settings(fn manifest.Function) (functionSettings, error) {
	if len(fn.Command) == 0 {
		return functionSettings{}, fmt.Errorf("function %q has no knactor.dev/command annotation: set the command that runs it locally", fn.Name)
	}
	spec, err := autoscaler.SpecFromManifest(fn, f.grace)
	if err != nil {
		return functionSettings{}, err
	}
	mode := f.modes.DefaultWriteMode()
	if fn.WriteMode != "" {
		if mode, err = statecache.ParseWriteMode(fn.WriteMode); err != nil {
			return functionSettings{}, fmt.Errorf("function %q: %w", fn.Name, err)
		}
	}
	idle := time.Duration(-1)
	if fn.PassivateAfterSet {
		idle = fn.PassivateAfter
	}
	command, err := prebuild(context.Background(), fn.Name, fn.WorkingDir, fn.Command)
	if err != nil {
		return functionSettings{}, err
	}
	return functionSettings{
		pod: Function{Name: fn.Name, Command: command, Dir: fn.WorkingDir, Env: plainEnv(fn)},
		route: routing.Function{
			Name: fn.Name, Timeout: fn.Timeout, MaxStateBytes: fn.MaxStateBytes, ContainerConcurrency: int(fn.ContainerConcurrency),
		},
		spec: spec,
		mode: mode,
		idle: idle,
	}, nil
}

// DeployFunctions deploys fns, parsed manifests (see Functions): knactor up's -f files at
// start, and Deploy's. Errors in the functions wrap router.ErrBadManifest, a refused change
// router.ErrDeployConflict.
func (f *Functions) DeployFunctions(fns []manifest.Function) ([]router.Deployment, error) {
	f.deployMu.Lock()
	defer f.deployMu.Unlock()
	all := make([]functionSettings, len(fns))
	for i, fn := range fns {
		s, err := f.settings(fn)
		if err != nil {
			return nil, marked(router.ErrBadManifest, err)
		}
		if old, ok := f.deployed[fn.Name]; ok && old.mode != s.mode {
			return nil, marked(router.ErrDeployConflict, fmt.Errorf(
				"function %q runs with knactor.dev/write-mode %s: changing it to %s needs a restart of knactor up (its cached state lives in the %s cache)",
				fn.Name, old.mode, s.mode, old.mode))
		}
		all[i] = s
	}
	routes := maps.Clone(*f.routes.Load())
	defer func() { f.routes.Store(&routes) }() // the functions deployed, also after an error
	out := make([]router.Deployment, 0, len(fns))
	for i, fn := range fns {
		s := all[i]
		result := router.DeployCreated
		if old, ok := f.deployed[fn.Name]; ok {
			result = router.DeployUpdated
			if reflect.DeepEqual(old, s) {
				result = router.DeployUnchanged
			}
		}
		if result != router.DeployUnchanged {
			// State first and the router last: a call is routed only once everything knows it.
			_, err := f.modes.PinMode(fn.Name, s.mode.String())
			if err == nil {
				f.modes.SetPassivateAfter(fn.Name, s.idle)
			}
			if err == nil {
				err = f.Runtime.Deploy(s.pod)
			}
			if err == nil {
				err = f.scaler.Add(fn.Name, s.spec)
			}
			if err != nil {
				return out, fmt.Errorf("deploying function %q: %w", fn.Name, err)
			}
		}
		f.deployed[fn.Name] = s
		routes[fn.Name] = s.route
		out = append(out, router.Deployment{Function: fn.Name, Result: result, Warnings: fn.Warnings})
	}
	return out, nil
}

// markedError is err, also matching mark with errors.Is, with err's message alone.
type markedError struct{ mark, err error }

func marked(mark, err error) error { return &markedError{mark: mark, err: err} }

func (e *markedError) Error() string { return e.err.Error() }

func (e *markedError) Unwrap() []error { return []error{e.mark, e.err} }

// plainEnv returns the manifest's env entries that carry a value; valueFrom references
// (Secrets, ConfigMaps) exist only on a cluster.
func plainEnv(fn manifest.Function) []string {
	var env []string
	for _, e := range fn.Env {
		if e.ValueFrom != nil {
			slog.Warn("env entry with valueFrom is ignored in local mode", "function", fn.Name, "name", e.Name)
			continue
		}
		env = append(env, e.Name+"="+e.Value)
	}
	return env
}
