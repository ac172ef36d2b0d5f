// Package actorsystem turns an ActorSystem (crds/v1alpha1) into what knactor's components run
// with, and keeps its status true.
//
// Resolve is what a router does at start-up in Kubernetes mode: read the ActorSystem, default
// and validate its spec, and read the Secrets it names (S3 credentials, API tokens, encryption
// keys) into Settings. Secrets are read through the API and never logged; they are not copied
// into the status or into errors.
//
// Reconciler is what the autoscaler runs: every ActorSystem of its namespace gets conditions that
// tell a user what is wrong, in the order a user would fix it:
//
//   - CredentialsReady: the credentials Secret (and the auth tokens and encryption keys Secrets,
//     when set) exists and has the keys knactor reads;
//   - StoreReady: the S3 endpoint answers and the bucket exists (or may be created);
//   - Ready: both, on the spec generation in status.observedGeneration.
package actorsystem

import (
	"context"
	"fmt"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/knactor/knactor/crds/v1alpha1"
	"github.com/knactor/knactor/router"
	"github.com/knactor/knactor/statecache"
)

// Settings is an ActorSystem resolved: everything a router opens its state and API with.
type Settings struct {
	// S3 is the state store, credentials included.
	S3 statecache.S3Config
	// WriteMode is the default write mode of the system's functions.
	WriteMode statecache.WriteMode
	// CacheBytes bounds the memory for cached state.
	CacheBytes int
	// PassivateAfter drops an idle actor's state from memory after this long (0: never).
	PassivateAfter time.Duration
	// FlushInterval is the write-behind flush interval.
	FlushInterval time.Duration
	// AuthTokens are the public API's bearer tokens; empty when the system sets no auth.
	AuthTokens []string
	// EncryptionKeys is the key specification of encryption at rest (statecache.ParseKeyring),
	// checked to parse; empty when the system sets no encryption.
	EncryptionKeys string
}

// Reasons of the conditions' False states. They are stable strings a user (or a script) can
// match on; the condition's message says the specifics.
const (
	ReasonInvalidSpec       = "InvalidSpec"
	ReasonSecretNotFound    = "SecretNotFound"
	ReasonSecretKeyMissing  = "SecretKeyMissing"
	ReasonSecretForbidden   = "SecretForbidden"
	ReasonWeakToken         = "WeakToken"
	ReasonBadEncryptionKeys = "BadEncryptionKeys"
	ReasonStoreUnreachable  = "StoreUnreachable"
	ReasonBucketNotFound    = "BucketNotFound"
	ReasonStoreAccessDenied = "StoreAccessDenied"
	ReasonReady             = "Ready"
	ReasonNotReady          = "NotReady"
)

// Error is a problem with an ActorSystem that a condition reports: which condition, why (one
// of the Reason constants) and what to do.
type Error struct {
	Condition string
	Reason    string
	Message   string
	Err       error
}

func (e *Error) Error() string { return e.Message }

func (e *Error) Unwrap() error { return e.Err }

// Resolve reads the ActorSystem namespace/name and the Secrets it names. The returned
// ActorSystem has its spec defaulted. A problem with the spec or a Secret is an *Error.
func Resolve(ctx context.Context, kube kubernetes.Interface, dyn dynamic.Interface, namespace, name string) (*v1alpha1.ActorSystem, Settings, error) {
	as, err := v1alpha1.Get(ctx, dyn, namespace, name)
	if err != nil {
		if apierrors.IsNotFound(err) {
			return nil, Settings{}, fmt.Errorf("ActorSystem %s/%s does not exist: create one (see crds/samples/actorsystem.yaml): %w", namespace, name, err)
		}
		return nil, Settings{}, fmt.Errorf("read ActorSystem %s/%s: %w", namespace, name, err)
	}
	s, err := settings(ctx, kube, as)
	return as, s, err
}

// settings defaults and validates as.Spec and reads its Secrets.
func settings(ctx context.Context, kube kubernetes.Interface, as *v1alpha1.ActorSystem) (Settings, error) {
	as.Spec.SetDefaults()
	if err := as.Spec.Validate(); err != nil {
		return Settings{}, &Error{Condition: v1alpha1.ConditionReady, Reason: ReasonInvalidSpec,
			Message: fmt.Sprintf("ActorSystem %s/%s: %v", as.Namespace, as.Name, err), Err: err}
	}
	spec := &as.Spec
	s3 := spec.Store.S3
	mode, err := statecache.ParseWriteMode(string(spec.WriteMode))
	if err != nil {
		return Settings{}, &Error{Condition: v1alpha1.ConditionReady, Reason: ReasonInvalidSpec, Message: err.Error(), Err: err}
	}
	s := Settings{
		S3: statecache.S3Config{
			Endpoint: s3.Endpoint, Bucket: s3.Bucket, Prefix: s3.Prefix, Region: s3.Region,
			TLS: s3.TLS, CreateBucket: s3.CreateBucket,
		},
		WriteMode:  mode,
		CacheBytes: int(spec.Cache.SizeMB) << 20,
	}
	if d := spec.Cache.PassivateAfter; d != nil {
		s.PassivateAfter = d.Duration
	}
	if d := spec.Cache.FlushInterval; d != nil {
		s.FlushInterval = d.Duration
	}
	creds, err := readSecret(ctx, kube, as.Namespace, s3.CredentialsSecretRef.Name, "spec.store.s3.credentialsSecretRef",
		v1alpha1.SecretKeyAccessKey, v1alpha1.SecretKeySecretKey)
	if err != nil {
		return Settings{}, err
	}
	s.S3.AccessKey = string(creds[v1alpha1.SecretKeyAccessKey])
	s.S3.SecretKey = string(creds[v1alpha1.SecretKeySecretKey])
	s.S3.SessionToken = string(creds[v1alpha1.SecretKeySessionToken])
	if spec.Auth != nil {
		tokens, err := readSecret(ctx, kube, as.Namespace, spec.Auth.TokensSecretRef.Name, "spec.auth.tokensSecretRef", v1alpha1.SecretKeyTokens)
		if err != nil {
			return Settings{}, err
		}
		s.AuthTokens = splitTokens(string(tokens[v1alpha1.SecretKeyTokens]))
		if len(s.AuthTokens) == 0 {
			return Settings{}, &Error{Condition: v1alpha1.ConditionCredentialsReady, Reason: ReasonSecretKeyMissing,
				Message: fmt.Sprintf("Secret %s/%s (spec.auth.tokensSecretRef): key %q holds no token", as.Namespace, spec.Auth.TokensSecretRef.Name, v1alpha1.SecretKeyTokens)}
		}
		for i, t := range s.AuthTokens {
			if _, err := router.ParseAuthToken(t); err != nil {
				return Settings{}, &Error{Condition: v1alpha1.ConditionCredentialsReady, Reason: ReasonWeakToken,
					Message: fmt.Sprintf("Secret %s/%s (spec.auth.tokensSecretRef): token #%d: %v",
						as.Namespace, spec.Auth.TokensSecretRef.Name, i+1, err)}
			}
		}
	}
	if spec.Encryption != nil {
		ref := spec.Encryption.KeysSecretRef.Name
		keys, err := readSecret(ctx, kube, as.Namespace, ref, "spec.encryption.keysSecretRef", v1alpha1.SecretKeyEncryptionKeys)
		if err != nil {
			return Settings{}, err
		}
		s.EncryptionKeys = string(keys[v1alpha1.SecretKeyEncryptionKeys])
		if _, err := statecache.ParseKeyring(s.EncryptionKeys); err != nil { // its errors show no key material
			return Settings{}, &Error{Condition: v1alpha1.ConditionCredentialsReady, Reason: ReasonBadEncryptionKeys, Err: err,
				Message: fmt.Sprintf("Secret %s/%s (spec.encryption.keysSecretRef): key %q: %v", as.Namespace, ref, v1alpha1.SecretKeyEncryptionKeys, err)}
		}
	}
	return s, nil
}

// readSecret reads the named Secret and checks it has every key in need.
func readSecret(ctx context.Context, kube kubernetes.Interface, namespace, name, field string, need ...string) (map[string][]byte, error) {
	sec, err := kube.CoreV1().Secrets(namespace).Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return nil, &Error{Condition: v1alpha1.ConditionCredentialsReady, Reason: ReasonSecretNotFound, Err: err,
			Message: fmt.Sprintf("Secret %s/%s (%s) does not exist", namespace, name, field)}
	case apierrors.IsForbidden(err):
		return nil, &Error{Condition: v1alpha1.ConditionCredentialsReady, Reason: ReasonSecretForbidden, Err: err,
			Message: fmt.Sprintf("knactor may not read Secret %s/%s (%s): grant \"get\" on secrets (config/ RBAC)", namespace, name, field)}
	case err != nil:
		return nil, fmt.Errorf("read Secret %s/%s (%s): %w", namespace, name, field, err)
	}
	for _, k := range need {
		if len(sec.Data[k]) == 0 {
			return nil, &Error{Condition: v1alpha1.ConditionCredentialsReady, Reason: ReasonSecretKeyMissing,
				Message: fmt.Sprintf("Secret %s/%s (%s) has no key %q", namespace, name, field, k)}
		}
	}
	return sec.Data, nil
}

// splitTokens splits a tokens Secret value on commas and newlines, dropping blanks.
func splitTokens(v string) []string {
	var out []string
	for _, t := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == '\n' || r == '\r' }) {
		if t = strings.TrimSpace(t); t != "" {
			out = append(out, t)
		}
	}
	return out
}

// storeError classifies a failed store probe for the StoreReady condition.
func storeError(s3 statecache.S3Config, err error) *Error {
	msg := err.Error()
	reason := ReasonStoreUnreachable
	switch {
	case strings.Contains(msg, "does not exist"):
		reason = ReasonBucketNotFound
	case strings.Contains(msg, "Access Denied") || strings.Contains(msg, "AccessDenied") ||
		strings.Contains(msg, "InvalidAccessKeyId") || strings.Contains(msg, "SignatureDoesNotMatch"):
		reason = ReasonStoreAccessDenied
	}
	return &Error{Condition: v1alpha1.ConditionStoreReady, Reason: reason, Err: err,
		Message: fmt.Sprintf("S3 store %s bucket %q: %v", s3.Endpoint, s3.Bucket, err)}
}
