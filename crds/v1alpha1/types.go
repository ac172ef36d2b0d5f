package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ActorSystem configures knactor for the functions of its namespace: the S3 bucket that keeps
// every actor's state, the router's in-memory cache in front of it, whether a call's reply waits
// for its state to be durable, and the bearer tokens of the public API. knactor's router and
// autoscaler are started with the ActorSystem to serve (--namespace, --actor-system); the
// autoscaler reports in status.conditions whether the credentials and the store work.
//
// ActorSystem is namespaced because everything it governs is: it serves the functions of its own
// namespace, the Secrets it references are read from that namespace (a cluster-scoped object
// could not name them without granting knactor every namespace's Secrets), and teams sharing a
// cluster get separate buckets or prefixes, and separate RBAC on who may change them, one
// namespace each.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Namespaced,shortName=actsys,categories=knactor
// +kubebuilder:metadata:labels="app.kubernetes.io/part-of=knactor"
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Bucket",type=string,JSONPath=`.spec.store.s3.bucket`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ActorSystem struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the desired configuration.
	Spec ActorSystemSpec `json:"spec"`
	// Status is what knactor last observed about the spec: whether its credentials and store
	// work.
	// +optional
	Status ActorSystemStatus `json:"status,omitempty"`
}

// ActorSystemList is a list of ActorSystems.
//
// +kubebuilder:object:root=true
type ActorSystemList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`

	// Items are the ActorSystems.
	Items []ActorSystem `json:"items"`
}

// ActorSystemSpec is the configuration of an ActorSystem.
type ActorSystemSpec struct {
	// Store is where actor state is kept durably. It survives scale to zero and router restarts.
	Store StoreSpec `json:"store"`
	// Cache configures the router's in-memory state cache in front of the store.
	// +optional
	Cache CacheSpec `json:"cache,omitempty"`
	// WriteMode says when a call's new state reaches the store. write-through (the default)
	// answers the caller only after the write is durable, and any number of routers may share
	// the store. write-behind is refused on a cluster (the spec is invalid): several routers
	// share an ActorSystem's actors, and an actor that moves to another router (a rolling
	// update, a scale, an owner that cannot be reached) would lose the writes the old router
	// acknowledged but had not flushed. A function's knactor.dev/write-mode annotation of
	// write-behind runs write-through on a cluster, with a warning.
	// +kubebuilder:default=write-through
	// +optional
	WriteMode WriteMode `json:"writeMode,omitempty"`
	// Auth, when set, makes the public API require a bearer token from the named Secret. Without
	// it the router accepts unauthenticated calls, so anything that can reach it can call every
	// actor: only for a router behind a gateway that authenticates.
	// +optional
	Auth *AuthSpec `json:"auth,omitempty"`
	// Encryption, when set, encrypts actor state at rest with keys from the named Secret. Without
	// it state is stored as the functions return it.
	// +optional
	Encryption *EncryptionSpec `json:"encryption,omitempty"`
}

// WriteMode says when a call's new state is written to the store: write-through or write-behind.
// +kubebuilder:validation:Enum=write-through;write-behind
type WriteMode string

const (
	// WriteThrough answers a call only once its state is in the store. Nothing acknowledged is
	// lost when a router dies, and several routers can share one store. The default.
	WriteThrough WriteMode = "write-through"
	// WriteBehind answers a call at once and writes state later, coalescing an actor's writes
	// between flushes. A router crash loses up to one flush interval of acknowledged writes, and
	// it needs a single router per store, which a cluster never guarantees: Validate refuses it
	// (WriteBehindRefused). It exists for `knactor up` and a lone `knactor router`.
	WriteBehind WriteMode = "write-behind"
)

// StoreSpec selects the durable state store. Exactly one store must be set; S3 is the only
// store a cluster supports (the local-directory store exists for `knactor up` on one machine).
type StoreSpec struct {
	// S3 keeps state in a bucket of an S3-compatible service (AWS S3, MinIO, ...) that honours
	// conditional writes (If-Match, If-None-Match).
	// +optional
	S3 *S3Store `json:"s3,omitempty"`
}

// S3Store is a bucket (and optional prefix) of an S3-compatible service.
type S3Store struct {
	// Endpoint is host[:port] of the S3 API, without a scheme or path, e.g.
	// "minio.storage.svc.cluster.local:9000" or "s3.eu-west-1.amazonaws.com". Set tls for https.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=261
	// +kubebuilder:validation:XValidation:rule="!self.contains('/')",message="endpoint is host[:port] without a scheme or path (set tls: true for https)"
	Endpoint string `json:"endpoint"`
	// Bucket holds the state objects: an S3 bucket name (3-63 lowercase letters, digits, dots
	// and hyphens). Actors' objects are named {prefix}{function}/{actor id}.
	// +kubebuilder:validation:MinLength=3
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9][a-z0-9.-]*[a-z0-9]$`
	Bucket string `json:"bucket"`
	// Prefix is prepended to every object name, so several ActorSystems can share a bucket. When
	// set it must end with "/" and must not start with one, e.g. "team-a/prod/".
	// +kubebuilder:validation:MaxLength=512
	// +kubebuilder:validation:Pattern=`^[^/].*/$`
	// +optional
	Prefix string `json:"prefix,omitempty"`
	// Region is the bucket's region; empty lets the client discover it.
	// +optional
	Region string `json:"region,omitempty"`
	// TLS selects https for the endpoint.
	// +optional
	TLS bool `json:"tls,omitempty"`
	// CreateBucket creates the bucket when it does not exist. Otherwise a missing bucket is
	// reported in the StoreReady condition.
	// +optional
	CreateBucket bool `json:"createBucket,omitempty"`
	// CredentialsSecretRef names a Secret in the ActorSystem's namespace with the keys
	// accessKey and secretKey (and optionally sessionToken).
	// +kubebuilder:validation:XValidation:rule="has(self.name) && self.name != ''",message="name of the credentials Secret is required"
	CredentialsSecretRef corev1.LocalObjectReference `json:"credentialsSecretRef"`
}

// Keys of the Secret that S3Store.CredentialsSecretRef names.
const (
	// SecretKeyAccessKey is the key of the S3 access key id.
	SecretKeyAccessKey = "accessKey"
	// SecretKeySecretKey is the key of the S3 secret access key.
	SecretKeySecretKey = "secretKey"
	// SecretKeySessionToken is the key of an optional session token (temporary credentials).
	SecretKeySessionToken = "sessionToken"
)

// CacheSpec configures the router's in-memory state cache.
type CacheSpec struct {
	// SizeMB bounds the memory of cached state, in MiB (default 256: about a million actors of
	// 100-byte state). Least recently written entries leave first when it is full; they are
	// read again from the store when next needed.
	// +kubebuilder:validation:Minimum=1
	// +optional
	SizeMB int32 `json:"sizeMB,omitempty"`
	// PassivateAfter drops an actor's state from memory once it has not been used for this long
	// and its state is durable (default 10m; 0s never passivates).
	// +optional
	PassivateAfter *metav1.Duration `json:"passivateAfter,omitempty"`
	// FlushInterval is how often idle actors are passivated (default 1s; must be positive).
	// +optional
	FlushInterval *metav1.Duration `json:"flushInterval,omitempty"`
}

// AuthSpec makes the public API require bearer tokens.
type AuthSpec struct {
	// TokensSecretRef names a Secret in the ActorSystem's namespace whose key "tokens" holds the
	// accepted bearer tokens, separated by commas or newlines, each at least 16 characters.
	// Several tokens let one be rotated without downtime.
	// +kubebuilder:validation:XValidation:rule="has(self.name) && self.name != ''",message="name of the tokens Secret is required"
	TokensSecretRef corev1.LocalObjectReference `json:"tokensSecretRef"`
}

// SecretKeyTokens is the key of the Secret that AuthSpec.TokensSecretRef names: bearer tokens
// separated by commas or newlines.
const SecretKeyTokens = "tokens"

// EncryptionSpec encrypts actor state at rest (AES-256-GCM): every value the routers write to the
// store is sealed with the first key, and a value sealed with any of the keys is read.
type EncryptionSpec struct {
	// KeysSecretRef names a Secret in the ActorSystem's namespace whose key "keys" holds the
	// encryption keys: "id:base64-32-byte-key" entries separated by commas or newlines, the first
	// one encrypting. To rotate, put a new key first and keep the old ones until every value has
	// been rewritten (docs/storage.md).
	// +kubebuilder:validation:XValidation:rule="has(self.name) && self.name != ''",message="name of the encryption keys Secret is required"
	KeysSecretRef corev1.LocalObjectReference `json:"keysSecretRef"`
}

// SecretKeyEncryptionKeys is the key of the Secret that EncryptionSpec.KeysSecretRef names.
const SecretKeyEncryptionKeys = "keys"

// ActorSystemStatus is what knactor last observed about an ActorSystem.
type ActorSystemStatus struct {
	// ObservedGeneration is the metadata.generation the conditions describe. While it is below
	// metadata.generation, the latest spec has not been looked at yet.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Conditions: CredentialsReady (the Secrets exist and have the keys knactor reads),
	// StoreReady (the endpoint answers and the bucket exists), and Ready (both, for the
	// observed generation).
	// +listType=map
	// +listMapKey=type
	// +patchStrategy=merge
	// +patchMergeKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty" patchStrategy:"merge" patchMergeKey:"type"`
}

// Condition types of ActorSystemStatus.
const (
	// ConditionReady is True when the ActorSystem can serve: its credentials and store are ready
	// for the observed generation.
	ConditionReady = "Ready"
	// ConditionStoreReady is True when the store's endpoint answers with the credentials and the
	// bucket exists (or was created).
	ConditionStoreReady = "StoreReady"
	// ConditionCredentialsReady is True when the referenced Secrets exist and hold the keys
	// knactor reads.
	ConditionCredentialsReady = "CredentialsReady"
)
