package statecache

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"strings"

	"github.com/minio/minio-go/v7"
)

// s3ListPage is the most keys one listing request asks for: S3's own limit.
const s3ListPage = 1000

// s3Index is one of the store's indexes (due times, channel members): a folder under the
// store's prefix with one object per entry, named by the entry, its body the id of the actor
// the entry names (so a name that holds a hashed id still names its actor). The folder's name
// starts with '.', as no function name does, so no actor's object is under it.
type s3Index[T any] struct {
	// what names the index in logs.
	what string
	// parse makes an entry of its object's name inside the listed folder and the actor id
	// kept in its body; "" parses the name alone.
	parse func(name, id string) (T, error)
	// hashed reports a name that holds its actor's id by the id's hash: parsing it needs the
	// body.
	hashed func(name string) bool
}

// putIndexObject writes the index object name with the actor id as its body (a PUT of a few
// bytes), durable when it returns. Writing an object that exists rewrites the same bytes.
func (s *S3Store) putIndexObject(ctx context.Context, name, id string) error {
	body := []byte(id)
	// Signed as a whole, as put does, rather than as minio-go's aws-chunked stream.
	sum := sha256.Sum256(body)
	payloadSHA256 := hex.EncodeToString(sum[:])
	opts := minio.PutObjectOptions{ContentType: "application/octet-stream", DisableContentSha256: true}
	return s.retry(ctx, func(ctx context.Context) error {
		_, err := s.core.PutObject(ctx, s.cfg.Bucket, name, bytes.NewReader(body), int64(len(body)), "", payloadSHA256, opts)
		return err
	})
}

// removeIndexObject deletes the index object name. An absent object is not an error.
func (s *S3Store) removeIndexObject(ctx context.Context, name string) error {
	return s.retry(ctx, func(ctx context.Context) error {
		err := s.client.RemoveObject(ctx, s.cfg.Bucket, name, minio.RemoveObjectOptions{})
		if minio.ToErrorResponse(err).Code == "NoSuchKey" {
			return nil
		}
		return err
	})
}

// listIndex returns up to limit entries of ix under the folder dir, after the object start
// ("" for the first) and before the object end, one request per 1000 entries. Each entry is read
// from its name; one whose name holds a hashed id costs a GET of its body as well. op names the
// listing in errors.
func listIndex[T any](ctx context.Context, s *S3Store, ix s3Index[T], op, dir, start, end string, limit int) ([]T, error) {
	if limit <= 0 || start >= end {
		return nil, nil
	}
	var out []T
	for len(out) < limit {
		objects, more, err := s.listIndexPage(ctx, dir, start, end, min(limit-len(out), s3ListPage))
		if err != nil {
			return nil, s.explain(op, "", err)
		}
		for _, obj := range objects {
			e, ok, err := indexEntryOf(ctx, s, ix, op, obj, strings.TrimPrefix(obj, dir))
			if err != nil {
				return nil, err
			}
			if ok {
				out = append(out, e)
			}
		}
		if !more {
			break
		}
		start = objects[len(objects)-1]
	}
	return out, nil
}

// listIndexPage lists up to page object names under dir after start and before end, with one
// request unless the server answers with less than it was asked for. more reports a full page:
// there may be more names before end.
func (s *S3Store) listIndexPage(ctx context.Context, dir, start, end string, page int) (objects []string, more bool, err error) {
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

// indexEntryOf returns the entry of ix's object obj, whose name in the listed folder is name. ok
// is false for an entry to skip: removed since it was listed, or not an entry at all.
func indexEntryOf[T any](ctx context.Context, s *S3Store, ix s3Index[T], op, obj, name string) (e T, ok bool, err error) {
	var zero T
	e, err = ix.parse(name, "")
	if err == nil {
		return e, true, nil
	}
	if !errors.Is(err, ErrInvalidKey) || !ix.hashed(name) {
		// Only the index's own writes go under its folder. An object that is not an entry can
		// neither be acted on nor removed by what it names, and must not stop every listing.
		slog.Warn("s3 store: skipping an object of an index that is not an entry", "bucket", s.cfg.Bucket, "index", ix.what, "object", obj, "err", err)
		return zero, false, nil
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
		return zero, false, nil // removed since the listing
	}
	if err != nil {
		return zero, false, s.explain(op+" (reading a hashed id)", name, err)
	}
	e, err = ix.parse(name, string(id))
	if err != nil {
		slog.Warn("s3 store: skipping an index entry whose body does not name its actor", "bucket", s.cfg.Bucket, "index", ix.what, "object", obj, "err", err)
		return zero, false, nil
	}
	return e, true, nil
}
