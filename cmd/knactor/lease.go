package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/knactor/knactor/statecache"
)

// storeLease is what up does with the lease of its store: nothing for a store only this process
// can open (the local store locks its directory), a statecache.Lease for S3.
type storeLease interface {
	Run(ctx context.Context) error
	Release(ctx context.Context) error
}

// noLease is the lease of a store that needs none.
type noLease struct{}

func (noLease) Run(ctx context.Context) error { <-ctx.Done(); return nil }
func (noLease) Release(context.Context) error { return nil }

// acquireLease makes this process the only knactor up on its S3 bucket and prefix (see
// statecache.AcquireLease): two local routers on one bucket would each serve their own cached
// state. A second one refuses to start, naming the first.
func acquireLease(ctx context.Context, st *state, listen string) (storeLease, error) {
	ls, ok := st.store.(statecache.LeaseStore)
	if !ok {
		return noLease{}, nil
	}
	l, err := statecache.AcquireLease(ctx, ls, statecache.LeaseConfig{Self: statecache.LeaseSelf(listen, time.Now())})
	if err != nil {
		return nil, err
	}
	slog.Info("holding the store's lease: no other knactor up serves it", "store", ls.LeaseLocation())
	return l, nil
}
