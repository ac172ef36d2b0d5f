package e2e

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/knactor/knactor/test/proctest"
)

// The status page (/ui) in a real browser: Debian's headless Chromium (hack/install-chromium.sh,
// which hack/test.sh runs) loads the page against `knactor up` and the test reads the DOM the
// page's JavaScript built from GET /v1/status, through a load step that scales the counter
// 0 → N → 0. Screenshots of each phase go to $KNACTOR_TEST_ARTIFACTS/<test>/ (default
// $TMPDIR/knactor-test-artifacts/<test>/, overwritten by the next run); the test logs where.

// chromium finds the browser: $KNACTOR_CHROMIUM, /usr/bin/chromium, or chromium on PATH.
func chromium() string {
	for _, c := range []string{os.Getenv("KNACTOR_CHROMIUM"), "/usr/bin/chromium"} {
		if c == "" {
			continue
		}
		if info, err := os.Stat(c); err == nil && !info.IsDir() && info.Mode()&0o111 != 0 {
			return c
		}
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	return ""
}

// artifactDir is where the test's screenshots go, emptied first.
func artifactDir(t *testing.T) string {
	t.Helper()
	base := os.Getenv("KNACTOR_TEST_ARTIFACTS")
	if base == "" {
		base = filepath.Join(os.TempDir(), "knactor-test-artifacts")
	}
	dir := filepath.Join(base, t.Name())
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// headless runs the browser on one page load: it lets the page run for 3 s of virtual time
// (the page polls the status once a second; network waits do not count) and then dumps the
// DOM or takes a screenshot, as args say.
type headless struct {
	bin, profile string
}

func (h headless) run(t *testing.T, url string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	all := append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
		"--no-first-run", "--no-default-browser-check", "--disable-extensions", "--disable-sync",
		"--hide-scrollbars", "--mute-audio", "--user-data-dir=" + h.profile,
		"--window-size=1400,1100", "--virtual-time-budget=3000"}, args...)
	cmd := exec.CommandContext(ctx, h.bin, append(all, url)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // its helpers die with it on a timeout
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", h.bin, args, err, tail(stderr.String(), 2000))
	}
	return out
}

func (h headless) dom(t *testing.T, url string) string {
	t.Helper()
	return string(h.run(t, url, "--dump-dom"))
}

func (h headless) screenshot(t *testing.T, url, path string) {
	t.Helper()
	h.run(t, url, "--screenshot="+path)
	if info, err := os.Stat(path); err != nil || info.Size() == 0 {
		t.Fatalf("no screenshot at %s: %v", path, err)
	}
	t.Logf("screenshot: %s", path)
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

var counterRow = regexp.MustCompile(`<tr data-function="counter" data-ready="(\d+)" data-desired="(-?\d*)">`)

// readyInDOM returns the ready pods the page shows for the counter, -1 when it shows no row.
func readyInDOM(dom string) int {
	m := counterRow.FindStringSubmatch(dom)
	if m == nil {
		return -1
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// waitDOM loads the page until cond holds for the counter's ready pods in its DOM, or fails
// after limit; it returns the DOM that satisfied it.
func (h headless) waitDOM(t *testing.T, url, what string, limit time.Duration, cond func(int) bool) string {
	t.Helper()
	start := time.Now()
	for {
		dom := h.dom(t, url)
		n := readyInDOM(dom)
		if n >= 0 && cond(n) {
			t.Logf("%s: the page shows %d ready pods (%v)", what, n, time.Since(start).Round(time.Millisecond))
			return dom
		}
		if time.Since(start) > limit {
			t.Fatalf("%s: after %v the page shows %d ready pods (-1: no counter row); DOM:\n%s", what, limit, n, tail(dom, 4000))
		}
		time.Sleep(300 * time.Millisecond)
	}
}

func TestStatusPageInABrowserFollowsScaleFromZeroAndBack(t *testing.T) {
	skipShort(t)
	bin := chromium()
	if bin == "" {
		t.Skip("status page browser test: Debian's chromium is not installed (hack/install-chromium.sh installs it as root with apt-get; hack/test.sh runs it)")
	}
	shots := artifactDir(t)
	t.Logf("screenshots go to %s", shots)
	h := headless{bin: bin, profile: t.TempDir()}

	// A function that scales fast: from zero on the first call, to zero 6 s (the shortest
	// stable window Knative allows) plus 1 s of grace after the load stops.
	manifest := proctest.CounterManifest(t, "counter",
		"autoscaling.knative.dev/initial-scale", "0",
		"autoscaling.knative.dev/window", "6s",
		"autoscaling.knative.dev/target", "1",
		"autoscaling.knative.dev/target-utilization-percentage", "100",
		"autoscaling.knative.dev/max-scale", "3",
	)
	u := startUp(t, nil, "-f", manifest, "--allow-zero-initial-scale", "--scale-to-zero-grace", "1s")
	r := routerProc{Process: u.Process, url: u.url}
	page := u.url + "/ui/"
	start := time.Now()

	// An error answer, which the page lists with its request id.
	req, err := http.NewRequest("POST", u.url+"/v1/actors/nope/x/add", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Request-Id", "ui-test-error-1")
	if resp, err := client.Do(req); err != nil || resp.StatusCode != 404 {
		t.Fatalf("call to an unknown function: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}

	// At zero: the page lists the function with no pods, from the embedded assets only.
	dom := h.waitDOM(t, page, "before any call", 10*time.Second, func(n int) bool { return n == 0 })
	for _, want := range []string{`id="functions"`, `local: knactor up`, `class="uplot`} {
		if !strings.Contains(dom, want) {
			t.Fatalf("the page at zero lacks %q (uPlot not loaded, or no data); DOM:\n%s", want, tail(dom, 4000))
		}
	}
	h.screenshot(t, page, filepath.Join(shots, "1-at-zero.png"))

	// A load step: 8 callers against a target of 1 call per pod. The page shows pods rising.
	l := startLoad(r, 8, 4)
	dom = h.waitDOM(t, page, "under load", 20*time.Second, func(n int) bool { return n >= 1 })
	time.Sleep(2 * time.Second) // a few seconds of load on the timeline
	h.screenshot(t, page, filepath.Join(shots, "2-under-load.png"))
	l.end()
	if f := l.failed.Load(); f > 0 {
		t.Errorf("%d calls of the load step failed: %v", f, l.errs)
	}
	if !regexp.MustCompile(`<code>w\d-a\d</code>`).MatchString(dom) {
		t.Errorf("the page under load lists no hot actor of the load; DOM:\n%s", tail(dom, 4000))
	}

	// Idle: the page shows the function back at zero, and its cold starts.
	dom = h.waitDOM(t, page, "after the load", 30*time.Second, func(n int) bool { return n == 0 })
	h.screenshot(t, page, filepath.Join(shots, "3-back-at-zero.png"))
	if !strings.Contains(dom, "<code>ui-test-error-1</code>") || !strings.Contains(dom, "unknown_function") {
		t.Errorf("the page does not list the error answer with its request id; DOM:\n%s", tail(dom, 4000))
	}
	if !regexp.MustCompile(`id="sum-cold" class="value">[1-9]`).MatchString(dom) {
		t.Errorf("the page counts no cold start after scaling from zero; DOM:\n%s", tail(dom, 4000))
	}
	t.Logf("0 → N → 0 on the page in %v", time.Since(start).Round(time.Second))
}

// With tokens the page's files load without one, and the page asks for the token in its form
// instead of showing data (the data endpoint answered 401).
func TestStatusPageInABrowserAsksForAToken(t *testing.T) {
	skipShort(t)
	bin := chromium()
	if bin == "" {
		t.Skip("status page browser test: Debian's chromium is not installed (hack/install-chromium.sh installs it as root with apt-get; hack/test.sh runs it)")
	}
	pod := startCounter(t)
	r := startRouter(t, []string{"KNACTOR_AUTH_TOKENS=ui-test-token-0123456789"}, "--state-dir", t.TempDir(), "--function", "counter="+pod)
	h := headless{bin: bin, profile: t.TempDir()}
	dom := h.dom(t, r.url+"/ui/")
	if !strings.Contains(dom, `<form id="login" class="login">`) || !strings.Contains(dom, `<main id="main" hidden="">`) {
		t.Fatalf("the page does not ask for a token; DOM:\n%s", tail(dom, 4000))
	}
	h.screenshot(t, r.url+"/ui/", filepath.Join(artifactDir(t), "login.png"))
}
