package index

import (
	"fmt"

	"github.com/xffidx/xffidx/format/compressed"
)

// SeekFunc finds the restart points of compressed file fid in the index,
// for compressed.File. Each look-up opens the database, so the stretch a
// point serves (up to the next point) is remembered and the index asked
// again only outside it: one open per stretch a reader needs.
func (s *Store) SeekFunc(fid uint32) compressed.SeekFunc {
	var cached struct {
		ok       bool
		pt       compressed.Point
		from, to int64 // the offsets the cached point answers for
	}
	return func(off int64) (compressed.Point, bool, error) {
		if cached.ok && off >= cached.from && (cached.to < 0 || off < cached.to) {
			return cached.pt, true, nil
		}
		at, v, next, ok, err := s.SeekPoint(fid, off)
		if err != nil || !ok {
			return compressed.Point{}, false, err
		}
		pt, err := compressed.DecodePoint(at, v)
		if err != nil {
			return compressed.Point{}, false, fmt.Errorf("restart point at offset %d of file %d: %w", at, fid, err)
		}
		cached.ok, cached.pt, cached.from, cached.to = true, pt, at, next
		return pt, true, nil
	}
}
