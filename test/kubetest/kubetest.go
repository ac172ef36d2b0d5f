// Package kubetest starts a real Kubernetes control plane for tests: etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler and kwok (fake nodes whose pods get loopback IPs from
// 127.1.0.0/16), as processes on 127.0.0.1.
//
// The binaries are the pinned builds that hack/kube/install.sh installs into the project's bin/
// (built through the Go toolchain the first time, 12-20 min cold on 2 cores; reused afterwards).
// A test package that uses Start runs its tests inside a private network namespace:
//
//	func TestMain(m *testing.M) { kubetest.ReexecInNetNS(m) }
//
//	func TestSomething(t *testing.T) {
//		c := kubetest.Start(t) // stopped when the test ends
//		client := kubernetes.NewForConfigOrDie(c.Config)
//		...
//	}
//
// There is no kubelet: kwok marks the fake node Ready and every pod scheduled to it Running with
// an IP in 127.1.0.0/16, and a test makes the data plane real by starting a process that listens
// on that pod IP. Two limits of this harness: EndpointSlices refuse loopback addresses, so a
// Service never gets endpoints (read ready pods from the Pods themselves), and nothing routes a
// ClusterIP to a Service's pods (there is no kube-proxy). ClusterIPs come from ServiceCIDR, which
// is loopback too: a connection to a Service's ClusterIP:port reaches whatever process listens on
// all addresses at that port, which is how the API server reaches Knative's webhook through its
// Service (see StartKnative).
//
// Under `go test -short` Start skips; otherwise a cluster that cannot start fails the test.
package kubetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/knactor/knactor/test/proctest"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

const (
	// PodCIDR is the range kwok assigns pod IPs from; all of it is loopback.
	PodCIDR = "127.1.0.0/16"
	// ServiceCIDR is the API server's --service-cluster-ip-range, where Services get their
	// ClusterIPs (the "kubernetes" Service 127.2.0.1). It is loopback like PodCIDR, and apart from
	// it: the API server resolves an admission webhook's (or an aggregated API's) Service
	// reference to https://CLUSTERIP:PORT and dials that, and inside the test's network namespace
	// only loopback addresses lead anywhere. The API server accepts a loopback range here (only
	// Endpoints, EndpointSlices and externalIPs refuse loopback addresses).
	ServiceCIDR = "127.2.0.0/16"
	// NodeIP is the fake nodes' address.
	NodeIP = "127.0.0.1"

	// startTimeout bounds the whole start-up (~4-7 s on 2 cores, more under load).
	startTimeout = 2 * time.Minute
	// stopGrace is how long a component gets after SIGTERM before SIGKILL.
	stopGrace = 10 * time.Second
)

// Components in start order; stopped in reverse.
var components = []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"}

// Cluster is one running control plane.
type Cluster struct {
	// Kubeconfig is the path of an admin kubeconfig (system:masters, bearer token).
	Kubeconfig string
	// Config is the same admin identity for client-go.
	Config *rest.Config
	// Client is a clientset for Config.
	Client kubernetes.Interface
	// Server is the API server's URL, https://127.0.0.1:PORT.
	Server string
	// Etcd is etcd's client URL, http://127.0.0.1:PORT.
	Etcd string
	// Node is the name of the fake node Start created; AddNode adds more.
	Node string
	// Dir holds certificates, etcd's data and the components' logs (logs/NAME.log).
	Dir string
	// StartupTime is how long Start took, from the first process to the node being Ready.
	StartupTime time.Duration

	bins   map[string]string
	pki    *pki
	procs  map[string]*process
	phases []string // "name 1.2s" per start-up step, for the log

	stopOnce sync.Once
	stopErr  error
}

var (
	binOnce sync.Once
	bins    map[string]string
	binErr  error
)

// Binaries returns the paths of the pinned binaries by name (etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler, kubectl, kwok), building the missing ones with
// hack/kube/install.sh first. The build needs the Go module proxy, so inside the test network
// namespace only binaries that are already present can be found; ReexecInNetNS builds them before
// it enters. KNACTOR_BIN_DIR overrides the bin directory.
//
// A cold build takes 12-20 minutes on 2 cores, longer than go test's default -timeout (10m; go
// test kills the binary a minute after it): run hack/kube/install.sh before go test (as CI
// should, caching bin/), or pass a larger -timeout.
func Binaries() (map[string]string, error) {
	binOnce.Do(func() {
		root, err := moduleRoot()
		if err != nil {
			binErr = err
			return
		}
		// install.sh is silent when everything is present; a build's progress (minutes) is
		// shown as it happens.
		var stderr bytes.Buffer
		cmd := exec.Command("bash", filepath.Join(root, "hack", "kube", "install.sh"), "--paths")
		cmd.Stderr = io.MultiWriter(os.Stderr, &stderr)
		out, err := cmd.Output()
		if err != nil {
			binErr = fmt.Errorf("install the control plane with hack/kube/install.sh: %w\n%s", err, stderr.String())
			return
		}
		m := map[string]string{}
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			name, path, ok := strings.Cut(line, " ")
			if !ok {
				binErr = fmt.Errorf("hack/kube/install.sh --paths printed %q", line)
				return
			}
			m[name] = path
		}
		bins = m
	})
	return bins, binErr
}

// moduleRoot finds the repository root (with hack/kube/install.sh) from the working directory up.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "hack", "kube", "install.sh")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("cannot find the knactor repository root (hack/kube/install.sh) above the working directory")
		}
		dir = parent
	}
}

// Start runs a control plane with one Ready fake node for the test and stops it, by PID, when
// the test ends. It skips under -short and fails the test when the cluster cannot start. The
// test binary must run inside the network namespace of ReexecInNetNS (or with KNACTOR_NETNS=host).
func Start(t testing.TB) *Cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("needs a real Kubernetes control plane; run without -short")
	}
	if !isolationOK() {
		t.Fatal("kubetest: the test binary is not in a private network namespace; " +
			"add `func TestMain(m *testing.M) { kubetest.ReexecInNetNS(m) }` to the package " +
			"(or set KNACTOR_NETNS=host to run without one)")
	}
	b, err := Binaries()
	if err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	c := &Cluster{Dir: t.TempDir(), bins: b, procs: map[string]*process{}}
	t.Cleanup(func() {
		if t.Failed() {
			c.logTails(t)
		}
		start := time.Now()
		if err := c.Stop(); err != nil {
			t.Errorf("kubetest: stop: %v", err)
		}
		t.Logf("kubetest: control plane stopped in %v", time.Since(start).Round(time.Millisecond))
	})
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if err := c.start(ctx); err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	t.Logf("kubetest: control plane up in %v [%s] (%s, logs in %s)", c.StartupTime.Round(time.Millisecond),
		strings.Join(c.phases, ", "), c.Server, filepath.Join(c.Dir, "logs"))
	return c
}

func (c *Cluster) start(ctx context.Context) error {
	begin := time.Now()
	last := begin
	phase := func(name string) {
		now := time.Now()
		c.phases = append(c.phases, fmt.Sprintf("%s %v", name, now.Sub(last).Round(time.Millisecond)))
		last = now
	}
	for _, d := range []string{"logs", "etcd", "kcm", "scheduler", "kwok-home"} {
		if err := os.MkdirAll(filepath.Join(c.Dir, d), 0o700); err != nil {
			return err
		}
	}
	p, err := newPKI(filepath.Join(c.Dir, "pki"))
	if err != nil {
		return fmt.Errorf("certificates: %w", err)
	}
	c.pki = p
	ports, err := proctest.FreePorts(6)
	if err != nil {
		return err
	}
	etcdPort, peerPort, apiPort, kcmPort, schedPort, kwokPort := ports[0], ports[1], ports[2], ports[3], ports[4], ports[5]
	c.Etcd = fmt.Sprintf("http://127.0.0.1:%d", etcdPort)
	c.Server = fmt.Sprintf("https://127.0.0.1:%d", apiPort)
	peer := fmt.Sprintf("http://127.0.0.1:%d", peerPort)
	c.Kubeconfig = filepath.Join(c.Dir, "kubeconfig")
	if err := os.WriteFile(c.Kubeconfig, []byte(c.kubeconfig()), 0o600); err != nil {
		return err
	}

	if err := c.run("etcd",
		"--name=default", "--data-dir="+filepath.Join(c.Dir, "etcd", "data"),
		"--listen-client-urls="+c.Etcd, "--advertise-client-urls="+c.Etcd,
		"--listen-peer-urls="+peer, "--initial-advertise-peer-urls="+peer,
		"--initial-cluster=default="+peer,
		"--unsafe-no-fsync", // test data is thrown away; fsync only costs time
		// One member: a short election timeout makes it leader (and healthy) in ~0.1 s instead
		// of ~0.7 s; with no peers there is nothing for short timeouts to destabilise.
		"--heartbeat-interval=10", "--election-timeout=100",
		"--log-level=warn",
	); err != nil {
		return err
	}
	if err := waitHTTP(ctx, c.procs["etcd"], c.Etcd+"/health", nil, ""); err != nil {
		return err
	}
	phase("etcd")

	if err := c.run("kube-apiserver",
		"--etcd-servers="+c.Etcd,
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", fmt.Sprintf("--secure-port=%d", apiPort),
		"--tls-cert-file="+p.serverCert, "--tls-private-key-file="+p.serverKey,
		"--client-ca-file="+p.caCert, "--token-auth-file="+p.tokens,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+p.saPub, "--service-account-signing-key-file="+p.saKey,
		"--authorization-mode=RBAC", "--service-cluster-ip-range="+ServiceCIDR,
		// No token controller mounts service-account tokens into fake pods.
		"--disable-admission-plugins=ServiceAccount",
		// The "kubernetes" Service's endpoints would be 127.0.0.1, which validation refuses.
		"--endpoint-reconciler-type=none",
		"--profiling=false",
	); err != nil {
		return err
	}
	if err := waitHTTP(ctx, c.procs["kube-apiserver"], c.Server+"/readyz", p.caPEM, p.token); err != nil {
		return err
	}
	phase("kube-apiserver")

	// The rest connect to the apiserver on their own; start them together.
	if err := c.run("kube-controller-manager",
		"--kubeconfig="+c.Kubeconfig, "--leader-elect=false",
		"--bind-address=127.0.0.1", fmt.Sprintf("--secure-port=%d", kcmPort), "--cert-dir="+filepath.Join(c.Dir, "kcm"),
		// Controllers for clouds, node IPAM, Service load balancers and bootstrap tokens have
		// nothing to do here.
		"--controllers=*,-nodeipam,-cloud-node-lifecycle,-route,-service,-bootstrapsigner,-tokencleaner",
		"--service-account-private-key-file="+p.saKey, "--root-ca-file="+p.caCert,
		"--cluster-signing-cert-file="+p.caCert, "--cluster-signing-key-file="+p.caKey,
		"--use-service-account-credentials=false", "--profiling=false",
	); err != nil {
		return err
	}
	if err := c.run("kube-scheduler",
		"--kubeconfig="+c.Kubeconfig, "--leader-elect=false",
		"--bind-address=127.0.0.1", fmt.Sprintf("--secure-port=%d", schedPort), "--cert-dir="+filepath.Join(c.Dir, "scheduler"),
		"--profiling=false",
	); err != nil {
		return err
	}
	if err := c.run("kwok",
		"--kubeconfig="+c.Kubeconfig,
		// Pod IPs are handed out upwards from the address given, so 127.1.0.1/16 keeps the
		// network address 127.1.0.0 out; all of them are inside PodCIDR.
		"--manage-all-nodes=true", "--cidr=127.1.0.1/16", "--node-ip="+NodeIP,
		fmt.Sprintf("--server-address=127.0.0.1:%d", kwokPort),
	); err != nil {
		return err
	}
	for _, w := range []struct{ name, url string }{
		{"kube-controller-manager", fmt.Sprintf("https://127.0.0.1:%d/healthz", kcmPort)},
		{"kube-scheduler", fmt.Sprintf("https://127.0.0.1:%d/healthz", schedPort)},
		{"kwok", fmt.Sprintf("http://127.0.0.1:%d/healthz", kwokPort)},
	} {
		if err := waitHTTP(ctx, c.procs[w.name], w.url, nil, ""); err != nil {
			return err
		}
	}
	phase("controller-manager+scheduler+kwok")

	c.Config = &rest.Config{
		Host:            c.Server,
		BearerToken:     p.token,
		TLSClientConfig: rest.TLSClientConfig{CAData: p.caPEM},
		QPS:             200,
		Burst:           400,
	}
	if c.Client, err = kubernetes.NewForConfig(c.Config); err != nil {
		return err
	}
	// The apiserver creates the system namespaces right after it is ready; objects in "default"
	// are refused until then.
	if err := poll(ctx, func() (bool, error) {
		_, err := c.Client.CoreV1().Namespaces().Get(ctx, metav1.NamespaceDefault, metav1.GetOptions{})
		return err == nil, ignoreNotFound(err)
	}); err != nil {
		return fmt.Errorf("namespace default: %w", err)
	}
	c.Node = "kwok-node-0"
	if err := c.AddNode(ctx, c.Node); err != nil {
		return err
	}
	phase("node Ready")
	if err := c.warmIPPool(ctx); err != nil {
		return err
	}
	phase("pod IPs")
	c.StartupTime = time.Since(begin)
	return nil
}

// warmIPPool runs one pod to its IP and deletes it. kwok v0.7.0 creates its pod IP pool on first
// use without a lock (PodController.ipPool: Load, then Store), so two pods that get the first IPs
// at the same moment can each get a fresh pool and the same IP. One pod alone makes the pool.
func (c *Cluster) warmIPPool(ctx context.Context) error {
	pods := c.Client.CoreV1().Pods(metav1.NamespaceDefault)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "kubetest-ip-pool"},
		Spec:       corev1.PodSpec{NodeName: c.Node, Containers: []corev1.Container{{Name: "c", Image: "none"}}},
	}
	if _, err := pods.Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("warm kwok's IP pool: %w", err)
	}
	if err := poll(ctx, func() (bool, error) {
		p, err := pods.Get(ctx, pod.Name, metav1.GetOptions{})
		return err == nil && p.Status.PodIP != "", ignoreNotFound(err)
	}); err != nil {
		return fmt.Errorf("warm kwok's IP pool: no pod IP: %w", err)
	}
	zero := int64(0)
	if err := pods.Delete(ctx, pod.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		return fmt.Errorf("warm kwok's IP pool: %w", err)
	}
	return poll(ctx, func() (bool, error) {
		_, err := pods.Get(ctx, pod.Name, metav1.GetOptions{})
		return err != nil, ignoreNotFound(err)
	})
}

// run starts the named component from its pinned binary, logging to logs/NAME.log.
func (c *Cluster) run(name string, args ...string) error {
	var env []string
	if name == "kwok" {
		// kwok merges ~/.kwok/kwok.yaml into its configuration when it exists; keep a
		// developer's out.
		env = append(os.Environ(), "HOME="+filepath.Join(c.Dir, "kwok-home"))
	}
	p, err := startProcess(name, filepath.Join(c.Dir, "logs", name+".log"), c.bins[name], env, args...)
	if err != nil {
		return err
	}
	c.procs[name] = p
	return nil
}

func (c *Cluster) kubeconfig() string {
	return fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: kubetest
  cluster:
    server: %s
    certificate-authority: %s
users:
- name: admin
  user:
    token: %s
contexts:
- name: kubetest
  context:
    cluster: kubetest
    user: admin
    namespace: default
current-context: kubetest
`, c.Server, c.pki.caCert, c.pki.token)
}

// AddNode creates a fake node that kwok manages, and waits until it is Ready.
func (c *Cluster) AddNode(ctx context.Context, name string) error {
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("32"),
		corev1.ResourceMemory: resource.MustParse("256Gi"),
		corev1.ResourcePods:   resource.MustParse("110"),
	}
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Labels:      map[string]string{"type": "kwok", "kubernetes.io/hostname": name},
			Annotations: map[string]string{"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
		},
		Status: corev1.NodeStatus{Capacity: capacity, Allocatable: capacity},
	}
	if _, err := c.Client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create node %s: %w", name, err)
	}
	err := poll(ctx, func() (bool, error) {
		n, err := c.Client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("node %s not Ready: %w; kwok log:\n%s", name, err, c.procs["kwok"].tail(20))
	}
	return nil
}

// Kubectl runs the pinned kubectl against the cluster and returns its combined output.
func (c *Cluster) Kubectl(args ...string) (string, error) {
	cmd := exec.Command(c.bins["kubectl"], append([]string{"--kubeconfig=" + c.Kubeconfig}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// LogPath returns the log file of a component (etcd, kube-apiserver, kube-controller-manager,
// kube-scheduler, kwok).
func (c *Cluster) LogPath(component string) string {
	return filepath.Join(c.Dir, "logs", component+".log")
}

// PID returns the process ID of a running component, or 0.
func (c *Cluster) PID(component string) int {
	if p := c.procs[component]; p != nil && !p.exited() {
		return p.cmd.Process.Pid
	}
	return 0
}

// Stop stops every component by PID: kwok, the scheduler and the controller-manager together,
// then the apiserver, then etcd (SIGTERM, SIGKILL after 10 s). It is idempotent; Start's cleanup
// calls it.
func (c *Cluster) Stop() error {
	c.stopOnce.Do(func() {
		var errs []error
		var mu sync.Mutex
		stopAll := func(names ...string) {
			var wg sync.WaitGroup
			for _, n := range names {
				p := c.procs[n]
				if p == nil {
					continue
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					if err := p.stop(stopGrace); err != nil {
						mu.Lock()
						errs = append(errs, err)
						mu.Unlock()
					}
				}()
			}
			wg.Wait()
		}
		stopAll("kwok", "kube-scheduler", "kube-controller-manager")
		stopAll("kube-apiserver")
		stopAll("etcd")
		c.stopErr = errors.Join(errs...)
	})
	return c.stopErr
}

func (c *Cluster) logTails(t testing.TB) {
	for _, name := range components {
		if p := c.procs[name]; p != nil {
			t.Logf("kubetest: last lines of %s (%s):\n%s", name, p.logPath, p.tail(30))
		}
	}
}

// poll calls f every 50 ms until it returns true or an error, or ctx ends.
func poll(ctx context.Context, f func() (bool, error)) error {
	for {
		ok, err := f()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func ignoreNotFound(err error) error {
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// ServiceAccountKubeconfig writes a kubeconfig that acts as the ServiceAccount namespace/name,
// with a token from the TokenRequest API (valid for an hour), and returns its path. Components
// started with it have exactly the permissions RBAC grants that account, as they would in a pod.
func (c *Cluster) ServiceAccountKubeconfig(t testing.TB, namespace, name string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	hour := int64(3600)
	tr, err := c.Client.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &hour}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("kubetest: token for service account %s/%s: %v", namespace, name, err)
	}
	cfg := strings.Replace(c.kubeconfig(), "token: "+c.pki.token, "token: "+tr.Status.Token, 1)
	cfg = strings.Replace(cfg, "- name: admin", "- name: "+name, 1)
	cfg = strings.Replace(cfg, "user: admin", "user: "+name, 1)
	path := filepath.Join(c.Dir, "kubeconfig-"+namespace+"-"+name)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// Bin returns the path of an installed binary (kubectl, kube-apiserver, knative-controller, ...),
// empty when hack/kube/install.sh did not install it: for tests that run commands as a user
// would, with the pinned kubectl first on PATH.
func (c *Cluster) Bin(name string) string { return c.bins[name] }
