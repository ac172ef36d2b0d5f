// Command storechoice measures the candidates for knactor's embedded local store on this machine,
// as the store is used: many actors' turns writing at once, each waiting until its write is
// durable, each write conditional on the version it read. It is a module of its own so that the
// candidates that lost do not become dependencies of knactor.
//
//	cd hack/storechoice && go run . [-writers 64] [-duration 5s]
//
// Candidates:
//
//   - pebble: statecache.PebbleStore (Pebble; a write waits for the log fsync it shares with every
//     write that reached the log meanwhile).
//   - bbolt-update: go.etcd.io/bbolt, one read-write transaction per write (its own fsyncs).
//   - bbolt-batch: bbolt's DB.Batch, which gathers concurrent writers into one transaction (up to
//     MaxBatchSize writes or MaxBatchDelay, 10 ms by default).
//   - dirstore: statecache.DirStore, a file per actor (the store before Pebble).
package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/knactor/knactor/statecache"
)

// store is a conditional write of one actor: it fails unless the actor is at version expect.
type store interface {
	put(key string, value []byte, expect uint64) (uint64, error)
	close() error
}

var errConflict = errors.New("conflict")

func main() {
	writers := flag.Int("writers", 64, "concurrent writers, each updating actors of its own")
	duration := flag.Duration("duration", 5*time.Second, "length of each measurement")
	flag.Parse()
	fmt.Printf("%d writers, %v each, 100-byte states, on %s\n\n", *writers, *duration, os.TempDir())
	fmt.Println("| store | writers | writes/s | p50 | p99 | CPU µs/write |")
	fmt.Println("|---|---:|---:|---:|---:|---:|")
	candidates := []struct {
		name string
		open func(dir string) (store, error)
	}{
		{"pebble (statecache.PebbleStore)", openPebble},
		{"bbolt, a transaction per write", func(dir string) (store, error) { return openBolt(dir, false) }},
		{"bbolt, DB.Batch", func(dir string) (store, error) { return openBolt(dir, true) }},
		{"dirstore (a file per actor)", openDir},
	}
	for _, c := range candidates {
		for _, w := range []int{*writers, 1} {
			if err := measure(c.name, c.open, w, *duration); err != nil {
				fmt.Fprintf(os.Stderr, "%s: %v\n", c.name, err)
				os.Exit(1)
			}
		}
	}
}

func measure(name string, open func(string) (store, error), writers int, d time.Duration) error {
	dir, err := os.MkdirTemp("", "storechoice-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	s, err := open(dir)
	if err != nil {
		return err
	}
	defer s.close()
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		lat      []time.Duration
		failed   atomic.Value
		deadline = time.Now().Add(d)
		value    = bytes.Repeat([]byte("x"), 100)
	)
	cpu0 := processCPU()
	start := time.Now()
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			versions := make([]uint64, 16)
			var mine []time.Duration
			for i := 0; time.Now().Before(deadline); i++ {
				a := i % len(versions)
				t := time.Now()
				v, err := s.put(fmt.Sprintf("bench/%d-%d", w, a), value, versions[a])
				if err != nil {
					failed.Store(err)
					return
				}
				mine = append(mine, time.Since(t))
				versions[a] = v
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu := processCPU() - cpu0
	if err, ok := failed.Load().(error); ok {
		return err
	}
	slices.Sort(lat)
	n := len(lat)
	fmt.Printf("| %s | %d | %.0f | %v | %v | %.0f |\n", name, writers, float64(n)/elapsed.Seconds(),
		lat[n/2].Round(time.Microsecond), lat[n*99/100].Round(time.Microsecond), float64(cpu.Microseconds())/float64(n))
	return nil
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// statecache stores: versions are theirs; the harness keeps a number per actor and maps it.
type cacheStore struct {
	s        statecache.Store
	closeFn  func() error
	mu       sync.Mutex
	versions map[string]statecache.Version // key → last version written (writers own their keys)
	seq      atomic.Uint64
}

func (c *cacheStore) put(key string, value []byte, _ uint64) (uint64, error) {
	fn, id, _ := cut(key)
	k := statecache.Key{Function: fn, ID: id}
	c.mu.Lock()
	expect := c.versions[key]
	c.mu.Unlock()
	v, err := c.s.Put(context.Background(), k, value, expect, statecache.Commit("c-"+strconv.FormatUint(c.seq.Add(1), 10)))
	if err != nil {
		return 0, err
	}
	c.mu.Lock()
	c.versions[key] = v
	c.mu.Unlock()
	return 0, nil
}

func (c *cacheStore) close() error { return c.closeFn() }

func cut(key string) (string, string, bool) {
	for i := range key {
		if key[i] == '/' {
			return key[:i], key[i+1:], true
		}
	}
	return key, "", false
}

func openPebble(dir string) (store, error) {
	s, err := statecache.OpenPebbleStore(dir, statecache.PebbleOptions{})
	if err != nil {
		return nil, err
	}
	return &cacheStore{s: s, closeFn: s.Close, versions: map[string]statecache.Version{}}, nil
}

func openDir(dir string) (store, error) {
	s, err := statecache.OpenDirStore(dir)
	if err != nil {
		return nil, err
	}
	return &cacheStore{s: s, closeFn: s.Close, versions: map[string]statecache.Version{}}, nil
}

// boltStore keeps version (8 bytes) + value per key in one bucket; a write checks the version in
// its transaction.
type boltStore struct {
	db    *bolt.DB
	batch bool
}

var bucket = []byte("state")

func openBolt(dir string, batch bool) (store, error) {
	db, err := bolt.Open(filepath.Join(dir, "bolt.db"), 0o600, nil)
	if err != nil {
		return nil, err
	}
	err = db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucketIfNotExists(bucket); return err })
	return &boltStore{db: db, batch: batch}, err
}

func (b *boltStore) put(key string, value []byte, expect uint64) (uint64, error) {
	var next uint64
	fn := func(tx *bolt.Tx) error {
		bk := tx.Bucket(bucket)
		var cur uint64
		if old := bk.Get([]byte(key)); old != nil {
			cur = binary.BigEndian.Uint64(old)
		}
		if cur != expect {
			return errConflict
		}
		next = cur + 1
		rec := binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(value)), next)
		return bk.Put([]byte(key), append(rec, value...))
	}
	var err error
	if b.batch {
		err = b.db.Batch(fn)
	} else {
		err = b.db.Update(fn)
	}
	return next, err
}

func (b *boltStore) close() error { return b.db.Close() }
