package actorsystem

import (
	"context"
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	kubefake "k8s.io/client-go/kubernetes/fake"

	"github.com/knactor/knactor/crds/v1alpha1"
	"github.com/knactor/knactor/statecache"
)

// TestResolveEncryptionKeys: spec.encryption.keysSecretRef's Secret key "keys" becomes
// Settings.EncryptionKeys, checked to parse; a missing Secret, a missing key or keys that do not
// parse are CredentialsReady errors that show no key material.
func TestResolveEncryptionKeys(t *testing.T) {
	const k1 = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=" // 32 bytes
	const short = "MDEyMzQ1Njc4OWFiY2RlZg=="                  // 16 bytes
	withEncryption := system(func(as *v1alpha1.ActorSystem) {
		as.Spec.Encryption = &v1alpha1.EncryptionSpec{KeysSecretRef: corev1.LocalObjectReference{Name: "enc"}}
	})
	tests := []struct {
		name    string
		as      *v1alpha1.ActorSystem
		secrets []runtime.Object
		want    []string // key ids, active first, when Resolve succeeds
		reason  string
		inError string
	}{
		{name: "no encryption", as: system(), secrets: []runtime.Object{goodCreds}},
		{name: "keys", as: withEncryption, want: []string{"k2", "k1"},
			secrets: []runtime.Object{goodCreds, secret("enc", map[string]string{"keys": "k2:" + k1 + "\nk1:" + k1 + "\n"})}},
		{name: "no Secret", as: withEncryption, secrets: []runtime.Object{goodCreds},
			reason: ReasonSecretNotFound, inError: "Secret team-a/enc (spec.encryption.keysSecretRef) does not exist"},
		{name: "no keys key", as: withEncryption, secrets: []runtime.Object{goodCreds, secret("enc", map[string]string{"tokens": "k1:" + k1})},
			reason: ReasonSecretKeyMissing, inError: `has no key "keys"`},
		{name: "short key", as: withEncryption, secrets: []runtime.Object{goodCreds, secret("enc", map[string]string{"keys": "k1:" + short})},
			reason: ReasonBadEncryptionKeys, inError: `Secret team-a/enc (spec.encryption.keysSecretRef): key "keys": encryption keys: entry #1 (key "k1"): the key is 16 bytes`},
		{name: "no Secret name", as: system(func(as *v1alpha1.ActorSystem) { as.Spec.Encryption = &v1alpha1.EncryptionSpec{} }),
			secrets: []runtime.Object{goodCreds}, reason: ReasonInvalidSpec, inError: "spec.encryption.keysSecretRef.name: Required value"},
		{name: "no id", as: withEncryption, secrets: []runtime.Object{goodCreds, secret("enc", map[string]string{"keys": k1})},
			reason: ReasonBadEncryptionKeys, inError: "entry #1 has no ':'"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, s, err := Resolve(context.Background(), kubefake.NewClientset(tc.secrets...), dynamicClient(t, tc.as), ns, "default")
			if tc.reason != "" {
				var e *Error
				if !errors.As(err, &e) || e.Reason != tc.reason || !strings.Contains(err.Error(), tc.inError) {
					t.Fatalf("err = %v, want an *Error with reason %s containing %q", err, tc.reason, tc.inError)
				}
				if strings.Contains(err.Error(), k1[:8]) || strings.Contains(err.Error(), short[:8]) {
					t.Fatalf("the error shows key material: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.want == nil {
				if s.EncryptionKeys != "" {
					t.Fatalf("encryption keys %q without spec.encryption", s.EncryptionKeys)
				}
				return
			}
			kr, err := statecache.ParseKeyring(s.EncryptionKeys)
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(kr.IDs(), ","); got != strings.Join(tc.want, ",") {
				t.Fatalf("key ids %s, want %v", got, tc.want)
			}
		})
	}
}
