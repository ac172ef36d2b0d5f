package statecache

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
