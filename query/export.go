package query

import (
	"bufio"
	"bytes"
	"cmp"
	"container/heap"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"

	"github.com/xffidx/xffidx/format"
	"github.com/xffidx/xffidx/format/packet"
	"github.com/xffidx/xffidx/index"
	"github.com/xffidx/xffidx/index/extsort"
)

// Export writes the complete conversations of the matched rows (every packet
// of each matched connection, both directions, handshake and responses
// included) as a capture: see SearchExport, which it is for rows at hand.
// files is the catalog.
func Export(path string, rows []Row, files []index.FileInfo, force bool) (ExportStats, error) {
	x, err := newExporter(path, files, force, 0)
	if err != nil {
		return ExportStats{}, err
	}
	defer x.abort()
	for _, r := range rows {
		if err := x.add(r); err != nil {
			return ExportStats{}, err
		}
	}
	return x.finish()
}

// SearchExport runs the search and writes the complete conversations of its
// rows (every packet of each matched connection, both directions,
// handshake and responses included) to path as a capture; nothing is
// written when nothing is found. Each connection starts at the SYN the
// build's connection tracking recorded for its hits; where the build took
// it up mid-way, the capture is searched backwards from its first hit in
// growing windows (1 MiB up to exportReach). It ends where it closed after
// its last hit (FIN both ways, or RST, and the records right after it for
// the last ACK). Each capture is then walked once, front to back, over the
// stretches where its matched connections lie (never the whole capture
// unless they fill it), and their packets written in time order.
//
// The output is pcap (nanosecond) when every packet has one link type and
// path does not end in ".pcapng", else pcapng with one interface per link
// type. It is written to a temporary file renamed into place at the end
// (mode 0600); path must not be a capture of the index, nor a symbolic
// link, nor exist unless force (see checkOutput). Memory does not grow with
// the hits, the connections or the packets: rows, connections and packets
// are sorted in bounded memory (Options.SortMem), the packets spilling to
// temporary files in path's directory.
func SearchExport(store *index.Store, opt Options, path string, force bool) (Summary, ExportStats, error) {
	files, err := store.Catalog()
	if err != nil {
		return Summary{}, ExportStats{}, err
	}
	x, err := newExporter(path, files, force, opt.SortMem)
	if err != nil {
		return Summary{}, ExportStats{}, err
	}
	defer x.abort()
	sum, err := SearchEach(store, opt, x.add)
	if err != nil || sum.Matched == 0 {
		return sum, ExportStats{}, err
	}
	x.store = store
	st, err := x.finish()
	sum.Spills += x.spills
	sum.Decompressed += x.decompressed
	sum.Restarts += x.restarts
	return sum, st, err
}

// ExportStats counts what Export wrote.
type ExportStats struct {
	Packets, Conversations int
	// FromIndex counts conversations whose start (SYN) the index gave, so
	// that the capture was not searched backwards for it.
	FromIndex int
	// Partial counts conversations whose start or end was not found within
	// reach (a connection open for very long, or cut by the capture).
	Partial int
}

// exporter gathers the rows of an export, then writes it.
type exporter struct {
	out    *outputFile
	ng     bool // pcapng by name
	byPath map[string]*index.FileInfo
	// store holds the restart points of compressed captures; reading them
	// decoded decompressed bytes from restarts points.
	store        *index.Store
	decompressed int64
	restarts     int
	mem          int
	dir          string // the output's: the packets spill there
	hits         *extsort.Sorter
	rec          []byte
	spills       int
	st           ExportStats
}

func newExporter(path string, files []index.FileInfo, force bool, mem int) (*exporter, error) {
	out, err := createOutput(path, files, force)
	if err != nil {
		return nil, err
	}
	x := &exporter{out: out, ng: strings.HasSuffix(path, ".pcapng"), byPath: map[string]*index.FileInfo{}, mem: mem, dir: filepath.Dir(path)}
	for i := range files {
		x.byPath[files[i].Path] = &files[i]
	}
	x.hits = extsort.New(bytes.Compare, mem, "")
	return x, nil
}

func (x *exporter) abort() {
	x.hits.Close()
	x.out.abort()
}

// add takes a row: a record sorted by capture, connection and offset,
// with the connection start the build recorded.
func (x *exporter) add(r Row) error {
	if x.byPath[r.File] == nil {
		return fmt.Errorf("%s: not in the catalog", r.File)
	}
	b := appendString(x.rec[:0], r.File)
	b = appendKey(b, keyOf(r.FiveTuple))
	b = binary.BigEndian.AppendUint64(b, uint64(r.Offset))
	syn := byte(0)
	if r.connSYN && r.conn >= 0 {
		syn = 1
	}
	b = binary.BigEndian.AppendUint64(append(b, syn), uint64(r.conn))
	x.rec = b
	return x.hits.Add(b)
}

// span is where a connection's packets lie in one file.
type span struct {
	minHit, maxHit int64
	first          int64 // record offset of its first packet
	startFound     bool
	// syn is the connection's SYN as the build saw it (-1: no row said),
	// the earliest one when rows of the same 5-tuple name several (ports
	// reused).
	syn int64
}

// finish finds each connection's extent and writes the capture.
func (x *exporter) finish() (ExportStats, error) {
	// Connections, with their start, sorted by capture and start.
	spans := extsort.New(bytes.Compare, x.mem, "")
	defer spans.Close()
	linkTypes := map[uint32]bool{}
	var (
		ext    *extent
		curKey []byte
		cur    span
		k      flowKey
		path   string
	)
	defer func() { ext.close() }()
	endSpan := func() error {
		if curKey == nil {
			return nil
		}
		if cur.syn >= 0 && cur.syn <= cur.minHit {
			// The build followed the connection from its SYN: no looking back.
			cur.first, cur.startFound = cur.syn, true
			x.st.FromIndex++
		} else {
			ext.findStart(k, &cur)
		}
		x.st.Conversations++
		b := appendString(x.rec[:0], path)
		b = binary.BigEndian.AppendUint64(b, uint64(cur.first))
		b = appendKey(b, k)
		b = binary.BigEndian.AppendUint64(b, uint64(cur.maxHit))
		if cur.startFound {
			b = append(b, 1)
		} else {
			b = append(b, 0)
		}
		x.rec = b
		return spans.Add(b)
	}
	err := x.hits.Each(func(rec []byte) error {
		r := recReader{b: rec}
		p := r.string()
		key := r.key()
		keyBytes := rec[:len(rec)-len(r.b)]
		off := int64(r.uint64())
		syn := r.byte() == 1
		conn := int64(r.uint64())
		if r.err != nil {
			return r.err
		}
		if curKey == nil || !bytes.Equal(keyBytes, curKey) {
			if err := endSpan(); err != nil {
				return err
			}
			curKey, k, cur = append(curKey[:0], keyBytes...), key, span{minHit: off, syn: -1}
			if p != path || ext == nil {
				ext.close()
				path = p
				info := x.byPath[p]
				c, err := openCapture(x.store, info)
				if err != nil {
					return fmt.Errorf("%s: %w", p, err)
				}
				ext = &extent{c: c, info: info, x: x}
				for _, sec := range info.Sections {
					for _, iface := range sec.Ifaces {
						linkTypes[iface.LinkType] = true
					}
				}
			}
		}
		cur.maxHit = off // rows come in offset order
		if syn && (cur.syn < 0 || conn < cur.syn) {
			cur.syn = conn
		}
		return nil
	})
	if err == nil {
		err = endSpan()
	}
	x.spills += x.hits.Spills()
	ext.close()
	ext = nil
	if err != nil {
		return x.st, err
	}

	// Walk each capture once over its connections' stretches; the packets,
	// of several captures, are put in time order.
	pkts := extsort.New(bytes.Compare, cmp.Or(x.mem, 2*extsort.DefaultBudget), x.dir)
	defer pkts.Close()
	var seq uint64
	emit := func(rec format.Record) error {
		b := binary.BigEndian.AppendUint64(x.rec[:0], uint64(rec.TS)^1<<63)
		b = binary.BigEndian.AppendUint64(b, seq)
		seq++
		b = binary.BigEndian.AppendUint32(b, rec.LinkType)
		b = binary.BigEndian.AppendUint32(b, rec.OrigLen)
		b = append(b, rec.Data...)
		x.rec = b
		return pkts.Add(b)
	}
	var sw *sweep
	path = ""
	err = spans.Each(func(rec []byte) error {
		r := recReader{b: rec}
		p := r.string()
		var sp span
		sp.first = int64(r.uint64())
		key := r.key()
		sp.maxHit = int64(r.uint64())
		sp.startFound = r.byte() == 1
		if r.err != nil {
			return r.err
		}
		if sw == nil || p != path {
			if sw != nil {
				if err := sw.finish(); err != nil {
					return err
				}
			}
			path = p
			c, err := openCapture(x.store, x.byPath[p])
			if err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
			sw = newSweep(&extent{c: c, info: x.byPath[p], x: x}, emit, &x.st)
		}
		return sw.add(key, sp)
	})
	if err == nil && sw != nil {
		err = sw.finish()
	}
	x.spills += spans.Spills()
	if err != nil {
		return x.st, err
	}
	w := newCaptureWriter(x.out, x.ng || len(linkTypes) != 1, linkTypes)
	err = pkts.Each(func(b []byte) error {
		r := recReader{b: b}
		r.uint64()
		r.uint64()
		lt := binary.BigEndian.Uint32(r.bytes(4))
		orig := binary.BigEndian.Uint32(r.bytes(4))
		x.st.Packets++
		return w.write(format.Record{TS: int64(binary.BigEndian.Uint64(b) ^ 1<<63), LinkType: lt, OrigLen: orig, Data: r.b})
	})
	x.spills += pkts.Spills()
	if err == nil {
		err = w.flush()
	}
	if err != nil {
		return x.st, fmt.Errorf("%s: %w", x.out.path, err)
	}
	return x.st, x.out.commit()
}

// segKey is the connection of a TCP segment.
func segKey(seg *packet.Segment) flowKey {
	return keyOf(FiveTuple{SrcIP: seg.SrcIP, DstIP: seg.DstIP, SrcPort: seg.SrcPort, DstPort: seg.DstPort, Proto: "tcp"})
}

// exportReach bounds how far from its hits a connection is looked for;
// closeRecords, how many records after its close its last ACK may come;
// sweepJump, the stretch without matched connections past which a sweep
// reads on at the next one's start rather than walking through.
const (
	exportReach  = 256 << 20
	closeRecords = 64
	sweepJump    = 4 << 20
)

// extent walks windows of one capture.
type extent struct {
	c    *capture
	info *index.FileInfo
	buf  []byte
	x    *exporter // counts what decompressing cost
}

func (x *extent) close() {
	if x != nil && x.c != nil {
		var sum Summary
		x.c.cost(&sum)
		x.x.decompressed += sum.Decompressed
		x.x.restarts += sum.Restarts
		x.c.close()
		x.c = nil
	}
}

// findStart sets sp.first and sp.startFound for a connection the build
// did not follow from its SYN: backwards from its first hit, in windows
// growing from 1 MiB up to exportReach, for its SYN; else, at the start of
// the capture or past reach, its first packet.
func (x *extent) findStart(k flowKey, sp *span) {
	sp.first = sp.minHit
	for window := int64(1 << 20); !sp.startFound; window *= 4 {
		from := max(x.dataStart(sp.minHit), sp.minHit-window)
		first, syn, aligned := int64(-1), int64(-1), false
		x.walk(from, from == x.dataStart(sp.minHit), sp.minHit+1, func(rec format.Record, seg *packet.Segment, ok bool) bool {
			if rec.Offset == sp.minHit {
				aligned = true
			}
			if ok && rec.Offset <= sp.minHit && segKey(seg) == k {
				if first < 0 {
					first = rec.Offset
				}
				if seg.Flags&0x12 == 0x02 { // SYN without ACK: the connection opens
					syn = rec.Offset
				}
			}
			return true
		})
		switch {
		case aligned && syn >= 0:
			sp.first, sp.startFound = syn, true
		case aligned && first >= 0 && (from == x.dataStart(sp.minHit) || window >= exportReach):
			// No SYN: the capture began, or we gave up, mid-connection.
			sp.first, sp.startFound = first, from == x.dataStart(sp.minHit)
		case from > x.dataStart(sp.minHit) && window < exportReach:
			continue
		}
		break
	}
}

// dataStart is where records of off's section begin.
func (x *extent) dataStart(off int64) int64 {
	sec, ok := x.info.SectionAt(off)
	if !ok {
		return 0
	}
	if x.info.Format == format.KindPcap.String() {
		return sec.Offset + 24
	}
	return sec.Offset
}

// walk calls fn for each packet record starting in [from, to), with its
// innermost TCP segment. With trusted, a record starts at from; otherwise
// the walk resyncs there first. fn returns false to stop.
func (x *extent) walk(from int64, trusted bool, to int64, fn func(format.Record, *packet.Segment, bool) bool) {
	c := x.cursorAt(from, trusted)
	for c.offset() < to {
		rec, seg, ok, more := c.next()
		if !more || !fn(rec, &seg, ok) {
			return
		}
	}
}

// cursor walks the packet records of one capture forwards through a
// buffer it refills (the extent's: one cursor at a time).
type cursor struct {
	x    *extent
	w    format.Walker
	buf  []byte
	base int64
	pos  int
	done bool
}

// cursorAt starts a cursor at from: a record's offset when trusted; else
// the walk resyncs there first.
func (x *extent) cursorAt(from int64, trusted bool) *cursor {
	c := &cursor{x: x, base: from, done: true}
	sec, ok := x.info.SectionAt(from)
	if !ok {
		return c
	}
	kind := format.KindPcap
	if x.info.Format == format.KindPcapNG.String() {
		kind = format.KindPcapNG
	}
	c.w = format.Walker{Kind: kind, Sec: *sec}
	c.w.Sec.Ifaces = slices.Clone(sec.Ifaces)
	const piece = 4 << 20
	if cap(x.buf) < piece+format.MaxCapLen+(1<<20) {
		x.buf = make([]byte, 0, piece+format.MaxCapLen+(1<<20))
	}
	c.buf, c.done = x.buf[:0], false
	c.fill()
	if !trusted {
		p, ok := c.w.Sync(c.buf, c.base, 0, c.atEOF())
		c.pos, c.done = p, !ok
	}
	return c
}

// offset is where the next record starts (past the end when done).
func (c *cursor) offset() int64 {
	if c.done {
		return 1 << 62
	}
	return c.base + int64(c.pos)
}

func (c *cursor) atEOF() bool { return c.base+int64(len(c.buf)) == c.x.info.DataEnd() }

// fill appends the next piece of the file; false at its end.
func (c *cursor) fill() bool {
	n := int(min(int64(cap(c.buf)-len(c.buf)), c.x.info.DataEnd()-(c.base+int64(len(c.buf)))))
	if n <= 0 {
		return false
	}
	got, err := c.x.c.src.ReadAt(c.buf[len(c.buf):len(c.buf)+n], c.base+int64(len(c.buf)))
	c.buf = c.buf[:len(c.buf)+got]
	return got > 0 && (err == nil || errors.Is(err, io.EOF))
}

// next returns the next packet record, with its innermost TCP segment (ok
// false if it has none); more is false at the end. The record's bytes are
// valid until the next call.
func (c *cursor) next() (rec format.Record, seg packet.Segment, ok, more bool) {
	for !c.done {
		rec, n, st := c.w.Next(c.buf, c.base, c.pos)
		switch st {
		case format.Packet:
			c.pos += n
			seg, ok := packet.InnermostTCP(rec.LinkType, rec.Data)
			return rec, seg, ok, true
		case format.Header:
			c.pos += n
		case format.Short:
			// Move what is left to the front and read on.
			copy(c.buf, c.buf[c.pos:])
			c.buf, c.base, c.pos = c.buf[:len(c.buf)-c.pos], c.base+int64(c.pos), 0
			c.done = !c.fill()
		default:
			p, ok := c.w.Sync(c.buf, c.base, c.pos+1, c.atEOF())
			c.pos, c.done = p, !ok
		}
	}
	return rec, seg, false, false
}

// sweep walks one capture front to back over the stretches where its
// matched connections lie, and emits their packets: a connection is live
// from its first packet on; up to its last hit every packet of it is
// emitted; after that, until it closes (FIN both ways, or RST, and then
// closeRecords more records for the last ACK), a new SYN on its 5-tuple (a
// new connection reusing the ports), or exportReach past its last hit.
type sweep struct {
	x    *extent
	c    *cursor
	emit func(format.Record) error
	st   *ExportStats
	live map[flowKey]*liveConn
	// closing holds live connections in the order they closed; expiry,
	// by the offset past which they are given up.
	closing []*liveConn
	expiry  expiryHeap
	records int64 // packet records walked
	// The record read but not yet walked (the next connection starts at
	// or before it).
	pending              format.Record
	pendingSeg           packet.Segment
	pendingOK, isPending bool
}

type liveConn struct {
	k          flowKey
	maxHit     int64
	startFound bool
	finA, finB bool
	closedAt   int64 // record count at the close; -1 open
	done       bool
}

func newSweep(x *extent, emit func(format.Record) error, st *ExportStats) *sweep {
	return &sweep{x: x, emit: emit, st: st, live: map[flowKey]*liveConn{}}
}

// add makes a connection live at its first packet: connections come in
// order of first packet.
func (s *sweep) add(k flowKey, sp span) error {
	if s.c == nil || (s.c.done && !s.isPending) || (len(s.live) == 0 && sp.first-s.c.offset() > sweepJump) {
		s.c, s.isPending = s.x.cursorAt(sp.first, true), false
	}
	if err := s.walk(sp.first); err != nil {
		return err
	}
	l := &liveConn{k: k, maxHit: sp.maxHit, startFound: sp.startFound, closedAt: -1}
	if old := s.live[k]; old != nil {
		s.end(old) // a hostile index can name two starts for one 5-tuple
	}
	s.live[k] = l
	heap.Push(&s.expiry, l)
	return nil
}

// walk walks the records that start before to (all of them for to < 0),
// while connections are live or to is ahead.
func (s *sweep) walk(to int64) error {
	for to >= 0 || len(s.live) > 0 {
		if !s.isPending {
			s.pending, s.pendingSeg, s.pendingOK, s.isPending = s.c.next()
			if !s.isPending {
				return nil // the end of the capture
			}
		}
		if to >= 0 && s.pending.Offset >= to {
			return nil
		}
		s.isPending = false
		if err := s.record(s.pending, &s.pendingSeg, s.pendingOK); err != nil {
			return err
		}
	}
	return nil
}

func (s *sweep) record(rec format.Record, seg *packet.Segment, ok bool) error {
	s.records++
	for len(s.closing) > 0 && s.records-s.closing[0].closedAt > closeRecords {
		s.end(s.closing[0])
		s.closing = s.closing[1:]
	}
	for len(s.expiry) > 0 && (s.expiry[0].done || rec.Offset >= s.expiry[0].maxHit+exportReach) {
		s.end(heap.Pop(&s.expiry).(*liveConn))
	}
	if !ok {
		return nil
	}
	l := s.live[segKey(seg)]
	if l == nil {
		return nil
	}
	if rec.Offset >= l.maxHit {
		if seg.Flags&0x02 != 0 && rec.Offset > l.maxHit {
			s.end(l) // a new connection reusing the ports
			return nil
		}
		if seg.Flags&0x04 != 0 && l.closedAt < 0 {
			l.closedAt = s.records
			s.closing = append(s.closing, l)
		}
		if seg.Flags&0x01 != 0 {
			if netip.AddrPortFrom(seg.SrcIP, seg.SrcPort) == l.k.lo {
				l.finA = true
			} else {
				l.finB = true
			}
			if l.finA && l.finB && l.closedAt < 0 {
				l.closedAt = s.records
				s.closing = append(s.closing, l)
			}
		}
	}
	return s.emit(rec)
}

// end takes a connection out of the sweep, counting it partial if its
// start or its close was not found.
func (s *sweep) end(l *liveConn) {
	if l.done {
		return
	}
	l.done = true
	if s.live[l.k] == l {
		delete(s.live, l.k)
	}
	if !l.startFound || l.closedAt < 0 {
		s.st.Partial++
	}
}

// finish walks on until no connection is live, and ends those left at the
// end of the capture.
func (s *sweep) finish() error {
	defer s.x.close()
	if s.c == nil {
		return nil
	}
	if err := s.walk(-1); err != nil {
		return err
	}
	for _, l := range s.live {
		s.end(l)
	}
	return nil
}

// expiryHeap orders live connections by the offset past which they are
// given up.
type expiryHeap []*liveConn

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].maxHit < h[j].maxHit }
func (h expiryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *expiryHeap) Push(x any)        { *h = append(*h, x.(*liveConn)) }
func (h *expiryHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// captureWriter writes pcap (nanosecond) or pcapng.
type captureWriter struct {
	w      *bufio.Writer
	ng     bool
	ifaces map[uint32]uint32 // link type -> pcapng interface id
	err    error
}

func newCaptureWriter(out io.Writer, ng bool, linkTypes map[uint32]bool) *captureWriter {
	cw := &captureWriter{w: bufio.NewWriterSize(out, 1<<20), ng: ng, ifaces: map[uint32]uint32{}}
	types := make([]uint32, 0, len(linkTypes))
	for lt := range linkTypes {
		types = append(types, lt)
	}
	slices.Sort(types)
	le := binary.LittleEndian
	if !ng {
		h := make([]byte, 24)
		le.PutUint32(h, 0xa1b23c4d) // nanosecond pcap
		le.PutUint16(h[4:], 2)
		le.PutUint16(h[6:], 4)
		le.PutUint32(h[16:], format.MaxCapLen)
		if len(types) > 0 {
			le.PutUint32(h[20:], types[0])
		}
		cw.w.Write(h)
		return cw
	}
	shb := make([]byte, 28)
	le.PutUint32(shb, 0x0a0d0d0a)
	le.PutUint32(shb[4:], 28)
	le.PutUint32(shb[8:], 0x1a2b3c4d)
	le.PutUint16(shb[12:], 1)
	le.PutUint64(shb[16:], ^uint64(0)) // section length unknown
	le.PutUint32(shb[24:], 28)
	cw.w.Write(shb)
	for i, lt := range types {
		idb := make([]byte, 32)
		le.PutUint32(idb, 1)
		le.PutUint32(idb[4:], 32)
		le.PutUint16(idb[8:], uint16(lt))
		le.PutUint32(idb[12:], format.MaxCapLen)
		le.PutUint16(idb[16:], 9) // if_tsresol: nanoseconds
		le.PutUint16(idb[18:], 1)
		idb[20] = 9
		le.PutUint32(idb[28:], 32) // opt_endofopt is bytes 24-27
		cw.w.Write(idb)
		cw.ifaces[lt] = uint32(i)
	}
	return cw
}

func (cw *captureWriter) write(rec format.Record) error {
	if cw.err != nil {
		return cw.err
	}
	le := binary.LittleEndian
	ns := uint64(rec.TS)
	if !cw.ng {
		h := make([]byte, 16)
		le.PutUint32(h, uint32(ns/1e9))
		le.PutUint32(h[4:], uint32(ns%1e9))
		le.PutUint32(h[8:], uint32(len(rec.Data)))
		le.PutUint32(h[12:], rec.OrigLen)
		cw.w.Write(h)
		_, cw.err = cw.w.Write(rec.Data)
		return cw.err
	}
	pad := (4 - len(rec.Data)%4) % 4
	total := 32 + len(rec.Data) + pad
	h := make([]byte, 28)
	le.PutUint32(h, 6)
	le.PutUint32(h[4:], uint32(total))
	le.PutUint32(h[8:], cw.ifaces[rec.LinkType])
	le.PutUint32(h[12:], uint32(ns>>32))
	le.PutUint32(h[16:], uint32(ns))
	le.PutUint32(h[20:], uint32(len(rec.Data)))
	le.PutUint32(h[24:], rec.OrigLen)
	cw.w.Write(h)
	cw.w.Write(rec.Data)
	cw.w.Write(make([]byte, pad))
	var t [4]byte
	le.PutUint32(t[:], uint32(total))
	_, cw.err = cw.w.Write(t[:])
	return cw.err
}

func (cw *captureWriter) flush() error {
	if cw.err != nil {
		return cw.err
	}
	return cw.w.Flush()
}
