package config

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
)

// The edge cases of the shared secret; the real control plane test (test/kube) checks that the
// components fill it and use it.
func TestInternalToken(t *testing.T) {
	secret := func(data map[string][]byte) runtime.Object {
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: InternalSecretName, Namespace: SystemNamespace}, Data: data}
	}
	tests := []struct {
		name    string
		objs    []runtime.Object
		want    string // "" for a generated one
		wantErr string
	}{
		{name: "not applied", wantErr: "apply config/"},
		{name: "empty: filled", objs: []runtime.Object{secret(nil)}},
		{name: "already filled", objs: []runtime.Object{secret(map[string][]byte{InternalTokenKey: []byte(strings.Repeat("k", 43))})}, want: strings.Repeat("k", 43)},
		{name: "too short", objs: []runtime.Object{secret(map[string][]byte{InternalTokenKey: []byte("short")})}, wantErr: "fewer than 32"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			kube := fake.NewSimpleClientset(tc.objs...)
			got, err := InternalToken(context.Background(), kube, SystemNamespace)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("InternalToken = %q, %v; want an error with %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.want != "" && got != tc.want {
				t.Fatalf("InternalToken = %q, want %q", got, tc.want)
			}
			if len(got) < 32 {
				t.Fatalf("InternalToken = %d characters, want ≥ 32", len(got))
			}
			// Every later reader gets the same secret.
			again, err := InternalToken(context.Background(), kube, SystemNamespace)
			if err != nil || again != got {
				t.Fatalf("second InternalToken = %q, %v; want the first one", again, err)
			}
		})
	}
}
