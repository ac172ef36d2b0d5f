package statecache

import "github.com/prometheus/client_golang/prometheus"

// The state caches' metrics (docs/api.md, Metrics): what write-behind holds that is not durable
// yet, and how its flushes fare, for an operator to alert on before a store outage turns into
// refused calls.
var (
	dirtyDesc = prometheus.NewDesc("knactor_state_dirty",
		"Write-behind changes acknowledged but not yet durable in the store.", nil, nil)
	dirtyBytesDesc = prometheus.NewDesc("knactor_state_dirty_bytes",
		"Bytes of the write-behind changes not yet durable (refused past --max-dirty-bytes).", nil, nil)
	flushFailingDesc = prometheus.NewDesc("knactor_state_flush_failing_seconds",
		"How long write-behind flushes have been failing (0 while they succeed); changes are refused past --max-dirty-age.", nil, nil)
	flushedDesc = prometheus.NewDesc("knactor_state_flushed_total",
		"Write-behind changes made durable.", nil, nil)
	flushErrorsDesc = prometheus.NewDesc("knactor_state_flush_errors_total",
		"Failed write-behind flushes of one key (retried at the next flush).", nil, nil)
	lostConflictsDesc = prometheus.NewDesc("knactor_state_lost_conflicts_total",
		"Write-behind changes dropped because another writer changed the key.", nil, nil)
	hitsDesc = prometheus.NewDesc("knactor_state_cache_hits_total",
		"State reads answered from memory.", nil, nil)
	missesDesc = prometheus.NewDesc("knactor_state_cache_misses_total",
		"State reads that went to the store.", nil, nil)
)

// StatsCollector exports the Stats that stats returns (summed over a process's caches) as
// Prometheus metrics.
func StatsCollector(stats func() Stats) prometheus.Collector { return statsCollector(stats) }

type statsCollector func() Stats

func (c statsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{dirtyDesc, dirtyBytesDesc, flushFailingDesc, flushedDesc, flushErrorsDesc,
		lostConflictsDesc, hitsDesc, missesDesc} {
		ch <- d
	}
}

func (c statsCollector) Collect(ch chan<- prometheus.Metric) {
	st := c()
	gauge := func(d *prometheus.Desc, v float64) { ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v) }
	counter := func(d *prometheus.Desc, v uint64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	gauge(dirtyDesc, float64(st.Dirty))
	gauge(dirtyBytesDesc, float64(st.DirtyBytes))
	gauge(flushFailingDesc, st.FlushFailingFor.Seconds())
	counter(flushedDesc, st.Flushed)
	counter(flushErrorsDesc, st.FlushErrors)
	counter(lostConflictsDesc, st.LostConflicts)
	counter(hitsDesc, st.Hits)
	counter(missesDesc, st.Misses)
}

// Add returns the sum of s and o (the longest FlushFailingFor): the stats of two caches as one.
func (s Stats) Add(o Stats) Stats {
	s.Hits += o.Hits
	s.Misses += o.Misses
	s.Revalidated += o.Revalidated
	s.Flushed += o.Flushed
	s.FlushErrors += o.FlushErrors
	s.LostConflicts += o.LostConflicts
	s.Passivated += o.Passivated
	s.PlaintextReads += o.PlaintextReads
	s.Dirty += o.Dirty
	s.DirtyBytes += o.DirtyBytes
	s.FlushFailingFor = max(s.FlushFailingFor, o.FlushFailingFor)
	return s
}
