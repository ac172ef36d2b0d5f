package statecache

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"

	"github.com/minio/minio-go/v7"
)

// leaseObject is the lease's object name under the prefix. Function names are DNS labels, so no
// actor's object starts with a dot.
const leaseObject = ".lease"

// maxLeaseBytes bounds a lease object read: a lease is a few hundred bytes of JSON.
const maxLeaseBytes = 64 << 10

var _ LeaseStore = (*S3Store)(nil)

// LeaseLocation implements LeaseStore.
func (s *S3Store) LeaseLocation() string {
	return fmt.Sprintf("s3://%s/%s/%s", s.cfg.Endpoint, s.cfg.Bucket, s.cfg.Prefix)
}

// ReadLease implements LeaseStore.
func (s *S3Store) ReadLease(ctx context.Context) (body []byte, v Version, exists bool, err error) {
	name := s.cfg.Prefix + leaseObject
	err = s.retry(ctx, func(ctx context.Context) error {
		r, info, _, err := s.core.GetObject(ctx, s.cfg.Bucket, name, minio.GetObjectOptions{})
		if err != nil {
			return err
		}
		defer r.Close()
		body, err = io.ReadAll(io.LimitReader(r, maxLeaseBytes))
		v, exists = Version(info.ETag), true
		return err
	})
	if minio.ToErrorResponse(err).Code == "NoSuchKey" {
		return nil, NoVersion, false, nil
	}
	if err != nil {
		return nil, NoVersion, false, s.explain("read lease", "", err)
	}
	return body, v, true, nil
}

// WriteLease implements LeaseStore with a PUT conditional on the lease's ETag (If-None-Match: *
// to create it).
func (s *S3Store) WriteLease(ctx context.Context, body []byte, expect Version) (Version, error) {
	name := s.cfg.Prefix + leaseObject
	sum := sha256.Sum256(body)
	opts := minio.PutObjectOptions{ContentType: "application/json", DisableContentSha256: true}
	if expect == NoVersion {
		opts.SetMatchETagExcept("*")
	} else {
		opts.SetMatchETag(string(expect))
	}
	var v Version
	err := s.retry(ctx, func(ctx context.Context) error {
		info, err := s.core.PutObject(ctx, s.cfg.Bucket, name, bytes.NewReader(body), int64(len(body)), "", hex.EncodeToString(sum[:]), opts)
		v = Version(info.ETag)
		return err
	})
	if isConflict(err) {
		return NoVersion, fmt.Errorf("write lease: %w", ErrConflict)
	}
	if err != nil {
		return NoVersion, s.explain("write lease", "", err)
	}
	return v, nil
}
