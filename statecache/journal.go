package statecache

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"
)

// The write-behind journal keeps, on local disk, the buffered changes that a closing Cache
// could not make durable (its final flush failed: the store is down, full or refusing), and a
// Cache opening on the same directory takes them back and flushes them. Without it those
// acknowledged writes would be gone with the process.
//
// A journal is a file of JSON lines, one change each, written whole (temporary file, fsync,
// rename, fsync of the directory), so a crash while writing leaves the previous journal. Values
// are sealed with Config.Keys, as in the store. Journal files are removed once a flush has made
// every change taken back from them durable, or a newer change has replaced it.

// journalPrefix and journalSuffix frame the names of journal files: changes-{unix nanos}.jsonl,
// so that the names sort by age.
const (
	journalPrefix = "changes-"
	journalSuffix = ".jsonl"
)

// maxJournalLine bounds one change's line: the largest state a router accepts (64 MiB) in
// base64, with room for its names, versions and commits.
const maxJournalLine = 96 << 20

// journalEntry is one buffered change in a journal file.
type journalEntry struct {
	Function    string   `json:"function"`
	ID          string   `json:"id"`
	Exists      bool     `json:"exists"`
	Value       []byte   `json:"value,omitempty"` // sealed (Config.Keys); none for a delete
	Base        Version  `json:"base"`            // the store's version the change applies to
	Version     Version  `json:"version"`         // the version callers were given for it
	Commit      Commit   `json:"commit"`
	MaybeLanded []Commit `json:"maybe_landed,omitempty"`
}

// journal is a Cache's hold on its journal directory. files are the journal files whose changes
// the cache took back and that still hold some not yet durable; guarded by the Cache's flushMu.
type journal struct {
	dir   string
	lock  *os.File // the directory's flock: one process per journal
	files []string
}

// openJournal locks dir and takes back the changes of its journal files into c's buffer.
func (c *Cache) openJournal(dir string) error {
	lock, err := lockDir(dir, "write-behind journal")
	if err != nil {
		return err
	}
	c.journal = &journal{dir: dir, lock: lock}
	names, err := filepath.Glob(filepath.Join(dir, journalPrefix+"*"+journalSuffix))
	if err != nil {
		return err
	}
	slices.Sort(names) // oldest first: a later file's change of a key replaces an earlier one's
	for _, name := range names {
		if err := c.takeBack(name); err != nil {
			return fmt.Errorf("write-behind journal %s: %w", name, err)
		}
		c.journal.files = append(c.journal.files, name)
	}
	return nil
}

// takeBack buffers the changes of one journal file as write-behind changes whose last flush
// failed ambiguously: the store may hold them already, which their commits recognise.
func (c *Cache) takeBack(name string) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, maxJournalLine)
	for line := 1; sc.Scan(); line++ {
		var e journalEntry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return fmt.Errorf("line %d: %w", line, err)
		}
		key := Key{Function: e.Function, ID: e.ID}
		if err := key.Validate(); err != nil {
			return fmt.Errorf("line %d: %w", line, err)
		}
		value := e.Value
		if e.Exists {
			plain, _, err := c.cfg.Keys.open(key, e.Value)
			if err != nil {
				return fmt.Errorf("line %d: actor %s: %w", line, key, err)
			}
			value = plain
		}
		id := key.String()
		c.dirtyMu.Lock()
		if prev, ok := c.dirty[id]; ok {
			c.dirtyBytes -= len(prev.value)
		}
		c.dirty[id] = &dirtyWrite{key: key, value: value, exists: e.Exists, base: e.Base, version: e.Version,
			commit: e.Commit, maybeLanded: e.MaybeLanded, flushFailed: true, journaled: true}
		c.dirtyBytes += len(value)
		c.dirtyMu.Unlock()
		c.mem.Delete(id) // no stale copy: reads go to the buffered change
	}
	return sc.Err()
}

// writeJournal writes every buffered change to a new journal file and then removes the older
// ones (the new file holds what they still held). It returns the new file's name and the number
// of changes in it ("" and 0 when nothing is buffered).
func (c *Cache) writeJournal() (string, int, error) {
	c.dirtyMu.Lock()
	entries := make([]journalEntry, 0, len(c.dirty))
	for _, d := range c.dirty {
		e := journalEntry{Function: d.key.Function, ID: d.key.ID, Exists: d.exists, Base: d.base,
			Version: d.version, Commit: d.commit, MaybeLanded: d.maybeLanded}
		if d.flushFailed {
			e.MaybeLanded = appendMaybe(slices.Clone(e.MaybeLanded), d.commit)
		}
		if d.exists {
			e.Value = c.cfg.Keys.Seal(d.key, d.value)
		}
		entries = append(entries, e)
	}
	c.dirtyMu.Unlock()
	if len(entries) == 0 {
		return "", 0, nil
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	for _, e := range entries {
		if err := enc.Encode(e); err != nil {
			return "", 0, err
		}
	}
	name := filepath.Join(c.journal.dir, journalPrefix+strconv.FormatInt(time.Now().UnixNano(), 10)+journalSuffix)
	if err := writeFileAtomic(name, b.Bytes()); err != nil {
		return "", 0, err
	}
	older := c.journal.files
	c.journal.files = []string{name}
	return name, len(entries), removeJournalFiles(c.journal.dir, older)
}

// settleJournal removes the journal files once none of the changes taken back from them waits
// for the store any more. The caller holds flushMu.
func (c *Cache) settleJournal() error {
	if c.journal == nil || len(c.journal.files) == 0 {
		return nil
	}
	c.dirtyMu.Lock()
	waiting := false
	for _, d := range c.dirty {
		waiting = waiting || d.journaled
	}
	c.dirtyMu.Unlock()
	if waiting {
		return nil
	}
	files := c.journal.files
	c.journal.files = nil
	return removeJournalFiles(c.journal.dir, files)
}

// removeJournalFiles removes journal files of dir and makes the removal durable.
func removeJournalFiles(dir string, files []string) error {
	if len(files) == 0 {
		return nil
	}
	var errs []error
	for _, f := range files {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := syncDir(dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// JournalFiles returns the journal files that hold changes still waiting for the store: those
// taken back at open, or the one Close wrote.
func (c *Cache) JournalFiles() []string {
	if c.journal == nil {
		return nil
	}
	c.flushMu.Lock()
	defer c.flushMu.Unlock()
	return slices.Clone(c.journal.files)
}

// closeJournal lets go of the journal directory's lock.
func (c *Cache) closeJournal() {
	if c.journal != nil && c.journal.lock != nil {
		c.journal.lock.Close()
		c.journal.lock = nil
	}
}
