package index

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"

	"github.com/cockroachdb/pebble/v2"

	"github.com/xffidx/xffidx/format/xff"
	"github.com/xffidx/xffidx/index/extsort"
)

// LookupInfo is what LookupEach read besides the hits.
type LookupInfo struct {
	// Files is the catalog the hits refer to (Hit.File points into it).
	Files []FileInfo
	// Spills counts the sorted runs the look-up wrote to temporary files.
	Spills int
}

// lookupKeyLen is the sort key of a hit record in LookupEach: the rank of
// its file's path, offset, header, family and address (IPv4 in the first
// four of the sixteen bytes), so that comparing bytes orders hits as Lookup
// returns them.
const lookupKeyLen = 4 + 8 + 1 + 1 + 16

// maxStoredValue bounds a stored raw value or request record a look-up
// accepts: the build writes them far smaller (xff.MaxValue, and
// maxRequestField per field of a request record).
const maxStoredValue = 1 << 20

func compareLookup(a, b []byte) int { return bytes.Compare(a[:lookupKeyLen], b[:lookupKeyLen]) }

// LookupEach calls fn with every hit Lookup returns, in the same order and
// with the same fields, without holding them all: hit keys are read in key
// order (address first) and sorted by file and offset in bounded memory
// (Store.SortMem, spilling sorted runs to temporary files past it), with
// each hit's stored raw value and its packet's request records. Like
// ScanHits it lets go of the database every ScanHold while it reads, so a
// build can commit meanwhile, and leaves out the hits of files a concurrent
// build adds. Only the catalog entries of the hits' files are read, each
// once. The database is closed while fn runs. fn returning an error stops
// the look-up with it. Hits of files whose catalog entry is invalid are
// left out, and then LookupEach returns an InvalidEntries error at the end.
//
// Records are sorted by file id while the hits are read (the files, and so
// their paths' order, are known only at the end); when the ids' order is
// not the paths' order, a second sort puts them in path order.
func (s *Store) LookupEach(prefixes []netip.Prefix, headers xff.HeaderSet, fn func(Hit) error) (LookupInfo, error) {
	var info LookupInfo
	sorter := extsort.New(compareLookup, s.SortMem, "")
	defer sorter.Close()
	var (
		cat = newCatalogReader(s.Counts)
		rec []byte
		// The request records of the last packet, which the next hit (of
		// another header of the same packet) shares.
		lastFid  uint32
		lastOff  int64 = -1
		lastReqs []byte
	)
	var (
		vit  *pebble.Iterator
		reqs *requestCursor
	)
	session := func(db *pebble.DB) (func(), error) {
		var err error
		if vit, err = db.NewIter(&pebble.IterOptions{LowerBound: []byte{tagValue}, UpperBound: []byte{tagValue + 1}}); err != nil {
			return nil, err
		}
		rit, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte{tagRequest}, UpperBound: []byte{tagRequest + 1}})
		if err != nil {
			vit.Close()
			return nil, err
		}
		reqs = &requestCursor{it: rit}
		return func() { rit.Close(); vit.Close() }, nil
	}
	err := s.walkHits(hitRanges(prefixes), headers, cat, session, func(_ *pebble.DB, hk hitKey, value []byte, _ *FileInfo) error {
		var err error
		if rec, err = s.lookupRecord(rec[:0], hk, value, hk.fid, vit); err == nil && (hk.fid != lastFid || hk.off != lastOff) {
			lastFid, lastOff = hk.fid, hk.off
			lastReqs, err = reqs.append(lastReqs[:0], hk.fid, hk.off)
		}
		if err == nil {
			err = sorter.Add(append(rec, lastReqs...))
		}
		return err
	})
	if err != nil {
		return info, err
	}

	info.Files = cat.files()
	byRank := make([]*FileInfo, len(info.Files))
	for i := range info.Files {
		byRank[i] = &info.Files[i]
	}
	slices.SortFunc(byRank, func(a, b *FileInfo) int { return cmp.Or(cmp.Compare(a.Path, b.Path), cmp.Compare(a.ID, b.ID)) })
	rank := make(map[uint32]uint32, len(byRank))
	idOrder := true // info.Files is by id
	for i, f := range byRank {
		rank[f.ID] = uint32(i)
		idOrder = idOrder && f == &info.Files[i]
	}
	var scratch []byte
	relabel := func(rec []byte) []byte {
		scratch = append(scratch[:0], rec...)
		binary.BigEndian.PutUint32(scratch, rank[binary.BigEndian.Uint32(rec)])
		return scratch
	}
	emit := func(rec []byte) error {
		h, err := decodeLookup(rec, byRank)
		if err != nil {
			return err
		}
		return fn(h)
	}
	if idOrder {
		info.Spills = sorter.Spills()
		err = sorter.Each(func(rec []byte) error { return emit(relabel(rec)) })
	} else {
		byPath := extsort.New(compareLookup, s.SortMem, "")
		defer byPath.Close()
		err = sorter.Each(func(rec []byte) error { return byPath.Add(relabel(rec)) })
		info.Spills = sorter.Spills() + byPath.Spills()
		sorter.Close()
		if err == nil {
			err = byPath.Each(emit)
		}
	}
	if err != nil {
		return info, err
	}
	return info, cat.problems()
}

// lookupRecord appends the sort key of hit hk (r standing for its file: its
// id, relabelled with its path's rank before the records are read back), its position and connection start from v, and the
// raw value stored for it, if any.
func (s *Store) lookupRecord(rec []byte, hk hitKey, v []byte, r uint32, vit *pebble.Iterator) ([]byte, error) {
	rec = binary.BigEndian.AppendUint32(rec, r)
	rec = binary.BigEndian.AppendUint64(rec, uint64(hk.off))
	rec = append(rec, byte(hk.header))
	var a16 [16]byte
	if hk.addr.Is4() {
		a4 := hk.addr.As4()
		copy(a16[:], a4[:])
		rec = append(rec, 4)
	} else {
		a16 = hk.addr.As16()
		rec = append(rec, 6)
	}
	rec = append(rec, a16[:]...)
	pos, k := binary.Uvarint(v)
	var conn uint64
	if k > 0 && k < len(v) {
		conn, _ = binary.Uvarint(v[k:])
	}
	rec = binary.AppendUvarint(rec, pos)
	rec = binary.AppendUvarint(rec, conn)
	// The raw value, where a schema 2 build stored one.
	var kb [valueKeyLen]byte
	key := ValueKey(kb[:0], hk.fid, hk.off, hk.header)
	if !vit.SeekGE(key) || !bytes.Equal(vit.Key(), key) {
		return append(rec, 0), vit.Error()
	}
	raw := vit.Value()
	if len(raw) > maxStoredValue {
		return nil, fmt.Errorf("file %d offset %d: a stored value of %d bytes", hk.fid, hk.off, len(raw))
	}
	rec = binary.AppendUvarint(rec, uint64(len(raw))+1)
	return append(rec, raw...), nil
}

// requestCursor reads the request records of packets in the order a
// look-up meets them: within one address's hits, by file and offset,
// forwards. Most packets have none, and the iterator then already rests at
// the first record past the last packet asked about, which is the first at
// or after this one too: no seek is needed until a packet's key passes it
// (or the order starts again, with the next address).
type requestCursor struct {
	it    *pebble.Iterator
	after []byte // the last packet's key prefix; nil: no position yet
	key   []byte
}

// append appends the request records of packet (fid, off) as a look-up
// record carries them: their count, then each one's sequence number and
// value (uvarint length + bytes).
func (c *requestCursor) append(b []byte, fid uint32, off int64) ([]byte, error) {
	c.key = RequestKey(c.key[:0], fid, off, 0)
	prefix := c.key[:len(c.key)-4]
	var ok bool
	if c.after != nil && bytes.Compare(prefix, c.after) > 0 {
		// The iterator rests at the first key past c.after's records (or
		// has none left): that is the first key at or after prefix unless
		// it lies before it.
		if ok = c.it.Valid(); ok && bytes.Compare(c.it.Key(), prefix) < 0 {
			ok = c.it.SeekGE(prefix)
		}
	} else {
		ok = c.it.SeekGE(prefix)
	}
	c.after = append(c.after[:0], prefix...)
	var n uint64
	var body []byte
	for ; ok && bytes.HasPrefix(c.it.Key(), prefix); ok = c.it.Next() {
		k, v := c.it.Key(), c.it.Value()
		if len(k) != len(prefix)+4 {
			continue
		}
		if len(v) > maxStoredValue {
			return nil, fmt.Errorf("file %d offset %d: a request record of %d bytes", fid, off, len(v))
		}
		n++
		body = append(body, k[len(prefix):]...)
		body = binary.AppendUvarint(body, uint64(len(v)))
		body = append(body, v...)
	}
	if err := c.it.Error(); err != nil {
		return nil, err
	}
	return append(binary.AppendUvarint(b, n), body...), nil
}

// decodeLookup turns a look-up record back into a Hit.
func decodeLookup(rec []byte, byRank []*FileInfo) (Hit, error) {
	var h Hit
	r := binary.BigEndian.Uint32(rec)
	if int(r) >= len(byRank) {
		return h, fmt.Errorf("look-up record of file %d of %d", r, len(byRank))
	}
	h.File = byRank[r]
	h.Offset = int64(binary.BigEndian.Uint64(rec[4:]))
	h.Header = xff.Header(rec[12])
	if rec[13] == 4 {
		h.Addr = netip.AddrFrom4([4]byte(rec[14:18]))
	} else {
		h.Addr = netip.AddrFrom16([16]byte(rec[14:30]))
	}
	v := rec[lookupKeyLen:]
	bad := func() error {
		return fmt.Errorf("file %d offset %d: look-up record does not decode", h.File.ID, h.Offset)
	}
	uvarint := func() uint64 {
		x, k := binary.Uvarint(v)
		if k <= 0 {
			v = nil
			return 0
		}
		v = v[k:]
		return x
	}
	h.Pos = int(uvarint())
	h.ConnStart, h.ConnSYN = decodeConn(h.Offset, uvarint())
	if n := uvarint(); n > 0 {
		if n-1 > uint64(len(v)) {
			return h, bad()
		}
		h.Raw = bytes.Clone(v[:n-1])
		v = v[n-1:]
	}
	reqs := uvarint()
	if v == nil || reqs > uint64(len(v)) {
		return h, bad()
	}
	for range reqs {
		if len(v) < 4 {
			return h, bad()
		}
		seq := binary.BigEndian.Uint32(v)
		v = v[4:]
		n := uvarint()
		if n > uint64(len(v)) {
			return h, bad()
		}
		req, err := decodeRequest(seq, bytes.Clone(v[:n]))
		if err != nil {
			return h, fmt.Errorf("file %d offset %d: %w", h.File.ID, h.Offset, err)
		}
		h.Requests = append(h.Requests, req)
		v = v[n:]
	}
	return h, nil
}
