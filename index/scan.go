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
// offset, so all hits of one address come together. Only hits of files in
// the catalog count (as in Lookup), and of those indexed when the scan
// began: files a concurrent build adds meanwhile are left out. fn gets
// catalog entries as they were when the scan first met the file's hits;
// each is read once. The database is released every ScanHold and the scan
// resumes after the last key seen. fn returning an error stops the scan
// with it. Hits of files whose catalog entry is invalid are left out, and
// then ScanHits returns an InvalidEntries error at the end.
func (s *Store) ScanHits(headers xff.HeaderSet, fn func(a netip.Addr, f *FileInfo, off int64) error) error {
	return s.ScanHitsIn(nil, headers, fn)
}

// ScanHitsIn is ScanHits over the hits of the addresses in prefixes alone
// (no prefix: every hit), still in key order and each hit once however the
// prefixes overlap.
func (s *Store) ScanHitsIn(prefixes []netip.Prefix, headers xff.HeaderSet, fn func(a netip.Addr, f *FileInfo, off int64) error) error {
	ranges := []keyRange{{lo: []byte{tagHit}, hi: []byte{tagHit + 1}}}
	if len(prefixes) > 0 {
		ranges = hitRanges(prefixes)
	}
	var cat *catalogReader
	var resume []byte
	for p := 0; p < len(ranges); {
		err := s.withDB(true, func(db *pebble.DB) error {
			if cat == nil {
				if err := checkSchema(db); err != nil {
					return err
				}
				cat = newCatalogReader(s.Counts)
				last, err := lastID(db, tagFile)
				if err != nil {
					return err
				}
				if last == 0 {
					p = len(ranges) // no file
					return nil
				}
				cat.maxID = last
			}
			// As in LookupEach: one iterator, seeking forwards.
			it, err := db.NewIter(&pebble.IterOptions{LowerBound: ranges[p].lo, UpperBound: ranges[len(ranges)-1].hi})
			if err != nil {
				return err
			}
			defer it.Close()
			deadline := time.Now().Add(s.scanHold())
			n := 0
			for ; p < len(ranges); p, resume = p+1, nil {
				lo := ranges[p].lo
				if resume != nil {
					lo = append(resume, 0) // the first key after it
				}
				hi := ranges[p].hi
				for it.SeekGE(lo); it.Valid() && bytes.Compare(it.Key(), hi) < 0; it.Next() {
					hk, ok := decodeHitKey(it.Key())
					if ok && headers.Has(hk.header) {
						f, err := cat.get(db, hk.fid)
						if err == nil && f != nil {
							err = fn(hk.addr, f, hk.off)
						}
						if err != nil {
							return err
						}
					}
					if n++; n%256 == 0 && time.Now().After(deadline) {
						resume = bytes.Clone(it.Key())
						return nil
					}
				}
				if err := it.Error(); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	if cat == nil {
		return nil
	}
	return cat.problems()
}
