package v1alpha1

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// validSpec is the smallest valid spec: an S3 store with credentials.
func validSpec() ActorSystemSpec {
	return ActorSystemSpec{Store: StoreSpec{S3: &S3Store{
		Endpoint:             "minio.storage.svc.cluster.local:9000",
		Bucket:               "knactor-state",
		CredentialsSecretRef: corev1.LocalObjectReference{Name: "s3-credentials"},
	}}}
}

func duration(d time.Duration) *metav1.Duration { return &metav1.Duration{Duration: d} }

func TestSetDefaults(t *testing.T) {
	tests := []struct {
		name string
		in   ActorSystemSpec
		want ActorSystemSpec
	}{{
		name: "everything unset",
		in:   ActorSystemSpec{},
		want: ActorSystemSpec{
			WriteMode: WriteThrough,
			Cache: CacheSpec{
				SizeMB:         256,
				PassivateAfter: duration(10 * time.Minute),
				FlushInterval:  duration(time.Second),
			},
		},
	}, {
		name: "set fields are kept, zero passivateAfter included",
		in: ActorSystemSpec{
			WriteMode: WriteBehind,
			Cache:     CacheSpec{SizeMB: 64, PassivateAfter: duration(0), FlushInterval: duration(5 * time.Second)},
			Auth:      &AuthSpec{TokensSecretRef: corev1.LocalObjectReference{Name: "tokens"}},
		},
		want: ActorSystemSpec{
			WriteMode: WriteBehind,
			Cache:     CacheSpec{SizeMB: 64, PassivateAfter: duration(0), FlushInterval: duration(5 * time.Second)},
			Auth:      &AuthSpec{TokensSecretRef: corev1.LocalObjectReference{Name: "tokens"}},
		},
	}, {
		name: "store untouched",
		in:   validSpec(),
		want: func() ActorSystemSpec {
			s := validSpec()
			s.WriteMode = WriteThrough
			s.Cache = CacheSpec{SizeMB: 256, PassivateAfter: duration(10 * time.Minute), FlushInterval: duration(time.Second)}
			return s
		}(),
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.in
			got.SetDefaults()
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("SetDefaults (-want +got):\n%s", diff)
			}
			again := got
			again.SetDefaults()
			if diff := cmp.Diff(got, again); diff != "" {
				t.Errorf("SetDefaults is not idempotent (-first +second):\n%s", diff)
			}
		})
	}
}

func TestDefaultsAreValid(t *testing.T) {
	s := validSpec()
	s.SetDefaults()
	if err := s.Validate(); err != nil {
		t.Fatalf("defaulted valid spec: %v", err)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*ActorSystemSpec)
		// want are the field paths of the errors, in order, with a piece of each message.
		want []string
	}{{
		name:   "minimal",
		modify: func(*ActorSystemSpec) {},
	}, {
		name: "everything set",
		modify: func(s *ActorSystemSpec) {
			s.Store.S3.Endpoint = "s3.eu-west-1.amazonaws.com"
			s.Store.S3.Prefix = "team-a/prod/"
			s.Store.S3.Region = "eu-west-1"
			s.Store.S3.TLS = true
			s.Store.S3.CreateBucket = true
			s.WriteMode = WriteThrough
			s.Cache = CacheSpec{SizeMB: 1, PassivateAfter: duration(0), FlushInterval: duration(time.Millisecond)}
			s.Auth = &AuthSpec{TokensSecretRef: corev1.LocalObjectReference{Name: "api-tokens"}}
		},
	}, {
		name:   "IP endpoint",
		modify: func(s *ActorSystemSpec) { s.Store.S3.Endpoint = "127.0.0.1:9000" },
	}, {
		name:   "IPv6 endpoint",
		modify: func(s *ActorSystemSpec) { s.Store.S3.Endpoint = "[::1]:9000" },
	}, {
		name:   "no store",
		modify: func(s *ActorSystemSpec) { s.Store.S3 = nil },
		want:   []string{"spec.store.s3: Required value: only an S3 store is supported on a cluster"},
	}, {
		name: "empty S3",
		modify: func(s *ActorSystemSpec) {
			s.Store.S3 = &S3Store{}
		},
		want: []string{
			"spec.store.s3.endpoint: Required value",
			"spec.store.s3.bucket: Required value",
			"spec.store.s3.credentialsSecretRef.name: Required value",
		},
	}, {
		name:   "endpoint with scheme",
		modify: func(s *ActorSystemSpec) { s.Store.S3.Endpoint = "https://minio:9000" },
		want:   []string{`spec.store.s3.endpoint: Invalid value: "https://minio:9000": must be host[:port] without a scheme`},
	}, {
		name:   "endpoint with path",
		modify: func(s *ActorSystemSpec) { s.Store.S3.Endpoint = "minio:9000/state" },
		want:   []string{"spec.store.s3.endpoint: Invalid value"},
	}, {
		name:   "endpoint port not a number",
		modify: func(s *ActorSystemSpec) { s.Store.S3.Endpoint = "minio:s3" },
		want:   []string{`spec.store.s3.endpoint: Invalid value: "minio:s3": port "s3" must be a number`},
	}, {
		name:   "endpoint port out of range",
		modify: func(s *ActorSystemSpec) { s.Store.S3.Endpoint = "minio:70000" },
		want:   []string{"spec.store.s3.endpoint: Invalid value"},
	}, {
		name:   "endpoint host invalid",
		modify: func(s *ActorSystemSpec) { s.Store.S3.Endpoint = "-minio:9000" },
		want:   []string{`spec.store.s3.endpoint: Invalid value: "-minio:9000": host "-minio" is neither`},
	}, {
		name:   "endpoint too long",
		modify: func(s *ActorSystemSpec) { s.Store.S3.Endpoint = strings.Repeat("a", MaxEndpointLength+1) },
		want:   []string{"spec.store.s3.endpoint: Invalid value"},
	}, {
		name:   "bucket upper case",
		modify: func(s *ActorSystemSpec) { s.Store.S3.Bucket = "State" },
		want:   []string{`spec.store.s3.bucket: Invalid value: "State": Bucket name contains invalid characters`},
	}, {
		name:   "bucket too short",
		modify: func(s *ActorSystemSpec) { s.Store.S3.Bucket = "ab" },
		want:   []string{"spec.store.s3.bucket: Invalid value"},
	}, {
		name:   "bucket is an IP",
		modify: func(s *ActorSystemSpec) { s.Store.S3.Bucket = "10.0.0.1" },
		want:   []string{"spec.store.s3.bucket: Invalid value"},
	}, {
		name:   "prefix without trailing slash",
		modify: func(s *ActorSystemSpec) { s.Store.S3.Prefix = "team-a" },
		want:   []string{`spec.store.s3.prefix: Invalid value: "team-a": must end with "/"`},
	}, {
		name:   "prefix with leading slash",
		modify: func(s *ActorSystemSpec) { s.Store.S3.Prefix = "/team-a/" },
		want:   []string{`spec.store.s3.prefix: Invalid value: "/team-a/": must not start with "/"`},
	}, {
		name:   "prefix too long",
		modify: func(s *ActorSystemSpec) { s.Store.S3.Prefix = strings.Repeat("p", MaxPrefixLength) + "/" },
		want:   []string{"spec.store.s3.prefix: Too long"},
	}, {
		name:   "credentials without a name",
		modify: func(s *ActorSystemSpec) { s.Store.S3.CredentialsSecretRef.Name = "" },
		want:   []string{"spec.store.s3.credentialsSecretRef.name: Required value"},
	}, {
		name:   "unknown write mode",
		modify: func(s *ActorSystemSpec) { s.WriteMode = "write-around" },
		want:   []string{`spec.writeMode: Unsupported value: "write-around": supported values: "write-through", "write-behind"`},
	}, {
		// Several routers share a cluster's actors: write-behind would lose acknowledged writes
		// when an actor moves between them (issue 16, point 6).
		name:   "write-behind on a cluster",
		modify: func(s *ActorSystemSpec) { s.WriteMode = WriteBehind },
		want:   []string{`spec.writeMode: Invalid value: "write-behind": write-behind is refused on a cluster: several routers share the actors`},
	}, {
		name:   "negative cache size",
		modify: func(s *ActorSystemSpec) { s.Cache.SizeMB = -1 },
		want:   []string{"spec.cache.sizeMB: Invalid value: -1: must be at least 1"},
	}, {
		name:   "negative passivation",
		modify: func(s *ActorSystemSpec) { s.Cache.PassivateAfter = duration(-time.Second) },
		want:   []string{`spec.cache.passivateAfter: Invalid value: "-1s": must not be negative`},
	}, {
		name:   "zero flush interval",
		modify: func(s *ActorSystemSpec) { s.Cache.FlushInterval = duration(0) },
		want:   []string{`spec.cache.flushInterval: Invalid value: "0s": must be positive`},
	}, {
		name:   "auth without a Secret name",
		modify: func(s *ActorSystemSpec) { s.Auth = &AuthSpec{} },
		want:   []string{"spec.auth.tokensSecretRef.name: Required value"},
	}, {
		name: "several problems at once",
		modify: func(s *ActorSystemSpec) {
			s.Store.S3.Bucket = ""
			s.WriteMode = "fast"
			s.Cache.SizeMB = -5
		},
		want: []string{
			"spec.store.s3.bucket: Required value",
			"spec.cache.sizeMB: Invalid value",
			"spec.writeMode: Unsupported value",
		},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := validSpec()
			tc.modify(&s)
			for _, defaulted := range []bool{false, true} {
				if defaulted {
					s.SetDefaults()
				}
				err := s.Validate()
				got := fieldErrors(t, err)
				if len(got) != len(tc.want) {
					t.Fatalf("defaulted=%v: Validate() = %v, want %d errors %q", defaulted, err, len(tc.want), tc.want)
				}
				for i, w := range tc.want {
					if !strings.Contains(got[i].Error(), w) {
						t.Errorf("defaulted=%v: error %d = %q, want it to contain %q", defaulted, i, got[i].Error(), w)
					}
				}
			}
		})
	}
}

// fieldErrors unpacks Validate's joined error, checking every part is a *field.Error.
func fieldErrors(t *testing.T, err error) []*field.Error {
	t.Helper()
	if err == nil {
		return nil
	}
	joined, ok := err.(interface{ Unwrap() []error })
	if !ok {
		t.Fatalf("Validate() = %T %v, want errors.Join of *field.Error", err, err)
	}
	var out []*field.Error
	for _, e := range joined.Unwrap() {
		var fe *field.Error
		if !errors.As(e, &fe) {
			t.Fatalf("error %v is a %T, want *field.Error", e, e)
		}
		out = append(out, fe)
	}
	return out
}

func TestConditions(t *testing.T) {
	var s ActorSystemStatus
	if s.IsReady() || s.GetCondition(ConditionReady) != nil {
		t.Fatal("empty status is ready")
	}
	s.SetCondition(metav1.Condition{Type: ConditionCredentialsReady, Status: metav1.ConditionTrue, Reason: "Found"})
	s.SetCondition(metav1.Condition{Type: ConditionReady, Status: metav1.ConditionFalse, Reason: "StoreUnreachable", Message: "dial tcp: refused"})
	if s.IsReady() {
		t.Fatal("ready with Ready=False")
	}
	first := s.GetCondition(ConditionReady).LastTransitionTime
	if first.IsZero() {
		t.Fatal("SetCondition left the transition time zero")
	}
	// Same status, new message: one condition of the type, transition time kept.
	s.SetCondition(metav1.Condition{Type: ConditionReady, Status: metav1.ConditionFalse, Reason: "StoreUnreachable", Message: "timeout"})
	if n := len(s.Conditions); n != 2 {
		t.Fatalf("%d conditions, want 2: %+v", n, s.Conditions)
	}
	if c := s.GetCondition(ConditionReady); c.Message != "timeout" || !c.LastTransitionTime.Equal(&first) {
		t.Fatalf("updated condition = %+v, want message timeout and transition time %v", c, first)
	}
	s.SetCondition(metav1.Condition{Type: ConditionReady, Status: metav1.ConditionTrue, Reason: "Ready"})
	if !s.IsReady() {
		t.Fatal("not ready with Ready=True")
	}
}
