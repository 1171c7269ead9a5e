package ingest

import (
	"errors"
	"fmt"
	"io"

	"github.com/xffidx/xffidx/format"
	"github.com/xffidx/xffidx/format/stream"
)

// A chunk is one worker's share of a file: the records whose first byte lies
// in [start, end). The worker reads a little before start (preroll), so that
// a resync lands on a record boundary well before the chunk and walks to
// its first record, and after end (overhang), so that the last record fits.
const (
	preroll  = 64 << 10
	overhang = 3 << 19 // 1.5 MiB: the largest pcapng block (1 MiB) with room to spare
)

// endKind says why a chunk's walk stopped.
type endKind uint8

const (
	endBoundary  endKind = iota // reached a record starting at or past the chunk end
	endEOF                      // reached the end of the file exactly
	endTruncated                // the last record is cut by the end of the file
	endCorrupt                  // hit bytes that are not records and found none after them
)

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
	// chunk is the worker's connection tracking, for stream.Tracker.Join;
	// nil for a chunk walked on the coordinator's (true) tracker.
	chunk *stream.Chunk
	err   error
}

// chunkScanner walks one chunk. It is reused across chunks by one worker;
// its buffer keeps the hot loop allocation-free.
//
// The chunk's window of the file, [from, limit), is read piece by piece into
// a small buffer that slides: buf holds the file bytes [base, base+len(buf)),
// the bytes already walked are dropped, and each piece is scanned right
// after it is read, while it is still in the CPU cache. That keeps the pass
// at memory-copy speed and its memory independent of the chunk size.
type chunkScanner struct {
	f       io.ReaderAt
	mem     []byte // backing array of buf, of fixed capacity
	buf     []byte
	base    int64 // file offset of buf[0]
	limit   int64 // end of the window
	fileEnd bool  // the window reaches the end of the file
	readErr error
	// stream: f is a decompressed stream whose length is known only at its
	// end, where a short read is its end, not a file that shrank; a
	// decoding error there ends the window too and is kept in streamErr.
	stream    bool
	streamErr error
	w         format.Walker
	res       *chunkResult
	// onRead, if set, is called after each piece read.
	onRead func()
	// tr follows the connections: a logging tracker of the worker's own,
	// or the coordinator's true one for a chunk walked again.
	tr *stream.Tracker
}

// walk walks records from position from (trusted: a record starts there;
// otherwise resync first) and owns those starting in [start, end).
func (s *chunkScanner) walk(from int, trusted bool, start, end int64) {
	res := s.res
	res.start, res.minTS, res.maxTS = -1, 0, 0
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
	var rec format.Record // filled by Read: kept out of the loop
	for {
		// Slide when little read data is left to walk (the copy is then
		// small), or when the buffer is short of room for another piece.
		if pos >= slideEvery && (len(s.buf)-pos < 16<<10 || len(s.mem)-len(s.buf) < pieceSize) {
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
		var n int
		var st format.Status
		if owned {
			// The fast path: the record is already in the buffer.
			n, st = s.w.Read(&rec, s.buf, s.base, pos)
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
		if owned && st == format.Packet && rec.CapLen == 0 {
			// A record that captured nothing, and those right after it
			// (a zero-filled region is a run of them): counted at once.
			e := s.w.SkipEmpty(s.buf, pos, int(min(end-s.base, int64(len(s.buf)))))
			n = e.Bytes
			res.packets += int64(e.Records)
			if e.MinTS != 0 {
				if res.minTS == 0 || e.MinTS < res.minTS {
					res.minTS = e.MinTS
				}
				res.maxTS = max(res.maxTS, e.MaxTS)
			}
			if res.start < 0 {
				res.start = off
			}
			res.covered += int64(n)
			pos += n
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
				s.packet(&rec, pos)
			}
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
	// slideEvery: the buffer slides once this much has been walked. Walked
	// bytes are not kept: nothing reads behind the record being walked (a
	// resync searches forwards, and the tracker copies what it keeps).
	slideEvery = 256 << 10
	// scannerMem holds the slide distance and the largest record
	// or resync look-ahead with room to spare.
	scannerMem = slideEvery + 2*syncLookahead + 1<<20
)

// newChunkScanner returns a scanner whose buffer is allocated by its
// first read: a re-walk from the end of a file (whose last chunk the one
// before it read in its overhang) reads nothing.
func newChunkScanner() *chunkScanner {
	return &chunkScanner{}
}

// start prepares the window [from, to) of f, cut to the file's size.
func (s *chunkScanner) start(f io.ReaderAt, from, to, size int64) {
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
	if next >= s.limit || s.readErr != nil {
		return false
	}
	if s.mem == nil {
		s.mem = make([]byte, scannerMem)
	}
	if have == len(s.mem) {
		return false
	}
	want := int(min(int64(pieceSize), s.limit-next, int64(len(s.mem)-have)))
	got, err := s.f.ReadAt(s.mem[have:have+want], next)
	if got < want && s.stream {
		if !errors.Is(err, io.EOF) {
			s.streamErr = err
		}
		s.limit = next + int64(got)
	} else if got < want {
		if err == nil || errors.Is(err, io.EOF) {
			err = fmt.Errorf("file shrank while being read (at offset %d)", next+int64(got))
		}
		s.readErr = err
		s.limit = next + int64(got)
	}
	s.buf = s.mem[:have+got]
	if s.onRead != nil {
		s.onRead()
	}
	return got > 0
}

// slide drops the bytes before pos and returns pos in the moved
// buffer. Record data from before a slide must not be used after it.
func (s *chunkScanner) slide(pos int) int {
	if pos <= 0 {
		return pos
	}
	n := copy(s.mem, s.buf[pos:])
	s.buf = s.mem[:n]
	s.base += int64(pos)
	return 0
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

// packet is the per-record hot path: count the record, then hand it to the
// connection tracker.
func (s *chunkScanner) packet(rec *format.Record, pos int) {
	res := s.res
	res.packets++
	if rec.TS != 0 {
		if res.minTS == 0 || rec.TS < res.minTS {
			res.minTS = rec.TS
		}
		res.maxTS = max(res.maxTS, rec.TS)
	}
	s.tr.Record(rec, s.base+int64(pos+rec.DataOff))
}
