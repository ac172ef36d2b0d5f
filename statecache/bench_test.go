package statecache_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/knactor/knactor/statecache"
	"github.com/knactor/knactor/test/miniotest"
)

// state1K is a 1 KiB state, the size the benchmarks in docs/benchmarks.md use.
var state1K = make([]byte, 1024)

const benchKeys = 1 << 16 // enough distinct actors that the hot set is not one cache line

func benchKey(i int) statecache.Key {
	return statecache.Key{Function: "bench", ID: "actor-" + strconv.Itoa(i%benchKeys)}
}

func BenchmarkCacheGetHit(b *testing.B) {
	c := newCacheB(b, statecache.Config{Mode: statecache.WriteBehind, FlushInterval: 1 << 62})
	for i := range benchKeys {
		if _, err := c.Put(bg, benchKey(i), state1K, "", statecache.NoCommit); err != nil {
			b.Fatal(err)
		}
	}
	misses := c.Stats().Misses
	b.SetBytes(int64(len(state1K)))
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := c.Get(bg, benchKey(i)); err != nil {
				b.Error(err)
				return
			}
			i += 7919
		}
	})
	if st := c.Stats(); st.Misses != misses {
		b.Fatalf("%d misses: the benchmark measured the store", st.Misses-misses)
	}
}

// BenchmarkCachePutWriteBehind measures the cache's own write path: check, buffer, remember.
func BenchmarkCachePutWriteBehind(b *testing.B) {
	c := newCacheB(b, statecache.Config{Mode: statecache.WriteBehind, FlushInterval: 1 << 62})
	for i := range benchKeys { // load every actor once, so the loop measures the write path only
		if _, err := c.Get(bg, benchKey(i)); err != nil {
			b.Fatal(err)
		}
	}
	versions := make([]statecache.Version, benchKeys)
	b.SetBytes(int64(len(state1K)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		k := i % benchKeys
		v, err := c.Put(bg, benchKey(k), state1K, versions[k], statecache.NoCommit)
		if err != nil {
			b.Fatal(err)
		}
		versions[k] = v
	}
}

// BenchmarkCachePutWriteThroughDir is a write-through put onto the local-directory store
// (two fsyncs per write).
func BenchmarkCachePutWriteThroughDir(b *testing.B) {
	c, err := statecache.NewCache(openDirB(b), statecache.Config{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = c.Close(bg) })
	benchPuts(b, c, func(k statecache.Key, expect statecache.Version) (statecache.Version, error) {
		return c.Put(bg, k, state1K, expect, statecache.NoCommit)
	})
}

func BenchmarkDirStore(b *testing.B) {
	benchStore(b, openDirB(b))
}

func BenchmarkPebbleStore(b *testing.B) {
	s, err := statecache.OpenPebbleStore(b.TempDir(), statecache.PebbleOptions{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	benchStore(b, s)
}

func BenchmarkS3Store(b *testing.B) {
	srv := miniotest.Start(b)
	cfg := statecache.S3Config{Endpoint: srv.Endpoint, Bucket: "bench", AccessKey: miniotest.AccessKey,
		SecretKey: miniotest.SecretKey, CreateBucket: true}
	s, err := statecache.OpenS3Store(bg, cfg)
	if err != nil {
		b.Fatal(err)
	}
	benchStore(b, s)
}

func benchStore(b *testing.B, s statecache.Store) {
	b.Run("PutParallel100B", func(b *testing.B) { benchParallelPuts(b, s) })
	b.Run("Put1KiB", func(b *testing.B) {
		benchPuts(b, s, func(k statecache.Key, expect statecache.Version) (statecache.Version, error) {
			return s.Put(bg, k, state1K, expect, statecache.NoCommit)
		})
	})
	b.Run("Get1KiB", func(b *testing.B) {
		const keys = 256
		for i := range keys {
			k := statecache.Key{Function: "bench-get", ID: strconv.Itoa(i)}
			e, err := s.Get(bg, k)
			if err == nil {
				_, err = s.Put(bg, k, state1K, e.Version, statecache.NoCommit)
			}
			if err != nil {
				b.Fatal(err)
			}
		}
		b.SetBytes(int64(len(state1K)))
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			if _, err := s.Get(bg, statecache.Key{Function: "bench-get", ID: strconv.Itoa(i % keys)}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// benchParallelPuts is write-through under load: 64 writers (as the router's benchmark has
// connections), each updating actors of its own with a commit id, as turns do. Besides time per
// write it reports this process's CPU per write (cpu-µs/op), what the store costs the router.
func benchParallelPuts(b *testing.B, s statecache.Store) {
	const writers = 64
	b.SetParallelism(max(1, writers/runtime.GOMAXPROCS(0)))
	var next atomic.Int64
	run := strconv.FormatInt(benchRuns.Add(1), 10) // the store keeps the actors of earlier runs
	state := make([]byte, 100)
	b.ReportAllocs()
	cpu0 := processCPU()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		w := next.Add(1)
		versions := map[int]statecache.Version{}
		for i := 0; pb.Next(); i++ {
			id := i % 16
			k := statecache.Key{Function: "bench-par", ID: run + "-" + strconv.FormatInt(w, 10) + "-" + strconv.Itoa(id)}
			v, err := s.Put(bg, k, state, versions[id], statecache.Commit("bench-"+strconv.FormatInt(w, 10)+"-"+strconv.Itoa(i)))
			if err != nil {
				b.Error(err)
				return
			}
			versions[id] = v
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(processCPU()-cpu0)/float64(time.Microsecond)/float64(b.N), "cpu-µs/op")
}

var benchRuns atomic.Int64

// processCPU is the CPU time (user + system) this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchPuts updates one actor per iteration, each time at the version the last write returned.
func benchPuts(b *testing.B, s interface {
	Get(context.Context, statecache.Key) (statecache.Entry, error)
}, put func(statecache.Key, statecache.Version) (statecache.Version, error)) {
	k := statecache.Key{Function: "bench-put", ID: b.Name()}
	var v statecache.Version
	if e, err := s.Get(bg, k); err != nil {
		b.Fatal(err)
	} else {
		v = e.Version
	}
	b.SetBytes(int64(len(state1K)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		state1K[0] = byte(i) // a new value each time, as a real turn would write
		var err error
		if v, err = put(k, v); err != nil {
			b.Fatal(err)
		}
	}
}

// newCacheB returns a cache over an in-memory store, closed after the timed part.
func newCacheB(b *testing.B, cfg statecache.Config) *statecache.Cache {
	c, err := statecache.NewCache(&statecache.MemStore{}, cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = c.Close(bg) })
	return c
}

func openDirB(b *testing.B) *statecache.DirStore {
	s, err := statecache.OpenDirStore(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

// BenchmarkIdleActorsMemory measures what a million idle actors cost: 100-byte states written
// through a write-behind cache over the local store, flushed, then left alone. It reports bytes
// per actor of the Go heap (the cache: bigcache's shards and index, the idle tracking), of the
// process's resident memory (the heap plus Pebble's block cache and memtables, which live
// outside it) and of the store's files. Run it once:
//
//	go test -run XXX -bench IdleActorsMemory -benchtime 1x ./statecache/
func BenchmarkIdleActorsMemory(b *testing.B) {
	const actors = 1_000_000
	dir := b.TempDir()
	store, err := statecache.OpenPebbleStore(dir, statecache.PebbleOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	heap0, rss0 := memoryNow()
	c, err := statecache.NewCache(store, statecache.Config{Mode: statecache.WriteBehind, FlushInterval: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close(bg)
	state := []byte(`{"value":1,"name":"` + strings.Repeat("x", 100-len(`{"value":1,"name":""}`)) + `"}`)
	b.ResetTimer()
	for range b.N {
		for i := range actors {
			k := statecache.Key{Function: "counter", ID: "actor-" + strconv.Itoa(i)}
			if _, err := c.Put(bg, k, state, statecache.NoVersion, statecache.NoCommit); err != nil && !errors.Is(err, statecache.ErrConflict) {
				b.Fatal(err)
			}
		}
		if err := c.Flush(bg); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	heap, rss := memoryNow()
	var disk int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				disk += fi.Size()
			}
		}
		return nil
	})
	if st := c.Stats(); st.Dirty != 0 {
		b.Fatalf("%d actors still dirty after the flush", st.Dirty)
	}
	b.ReportMetric(float64(heap-heap0)/actors, "heap-B/actor")
	b.ReportMetric(float64(rss-rss0)/actors, "rss-B/actor")
	b.ReportMetric(float64(disk)/actors, "disk-B/actor")
}

// memoryNow returns the Go heap in use after a collection, and the process's resident memory
// once the collector has returned free pages to the system.
func memoryNow() (heap, rss uint64) {
	debug.FreeOSMemory()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	b, _ := os.ReadFile("/proc/self/statm")
	var pages, resident uint64
	fmt.Sscan(string(b), &pages, &resident)
	return m.HeapInuse, resident * uint64(os.Getpagesize())
}
