package manifest

import (
	"strings"
	"testing"
)

func TestAllowZeroInitialScale(t *testing.T) {
	doc := []byte(`apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: counter
spec:
  template:
    metadata:
      annotations:
        autoscaling.knative.dev/initial-scale: "0"
    spec:
      containers:
        - image: ko://github.com/knactor/knactor/examples/counter
`)
	if _, err := Parse(doc, ""); err == nil || !strings.Contains(err.Error(), "initial-scale") {
		t.Fatalf("default options: err = %v, want initial-scale refused", err)
	}
	fns, err := Options{AllowZeroInitialScale: true}.Parse(doc, "")
	if err != nil {
		t.Fatal(err)
	}
	if got := fns[0].Autoscaling.InitialScale; got != 0 {
		t.Fatalf("InitialScale = %d, want 0", got)
	}
}
