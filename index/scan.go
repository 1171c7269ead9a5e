package index

import (
	"bytes"
	"net/netip"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/xffidx/xffidx/format/xff"
)

// scanHold bounds how long ScanHits keeps the database open at a time, so
// that a build waiting to commit (it waits up to its LockWait) gets a turn
// during a long scan. A variable for tests.
const scanHold = 200 * time.Millisecond

// ScanHits calls fn for every hit of the index in the given headers, in key
// order: by address (IPv4 before IPv6, then numerically), then file id, then
// offset, so all hits of one address come together. Only hits of current catalog entries
// count (as in Lookup). The catalog is read once, at the start, and fn gets
// entries of that snapshot; files a concurrent build adds meanwhile are left
// out. The database is released every scanHold and the scan resumes after
// the last key seen. fn returning an error stops the scan with it.
func (s *Store) ScanHits(headers xff.HeaderSet, fn func(a netip.Addr, f *FileInfo, off int64) error) error {
	var current map[uint32]*FileInfo
	var resume []byte
	for done := false; !done; {
		err := s.withDB(true, func(db *pebble.DB) error {
			if current == nil {
				files, err := readCatalog(db)
				if err != nil {
					return err
				}
				current = currentEntries(files)
			}
			lo := []byte{tagHit}
			if resume != nil {
				lo = append(bytes.Clone(resume), 0) // the first key after it
			}
			it, err := db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: []byte{tagHit + 1}})
			if err != nil {
				return err
			}
			hold := scanHold
			if s.ScanHold != 0 {
				hold = s.ScanHold
			}
			deadline := time.Now().Add(hold)
			n := 0
			for it.First(); it.Valid(); it.Next() {
				hk, ok := decodeHitKey(it.Key())
				if f := current[hk.fid]; ok && f != nil && headers.Has(hk.header) {
					if err := fn(hk.addr, f, hk.off); err != nil {
						it.Close()
						return err
					}
				}
				if n++; n%256 == 0 && time.Now().After(deadline) {
					resume = bytes.Clone(it.Key())
					return it.Close()
				}
			}
			done = true
			return it.Close()
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// currentEntries maps the id of the newest catalog entry of each path to
// it: an older entry of a path is left only by a build that died before
// removing it.
func currentEntries(files []FileInfo) map[uint32]*FileInfo {
	newest := map[string]uint32{}
	for _, f := range files {
		newest[f.Path] = max(newest[f.Path], f.ID)
	}
	current := make(map[uint32]*FileInfo, len(newest))
	for i := range files {
		if newest[files[i].Path] == files[i].ID {
			current[files[i].ID] = &files[i]
		}
	}
	return current
}
