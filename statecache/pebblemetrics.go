package statecache

import (
	"strings"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/prometheus/client_golang/prometheus"
)

// PebbleStats are counters of a PebbleStore since it opened.
type PebbleStats struct {
	// Syncs is the number of fsyncs of the write-ahead log: one per group of writes that reached
	// the log together.
	Syncs uint64
	// LogBytes is what was appended to the write-ahead log.
	LogBytes uint64
	// FlushedTables and Compactions count background work: memtables written to table files and
	// merges of table files.
	FlushedTables, Compactions int64
}

// Stats reads the store's counters. It takes a snapshot of Pebble's metrics: cheap enough for a
// scrape, not for every write.
func (s *PebbleStore) Stats() PebbleStats {
	m := s.db.Metrics()
	return PebbleStats{Syncs: s.logSyncs.Load(), LogBytes: m.WAL.BytesWritten, FlushedTables: m.Flush.Count, Compactions: m.Compact.Count}
}

// syncCountingFS counts the fsyncs of write-ahead log files as they happen. (Pebble's own fsync
// histogram is updated after the waiting writers are released, so a count read right after a
// write can miss the fsync that write waited for.)
type syncCountingFS struct {
	vfs.FS
	syncs *atomic.Uint64
}

func (fs syncCountingFS) wrap(name string, f vfs.File, err error) (vfs.File, error) {
	if err != nil || !strings.HasSuffix(name, ".log") {
		return f, err
	}
	return syncCountingFile{File: f, syncs: fs.syncs}, nil
}

func (fs syncCountingFS) Create(name string, category vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, category)
	return fs.wrap(name, f, err)
}

func (fs syncCountingFS) ReuseForWrite(oldname, newname string, category vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.ReuseForWrite(oldname, newname, category)
	return fs.wrap(newname, f, err)
}

type syncCountingFile struct {
	vfs.File
	syncs *atomic.Uint64
}

func (f syncCountingFile) Sync() error {
	err := f.File.Sync()
	f.syncs.Add(1)
	return err
}

func (f syncCountingFile) SyncData() error {
	err := f.File.SyncData()
	f.syncs.Add(1)
	return err
}

// Collector exports Stats as Prometheus metrics (knactor_store_*).
func (s *PebbleStore) Collector() prometheus.Collector { return pebbleCollector{s} }

var (
	pebbleSyncsDesc = prometheus.NewDesc("knactor_store_log_syncs_total",
		"Fsyncs of the local store's write-ahead log; writes that reach it together share one.", nil, nil)
	pebbleLogBytesDesc = prometheus.NewDesc("knactor_store_log_bytes_total",
		"Bytes appended to the local store's write-ahead log.", nil, nil)
	pebbleFlushesDesc = prometheus.NewDesc("knactor_store_memtable_flushes_total",
		"Memtables of the local store written to table files.", nil, nil)
	pebbleCompactionsDesc = prometheus.NewDesc("knactor_store_compactions_total",
		"Compactions of the local store's table files.", nil, nil)
)

type pebbleCollector struct{ s *PebbleStore }

func (c pebbleCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- pebbleSyncsDesc
	ch <- pebbleLogBytesDesc
	ch <- pebbleFlushesDesc
	ch <- pebbleCompactionsDesc
}

func (c pebbleCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.s.Stats()
	ch <- prometheus.MustNewConstMetric(pebbleSyncsDesc, prometheus.CounterValue, float64(st.Syncs))
	ch <- prometheus.MustNewConstMetric(pebbleLogBytesDesc, prometheus.CounterValue, float64(st.LogBytes))
	ch <- prometheus.MustNewConstMetric(pebbleFlushesDesc, prometheus.CounterValue, float64(st.FlushedTables))
	ch <- prometheus.MustNewConstMetric(pebbleCompactionsDesc, prometheus.CounterValue, float64(st.Compactions))
}
