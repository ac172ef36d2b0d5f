package statecache

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
)

const (
	// s3DueDir is the folder of the due-time index under the store's prefix: one object
	// "{prefix}.due/" + DueName per entry, its body the actor's id. A function name never starts
	// with '.', so no actor's object is under it.
	s3DueDir = ".due/"

	// s3ListPage is the most keys one listing request asks for: S3's own limit.
	s3ListPage = 1000
)

var _ DueIndex = (*S3Store)(nil)

// AddDue implements DueIndex: it writes the entry's object (a PUT of the actor's id, a few
// bytes), durable when AddDue returns. Writing an entry that exists rewrites the same bytes.
func (s *S3Store) AddDue(ctx context.Context, d Due) error {
	name, err := s.dueObjectName(d)
	if err != nil {
		return fmt.Errorf("s3 store: add due %s: %w", d.Key, err)
	}
	body := []byte(d.Key.ID)
	// Signed as a whole, as put does, rather than as minio-go's aws-chunked stream.
	sum := sha256.Sum256(body)
	payloadSHA256 := hex.EncodeToString(sum[:])
	opts := minio.PutObjectOptions{ContentType: "application/octet-stream", DisableContentSha256: true}
	err = s.retry(ctx, func(ctx context.Context) error {
		_, err := s.core.PutObject(ctx, s.cfg.Bucket, name, bytes.NewReader(body), int64(len(body)), "", payloadSHA256, opts)
		return err
	})
	if err != nil {
		return s.explain("add due", d.Key.String(), err)
	}
	return nil
}

// RemoveDue implements DueIndex: it deletes the entry's object. An absent object is not an
// error.
func (s *S3Store) RemoveDue(ctx context.Context, d Due) error {
	name, err := s.dueObjectName(d)
	if err != nil {
		return fmt.Errorf("s3 store: remove due %s: %w", d.Key, err)
	}
	err = s.retry(ctx, func(ctx context.Context) error {
		err := s.client.RemoveObject(ctx, s.cfg.Bucket, name, minio.RemoveObjectOptions{})
		if minio.ToErrorResponse(err).Code == "NoSuchKey" {
			return nil
		}
		return err
	})
	if err != nil {
		return s.explain("remove due", d.Key.String(), err)
	}
	return nil
}

// ListDue implements DueIndex: it lists "{prefix}.due/" from after's name up to
// DueUntil(until), one request per 1000 entries. Each entry's actor is read from its name; an
// entry whose name holds a hashed id (an id of more than 200 escaped bytes) costs a GET of
// its body as well.
func (s *S3Store) ListDue(ctx context.Context, until time.Time, after Due, limit int) ([]Due, error) {
	afterName, err := dueAfterName(after)
	if err != nil {
		return nil, fmt.Errorf("s3 store: list due: %w", err)
	}
	if limit <= 0 {
		return nil, nil
	}
	dir := s.cfg.Prefix + s3DueDir
	start, end := "", dir+DueUntil(until)
	if afterName != "" {
		start = dir + afterName
	}
	if start >= end {
		return nil, nil
	}
	var out []Due
	for len(out) < limit {
		objects, more, err := s.listDuePage(ctx, dir, start, end, min(limit-len(out), s3ListPage))
		if err != nil {
			return nil, s.explain("list due", "", err)
		}
		for _, obj := range objects {
			d, ok, err := s.dueOf(ctx, obj, strings.TrimPrefix(obj, dir))
			if err != nil {
				return nil, err
			}
			if ok {
				out = append(out, d)
			}
		}
		if !more {
			break
		}
		start = objects[len(objects)-1]
	}
	return out, nil
}

// listDuePage lists up to page object names of the index after start and before end, with one
// request unless the server answers with less than it was asked for. more reports a full page:
// there may be more names before end.
func (s *S3Store) listDuePage(ctx context.Context, dir, start, end string, page int) (objects []string, more bool, err error) {
	fetchOwner := false
	err = s.retry(ctx, func(ctx context.Context) error {
		objects, more = objects[:0], false
		opts := minio.ListObjectsOptions{Prefix: dir, StartAfter: start, Recursive: true, MaxKeys: page, FetchOwner: &fetchOwner}
		for obj := range s.client.ListObjectsIter(ctx, s.cfg.Bucket, opts) {
			if obj.Err != nil {
				return obj.Err
			}
			if obj.Key >= end {
				return nil
			}
			objects = append(objects, obj.Key)
			if len(objects) == page {
				more = true
				return nil
			}
		}
		// The iterator ends without an error when its context is done.
		return ctx.Err()
	})
	return objects, more, err
}

// dueOf returns the entry of the index object obj, whose name in the index is name. ok is false
// for an entry to skip: removed since it was listed, or not an entry at all.
func (s *S3Store) dueOf(ctx context.Context, obj, name string) (d Due, ok bool, err error) {
	d, err = ParseDueName(name, "")
	if err == nil {
		return d, true, nil
	}
	if !errors.Is(err, ErrInvalidKey) || !dueNameHashed(name) {
		// Only AddDue writes under the folder. An object that is not an entry can neither be
		// acted on nor removed by its Due, and must not stop every timer.
		slog.Warn("s3 store: skipping an object of the due-time index that is not an entry", "bucket", s.cfg.Bucket, "object", obj, "err", err)
		return Due{}, false, nil
	}
	var id []byte
	err = s.retry(ctx, func(ctx context.Context) error {
		body, _, _, err := s.core.GetObject(ctx, s.cfg.Bucket, obj, minio.GetObjectOptions{})
		if err != nil {
			return err
		}
		defer body.Close()
		id, err = io.ReadAll(io.LimitReader(body, MaxIDBytes+1))
		return err
	})
	if minio.ToErrorResponse(err).Code == "NoSuchKey" {
		return Due{}, false, nil // removed since the listing
	}
	if err != nil {
		return Due{}, false, s.explain("list due (reading a hashed id)", name, err)
	}
	d, err = ParseDueName(name, string(id))
	if err != nil {
		slog.Warn("s3 store: skipping an entry of the due-time index whose body does not name its actor", "bucket", s.cfg.Bucket, "object", obj, "err", err)
		return Due{}, false, nil
	}
	return d, true, nil
}

// dueObjectName returns the name of d's object in the index.
func (s *S3Store) dueObjectName(d Due) (string, error) {
	name, err := DueName(d)
	if err != nil {
		return "", err
	}
	return s.cfg.Prefix + s3DueDir + name, nil
}

// dueNameHashed reports whether an index name ("{time}/{function}/{segment}") names its actor
// by the id's hash.
func dueNameHashed(name string) bool {
	_, obj, _ := strings.Cut(name, "/")
	_, seg, _ := strings.Cut(obj, "/")
	return seg != "" && seg[0] == hashedMarker
}
