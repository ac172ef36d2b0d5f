package actorsystem

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	kubefake "k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/knactor/knactor/crds/v1alpha1"
	"github.com/knactor/knactor/statecache"
)

const ns = "team-a"

func system(mutate ...func(*v1alpha1.ActorSystem)) *v1alpha1.ActorSystem {
	as := &v1alpha1.ActorSystem{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.SchemeGroupVersion.String(), Kind: v1alpha1.Kind},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "default", Generation: 3},
		Spec: v1alpha1.ActorSystemSpec{Store: v1alpha1.StoreSpec{S3: &v1alpha1.S3Store{
			Endpoint: "127.0.0.1:9000", Bucket: "state", CredentialsSecretRef: corev1.LocalObjectReference{Name: "creds"},
		}}},
	}
	for _, m := range mutate {
		m(as)
	}
	return as
}

func secret(name string, data map[string]string) *corev1.Secret {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Data: map[string][]byte{}}
	for k, v := range data {
		s.Data[k] = []byte(v)
	}
	return s
}

var goodCreds = secret("creds", map[string]string{"accessKey": "AK", "secretKey": "SK"})

// dynamicClient is a fake dynamic client holding the systems as unstructured objects, as the
// real API server hands them to a dynamic client (a scheme with the typed kind makes the fake
// store typed objects on update, which its List then cannot return).
func dynamicClient(t *testing.T, systems ...*v1alpha1.ActorSystem) *dynamicfake.FakeDynamicClient {
	t.Helper()
	var objs []runtime.Object
	for _, as := range systems {
		u, err := v1alpha1.ToUnstructured(as)
		if err != nil {
			t.Fatal(err)
		}
		objs = append(objs, u)
	}
	return dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{v1alpha1.Resource: v1alpha1.ListKind}, objs...)
}

func TestResolve(t *testing.T) {
	tests := []struct {
		name    string
		as      *v1alpha1.ActorSystem
		secrets []runtime.Object
		forbid  bool
		check   func(t *testing.T, s Settings)
		reason  string // the *Error's reason, "" when Resolve succeeds
		inError string
	}{{
		name:    "defaults and credentials",
		as:      system(),
		secrets: []runtime.Object{goodCreds},
		check: func(t *testing.T, s Settings) {
			if s.S3.AccessKey != "AK" || s.S3.SecretKey != "SK" || s.S3.Bucket != "state" || s.WriteMode != statecache.WriteThrough {
				t.Errorf("settings = %+v", s)
			}
			if s.CacheBytes != statecache.DefaultMaxBytes || len(s.AuthTokens) != 0 {
				t.Errorf("cache %d tokens %v: want the defaults, no auth", s.CacheBytes, s.AuthTokens)
			}
		},
	}, {
		name: "auth tokens split on commas and newlines",
		as: system(func(as *v1alpha1.ActorSystem) {
			as.Spec.Auth = &v1alpha1.AuthSpec{TokensSecretRef: corev1.LocalObjectReference{Name: "tokens"}}
		}),
		secrets: []runtime.Object{goodCreds, secret("tokens", map[string]string{"tokens": "aaaaaaaaaaaaaaaa, bbbbbbbbbbbbbbbb\ncccccccccccccccc\n"})},
		check: func(t *testing.T, s Settings) {
			if strings.Join(s.AuthTokens, "|") != "aaaaaaaaaaaaaaaa|bbbbbbbbbbbbbbbb|cccccccccccccccc" || s.WriteMode != statecache.WriteThrough {
				t.Errorf("tokens %q mode %v", s.AuthTokens, s.WriteMode)
			}
		},
	}, {
		name: "credentials Secret missing", as: system(),
		reason: ReasonSecretNotFound, inError: `Secret team-a/creds (spec.store.s3.credentialsSecretRef) does not exist`,
	}, {
		name: "credentials Secret lacks a key", as: system(),
		secrets: []runtime.Object{secret("creds", map[string]string{"accessKey": "AK"})},
		reason:  ReasonSecretKeyMissing, inError: `has no key "secretKey"`,
	}, {
		name: "Secrets forbidden", as: system(), forbid: true,
		reason: ReasonSecretForbidden, inError: `grant "get" on secrets`,
	}, {
		name: "empty tokens",
		as: system(func(as *v1alpha1.ActorSystem) {
			as.Spec.Auth = &v1alpha1.AuthSpec{TokensSecretRef: corev1.LocalObjectReference{Name: "tokens"}}
		}),
		secrets: []runtime.Object{goodCreds, secret("tokens", map[string]string{"tokens": " ,\n"})},
		reason:  ReasonSecretKeyMissing, inError: "holds no token",
	}, {
		name: "short token",
		as: system(func(as *v1alpha1.ActorSystem) {
			as.Spec.Auth = &v1alpha1.AuthSpec{TokensSecretRef: corev1.LocalObjectReference{Name: "tokens"}}
		}),
		secrets: []runtime.Object{goodCreds, secret("tokens", map[string]string{"tokens": "aaaaaaaaaaaaaaaa,short"})},
		reason:  ReasonWeakToken, inError: "token #2: token is shorter than 16 characters",
	}, {
		name:    "invalid spec",
		as:      system(func(as *v1alpha1.ActorSystem) { as.Spec.Store.S3.Bucket = "" }),
		secrets: []runtime.Object{goodCreds},
		reason:  ReasonInvalidSpec, inError: "spec.store.s3.bucket",
	}, {
		// A router never starts write-behind on a cluster: it would lose acknowledged writes
		// when an actor moves to another router.
		name:    "write-behind refused",
		as:      system(func(as *v1alpha1.ActorSystem) { as.Spec.WriteMode = v1alpha1.WriteBehind }),
		secrets: []runtime.Object{goodCreds},
		reason:  ReasonInvalidSpec, inError: `spec.writeMode: Invalid value: "write-behind": write-behind is refused on a cluster`,
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			kube := kubefake.NewClientset(tc.secrets...)
			if tc.forbid {
				kube.PrependReactor("get", "secrets", func(clienttesting.Action) (bool, runtime.Object, error) {
					return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "secrets"}, "creds", errors.New("RBAC"))
				})
			}
			_, s, err := Resolve(context.Background(), kube, dynamicClient(t, tc.as), ns, "default")
			if tc.reason == "" {
				if err != nil {
					t.Fatal(err)
				}
				tc.check(t, s)
				return
			}
			var e *Error
			if !errors.As(err, &e) || e.Reason != tc.reason || !strings.Contains(err.Error(), tc.inError) {
				t.Fatalf("err = %v, want an *Error with reason %s containing %q", err, tc.reason, tc.inError)
			}
			if strings.Contains(err.Error(), "SK") {
				t.Errorf("the error shows a secret: %v", err)
			}
		})
	}

	t.Run("no such ActorSystem", func(t *testing.T) {
		_, _, err := Resolve(context.Background(), kubefake.NewClientset(), dynamicClient(t), ns, "default")
		if err == nil || !strings.Contains(err.Error(), "ActorSystem team-a/default does not exist") {
			t.Errorf("err = %v", err)
		}
	})
}

func TestReconcile(t *testing.T) {
	unreachable := errors.New(`s3 store: open bucket at 127.0.0.1:9000: dial tcp: connection refused`)
	missing := errors.New(`s3 store: bucket "state" does not exist at 127.0.0.1:9000; create it or enable bucket creation`)
	tests := []struct {
		name     string
		secrets  []runtime.Object
		probe    error
		ready    metav1.ConditionStatus
		reason   string
		creds    metav1.ConditionStatus
		store    metav1.ConditionStatus
		inReason string
	}{
		{name: "ready", secrets: []runtime.Object{goodCreds}, ready: "True", reason: ReasonReady, creds: "True", store: "True"},
		{name: "store unreachable", secrets: []runtime.Object{goodCreds}, probe: unreachable, ready: "False", reason: ReasonStoreUnreachable, creds: "True", store: "False", inReason: "connection refused"},
		{name: "bucket missing", secrets: []runtime.Object{goodCreds}, probe: missing, ready: "False", reason: ReasonBucketNotFound, creds: "True", store: "False", inReason: "does not exist"},
		{name: "no credentials", ready: "False", reason: ReasonSecretNotFound, creds: "False", store: "False", inReason: "does not exist"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dyn := dynamicClient(t, system())
			clk := clocktesting.NewFakeClock(time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC))
			probes := 0
			r := &Reconciler{Kube: kubefake.NewClientset(tc.secrets...), Dynamic: dyn, Namespace: ns, Clock: clk,
				Probe: func(context.Context, statecache.S3Config) error { probes++; return tc.probe }}
			if err := r.ReconcileAll(context.Background()); err != nil {
				t.Fatal(err)
			}
			got, err := v1alpha1.Get(context.Background(), dyn, ns, "default")
			if err != nil {
				t.Fatal(err)
			}
			if got.Status.ObservedGeneration != 3 {
				t.Errorf("observedGeneration = %d, want 3", got.Status.ObservedGeneration)
			}
			for typ, want := range map[string]metav1.ConditionStatus{
				v1alpha1.ConditionReady: tc.ready, v1alpha1.ConditionCredentialsReady: tc.creds, v1alpha1.ConditionStoreReady: tc.store,
			} {
				c := meta.FindStatusCondition(got.Status.Conditions, typ)
				if c == nil || c.Status != want {
					t.Errorf("condition %s = %+v, want status %s", typ, c, want)
				}
			}
			ready := meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionReady)
			if ready != nil && (ready.Reason != tc.reason || !strings.Contains(ready.Message, tc.inReason)) {
				t.Errorf("Ready reason %q message %q, want reason %s and a message containing %q", ready.Reason, ready.Message, tc.reason, tc.inReason)
			}

			// A second pass with nothing changed writes nothing and keeps the transition time.
			before := len(dyn.Actions())
			clk.Step(time.Minute)
			if err := r.ReconcileAll(context.Background()); err != nil {
				t.Fatal(err)
			}
			for _, a := range dyn.Actions()[before:] {
				if a.GetVerb() == "update" {
					t.Errorf("an unchanged status was written again: %v", a)
				}
			}
		})
	}
}

func TestReconcileAllForbidden(t *testing.T) {
	dyn := dynamicClient(t)
	dyn.PrependReactor("list", "actorsystems", func(clienttesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(v1alpha1.Resource.GroupResource(), "", errors.New("RBAC"))
	})
	r := &Reconciler{Kube: kubefake.NewClientset(), Dynamic: dyn, Namespace: ns}
	err := r.ReconcileAll(context.Background())
	if err == nil || !strings.Contains(err.Error(), "apply config/ RBAC") {
		t.Errorf("err = %v, want one that says to apply config/ RBAC", err)
	}
}
