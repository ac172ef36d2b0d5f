package kubetest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
)

// Shim plays the kubelet's part for the data plane: for every Running pod that matches its
// selector it starts a real process meant to listen on the pod's IP (kwok runs no containers),
// and stops it by PID as soon as the pod is being deleted, stops running or changes IP. kwok
// hands a deleted pod's IP to the next pod at once, so the old process is always stopped before
// a process for another pod is started.
type Shim struct {
	t       testing.TB
	start   func(pod *corev1.Pod) *exec.Cmd
	logDir  string
	stopped chan struct{}
	cancel  context.CancelFunc

	mu    sync.Mutex
	procs map[types.UID]*shimProc // by pod UID
}

type shimProc struct {
	pod  string // namespace/name
	ip   string
	proc *process
}

// ShimProcess is one process the shim runs.
type ShimProcess struct {
	Pod string // namespace/name
	IP  string
	PID int
}

// RunOnPods starts a Shim for the pods in namespace that match labelSelector ("" for all) and
// stops it, with its processes, when the test ends. start returns the command for a pod (not yet
// started; typically listening on pod.Status.PodIP and the pod's container port); the shim adds
// a log file (logs/shim-NAME.log in the cluster's Dir) when the command has no Stdout/Stderr, and
// makes the process die with the test binary.
func (c *Cluster) RunOnPods(t testing.TB, namespace, labelSelector string, start func(pod *corev1.Pod) *exec.Cmd) *Shim {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &Shim{
		t: t, start: start, logDir: filepath.Join(c.Dir, "logs"),
		stopped: make(chan struct{}), cancel: cancel, procs: map[types.UID]*shimProc{},
	}
	factory := informers.NewSharedInformerFactoryWithOptions(c.Client, 0,
		informers.WithNamespace(namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = labelSelector }))
	inf := factory.Core().V1().Pods().Informer()
	// One handler goroutine: events are handled in order, so a pod's process is gone before a
	// later pod with the recycled IP gets one.
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { s.sync(obj) },
		UpdateFunc: func(_, obj any) { s.sync(obj) },
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if pod, ok := obj.(*corev1.Pod); ok {
				s.stopPod(pod.UID)
			}
		},
	}); err != nil {
		cancel()
		t.Fatalf("kubetest: shim: %v", err)
	}
	go func() {
		inf.Run(ctx.Done())
		close(s.stopped)
	}()
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		cancel()
		t.Fatal("kubetest: shim: pod informer did not sync")
	}
	t.Cleanup(s.Stop)
	return s
}

func (s *Shim) sync(obj any) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	want := pod.DeletionTimestamp == nil && pod.Status.Phase == corev1.PodRunning && pod.Status.PodIP != ""
	s.mu.Lock()
	cur := s.procs[pod.UID]
	s.mu.Unlock()
	if cur != nil && (!want || cur.ip != pod.Status.PodIP) {
		s.stopPod(pod.UID)
		cur = nil
	}
	if !want || cur != nil {
		return
	}
	cmd := s.start(pod)
	if cmd == nil {
		return
	}
	key := pod.Namespace + "/" + pod.Name
	logPath := filepath.Join(s.logDir, "shim-"+pod.Name+".log")
	if cmd.Stdout == nil && cmd.Stderr == nil {
		f, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
		if err != nil {
			s.t.Errorf("kubetest: shim: %v", err)
			return
		}
		defer f.Close()
		cmd.Stdout, cmd.Stderr = f, f
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	if err := cmd.Start(); err != nil {
		s.t.Errorf("kubetest: shim: start the process of pod %s: %v", key, err)
		return
	}
	p := &process{name: "shim " + key, logPath: logPath, cmd: cmd, exit: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.exit) }()
	s.mu.Lock()
	s.procs[pod.UID] = &shimProc{pod: key, ip: pod.Status.PodIP, proc: p}
	s.mu.Unlock()
}

func (s *Shim) stopPod(uid types.UID) {
	s.mu.Lock()
	sp := s.procs[uid]
	delete(s.procs, uid)
	s.mu.Unlock()
	if sp == nil {
		return
	}
	if err := sp.proc.stop(5 * time.Second); err != nil {
		s.t.Logf("kubetest: shim: %v", err)
	}
}

// Processes lists the shim's running processes, by pod name.
func (s *Shim) Processes() []ShimProcess {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]ShimProcess, 0, len(s.procs))
	for _, sp := range s.procs {
		if !sp.proc.exited() {
			out = append(out, ShimProcess{Pod: sp.pod, IP: sp.ip, PID: sp.proc.cmd.Process.Pid})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Pod < out[j].Pod })
	return out
}

// Stop stops watching and stops every process (SIGTERM, SIGKILL after 5 s). Idempotent.
func (s *Shim) Stop() {
	s.cancel()
	<-s.stopped
	s.mu.Lock()
	uids := make([]types.UID, 0, len(s.procs))
	for uid := range s.procs {
		uids = append(uids, uid)
	}
	s.mu.Unlock()
	for _, uid := range uids {
		s.stopPod(uid)
	}
}

// String describes the running processes, for test failure messages.
func (s *Shim) String() string {
	return fmt.Sprint(s.Processes())
}
