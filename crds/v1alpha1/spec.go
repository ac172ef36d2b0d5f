package v1alpha1

import (
	"errors"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/minio/minio-go/v7/pkg/s3utils"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/knactor/knactor/statecache"
)

// Defaults that SetDefaults fills in. They are the state cache's own, so an ActorSystem that sets
// nothing behaves like `knactor up` with no flags.
const (
	// DefaultWriteMode is write-through: nothing acknowledged is ever lost, at the price of one
	// store write per call.
	DefaultWriteMode = WriteThrough
	// DefaultCacheSizeMB is statecache.DefaultMaxBytes in MiB.
	DefaultCacheSizeMB = statecache.DefaultMaxBytes >> 20
	// DefaultPassivateAfter keeps an idle actor in memory for ten minutes (as the
	// knactor.dev/passivate-after annotation's default): a conversation with pauses stays warm,
	// while an actor used once leaves memory soon.
	DefaultPassivateAfter = 10 * time.Minute
	// DefaultFlushInterval is statecache.DefaultFlushInterval.
	DefaultFlushInterval = statecache.DefaultFlushInterval
)

// Limits that Validate checks, the same as the CRD's schema.
const (
	// MaxEndpointLength is a DNS name's 255 characters plus ":65535".
	MaxEndpointLength = 255 + 6
	// MaxPrefixLength leaves half of S3's 1024-byte object-name limit for the function name
	// and the escaped actor id.
	MaxPrefixLength = 512
)

// WriteBehindRefused says why Validate refuses writeMode write-behind on a cluster.
const WriteBehindRefused = "write-behind is refused on a cluster: several routers share the actors of an " +
	"ActorSystem (replicas, a rolling update's surge, a router that cannot reach an actor's owner runs its " +
	"turn itself), and an actor that moves to another router would lose the writes the old router " +
	"acknowledged but had not flushed; use write-through, where each reply waits for its durable write"

// SetDefaults fills every unset field with its default: WriteMode, Cache.SizeMB,
// Cache.PassivateAfter and Cache.FlushInterval. Store, Auth and Encryption have no defaults.
func (s *ActorSystemSpec) SetDefaults() {
	if s.WriteMode == "" {
		s.WriteMode = DefaultWriteMode
	}
	s.Cache.SetDefaults()
}

// SetDefaults fills every unset field of the cache settings with its default.
func (c *CacheSpec) SetDefaults() {
	if c.SizeMB == 0 {
		c.SizeMB = DefaultCacheSizeMB
	}
	if c.PassivateAfter == nil {
		c.PassivateAfter = &metav1.Duration{Duration: DefaultPassivateAfter}
	}
	if c.FlushInterval == nil {
		c.FlushInterval = &metav1.Duration{Duration: DefaultFlushInterval}
	}
}

// Validate reports every invalid field of the spec, each as a *field.Error whose path starts at
// "spec" (e.g. "spec.store.s3.bucket: Invalid value: ..."), joined with errors.Join; nil when the
// spec is valid. Unset optional fields are valid (they take their defaults), so Validate may run
// before or after SetDefaults. It checks what the CRD's schema checks, for objects that did not
// pass through an API server (tests, files), plus what the store client itself would refuse, and
// refuses writeMode write-behind, which a cluster's several routers would lose writes with; the
// referenced Secrets are read and checked elsewhere (the CredentialsReady condition).
func (s *ActorSystemSpec) Validate() error {
	var errs field.ErrorList
	path := field.NewPath("spec")
	errs = append(errs, s.Store.validate(path.Child("store"))...)
	errs = append(errs, s.Cache.validate(path.Child("cache"))...)
	if _, err := statecache.ParseWriteMode(string(s.WriteMode)); err != nil {
		errs = append(errs, field.NotSupported(path.Child("writeMode"), s.WriteMode,
			[]string{string(WriteThrough), string(WriteBehind)}))
	} else if s.WriteMode == WriteBehind {
		errs = append(errs, field.Invalid(path.Child("writeMode"), s.WriteMode, WriteBehindRefused))
	}
	if s.Auth != nil {
		errs = append(errs, validateSecretRef(path.Child("auth", "tokensSecretRef"), s.Auth.TokensSecretRef.Name)...)
	}
	if s.Encryption != nil {
		errs = append(errs, validateSecretRef(path.Child("encryption", "keysSecretRef"), s.Encryption.KeysSecretRef.Name)...)
	}
	return joinFieldErrors(errs)
}

func (s *StoreSpec) validate(path *field.Path) field.ErrorList {
	if s.S3 == nil {
		return field.ErrorList{field.Required(path.Child("s3"),
			"only an S3 store is supported on a cluster (the local-directory store is for `knactor up` on one machine)")}
	}
	return s.S3.validate(path.Child("s3"))
}

func (s *S3Store) validate(path *field.Path) field.ErrorList {
	var errs field.ErrorList
	if p := path.Child("endpoint"); s.Endpoint == "" {
		errs = append(errs, field.Required(p, "host[:port] of the S3 API"))
	} else if msg := endpointProblem(s.Endpoint); msg != "" {
		errs = append(errs, field.Invalid(p, s.Endpoint, msg))
	}
	if p := path.Child("bucket"); s.Bucket == "" {
		errs = append(errs, field.Required(p, "the bucket that holds the state"))
	} else if err := s3utils.CheckValidBucketNameStrict(s.Bucket); err != nil {
		errs = append(errs, field.Invalid(p, s.Bucket, err.Error()))
	}
	if p := path.Child("prefix"); s.Prefix != "" {
		switch {
		case !strings.HasSuffix(s.Prefix, "/"):
			errs = append(errs, field.Invalid(p, s.Prefix, `must end with "/"`))
		case strings.HasPrefix(s.Prefix, "/"):
			errs = append(errs, field.Invalid(p, s.Prefix, `must not start with "/"`))
		case len(s.Prefix) > MaxPrefixLength:
			errs = append(errs, field.TooLong(p, s.Prefix, MaxPrefixLength))
		}
	}
	errs = append(errs, validateSecretRef(path.Child("credentialsSecretRef"), s.CredentialsSecretRef.Name)...)
	if len(errs) > 0 {
		return errs
	}
	// What the store client itself refuses, in case it checks more than the above. The
	// credentials come from the Secret; placeholders stand in for them here.
	cfg := statecache.S3Config{
		Endpoint: s.Endpoint, Bucket: s.Bucket, Prefix: s.Prefix, Region: s.Region,
		TLS: s.TLS, CreateBucket: s.CreateBucket,
		AccessKey: "from-the-secret", SecretKey: "from-the-secret",
	}
	if err := cfg.Validate(); err != nil {
		errs = append(errs, field.Invalid(path, s.Endpoint+"/"+s.Bucket+"/"+s.Prefix, err.Error()))
	}
	return errs
}

// endpointProblem says what is wrong with a non-empty host[:port] endpoint, or "".
func endpointProblem(endpoint string) string {
	if strings.Contains(endpoint, "/") {
		return "must be host[:port] without a scheme or path (set tls: true for https)"
	}
	if len(endpoint) > MaxEndpointLength {
		return "must be at most " + strconv.Itoa(MaxEndpointLength) + " characters"
	}
	host := endpoint
	if h, port, err := net.SplitHostPort(endpoint); err == nil {
		host = h
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return "port " + strconv.Quote(port) + " must be a number in [1, 65535]"
		}
	} else if strings.Contains(endpoint, ":") && net.ParseIP(endpoint) == nil {
		return "must be host[:port]: " + err.Error()
	}
	if !s3utils.IsValidDomain(host) && !s3utils.IsValidIP(host) {
		return "host " + strconv.Quote(host) + " is neither a domain name nor an IP address"
	}
	return ""
}

func (c *CacheSpec) validate(path *field.Path) field.ErrorList {
	var errs field.ErrorList
	if c.SizeMB < 0 {
		errs = append(errs, field.Invalid(path.Child("sizeMB"), c.SizeMB, "must be at least 1 (MiB)"))
	}
	if d := c.PassivateAfter; d != nil && d.Duration < 0 {
		errs = append(errs, field.Invalid(path.Child("passivateAfter"), d.Duration.String(), "must not be negative (0s never passivates)"))
	}
	if d := c.FlushInterval; d != nil && d.Duration <= 0 {
		errs = append(errs, field.Invalid(path.Child("flushInterval"), d.Duration.String(), "must be positive"))
	}
	return errs
}

func validateSecretRef(path *field.Path, name string) field.ErrorList {
	if name == "" {
		return field.ErrorList{field.Required(path.Child("name"), "the name of a Secret in the ActorSystem's namespace")}
	}
	return nil
}

// joinFieldErrors joins errs with errors.Join, so a caller can list them with errors.As or
// print them one per line; nil when errs is empty.
func joinFieldErrors(errs field.ErrorList) error {
	all := make([]error, len(errs))
	for i, e := range errs {
		all[i] = e
	}
	return errors.Join(all...)
}

// SetCondition adds c to the conditions or updates the one of its type. The transition time is
// kept when the status does not change, and set to now when c leaves it zero and the status
// changes (meta.SetStatusCondition).
func (s *ActorSystemStatus) SetCondition(c metav1.Condition) {
	meta.SetStatusCondition(&s.Conditions, c)
}

// GetCondition returns the condition of type t, or nil.
func (s *ActorSystemStatus) GetCondition(t string) *metav1.Condition {
	return meta.FindStatusCondition(s.Conditions, t)
}

// IsReady reports whether the Ready condition is True.
func (s *ActorSystemStatus) IsReady() bool {
	return meta.IsStatusConditionTrue(s.Conditions, ConditionReady)
}
