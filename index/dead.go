package index

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// Files leave the index in two steps. Removing a file (Delete, or a
// changed file's new table replacing it: TableBuilder.Finish) is one small
// atomic write: its catalog entry goes, its other keys ('r', 's', 'v':
// file id first) go by range deletions, and a dead record ('d' fid, valued
// with the file's entry count) says that its hit keys are still there.
// Readers ignore hits whose file has no catalog entry, so the answers change
// at once. Hit keys are address first, so finding those of one file is a
// scan of the whole hit table: Collect does that scan once for every dead
// file, when the dead entries are a quarter of the live ones or more, so its
// cost, amortised, is a few keys visited per entry removed, whatever the
// number of files removed. It lets go of the database between slices of the
// scan, so queries and builds get their turn.
//
// A dead file's id must not be given to a new file while its hits remain:
// NextID counts dead records and the highest id ever retired ('m' "lastfid").

// Counts records work the store does: tests and benchmarks read it to check
// how work grows. A nil *Counts counts nothing.
type Counts struct {
	// HitKeysVisited counts hit keys read by Collect.
	HitKeysVisited atomic.Int64
	// CatalogDecoded counts catalog entries decoded.
	CatalogDecoded atomic.Int64
	// Opens counts openings of the database; OpenNanos is the time spent
	// opening and closing it, CatalogNanos reading catalog entries (for
	// the breakdown of a query's time: bench/run.sh).
	Opens, OpenNanos, CatalogNanos atomic.Int64
}

// now is the time, if c is set: the clock is read only when something is
// timed.
func (c *Counts) now() time.Time {
	if c == nil {
		return time.Time{}
	}
	return time.Now()
}

// opening adds the time since t0 (now) to the time spent opening and
// closing the database.
func (c *Counts) opening(t0 time.Time) {
	if c != nil {
		c.OpenNanos.Add(int64(time.Since(t0)))
	}
}

// catalogRead adds the time since t0 (now) to the time spent reading
// catalog entries.
func (c *Counts) catalogRead(t0 time.Time) {
	if c != nil {
		c.CatalogNanos.Add(int64(time.Since(t0)))
	}
}

func (c *Counts) visited(n int64) {
	if c != nil {
		c.HitKeysVisited.Add(n)
	}
}

func (c *Counts) decoded(n int64) {
	if c != nil {
		c.CatalogDecoded.Add(n)
	}
}

// collectShare is the share of dead entries, against live ones, from which
// Collect scans the hit table: 4 means a quarter.
const collectShare = 4

// yieldPause is how long a long operation leaves the database closed between
// two slices: longer than withDB's longest back-off (100 ms), so that a
// process waiting for the database gets it.
const yieldPause = 120 * time.Millisecond

var lastFidKey = []byte{tagMeta, 'l', 'a', 's', 't', 'f', 'i', 'd'}

func deadKey(fid uint32) []byte {
	return binary.BigEndian.AppendUint32([]byte{tagDead}, fid)
}

// fidRanges calls fn for each run of consecutive ids in fids (sorted).
func fidRanges(fids []uint32, fn func(lo, hi uint32) error) error {
	for i := 0; i < len(fids); {
		j := i + 1
		for j < len(fids) && fids[j] == fids[j-1]+1 {
			j++
		}
		if err := fn(fids[i], fids[j-1]); err != nil {
			return err
		}
		i = j
	}
	return nil
}

// fidTableRange is the key range [lo, hi) of the keys of files lo..hi
// (inclusive) in a table whose keys start with tag and the file id.
func fidTableRange(tag byte, lo, hi uint32) (start, end []byte) {
	start = binary.BigEndian.AppendUint32([]byte{tag}, lo)
	if hi == ^uint32(0) {
		return start, []byte{tag + 1}
	}
	return start, binary.BigEndian.AppendUint32([]byte{tag}, hi+1)
}

// retiredTables are the tables whose keys start with the file id, removed
// by range when a file is.
var retiredTables = []byte{tagRequest, tagState, tagValue, tagSeek}

// retirer is what writes a file's removal: a Pebble batch, or the
// sstable writer of the table that replaces it.
type retirer interface {
	Set(key, value []byte) error
	Delete(key []byte) error
	DeleteRange(start, end []byte) error
}

// batchRetirer adapts a batch to retirer.
type batchRetirer struct{ b *pebble.Batch }

func (r batchRetirer) Set(k, v []byte) error           { return r.b.Set(k, v, nil) }
func (r batchRetirer) Delete(k []byte) error           { return r.b.Delete(k, nil) }
func (r batchRetirer) DeleteRange(lo, hi []byte) error { return r.b.DeleteRange(lo, hi, nil) }

// retirePoints writes the dead record and catalog deletion of each file,
// in key order ('d' keys, then 'f' keys).
func retirePoints(w retirer, files []FileInfo) error {
	for _, f := range files {
		if err := w.Set(deadKey(f.ID), binary.AppendUvarint(nil, uint64(max(f.Addresses, 0)))); err != nil {
			return err
		}
	}
	for _, f := range files {
		if err := w.Delete(fileKey(f.ID)); err != nil {
			return err
		}
	}
	return nil
}

// retireRanges deletes the fid-first keys of the files, in key order.
func retireRanges(w retirer, files []FileInfo) error {
	fids := sortedIDs(files)
	for _, tag := range retiredTables {
		err := fidRanges(fids, func(lo, hi uint32) error {
			return w.DeleteRange(fidTableRange(tag, lo, hi))
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func sortedIDs(files []FileInfo) []uint32 {
	fids := make([]uint32, len(files))
	for i, f := range files {
		fids[i] = f.ID
	}
	slices.Sort(fids)
	return slices.Compact(fids)
}

// sortedByID returns files sorted by id, each id once.
func sortedByID(files []FileInfo) []FileInfo {
	files = slices.Clone(files)
	slices.SortFunc(files, func(a, b FileInfo) int { return int(int64(a.ID) - int64(b.ID)) })
	return slices.CompactFunc(files, func(a, b FileInfo) bool { return a.ID == b.ID })
}

// deleteBatch is how many files one Delete batch removes: each batch is
// one atomic, synced write, and the database is let go between batches.
const deleteBatch = 4096

// Delete removes files from the index: their catalog entries and their
// request records and states at once (a small atomic write per batch of
// files), their hits when Collect next runs. Only ID and Addresses of each
// FileInfo are used.
func (s *Store) Delete(files ...FileInfo) error {
	files = sortedByID(files)
	for len(files) > 0 {
		n := min(len(files), deleteBatch)
		part := files[:n]
		files = files[n:]
		err := s.withDB(false, func(db *pebble.DB) error {
			b := db.NewBatch()
			w := batchRetirer{b}
			if err := retirePoints(w, part); err != nil {
				return err
			}
			if err := retireRanges(w, part); err != nil {
				return err
			}
			last, err := getLastFid(db)
			if err != nil {
				return err
			}
			if top := part[len(part)-1].ID; top > last {
				if err := b.Set(lastFidKey, binary.BigEndian.AppendUint32(nil, top), nil); err != nil {
					return err
				}
			}
			return b.Commit(pebble.Sync)
		})
		if err != nil {
			return fmt.Errorf("%s: removing files: %w", s.Dir, err)
		}
		if len(files) > 0 {
			time.Sleep(yieldPause)
		}
	}
	return nil
}

func getLastFid(db pebble.Reader) (uint32, error) {
	v, closer, err := db.Get(lastFidKey)
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer closer.Close()
	if len(v) != 4 {
		return 0, fmt.Errorf("index key %q is corrupt", lastFidKey)
	}
	return binary.BigEndian.Uint32(v), nil
}

// lastID returns the highest file id in the table of tag (0 if none).
func lastID(db pebble.Reader, tag byte) (uint32, error) {
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte{tag}, UpperBound: []byte{tag + 1}})
	if err != nil {
		return 0, err
	}
	var id uint32
	if it.Last() && len(it.Key()) == 5 {
		id = binary.BigEndian.Uint32(it.Key()[1:])
	}
	return id, it.Close()
}

// NextID returns the id a newly indexed file should get: above every file
// in the catalog and every file removed whose hits may remain.
func (s *Store) NextID() (uint32, error) {
	if !s.Exists() {
		return 1, nil
	}
	var next uint32 = 1
	err := s.withDB(true, func(db *pebble.DB) error {
		for _, tag := range []byte{tagFile, tagDead} {
			id, err := lastID(db, tag)
			if err != nil {
				return err
			}
			next = max(next, id+1)
		}
		last, err := getLastFid(db)
		next = max(next, last+1)
		return err
	})
	if errors.Is(err, ErrNoIndex) {
		return 1, nil
	}
	if err == nil && next == 0 {
		err = fmt.Errorf("%s: no file id left", s.Dir)
	}
	return next, err
}

// deadFiles reads the dead records: file id → entries.
func deadFiles(db pebble.Reader) (map[uint32]int64, error) {
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte{tagDead}, UpperBound: []byte{tagDead + 1}})
	if err != nil {
		return nil, err
	}
	dead := map[uint32]int64{}
	for it.First(); it.Valid(); it.Next() {
		if len(it.Key()) != 5 {
			continue
		}
		n, _ := binary.Uvarint(it.Value())
		dead[binary.BigEndian.Uint32(it.Key()[1:])] = int64(min(n, 1<<62))
	}
	return dead, it.Close()
}

// CollectStats says what Collect did.
type CollectStats struct {
	Files   int   // dead files whose hits were removed
	Visited int64 // hit keys read
	Removed int64 // hit keys removed
}

// Collect removes the hit keys of removed files, in one scan of the hit
// table, when their entries are at least a quarter of live (the entries of
// the files in the catalog); live < 0 collects whatever there is. The
// database is let go every ScanHold.
func (s *Store) Collect(live int64) (CollectStats, error) {
	var st CollectStats
	if !s.Exists() {
		return st, nil
	}
	var dead map[uint32]int64
	err := s.withDB(false, func(db *pebble.DB) error {
		var err error
		dead, err = deadFiles(db)
		return err
	})
	if err != nil {
		return st, fmt.Errorf("%s: %w", s.Dir, err)
	}
	var deadEntries int64
	for _, n := range dead {
		deadEntries += n
	}
	if len(dead) == 0 || (live >= 0 && deadEntries*collectShare < live) {
		return st, nil
	}
	var resume []byte
	for done := false; !done; {
		err := s.withDB(false, func(db *pebble.DB) error {
			var err error
			resume, done, err = s.collectSlice(db, dead, resume, &st)
			return err
		})
		if err != nil {
			return st, fmt.Errorf("%s: removing the hits of removed files: %w", s.Dir, err)
		}
		if !done {
			time.Sleep(yieldPause)
		}
	}
	err = s.withDB(false, func(db *pebble.DB) error {
		b := db.NewBatch()
		for fid := range dead {
			if err := b.Delete(deadKey(fid), nil); err != nil {
				return err
			}
		}
		return b.Commit(pebble.Sync)
	})
	if err != nil {
		return st, fmt.Errorf("%s: %w", s.Dir, err)
	}
	st.Files = len(dead)
	return st, nil
}

// collectBatch bounds the bytes of one batch of deletions.
const collectBatch = 4 << 20

// collectSlice deletes the hits of dead files from resume on, for up to
// ScanHold; it returns where to go on, or done.
func (s *Store) collectSlice(db *pebble.DB, dead map[uint32]int64, resume []byte, st *CollectStats) ([]byte, bool, error) {
	lo := []byte{tagHit}
	if resume != nil {
		lo = append(resume, 0) // the first key after it
	}
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: []byte{tagHit + 1}})
	if err != nil {
		return nil, false, err
	}
	defer it.Close()
	deadline := time.Now().Add(s.scanHold())
	b := db.NewBatch()
	var n int64
	defer func() { s.Counts.visited(n); st.Visited += n }()
	for it.First(); it.Valid(); it.Next() {
		n++
		if hk, ok := decodeHitKey(it.Key()); ok {
			if _, isDead := dead[hk.fid]; isDead {
				if err := b.Delete(it.Key(), nil); err != nil {
					return nil, false, err
				}
				st.Removed++
			}
		}
		if b.Len() > collectBatch {
			if err := b.Commit(pebble.NoSync); err != nil {
				return nil, false, err
			}
			b = db.NewBatch()
		}
		if n%256 == 0 && time.Now().After(deadline) {
			resume = bytes.Clone(it.Key())
			return resume, false, b.Commit(pebble.Sync)
		}
	}
	if err := it.Error(); err != nil {
		return nil, false, err
	}
	return nil, true, b.Commit(pebble.Sync)
}

func (s *Store) scanHold() time.Duration {
	if s.ScanHold != 0 {
		return s.ScanHold
	}
	return scanHold
}
