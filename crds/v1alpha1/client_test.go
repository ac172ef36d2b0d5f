package v1alpha1

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
)

func actorSystem(namespace, name string) *ActorSystem {
	return &ActorSystem{
		TypeMeta:   metav1.TypeMeta{APIVersion: SchemeGroupVersion.String(), Kind: Kind},
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, Generation: 1},
		Spec:       validSpec(),
	}
}

// fakeClient is a dynamic client whose tracker holds objs, with ActorSystem in its scheme.
func fakeClient(t *testing.T, objs ...runtime.Object) *dynamicfake.FakeDynamicClient {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	return dynamicfake.NewSimpleDynamicClientWithCustomListKinds(scheme,
		map[schema.GroupVersionResource]string{Resource: ListKind}, objs...)
}

func TestGet(t *testing.T) {
	client := fakeClient(t, actorSystem("team-a", "default"), actorSystem("team-b", "default"))
	tests := []struct {
		name, namespace, object string
		notFound                bool
	}{
		{name: "exists", namespace: "team-a", object: "default"},
		{name: "other namespace", namespace: "team-b", object: "default"},
		{name: "missing name", namespace: "team-a", object: "prod", notFound: true},
		{name: "missing namespace", namespace: "team-c", object: "default", notFound: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Get(context.Background(), client, tc.namespace, tc.object)
			if tc.notFound {
				if !apierrors.IsNotFound(err) {
					t.Fatalf("Get = %v, %v; want a NotFound error", got, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := actorSystem(tc.namespace, tc.object)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Get (-want +got):\n%s", diff)
			}
		})
	}
}

func TestList(t *testing.T) {
	client := fakeClient(t, actorSystem("team-b", "default"), actorSystem("team-a", "z"), actorSystem("team-a", "a"))
	tests := []struct {
		namespace string
		want      []string
	}{
		{namespace: "team-a", want: []string{"team-a/a", "team-a/z"}},
		{namespace: "team-b", want: []string{"team-b/default"}},
		{namespace: "team-c", want: nil},
		{namespace: "", want: []string{"team-a/a", "team-a/z", "team-b/default"}},
	}
	for _, tc := range tests {
		t.Run("namespace="+tc.namespace, func(t *testing.T) {
			got, err := List(context.Background(), client, tc.namespace)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, as := range got {
				names = append(names, as.Namespace+"/"+as.Name)
				if as.Spec.Store.S3 == nil || as.Spec.Store.S3.Bucket != "knactor-state" {
					t.Errorf("%s/%s: spec not decoded: %+v", as.Namespace, as.Name, as.Spec)
				}
			}
			if diff := cmp.Diff(tc.want, names); diff != "" {
				t.Errorf("List (-want +got):\n%s", diff)
			}
		})
	}
}

func TestUpdateStatus(t *testing.T) {
	client := fakeClient(t, actorSystem("team-a", "default"))
	ctx := context.Background()
	as, err := Get(ctx, client, "team-a", "default")
	if err != nil {
		t.Fatal(err)
	}
	as.Status.ObservedGeneration = as.Generation
	as.Status.SetCondition(metav1.Condition{Type: ConditionReady, Status: metav1.ConditionTrue, Reason: "Ready", ObservedGeneration: as.Generation})
	as.TypeMeta = metav1.TypeMeta{} // UpdateStatus sets apiVersion and kind itself
	updated, err := UpdateStatus(ctx, client, as)
	if err != nil {
		t.Fatal(err)
	}
	if !updated.Status.IsReady() || updated.Status.ObservedGeneration != 1 {
		t.Fatalf("UpdateStatus returned status %+v", updated.Status)
	}
	again, err := Get(ctx, client, "team-a", "default")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(updated.Status, again.Status); diff != "" {
		t.Errorf("stored status differs from the returned one (-returned +stored):\n%s", diff)
	}

	missing := actorSystem("team-a", "gone")
	if _, err := UpdateStatus(ctx, client, missing); !apierrors.IsNotFound(err) {
		t.Errorf("UpdateStatus of a missing object = %v, want NotFound", err)
	}
}

func TestFromUnstructured(t *testing.T) {
	tests := []struct {
		name    string
		obj     map[string]any
		wantErr string
		check   func(t *testing.T, as *ActorSystem)
	}{{
		name: "full object",
		obj: map[string]any{
			"apiVersion": "knactor.dev/v1alpha1", "kind": "ActorSystem",
			"metadata": map[string]any{"name": "default", "namespace": "team-a"},
			"spec": map[string]any{
				"store": map[string]any{"s3": map[string]any{
					"endpoint": "minio:9000", "bucket": "state", "prefix": "a/", "tls": true,
					"credentialsSecretRef": map[string]any{"name": "creds"},
				}},
				"cache":     map[string]any{"sizeMB": int64(64), "passivateAfter": "5m", "flushInterval": "250ms"},
				"writeMode": "write-behind",
				"auth":      map[string]any{"tokensSecretRef": map[string]any{"name": "tokens"}},
			},
			"status": map[string]any{"observedGeneration": int64(3)},
		},
		check: func(t *testing.T, as *ActorSystem) {
			s := as.Spec
			if s.Store.S3.Endpoint != "minio:9000" || s.Store.S3.Prefix != "a/" || !s.Store.S3.TLS ||
				s.Store.S3.CredentialsSecretRef.Name != "creds" || s.Cache.SizeMB != 64 ||
				s.Cache.PassivateAfter.Duration.String() != "5m0s" || s.Cache.FlushInterval.Duration.String() != "250ms" ||
				s.WriteMode != WriteBehind || s.Auth.TokensSecretRef.Name != "tokens" || as.Status.ObservedGeneration != 3 {
				t.Errorf("decoded %+v", as)
			}
			// write-behind (a mode other than the default, to see it decoded) is the one thing
			// Validate refuses: several routers share a cluster's actors.
			if err := s.Validate(); err == nil || !strings.HasPrefix(err.Error(), `spec.writeMode: Invalid value: "write-behind"`) || strings.Contains(err.Error(), "\n") {
				t.Errorf("Validate: %v, want only the write-behind refusal", err)
			}
		},
	}, {
		name: "no apiVersion and kind",
		obj:  map[string]any{"metadata": map[string]any{"name": "x"}, "spec": map[string]any{}},
		check: func(t *testing.T, as *ActorSystem) {
			if as.APIVersion != "knactor.dev/v1alpha1" || as.Kind != "ActorSystem" {
				t.Errorf("TypeMeta = %+v, want it set", as.TypeMeta)
			}
		},
	}, {
		name:    "another kind",
		obj:     map[string]any{"apiVersion": "v1", "kind": "ConfigMap", "metadata": map[string]any{"name": "x", "namespace": "y"}},
		wantErr: "/v1, Kind=ConfigMap y/x is not a knactor.dev/v1alpha1, Kind=ActorSystem",
	}, {
		name:    "another version",
		obj:     map[string]any{"apiVersion": "knactor.dev/v1", "kind": "ActorSystem"},
		wantErr: "is not a knactor.dev/v1alpha1",
	}, {
		name:    "bad field type",
		obj:     map[string]any{"apiVersion": "knactor.dev/v1alpha1", "kind": "ActorSystem", "metadata": map[string]any{"name": "x", "namespace": "y"}, "spec": map[string]any{"cache": map[string]any{"sizeMB": "big"}}},
		wantErr: "decode ActorSystem y/x",
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			as, err := FromUnstructured(&unstructured.Unstructured{Object: tc.obj})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("FromUnstructured = %v, want an error containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, as)
		})
	}
}

func TestUnstructuredRoundTrip(t *testing.T) {
	in := actorSystem("team-a", "default")
	in.Spec.SetDefaults()
	// metav1.Time serializes whole seconds.
	in.Status.SetCondition(metav1.Condition{Type: ConditionStoreReady, Status: metav1.ConditionFalse, Reason: "BucketNotFound",
		LastTransitionTime: metav1.Unix(1700000000, 0)})
	u, err := ToUnstructured(in)
	if err != nil {
		t.Fatal(err)
	}
	if u.GetAPIVersion() != "knactor.dev/v1alpha1" || u.GetKind() != "ActorSystem" {
		t.Errorf("ToUnstructured: apiVersion %q kind %q", u.GetAPIVersion(), u.GetKind())
	}
	out, err := FromUnstructured(u)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(in, out); diff != "" {
		t.Errorf("round trip (-in +out):\n%s", diff)
	}
}

func TestDeepCopy(t *testing.T) {
	in := actorSystem("team-a", "default")
	in.Spec.SetDefaults()
	in.Spec.Auth = &AuthSpec{}
	out := in.DeepCopy()
	out.Spec.Store.S3.Bucket = "changed"
	out.Spec.Cache.PassivateAfter.Duration = 0
	out.Spec.Auth.TokensSecretRef.Name = "changed"
	if in.Spec.Store.S3.Bucket != "knactor-state" || in.Spec.Cache.PassivateAfter.Duration == 0 || in.Spec.Auth.TokensSecretRef.Name != "" {
		t.Fatalf("DeepCopy shares memory with the original: %+v", in.Spec)
	}
	var _ runtime.Object = &ActorSystemList{}
}
