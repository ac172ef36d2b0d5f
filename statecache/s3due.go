package statecache

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// s3DueDir is the folder of the due-time index under the store's prefix: one object
// "{prefix}.due/" + DueName per entry, its body the actor's id (see s3Index).
const s3DueDir = ".due/"

var _ DueIndex = (*S3Store)(nil)

// s3DueIndex reads the entries of the due-time index.
var s3DueIndex = s3Index[Due]{what: "due-time index", parse: ParseDueName, hashed: dueNameHashed}

// AddDue implements DueIndex: it writes the entry's object (a PUT of the actor's id, a few
// bytes), durable when AddDue returns. Writing an entry that exists rewrites the same bytes.
func (s *S3Store) AddDue(ctx context.Context, d Due) error {
	name, err := s.dueObjectName(d)
	if err != nil {
		return fmt.Errorf("s3 store: add due %s: %w", d.Key, err)
	}
	if err := s.putIndexObject(ctx, name, d.Key.ID); err != nil {
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
	if err := s.removeIndexObject(ctx, name); err != nil {
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
	dir := s.cfg.Prefix + s3DueDir
	start := ""
	if afterName != "" {
		start = dir + afterName
	}
	return listIndex(ctx, s, s3DueIndex, "list due", dir, start, dir+DueUntil(until), limit)
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
	return objectNameHashed(obj)
}
