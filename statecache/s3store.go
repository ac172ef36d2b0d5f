package statecache

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"k8s.io/utils/clock"
)

// Defaults of S3Config. They bound how long a caller waits on a sick store: a healthy MinIO answers
// a 1 KiB PUT in ~2 ms (p99 ~4 ms), so 5 s per attempt is generous, and three attempts with 50 ms
// doubling back-off ride out a restart blip without holding a turn for long.
const (
	DefaultS3Timeout      = 5 * time.Second
	DefaultS3Attempts     = 3
	DefaultS3RetryBackoff = 50 * time.Millisecond
)

// tombstoneMeta marks the empty object that stands for a deleted key. S3 has no conditional
// DELETE that every implementation honours, so a delete is a conditional PUT of a tombstone: it
// keeps the version chain, and a later create is conditional on the tombstone's ETag.
const tombstoneMeta = "Knactor-Deleted"

// commitMeta is the user metadata that records the commit id of the write that made an object,
// written atomically with its value.
const commitMeta = "Knactor-Commit"

// S3Config configures an S3Store. Credentials come from the caller (env or a Kubernetes Secret);
// they are never logged or put into errors.
type S3Config struct {
	// Endpoint is host[:port] of the S3 API, e.g. "127.0.0.1:9000" or "s3.amazonaws.com".
	Endpoint string
	// Bucket holds the state objects.
	Bucket string
	// Prefix is prepended to every object name, e.g. "knactor/". Empty means the bucket root.
	Prefix string
	// AccessKey, SecretKey and SessionToken are the static credentials.
	AccessKey, SecretKey, SessionToken string
	// Region is the bucket's region; empty lets the client discover it.
	Region string
	// TLS selects https.
	TLS bool
	// InsecureSkipVerify accepts any server certificate. For tests against self-signed MinIO only.
	InsecureSkipVerify bool
	// CreateBucket creates the bucket at open time when it does not exist.
	CreateBucket bool
	// Timeout bounds each attempt of each operation. Default DefaultS3Timeout.
	Timeout time.Duration
	// Attempts is how many times a transient failure is tried before giving up. Default
	// DefaultS3Attempts.
	Attempts int
	// RetryBackoff is the first back-off between attempts; it doubles each time. Default
	// DefaultS3RetryBackoff.
	RetryBackoff time.Duration
	// Clock times the back-off. Default the real clock.
	Clock clock.Clock
	// MaxObjectBytes bounds an actor's object that a read accepts. Default
	// DefaultS3MaxObjectBytes.
	MaxObjectBytes int64
}

func (c *S3Config) setDefaults() {
	if c.MaxObjectBytes == 0 {
		c.MaxObjectBytes = DefaultS3MaxObjectBytes
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultS3Timeout
	}
	if c.Attempts == 0 {
		c.Attempts = DefaultS3Attempts
	}
	if c.RetryBackoff == 0 {
		c.RetryBackoff = DefaultS3RetryBackoff
	}
	if c.Clock == nil {
		c.Clock = clock.RealClock{}
	}
}

// Validate reports what OpenS3Store would refuse in c before it connects (defaults applied to a
// copy), so a configuration can be checked where it is written, e.g. in an ActorSystem's spec.
func (c S3Config) Validate() error {
	c.setDefaults()
	return c.validate()
}

func (c *S3Config) validate() error {
	var errs []error
	if c.Endpoint == "" {
		errs = append(errs, errors.New("endpoint is empty"))
	} else if strings.Contains(c.Endpoint, "://") {
		errs = append(errs, fmt.Errorf("endpoint %q must be host[:port] without a scheme (use TLS for https)", c.Endpoint))
	}
	if c.Bucket == "" {
		errs = append(errs, errors.New("bucket is empty"))
	}
	if c.AccessKey == "" || c.SecretKey == "" {
		errs = append(errs, errors.New("access key and secret key are required"))
	}
	if c.Prefix != "" && !strings.HasSuffix(c.Prefix, "/") {
		errs = append(errs, fmt.Errorf("prefix %q must end with '/'", c.Prefix))
	}
	if c.Timeout < 0 || c.Attempts < 0 || c.RetryBackoff < 0 {
		errs = append(errs, errors.New("timeout, attempts and retry back-off must not be negative"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("s3 store config: %w", err)
	}
	return nil
}

// S3Store keeps state in an S3 bucket (AWS S3, MinIO or another implementation that honours
// If-Match and If-None-Match on PUT). Versions are ETags; deletes leave a small tombstone object.
// Every object records the commit that wrote it in its user metadata (Knactor-Commit), so a
// write retried after a lost answer recognises its own landed try (see Store).
type S3Store struct {
	cfg    S3Config
	client *minio.Client
	core   minio.Core
}

var _ Store = (*S3Store)(nil)

// OpenS3Store connects to the bucket described by cfg and checks that it is usable: the
// credentials are accepted and the bucket exists (or is created when cfg.CreateBucket is set).
func OpenS3Store(ctx context.Context, cfg S3Config) (*S3Store, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	var tlsConfig *tls.Config
	if cfg.TLS && cfg.InsecureSkipVerify {
		tlsConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // opt-in, for tests
	}
	transport := newFastTransport(tlsConfig, cfg.Timeout)
	client, err := minio.New(cfg.Endpoint, &minio.Options{
		Creds:     credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, cfg.SessionToken),
		Secure:    cfg.TLS,
		Region:    cfg.Region,
		Transport: transport,
		// Retries are ours, so only transient errors are retried and the clock is injected.
		MaxRetries: 1,
	})
	if err != nil {
		return nil, fmt.Errorf("s3 store: endpoint %q: %w", cfg.Endpoint, err)
	}
	s := &S3Store{cfg: cfg, client: client, core: minio.Core{Client: client}}
	if err := s.ensureBucket(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *S3Store) ensureBucket(ctx context.Context) error {
	var exists bool
	err := s.retry(ctx, func(ctx context.Context) (err error) {
		exists, err = s.client.BucketExists(ctx, s.cfg.Bucket)
		return err
	})
	if err != nil {
		return s.explain("open bucket", "", err)
	}
	if exists {
		return nil
	}
	if !s.cfg.CreateBucket {
		return fmt.Errorf("s3 store: bucket %q does not exist at %s; create it or enable bucket creation", s.cfg.Bucket, s.cfg.Endpoint)
	}
	err = s.retry(ctx, func(ctx context.Context) error {
		err := s.client.MakeBucket(ctx, s.cfg.Bucket, minio.MakeBucketOptions{Region: s.cfg.Region})
		if code := minio.ToErrorResponse(err).Code; code == "BucketAlreadyOwnedByYou" || code == "BucketAlreadyExists" {
			return nil
		}
		return err
	})
	if err != nil {
		return s.explain("create bucket", "", err)
	}
	return nil
}

// GetIfChanged implements Revalidator with a conditional GET (If-None-Match: v): S3 answers
// 304 Not Modified, without the value, while the object still has version v.
func (s *S3Store) GetIfChanged(ctx context.Context, key Key, v Version) (Entry, bool, error) {
	name, err := s.objectName(key)
	if err != nil {
		return Entry{}, false, err
	}
	var (
		e       Entry
		changed = true
	)
	err = s.retry(ctx, func(ctx context.Context) error {
		opts := minio.GetObjectOptions{}
		if err := opts.SetMatchETagExcept(string(v)); err != nil {
			return err
		}
		body, info, _, err := s.core.GetObject(ctx, s.cfg.Bucket, name, opts)
		if r := minio.ToErrorResponse(err); r.StatusCode == http.StatusNotModified || r.Code == "NotModified" {
			changed = false
			return nil
		}
		if err != nil {
			return err
		}
		defer body.Close()
		value, err := readObject(body, info.Size, s.cfg.MaxObjectBytes)
		if err != nil {
			return err
		}
		e = entryOf(info, value)
		return nil
	})
	if minio.ToErrorResponse(err).Code == "NoSuchKey" {
		return Entry{}, true, nil
	}
	if err != nil {
		return Entry{}, false, s.explain("get", key.String(), err)
	}
	return e, changed, nil
}

// Get implements Store.
func (s *S3Store) Get(ctx context.Context, key Key) (Entry, error) {
	name, err := s.objectName(key)
	if err != nil {
		return Entry{}, err
	}
	var e Entry
	err = s.retry(ctx, func(ctx context.Context) error {
		body, info, _, err := s.core.GetObject(ctx, s.cfg.Bucket, name, minio.GetObjectOptions{})
		if err != nil {
			return err
		}
		defer body.Close()
		value, err := readObject(body, info.Size, s.cfg.MaxObjectBytes)
		if err != nil {
			return err
		}
		e = entryOf(info, value)
		return nil
	})
	if minio.ToErrorResponse(err).Code == "NoSuchKey" {
		return Entry{}, nil
	}
	if err != nil {
		return Entry{}, s.explain("get", key.String(), err)
	}
	return e, nil
}

// Put implements Store.
func (s *S3Store) Put(ctx context.Context, key Key, value []byte, expect Version, commit Commit) (Version, error) {
	return s.put(ctx, "put", key, value, expect, commit, nil)
}

// Delete implements Store. It writes a tombstone conditional on expect and returns its version.
func (s *S3Store) Delete(ctx context.Context, key Key, expect Version, commit Commit) (Version, error) {
	return s.put(ctx, "delete", key, nil, expect, commit, map[string]string{tombstoneMeta: "true"})
}

func (s *S3Store) put(ctx context.Context, op string, key Key, value []byte, expect Version, commit Commit, meta map[string]string) (Version, error) {
	name, err := s.objectName(key)
	if err != nil {
		return NoVersion, err
	}
	if err := commit.Validate(); err != nil {
		return NoVersion, fmt.Errorf("s3 store: %s %s: %w", op, key, err)
	}
	if commit != NoCommit {
		m := map[string]string{commitMeta: string(commit)}
		for k, v := range meta {
			m[k] = v
		}
		meta = m
	}
	// The payload's SHA-256 is signed as a whole (a 100-byte state hashes in well under a
	// microsecond). Left to itself minio-go signs a plain-http PUT as an aws-chunked stream: a
	// 64 KiB chunk buffer and a chain of signatures per request, most of the client's CPU.
	sum := sha256.Sum256(value)
	payloadSHA256 := hex.EncodeToString(sum[:])
	opts := minio.PutObjectOptions{ContentType: "application/octet-stream", UserMetadata: meta, DisableContentSha256: true}
	if expect == NoVersion {
		opts.SetMatchETagExcept("*")
	} else {
		opts.SetMatchETag(string(expect))
	}
	var (
		version   Version
		ambiguous bool // an attempt failed without a clear answer: it may have landed
	)
	err = s.retry(ctx, func(ctx context.Context) error {
		info, err := s.core.PutObject(ctx, s.cfg.Bucket, name, bytes.NewReader(value), int64(len(value)), "", payloadSHA256, opts)
		version = Version(info.ETag)
		if err != nil && !isConflict(err) && !neverSent(err) {
			ambiguous = true
		}
		return err
	})
	if isConflict(err) {
		// An earlier attempt may have landed and only its answer been lost (a timeout, a
		// connection broken after the request was sent): then the object holds this commit.
		v, err := s.resolveConflict(ctx, op, key, name, commit)
		var ce *ConflictError
		if errors.As(err, &ce) {
			ce.AfterAmbiguous = ambiguous
		}
		return v, err
	}
	if err != nil {
		return NoVersion, s.explain(op, key.String(), err)
	}
	return version, nil
}

// resolveConflict reads the metadata of an object whose conditional write was refused: the
// write succeeded when the object holds this commit; otherwise it is another writer's conflict.
func (s *S3Store) resolveConflict(ctx context.Context, op string, key Key, name string, commit Commit) (Version, error) {
	var info minio.ObjectInfo
	err := s.retry(ctx, func(ctx context.Context) (err error) {
		info, err = s.client.StatObject(ctx, s.cfg.Bucket, name, minio.StatObjectOptions{})
		return err
	})
	if minio.ToErrorResponse(err).Code == "NoSuchKey" {
		return NoVersion, &ConflictError{Key: key}
	}
	if err != nil {
		return NoVersion, s.explain(op+" (checking a refused write)", key.String(), err)
	}
	cur := entryOf(info, nil)
	if sameCommit(cur.Commit, commit) {
		return cur.Version, nil
	}
	return NoVersion, &ConflictError{Key: key, Current: cur.Version, Commit: cur.Commit}
}

// entryOf builds the entry of an object from its info and value. A commit id that is not one
// (metadata written by something else) counts as none.
func entryOf(info minio.ObjectInfo, value []byte) Entry {
	e := Entry{Version: Version(info.ETag), Commit: Commit(info.Metadata.Get("X-Amz-Meta-" + commitMeta))}
	if e.Commit.Validate() != nil {
		e.Commit = NoCommit
	}
	if info.Metadata.Get("X-Amz-Meta-"+tombstoneMeta) == "" {
		e.Value, e.Exists = value, true
	}
	return e
}

func (s *S3Store) objectName(key Key) (string, error) {
	name, err := key.ObjectName()
	if err != nil {
		return "", err
	}
	return s.cfg.Prefix + name, nil
}

// retry runs op until it succeeds, fails with a permanent error, or the attempts run out. Each
// attempt has its own timeout; the back-off doubles from RetryBackoff.
func (s *S3Store) retry(ctx context.Context, op func(context.Context) error) error {
	backoff := s.cfg.RetryBackoff
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
		err := op(actx)
		cancel()
		if err == nil || !isTransient(err) || attempt >= s.cfg.Attempts || ctx.Err() != nil {
			return err
		}
		t := s.cfg.Clock.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C():
		}
		backoff *= 2
	}
}

// neverSent reports a failure that happened before the request could reach the store: the
// connection was refused, or the request never left (errNotSent). Nothing can have landed.
func neverSent(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, errNotSent)
}

func isConflict(err error) bool {
	r := minio.ToErrorResponse(err)
	return r.StatusCode == http.StatusPreconditionFailed || r.Code == "PreconditionFailed" ||
		r.Code == "ConditionalRequestConflict"
}

// isTransient reports errors worth another attempt: network failures, timeouts and the server
// saying it is busy or broken. Client errors (credentials, missing bucket, conflicts) are final.
func isTransient(err error) bool {
	if r := minio.ToErrorResponse(err); r.Code != "" || r.StatusCode != 0 {
		return r.StatusCode >= http.StatusInternalServerError || r.StatusCode == http.StatusTooManyRequests ||
			r.Code == "SlowDown" || r.Code == "RequestTimeout" || r.Code == "InternalError"
	}
	var netErr net.Error
	return errors.As(err, &netErr) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF)
}

// explain turns a failed operation into an error that says what is wrong and wraps
// ErrUnavailable. It names the endpoint and bucket, never the credentials.
func (s *S3Store) explain(op, key string, err error) error {
	where := fmt.Sprintf("s3 store %s/%s", s.cfg.Endpoint, s.cfg.Bucket)
	if key != "" {
		op += " " + key
	}
	r := minio.ToErrorResponse(err)
	switch r.Code {
	case "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken", "AccessDenied":
		return fmt.Errorf("%s: %s: %w: credentials rejected (%s): check the access key, secret key and the policy on the bucket", where, op, ErrUnavailable, r.Code)
	case "NoSuchBucket":
		return fmt.Errorf("%s: %s: %w: bucket %q does not exist", where, op, ErrUnavailable, s.cfg.Bucket)
	case "":
		if isTransient(err) {
			return fmt.Errorf("%s: %s: %w: endpoint unreachable after %d attempts: %w", where, op, ErrUnavailable, s.cfg.Attempts, err)
		}
		return fmt.Errorf("%s: %s: %w: %w", where, op, ErrUnavailable, err)
	default:
		return fmt.Errorf("%s: %s: %w: %s (%s, HTTP %d)", where, op, ErrUnavailable, r.Message, r.Code, r.StatusCode)
	}
}

// DefaultS3MaxObjectBytes bounds an actor's stored object that a read accepts: far above any
// record the router writes (its state is bounded by MaxStateBytes, 1 MiB by default, its
// remembered replies and outbox by their own limits), so that an object someone else put in
// the bucket cannot make a router read without end.
const DefaultS3MaxObjectBytes = 256 << 20

// errObjectTooLarge is returned for an object over the limit; it is not transient, so the
// store's retry gives up on it at once.
var errObjectTooLarge = errors.New("the object is over S3Config.MaxObjectBytes: not a record knactor wrote")

// readObject reads an object's body of size bytes (-1: unknown), up to limit.
func readObject(body io.Reader, size, limit int64) ([]byte, error) {
	if size > limit {
		return nil, fmt.Errorf("%w (%d bytes, limit %d)", errObjectTooLarge, size, limit)
	}
	value, err := io.ReadAll(io.LimitReader(body, limit+1))
	if err == nil && int64(len(value)) > limit {
		return nil, fmt.Errorf("%w (over %d bytes)", errObjectTooLarge, limit)
	}
	return value, err
}
