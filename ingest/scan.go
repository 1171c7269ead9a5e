package ingest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"

	"github.com/xffidx/xffidx/format"
	"github.com/xffidx/xffidx/format/packet"
	"github.com/xffidx/xffidx/format/xff"
)

// A chunk is one worker's share of a file: the records whose first byte lies
// in [start, end). The worker reads a little before start (preroll) so that a
// packet continuing a header block can find its predecessor, and after end
// (overhang) so that the last record and a look-ahead fit.
const (
	preroll  = 256 << 10
	overhang = 3 << 19 // 1.5 MiB: the largest pcapng block (1 MiB) plus look-ahead room
	// lookRecords bounds how many records a look-back or look-ahead for the
	// other segment of a split header examines.
	lookRecords = 64
	// lookBackDepth bounds how many segments back a header block is followed.
	lookBackDepth = 3
)

// endKind says why a chunk's walk stopped.
type endKind uint8

const (
	endBoundary  endKind = iota // reached a record starting at or past the chunk end
	endEOF                      // reached the end of the file exactly
	endTruncated                // the last record is cut by the end of the file
	endCorrupt                  // hit bytes that are not records and found none after them
)

type hitRec struct {
	addr   netip.Addr
	off    int64
	pos    int
	header xff.Header
}

type rawRec struct {
	off    int64
	header xff.Header
	raw    []byte
}

type skipRange struct{ from, to int64 }

type headerEvent struct {
	off   int64
	shb   bool
	big   bool
	iface format.Interface
}

// chunkResult is what one walk of a chunk found. Nothing in it aliases the
// worker's buffer.
type chunkResult struct {
	k         int
	start     int64 // offset of the first record owned by the chunk; -1 if none
	end       int64 // where the walk stopped (see endKind)
	endKind   endKind
	ctxBlocks int           // Walker.HeaderBlocks the walk started from
	ctxOut    format.Walker // context after the walk
	events    []headerEvent // SHBs and IDBs met, in order
	skipped   []skipRange   // corrupt regions inside the chunk
	truncLen  int64         // bytes of the cut last record (endTruncated)
	covered   int64         // bytes of the records owned
	packets   int64
	minTS     int64
	maxTS     int64
	xffLines  int64
	others    int64 // lines of the other forwarding headers
	hitPkts   int64
	nonAddr   int64
	hits      []hitRec
	raws      []rawRec
	err       error
}

// chunkScanner walks one chunk. It is reused across chunks by one worker;
// its buffer and scratch slices keep the hot loop allocation-free.
//
// The chunk's window of the file, [from, limit), is read piece by piece into
// a small buffer that slides: buf holds the file bytes [base, base+len(buf)),
// the bytes already walked are dropped but for the last `history` (for
// look-back), and each piece is scanned right after it is read, while it is
// still in the CPU cache. That keeps the pass at memory-copy speed and its
// memory independent of the chunk size.
type chunkScanner struct {
	f       *os.File
	mem     []byte // backing array of buf, of fixed capacity
	buf     []byte
	base    int64 // file offset of buf[0]
	limit   int64 // end of the window
	fileEnd bool  // the window reaches the end of the file
	readErr error
	w       format.Walker
	res     *chunkResult

	ring    [lookRecords]int // buffer positions of recent packet records
	ringLen int
	ringAt  int

	scanned  xff.Result // reused by the candidate path
	before   xff.Result // reused by the look-back
	joined   []byte
	seen     []seenAddr
	rawJoin  []byte
	foldJoin []byte
}

// walk walks records from position from (trusted: a record starts there;
// otherwise resync first) and owns those starting in [start, end).
func (s *chunkScanner) walk(from int, trusted bool, start, end int64) {
	res := s.res
	res.start, res.minTS, res.maxTS = -1, 0, 0
	s.ringLen = 0
	pos := from
	if trusted {
		res.start = s.base + int64(from)
	} else {
		p, ok := s.sync(pos)
		if !ok {
			// Nothing valid in reach: the caller measures the skip from where
			// the previous chunk stopped.
			res.end, res.endKind = -1, endCorrupt
			return
		}
		pos = p
	}
	for {
		// Slide when little read data is left to walk (the copy is then
		// small), or when the buffer is short of room for another piece.
		if pos >= history+slideEvery && (len(s.buf)-pos < 16<<10 || len(s.mem)-len(s.buf) < pieceSize) {
			pos = s.slide(pos)
		}
		off := s.base + int64(pos)
		if off >= end {
			res.end, res.endKind = off, endBoundary
			return
		}
		if pos == len(s.buf) && !s.more() && s.fileEnd {
			res.end, res.endKind = off, endEOF
			return
		}
		owned := off >= start
		var rec format.Record
		var n int
		var st format.Status
		if owned {
			// The fast path: the record is already in the buffer.
			rec, n, st = s.w.Next(s.buf, s.base, pos)
		}
		if !owned || st == format.Short {
			rec, n, st = s.record(pos, owned)
		}
		if st == format.Short && s.fileEnd && s.allRead() {
			if owned && res.start < 0 {
				res.start = off
			}
			res.end, res.endKind = off, endTruncated
			res.truncLen = int64(len(s.buf) - pos)
			return
		}
		if st == format.Short || st == format.Bad {
			p, ok := s.sync(pos + 1)
			if !ok {
				res.end, res.endKind = max(off, start), endCorrupt
				return
			}
			if to := min(s.base+int64(p), end); to > start {
				res.skipped = append(res.skipped, skipRange{max(off, start), to})
			}
			pos = p
			continue
		}
		if owned {
			if res.start < 0 {
				res.start = off
			}
			res.covered += int64(n)
		}
		if st == format.Packet {
			if owned {
				s.packet(rec, pos)
			}
			s.pushRing(pos)
		} else if owned {
			s.headerEvent(off)
		}
		pos += n
	}
}

const (
	// pieceSize is how much one read brings in: small enough to stay in the
	// CPU's cache until scanned, large enough that syscalls are few.
	pieceSize = 256 << 10
	// history is how much walked data a slide keeps, for look-back.
	history = 64 << 10
	// slideEvery: the buffer slides once this much has been walked past
	// the history.
	slideEvery = 768 << 10
	// scannerMem holds history, the slide distance, and the largest record
	// or resync look-ahead plus a look-ahead for split headers beyond it.
	scannerMem = history + slideEvery + 2*syncLookahead + 1<<20
)

func newChunkScanner() *chunkScanner {
	return &chunkScanner{mem: make([]byte, scannerMem)}
}

// start prepares the window [from, to) of f, cut to the file's size.
func (s *chunkScanner) start(f *os.File, from, to, size int64) {
	to = min(to, size)
	s.buf = s.mem[:0]
	s.f, s.base, s.limit, s.fileEnd, s.readErr = f, from, max(from, to), to == size, nil
}

// allRead reports whether the whole window is in buf.
func (s *chunkScanner) allRead() bool {
	return s.base+int64(len(s.buf)) == s.limit
}

// more reads the next piece of the window into the buffer's free space;
// false when the window is all read or the buffer is full.
func (s *chunkScanner) more() bool {
	have := len(s.buf)
	next := s.base + int64(have)
	if next >= s.limit || have == len(s.mem) || s.readErr != nil {
		return false
	}
	want := int(min(int64(pieceSize), s.limit-next, int64(len(s.mem)-have)))
	got, err := s.f.ReadAt(s.mem[have:have+want], next)
	if got < want {
		if err == nil || errors.Is(err, io.EOF) {
			err = fmt.Errorf("file shrank while being read (at offset %d)", next+int64(got))
		}
		s.readErr = err
		s.limit = next + int64(got)
	}
	s.buf = s.mem[:have+got]
	return got > 0
}

// slide drops the bytes before pos-history and returns pos in the moved
// buffer. Record data from before a slide must not be used after it.
func (s *chunkScanner) slide(pos int) int {
	shift := pos - history
	if shift <= 0 {
		return pos
	}
	n := copy(s.mem, s.buf[shift:])
	s.buf = s.mem[:n]
	s.base += int64(shift)
	// Keep the ring's entries still in the buffer: the most recent ones.
	kept := 0
	for i := 1; i <= s.ringLen; i++ {
		at := (s.ringAt - i + len(s.ring)) % len(s.ring)
		if s.ring[at] < shift {
			break
		}
		s.ring[at] -= shift
		kept++
	}
	s.ringLen = kept
	return pos - shift
}

// record reads the record at pos, reading more of the window if it does not
// fit yet. apply says whether header blocks change the walker.
func (s *chunkScanner) record(pos int, apply bool) (format.Record, int, format.Status) {
	for {
		var rec format.Record
		var n int
		var st format.Status
		if apply {
			rec, n, st = s.w.Next(s.buf, s.base, pos)
		} else {
			rec, n, st = s.w.Peek(s.buf, s.base, pos)
		}
		if st != format.Short || !s.more() {
			return rec, n, st
		}
	}
}

// sync resyncs from pos, sliding through the window as long as it takes. It
// returns a position in the buffer as it is after any slide.
func (s *chunkScanner) sync(pos int) (int, bool) {
	for {
		for len(s.buf) < pos+syncLookahead && s.more() {
		}
		p, ok := s.w.Sync(s.buf, s.base, pos, s.fileEnd && s.allRead())
		if ok || s.allRead() {
			return p, ok
		}
		// Nothing in what is read: go on from where a chain could still
		// be cut by the end of the buffer.
		pos = s.slide(max(pos, len(s.buf)-syncLookahead))
		if !s.more() {
			return 0, false
		}
	}
}

// syncLookahead is enough bytes for a resync to see four maximal records.
const syncLookahead = 4*(format.MaxCapLen+16) + 4096

func (s *chunkScanner) headerEvent(off int64) {
	sec := &s.w.Sec
	if sec.Offset == off {
		s.res.events = append(s.res.events, headerEvent{off: off, shb: true, big: sec.BigEndian})
		return
	}
	if len(sec.Ifaces) > 0 {
		s.res.events = append(s.res.events, headerEvent{off: off, iface: sec.Ifaces[len(sec.Ifaces)-1]})
	}
}

func (s *chunkScanner) pushRing(pos int) {
	s.ring[s.ringAt] = pos
	s.ringAt = (s.ringAt + 1) % len(s.ring)
	s.ringLen = min(s.ringLen+1, len(s.ring))
}

// packet is the per-record hot path: count, then a memchr-speed search for
// the header name; everything else happens only for the rare candidates.
func (s *chunkScanner) packet(rec format.Record, pos int) {
	res := s.res
	res.packets++
	if rec.TS != 0 {
		if res.minTS == 0 || rec.TS < res.minTS {
			res.minTS = rec.TS
		}
		res.maxTS = max(res.maxTS, rec.TS)
	}
	if xff.IndexName(rec.Data) < 0 && !xff.EndsWithNamePrefix(rec.Data) {
		return
	}
	s.candidate(rec, pos)
}

func sameFlow(a, b *packet.Segment) bool {
	return a.SrcPort == b.SrcPort && a.DstPort == b.DstPort && a.SrcIP == b.SrcIP && a.DstIP == b.DstIP
}

// candidate handles a packet whose bytes contain the header name at a line
// start: it finds the TCP payload and the request header blocks in it.
func (s *chunkScanner) candidate(rec format.Record, pos int) {
	seg, ok := packet.InnermostTCP(rec.LinkType, rec.Data)
	if !ok || len(seg.Payload) == 0 {
		return
	}
	snapCut := rec.CapLen < rec.OrigLen
	res := &s.scanned
	xff.Scan(res, seg.Payload, false)
	fromPacketAlone, joinedCut := true, false
	if !res.Request {
		open, lastCut, guessed := s.headerStateBefore(seg, pos, 0)
		if !open {
			return
		}
		p := seg.Payload
		if lastCut {
			// The first line finishes the previous segment's last line.
			nl := bytes.IndexByte(p, '\n')
			if nl < 0 {
				return
			}
			p = p[nl+1:]
		}
		xff.Scan(res, p, true)
		if res.Malformed || (guessed && res.Open) {
			// A true continuation holds header lines up to the blank line;
			// anything else is a body that happens to start like one. When
			// the snap length hid the end of the previous segment, the blank
			// line must be seen here.
			return
		}
		fromPacketAlone = false
	}
	if res.Tail != nil && !snapCut && xff.IsNamePrefix(res.Tail) {
		// A header name split across segments: join it with the start of
		// the next segment to see whether it is ours.
		cont, terminated, found := s.continuation(&seg, pos)
		s.joined = append(append(s.joined[:0], res.Tail...), cont[:min(len(cont), xff.MaxValue)]...)
		if h, value, ok := xff.MatchName(s.joined); found && ok {
			// The cut line is in the last request of the payload.
			request := max(0, len(res.Requests)-1)
			res.Lines = append(res.Lines, xff.Line{Value: value, Start: len(seg.Payload) - len(res.Tail), Request: request, Header: h})
			// Capped, the value's last element is as incomplete as one
			// the segment cut.
			fromPacketAlone, joinedCut = false, !terminated || len(cont) > xff.MaxValue
		}
	}
	if len(res.Lines) == 0 {
		return
	}
	lines := res.Lines
	last := &lines[len(lines)-1]
	lastIsCut := last.Cut && snapCut
	if last.Cut && !snapCut {
		// The value may go on in the next segment of the connection.
		cont, terminated, found := s.continuation(&seg, pos)
		s.joined = append(append(s.joined[:0], last.Value...), cont...)
		capped := len(s.joined) > xff.MaxValue
		s.joined = bytes.TrimRight(s.joined[:min(len(s.joined), xff.MaxValue)], " \t\r")
		if found {
			last.Value = s.joined
			fromPacketAlone = false
		}
		lastIsCut = !terminated || capped
	}
	s.emit(rec, lines, lastIsCut || joinedCut, fromPacketAlone)
}

type seenAddr struct {
	addr   netip.Addr
	header xff.Header
}

// emit indexes the addresses of one packet's forwarding header lines.
// Each request's lines of one header form one list, and positions count
// in it.
func (s *chunkScanner) emit(rec format.Record, lines []xff.Line, lastIsCut, fromPacketAlone bool) {
	res := s.res
	s.seen = s.seen[:0]
	nHits := len(res.hits)
	var posInList [xff.NumHeaders]int
	var withHits xff.HeaderSet
	request := -1
	for i := range lines {
		l := &lines[i]
		if l.Header == xff.XForwardedFor {
			res.xffLines++
		} else {
			res.others++
		}
		if l.Fold {
			continue // parsed with the line it continues
		}
		if l.Request != request {
			request, posInList = l.Request, [xff.NumHeaders]int{}
		}
		h := l.Header
		value := l.Value
		last := i
		for last+1 < len(lines) && lines[last+1].Fold {
			// obs-fold: the folded lines are one value with the line
			// they continue, joined by a space as RFC 9112 reads them.
			if last == i {
				s.foldJoin = append(s.foldJoin[:0], value...)
			}
			last++
			s.foldJoin = append(append(s.foldJoin, ' '), lines[last].Value...)
			value = s.foldJoin
		}
		cut := lastIsCut && last == len(lines)-1
		h.Elements(value, cut, func(elem []byte) {
			a, ok := xff.ParseAddr(elem)
			if !ok {
				res.nonAddr++
				posInList[h]++
				return
			}
			if !slices.Contains(s.seen, seenAddr{a, h}) {
				s.seen = append(s.seen, seenAddr{a, h})
				res.hits = append(res.hits, hitRec{addr: a, off: rec.Offset, pos: posInList[h], header: h})
				withHits |= xff.SetOf(h)
			}
			posInList[h]++
		})
	}
	if len(res.hits) == nHits {
		return
	}
	res.hitPkts++
	if fromPacketAlone {
		return
	}
	for h := range xff.NumHeaders {
		if !withHits.Has(h) {
			continue
		}
		s.rawJoin = s.rawJoin[:0]
		n := 0
		for i := range lines {
			if lines[i].Header != h {
				continue
			}
			if n++; n > 1 {
				s.rawJoin = append(s.rawJoin, ", "...)
			}
			s.rawJoin = append(s.rawJoin, lines[i].Value...)
		}
		raw := bytes.Clone(s.rawJoin[:min(len(s.rawJoin), xff.MaxValue)])
		res.raws = append(res.raws, rawRec{off: rec.Offset, header: h, raw: raw})
	}
}

// headerStateBefore finds the previous segment of seg's connection among the
// recent records and reports whether a request header block was still open
// at its end, and whether its last line was cut.
// guessed is true when the snap length cut the previous segment, so that
// open is a guess. seg is passed by value: a pointer would make every
// segment the look-back decodes escape to the heap, through the recursion.
func (s *chunkScanner) headerStateBefore(seg packet.Segment, pos int, depth int) (open, lastCut, guessed bool) {
	if depth >= lookBackDepth {
		return false, false, false
	}
	for i := 1; i <= s.ringLen; i++ {
		p := s.ring[(s.ringAt-i+2*len(s.ring))%len(s.ring)]
		if p >= pos {
			continue
		}
		rec, _, st := s.record(p, false)
		if st != format.Packet {
			continue
		}
		prev, ok := packet.InnermostTCP(rec.LinkType, rec.Data)
		// The bytes the snap length cut off were payload too: count them
		// to find where the next segment starts.
		wire := uint32(len(prev.Payload)) + rec.OrigLen - rec.CapLen
		if !ok || wire == 0 || !sameFlow(&prev, &seg) || prev.Seq+wire != seg.Seq {
			continue
		}
		cut := rec.CapLen < rec.OrigLen
		r := &s.before
		xff.Scan(r, prev.Payload, false)
		if !r.Request {
			o, lc, g := s.headerStateBefore(prev, p, depth+1)
			if !o || g {
				return false, false, false
			}
			pl := prev.Payload
			if lc {
				nl := bytes.IndexByte(pl, '\n')
				if nl < 0 {
					return true, true, false // the whole segment is one cut line
				}
				pl = pl[nl+1:]
			}
			xff.Scan(r, pl, true)
		}
		if cut {
			// What the snap length cut off is unknown. A block still open
			// where the capture stops is taken as going on into this segment
			// (the cut line as ending there) unless the request announced a
			// body, which may as well start in the part cut off.
			return r.Open && !r.BodyDeclared, false, true
		}
		return r.Open, r.LastCut, false
	}
	return false, false, false
}

// continuation finds the next segment of seg's connection in the records
// after pos and returns the bytes that end its first line.
func (s *chunkScanner) continuation(seg *packet.Segment, pos int) (cont []byte, terminated, found bool) {
	want := seg.Seq + uint32(len(seg.Payload))
	_, n, st := s.record(pos, false)
	if st != format.Packet {
		return nil, false, false
	}
	p := pos + n
	for range lookRecords {
		rec, n, st := s.record(p, false)
		if st == format.Header {
			p += n
			continue
		}
		if st != format.Packet {
			return nil, false, false
		}
		p += n
		next, ok := packet.InnermostTCP(rec.LinkType, rec.Data)
		if !ok || !sameFlow(&next, seg) || next.Seq != want || len(next.Payload) == 0 {
			continue
		}
		nl := bytes.IndexByte(next.Payload, '\n')
		if nl < 0 {
			return next.Payload, false, true
		}
		return bytes.TrimRight(next.Payload[:nl], "\r"), true, true
	}
	return nil, false, false
}
