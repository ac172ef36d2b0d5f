package local

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestPodEnv(t *testing.T) {
	environ := []string{"PATH=/bin", "HOME=/home/u", "LC_ALL=C", "KNACTOR_AUTH_TOKENS=tok", "KNACTOR_S3_SECRET_KEY=sk",
		"AWS_SECRET_ACCESS_KEY=aws", "GOPROXY=https://proxy", "PORT=1", "RANDOM_THING=x"}
	got := podEnv(environ, Function{Name: "counter", Env: []string{"GREETING=hi", "PORT=2"}}, 8080, "counter-1")
	want := []string{"PATH=/bin", "HOME=/home/u", "LC_ALL=C", "GOPROXY=https://proxy", "GREETING=hi", "PORT=2",
		"HOST=127.0.0.1", "PORT=8080", "K_SERVICE=counter", "K_CONFIGURATION=counter", "K_REVISION=counter-local", "KNACTOR_POD=counter-1"}
	if !slices.Equal(got, want) {
		t.Fatalf("podEnv =\n%q\nwant\n%q", got, want)
	}
}

// A pod's process sees its manifest's env and the runtime's, never knactor's secrets: it runs
// `env` before it execs the counter, and the test reads what it printed.
func TestPodsGetACleanEnvironment(t *testing.T) {
	t.Setenv("KNACTOR_AUTH_TOKENS", "operator-token-0123456789")
	t.Setenv("KNACTOR_S3_SECRET_KEY", "s3-secret")
	r := newRuntime(t, Config{})
	dir := t.TempDir()
	script := `env > "$KNACTOR_POD.env" && exec "$0"`
	if err := r.Deploy(Function{Name: "counter", Dir: dir, Env: []string{"GREETING=hi"},
		Command: []string{"/bin/sh", "-c", script, counterBin(t)}}); err != nil {
		t.Fatal(err)
	}
	if err := r.Scale(context.Background(), "counter", 1); err != nil {
		t.Fatal(err)
	}
	pod := waitReady(t, r, "counter", 1).Pods()[0]
	b, err := os.ReadFile(filepath.Join(dir, pod.Name+".env"))
	if err != nil {
		t.Fatal(err)
	}
	env := strings.Split(strings.TrimSpace(string(b)), "\n")
	for _, kv := range env {
		if strings.Contains(kv, "operator-token") || strings.Contains(kv, "s3-secret") {
			t.Errorf("the pod sees knactor's secret: %s", kv)
		}
	}
	for _, want := range []string{"GREETING=hi", "K_SERVICE=counter", "HOST=127.0.0.1", "KNACTOR_POD=" + pod.Name} {
		if !slices.Contains(env, want) {
			t.Errorf("the pod's environment lacks %s:\n%s", want, b)
		}
	}
}
