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
	cat := newCatalogReader(s.Counts)
	err := s.walkHits(ranges, headers, cat, nil, func(_ *pebble.DB, hk hitKey, _ []byte, f *FileInfo) error {
		return fn(hk.addr, f, hk.off)
	})
	if err != nil {
		return err
	}
	return cat.problems()
}

// walkHits calls visit with each hit key in ranges (in key order, disjoint)
// whose header is in headers and whose file has a catalog entry, read
// through cat, among the files indexed when the walk began. It lets go of
// the database every ScanHold and resumes after the last key seen, so a
// build can commit meanwhile. session, when not nil, runs each time the
// database is taken, before the visits of that time, and returns what to
// close when it is let go. visit returning an error stops the walk with it.
func (s *Store) walkHits(ranges []keyRange, headers xff.HeaderSet, cat *catalogReader,
	session func(db *pebble.DB) (func(), error), visit func(db *pebble.DB, hk hitKey, value []byte, f *FileInfo) error) error {
	p, resume, started := 0, []byte(nil), false
	hold := s.scanHold()
	for p < len(ranges) {
		err := s.withDB(true, func(db *pebble.DB) error {
			if !started {
				started = true
				if err := checkSchema(db); err != nil {
					return err
				}
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
			// One iterator over the ranges' span, seeking forwards from
			// range to range: Pebble then steps on from where it is rather
			// than searching from the top (when a list names thousands of
			// addresses).
			it, err := db.NewIter(&pebble.IterOptions{LowerBound: ranges[p].lo, UpperBound: ranges[len(ranges)-1].hi})
			if err != nil {
				return err
			}
			defer it.Close()
			if session != nil {
				done, err := session(db)
				if err != nil {
					return err
				}
				defer done()
			}
			deadline := time.Now().Add(hold)
			n := 0
			for ; p < len(ranges); p, resume = p+1, nil {
				lo, hi := ranges[p].lo, ranges[p].hi
				if resume != nil {
					lo = append(resume, 0) // the first key after it
				}
				for it.SeekGE(lo); it.Valid() && bytes.Compare(it.Key(), hi) < 0; it.Next() {
					hk, ok := decodeHitKey(it.Key())
					if ok && headers.Has(hk.header) {
						f, err := cat.get(db, hk.fid)
						if err == nil && f != nil {
							err = visit(db, hk, it.Value(), f)
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
	return nil
}
