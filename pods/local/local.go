// Package local runs a function's pods as OS processes on 127.0.0.1: knactor's runtime for
// `knactor up` and for tests.
//
// Each pod is the function's command with $PORT set to a port of its own. A pod is ready once
// its /healthz answers 200 (probed every ProbeInterval while it starts); a pod whose process
// exits is restarted on the same port with exponential back-off; a pod being removed leaves the
// ready set first, is drained (its in-flight calls finish), then gets SIGTERM and, after
// StopGrace, SIGKILL. Each pod's output goes to a log file of its own.
//
// Functions is knactor up's platform over a Runtime: it deploys manifests (at start and through
// POST /v1/functions), keeps the router's view of the deployed functions and hands their
// autoscaling settings to the autoscaler. A `go run` command is built once at deploy (prebuild).
package local

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"k8s.io/utils/clock"

	"github.com/knactor/knactor/router/placement"
	"github.com/knactor/knactor/statecache"
)

// Defaults of Config.
const (
	// DefaultProbeInterval is how often a starting pod's /healthz is probed once the first quick
	// probes (1 ms, doubling) have failed: slower starters (go run, Python) are seen within 50 ms
	// without a busy loop.
	DefaultProbeInterval = 50 * time.Millisecond
	// DefaultStartTimeout restarts a pod that never turns ready (a hung start).
	DefaultStartTimeout = time.Minute
	// DefaultStopGrace is SIGTERM's grace period before SIGKILL, Kubernetes' default.
	DefaultStopGrace = 30 * time.Second
	// DefaultRestartBackoff doubles after each crash up to DefaultMaxRestartBackoff, as a
	// kubelet's crash-loop back-off does (with a shorter cap for a laptop).
	DefaultRestartBackoff    = 100 * time.Millisecond
	DefaultMaxRestartBackoff = 10 * time.Second
	// probeTimeout bounds one /healthz request.
	probeTimeout = time.Second
)

// Function is what the runtime runs for one function.
type Function struct {
	Name    string
	Command []string // argv; $PORT is set in its environment
	Dir     string   // working directory ("" = the runtime's)
	Env     []string // the function's own KEY=VALUE pairs (its manifest's env); see podEnv
}

// Drainer waits until no call is in flight to a pod that has left the ready set: the
// routing.InFlight the activator counts into.
type Drainer interface {
	Drain(ctx context.Context, pod placement.Pod) error
}

// WarmActors tells which actors of a function are warm (the state cache), so a scale-down can
// remove the pods that own the fewest of them.
type WarmActors interface {
	WarmIDs(function string) []string
}

// Config configures a Runtime.
type Config struct {
	LogDir            string // pod logs go to LogDir/{function}/{pod}.log; required
	ProbeInterval     time.Duration
	StartTimeout      time.Duration
	StopGrace         time.Duration
	RestartBackoff    time.Duration
	MaxRestartBackoff time.Duration
	Clock             clock.WithTicker
	Logger            *slog.Logger
	// Drainer waits for a pod's calls in flight before the pod stops (the routing.InFlight the
	// activator counts into); nil stops pods without waiting.
	Drainer Drainer
	// WarmActors tells a scale-down which actors are warm (the state cache); nil removes the
	// newest pods.
	WarmActors WarmActors
}

func (c *Config) setDefaults() {
	set := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	set(&c.ProbeInterval, DefaultProbeInterval)
	set(&c.StartTimeout, DefaultStartTimeout)
	set(&c.StopGrace, DefaultStopGrace)
	set(&c.RestartBackoff, DefaultRestartBackoff)
	set(&c.MaxRestartBackoff, DefaultMaxRestartBackoff)
	if c.Clock == nil {
		c.Clock = clock.RealClock{}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Runtime runs the pods of deployed functions.
//
// mu guards fns and every field of each function and pod struct; a pod's process handle
// belongs to its supervisor goroutine. Every pod has one supervisor goroutine, counted
// by wg; stopping goroutines (drain, then stop) are counted too. Close stops them all.
type Runtime struct {
	cfg    Config
	client *http.Client

	mu     sync.Mutex
	fns    map[string]*function
	closed bool

	wg sync.WaitGroup
}

type function struct {
	spec    Function
	pods    []*pod // serving or starting pods, oldest first; stopping pods are not here
	seq     int
	ready   *placement.Set
	changed chan struct{}
}

type podState int

const (
	starting podState = iota
	ready
	stopping
)

func (s podState) String() string { return [...]string{"starting", "ready", "stopping"}[s] }

type pod struct {
	name, addr, log string
	port            int
	state           podState
	restarts        int
	started         time.Time
	pid             int           // the running process, 0 between runs
	stop            chan struct{} // closed to ask the supervisor to stop the process
	done            chan struct{} // closed when the supervisor has ended
}

// PodStatus describes one pod, for status displays.
type PodStatus struct {
	Name     string
	Addr     string
	State    string
	Restarts int
	Log      string
}

// New returns a Runtime with no functions.
func New(cfg Config) (*Runtime, error) {
	cfg.setDefaults()
	if cfg.LogDir == "" {
		return nil, errors.New("local runtime: LogDir is required")
	}
	// Processes of pods a crashed knactor left behind (see sweep.go) would hold ports and run
	// turns nobody routes to: stop them first.
	if n := sweepRuns(cfg.LogDir, slog.Default()); n > 0 {
		slog.Warn("stopped processes of pods a previous knactor left running", "processes", n, "log-dir", cfg.LogDir)
	}
	return &Runtime{
		cfg:    cfg,
		client: &http.Client{Timeout: probeTimeout},
		fns:    make(map[string]*function),
	}, nil
}

// Deploy registers a function with no pods (scale it up with Scale). Deploying a name again
// replaces the command for pods started from then on.
func (r *Runtime) Deploy(f Function) error {
	if f.Name == "" || len(f.Command) == 0 {
		return fmt.Errorf("local runtime: function %q needs a name and a command", f.Name)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if fn, ok := r.fns[f.Name]; ok {
		fn.spec = f
		return nil
	}
	r.fns[f.Name] = &function{spec: f, ready: placement.NewSet(nil), changed: make(chan struct{})}
	return nil
}

// Ready returns the function's ready pods (routing.Backends).
func (r *Runtime) Ready(function string) *placement.Set {
	r.mu.Lock()
	defer r.mu.Unlock()
	if fn, ok := r.fns[function]; ok {
		return fn.ready
	}
	return placement.NewSet(nil)
}

// Changed returns a channel closed at the function's next ready-set change (routing.Backends).
func (r *Runtime) Changed(function string) <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	if fn, ok := r.fns[function]; ok {
		return fn.changed
	}
	return nil // never closes: an unknown function never gets pods
}

// ReadyPods returns how many pods of the function are ready (autoscaler.Scaler).
func (r *Runtime) ReadyPods(function string) int { return r.Ready(function).Len() }

// Pods describes the function's pods, oldest first.
func (r *Runtime) Pods(function string) []PodStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	fn, ok := r.fns[function]
	if !ok {
		return nil
	}
	out := make([]PodStatus, 0, len(fn.pods))
	for _, p := range fn.pods {
		out = append(out, PodStatus{Name: p.name, Addr: p.addr, State: p.state.String(), Restarts: p.restarts, Log: p.log})
	}
	return out
}

// Scale makes the function run n pods (autoscaler.Scaler). New pods start at once; removed pods
// leave the ready set at once and stop in the background once drained. Removal picks starting
// pods first, then the ready pods whose loss moves the fewest warm actors.
func (r *Runtime) Scale(_ context.Context, function string, n int32) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return errors.New("local runtime: closed")
	}
	fn, ok := r.fns[function]
	if !ok {
		return fmt.Errorf("local runtime: no function %q", function)
	}
	for len(fn.pods) < int(n) {
		if err := r.startLocked(fn); err != nil {
			return err
		}
	}
	if extra := len(fn.pods) - int(n); extra > 0 {
		victims := r.victimsLocked(fn, extra)
		fn.pods = slices.DeleteFunc(fn.pods, func(p *pod) bool { return slices.Contains(victims, p) })
		for _, p := range victims {
			p.state = stopping
		}
		r.publishLocked(fn)
		for _, p := range victims {
			r.wg.Add(1)
			go r.retire(p)
		}
	}
	return nil
}

func (r *Runtime) startLocked(fn *function) error {
	port, err := freePort()
	if err != nil {
		return fmt.Errorf("local runtime: no free port for %s: %w", fn.spec.Name, err)
	}
	fn.seq++
	name := fmt.Sprintf("%s-%05d", fn.spec.Name, fn.seq)
	dir := filepath.Join(r.cfg.LogDir, fn.spec.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("local runtime: %w", err)
	}
	p := &pod{
		name: name, port: port, addr: "127.0.0.1:" + strconv.Itoa(port),
		log: filepath.Join(dir, name+".log"), started: r.cfg.Clock.Now(),
		stop: make(chan struct{}), done: make(chan struct{}),
	}
	fn.pods = append(fn.pods, p)
	r.wg.Add(1)
	go r.supervise(fn.spec, p)
	return nil
}

// victimsLocked chooses k pods to remove: starting pods (newest first), then one ready pod at a
// time, the one owning the fewest warm actors among those that remain.
func (r *Runtime) victimsLocked(fn *function, k int) []*pod {
	var victims, serving []*pod
	for i := len(fn.pods) - 1; i >= 0; i-- {
		if p := fn.pods[i]; p.state == starting && len(victims) < k {
			victims = append(victims, p)
		} else if p.state == ready {
			serving = append(serving, p)
		}
	}
	var warm []string
	if r.cfg.WarmActors != nil && len(victims) < k {
		warm = r.cfg.WarmActors.WarmIDs(fn.spec.Name)
	}
	key := func(id string) string { return statecache.Key{Function: fn.spec.Name, ID: id}.String() } // its owner key
	for len(victims) < k && len(serving) > 0 {
		set := placement.NewSet(podsOf(serving))
		owned := make(map[string]int, len(serving))
		for _, id := range warm {
			if o, ok := set.Owner(key(id)); ok {
				owned[o.Name]++
			}
		}
		best := 0 // serving is newest first, so ties remove the newest pod
		for i, p := range serving {
			if owned[p.name] < owned[serving[best].name] {
				best = i
			}
		}
		victims = append(victims, serving[best])
		serving = slices.Delete(serving, best, best+1)
	}
	return victims
}

func podsOf(ps []*pod) []placement.Pod {
	out := make([]placement.Pod, len(ps))
	for i, p := range ps {
		out[i] = placement.Pod{Name: p.name, Addr: p.addr}
	}
	return out
}

// publishLocked recomputes the ready set and wakes whoever waits for a change.
func (r *Runtime) publishLocked(fn *function) {
	var rs []*pod
	for _, p := range fn.pods {
		if p.state == ready {
			rs = append(rs, p)
		}
	}
	fn.ready = placement.NewSet(podsOf(rs))
	close(fn.changed)
	fn.changed = make(chan struct{})
}

func (r *Runtime) setState(fnName string, p *pod, s podState, crashed bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if p.state == stopping {
		return // already out of the ready set
	}
	if crashed {
		p.restarts++
	}
	if p.state != s {
		p.state = s
		if fn, ok := r.fns[fnName]; ok {
			r.publishLocked(fn)
		}
	}
}

// retire drains a pod that has left the ready set, then stops it.
func (r *Runtime) retire(p *pod) {
	defer r.wg.Done()
	if d := r.cfg.Drainer; d != nil {
		ctx, cancel := context.WithTimeout(context.Background(), r.cfg.StopGrace)
		if err := d.Drain(ctx, placement.Pod{Name: p.name, Addr: p.addr}); err != nil {
			r.cfg.Logger.Warn("pod drain incomplete; stopping it anyway", "pod", p.name, "err", err)
		}
		cancel()
	}
	close(p.stop)
	<-p.done
}

// supervise runs one pod's process: start, probe until ready, restart on exit with back-off,
// and stop with SIGTERM then SIGKILL when asked.
func (r *Runtime) supervise(spec Function, p *pod) {
	defer r.wg.Done()
	defer close(p.done)
	backoff := r.cfg.RestartBackoff
	for {
		exited, proc, err := r.startProcess(spec, p)
		if err == nil {
			r.mu.Lock()
			p.pid = proc.Pid
			r.mu.Unlock()
		}
		if err != nil {
			r.cfg.Logger.Error("pod failed to start", "pod", p.name, "err", err)
		} else {
			if r.probe(p, exited) {
				r.setState(spec.Name, p, ready, false)
				backoff = r.cfg.RestartBackoff
			}
			select {
			case <-exited:
				r.setState(spec.Name, p, starting, true)
				r.cfg.Logger.Warn("pod exited; restarting", "pod", p.name, "backoff", backoff, "log", p.log)
			case <-p.stop:
				r.terminate(proc, exited)
				return
			}
		}
		t := r.cfg.Clock.NewTimer(backoff)
		select {
		case <-t.C():
		case <-p.stop:
			t.Stop()
			return
		}
		backoff = min(2*backoff, r.cfg.MaxRestartBackoff)
	}
}

func (r *Runtime) startProcess(spec Function, p *pod) (<-chan struct{}, *os.Process, error) {
	logf, err := os.OpenFile(p.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, nil, err
	}
	defer logf.Close()
	// The command runs under a shim (shim.go) that stops every process of the pod when knactor
	// goes, even by SIGKILL.
	cmd, lifeline, err := shimCommand(spec.Command)
	if err != nil {
		return nil, nil, err
	}
	cmd.Dir = spec.Dir
	run := newRunID()
	unmark, err := markRun(r.cfg.LogDir, run, p.name)
	if err != nil {
		lifeline.Close()
		cmd.ExtraFiles[0].Close()
		return nil, nil, err
	}
	cmd.Env = append(podEnv(os.Environ(), spec, p.port, p.name), shimEnv+"=1", runEnv+"="+run)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Own process group, so SIGTERM/SIGKILL reach a wrapper's children too (go run, shells).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = cmd.Start()
	cmd.ExtraFiles[0].Close() // the shim's end of the lifeline
	if err != nil {
		lifeline.Close()
		unmark()
		return nil, nil, err
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		lifeline.Close()
		// A shim that exited stopped every process of the pod first; one that was killed may
		// have left some, stopped here (and, should knactor die first, by the next one's sweep).
		if cmd.ProcessState == nil || !cmd.ProcessState.Exited() {
			killRuns(map[string]string{run: p.name}, slog.Default())
		}
		unmark()
		close(exited)
	}()
	return exited, cmd.Process, nil
}

// probe polls the pod's /healthz until it answers 200 (true), or the process exits, the pod is
// stopped or StartTimeout passes (false; a hung start is killed so the loop restarts it). The
// first probes come quickly (1 ms, doubling up to ProbeInterval): a Go function listens within
// milliseconds, and every millisecond here is cold-start latency.
func (r *Runtime) probe(p *pod, exited <-chan struct{}) bool {
	url := "http://" + p.addr + "/healthz"
	deadline := r.cfg.Clock.Now().Add(r.cfg.StartTimeout)
	wait := min(time.Millisecond, r.cfg.ProbeInterval)
	for {
		if resp, err := r.client.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return true
			}
		}
		t := r.cfg.Clock.NewTimer(wait)
		select {
		case <-exited:
			t.Stop()
			return false
		case <-p.stop:
			t.Stop()
			return false
		case <-t.C():
		}
		wait = min(2*wait, r.cfg.ProbeInterval)
		if r.cfg.Clock.Now().After(deadline) {
			r.cfg.Logger.Warn("pod not ready in time; killing it", "pod", p.name, "timeout", r.cfg.StartTimeout)
			return false
		}
	}
}

// terminate sends SIGTERM to the pod's process group, then SIGKILL after StopGrace.
func (r *Runtime) terminate(proc *os.Process, exited <-chan struct{}) {
	_ = syscall.Kill(-proc.Pid, syscall.SIGTERM)
	t := r.cfg.Clock.NewTimer(r.cfg.StopGrace)
	defer t.Stop()
	select {
	case <-exited:
	case <-t.C():
		_ = syscall.Kill(-proc.Pid, syscall.SIGKILL)
		<-exited
	}
	_ = syscall.Kill(-proc.Pid, syscall.SIGKILL) // stragglers of the group
}

// Kill sends SIGKILL to one pod's process, as a crash would (for tests and chaos drills).
func (r *Runtime) Kill(function, podName string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	fn, ok := r.fns[function]
	if !ok {
		return fmt.Errorf("no function %q", function)
	}
	for _, p := range fn.pods {
		if p.name == podName {
			if p.pid == 0 {
				return fmt.Errorf("pod %q has no running process", podName)
			}
			return syscall.Kill(-p.pid, syscall.SIGKILL)
		}
	}
	return fmt.Errorf("no pod %q", podName)
}

// Close stops every pod (SIGTERM, grace, SIGKILL) and waits for them, bounded by ctx.
func (r *Runtime) Close(ctx context.Context) error {
	r.mu.Lock()
	r.closed = true
	for _, fn := range r.fns {
		for _, p := range fn.pods {
			p.state = stopping
			close(p.stop)
		}
		fn.pods = nil
		r.publishLocked(fn)
	}
	r.mu.Unlock()
	done := make(chan struct{})
	go func() { r.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("local runtime: pods still stopping: %w", ctx.Err())
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
