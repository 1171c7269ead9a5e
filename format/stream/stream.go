// Package stream follows the HTTP/1.x request stream of every TCP connection
// in a capture, record by record, and reports each forwarding header line
// (X-Forwarded-For and the others package xff knows) with the record that
// carries it, however many segments and records separate it from its
// request line.
//
// For each connection it keeps the client's side in sequence order: a
// retransmitted or duplicated segment is used once (the first copy in file
// order), a segment that arrives before its predecessor is held until the
// predecessor comes, and a hole that never fills is a gap, counted and never
// guessed across. The bytes in order go through a request parser that
// survives segment boundaries anywhere (inside a name, a value, between the
// CR and the LF): request line, header lines to the empty line, then the
// body by chunked framing or Content-Length, so that the next request is
// found where it starts, at a segment start or in the middle of one.
//
// A connection is taken up when its SYN is seen, or when a segment that
// starts with a request line arrives for a connection the tracker has no
// state for; the direction that sends requests is the client's, and nothing
// in the other direction is ever read as a request. State is dropped when a
// connection closes and when it goes quiet for longer than the idle timeout
// (open header blocks dropped that way are counted as evictions).
//
// One Tracker is a sequential walk. Chunked, parallel builds run a logging
// Tracker per chunk from empty state and reconcile with Join; see join.go.
package stream

import (
	"net/netip"
	"time"

	"github.com/xffidx/xffidx/format"
	"github.com/xffidx/xffidx/format/packet"
	"github.com/xffidx/xffidx/format/xff"
)

// Defaults of Options.
const (
	// DefaultIdleTimeout: a connection silent for longer (capture time) is
	// forgotten; a header block left open by it is counted as evicted.
	DefaultIdleTimeout = 120 * time.Second
	// closedTimeout: how long a closed connection is remembered, so that
	// late retransmissions of its last requests are not read twice.
	closedTimeout = 15 * time.Second
	// DefaultMaxConns bounds the connection table.
	DefaultMaxConns = 1 << 20
)

// Bounds on what one connection may hold; the packet bytes are hostile.
const (
	maxHeld      = 64        // early segments held per connection
	maxHeldBytes = 256 << 10 // their payload bytes
	holdTimeout  = 10 * 1e9  // ns a hole may stay open before it is a gap
	maxHitRecs   = 64        // records with hits remembered per request
	maxMethod    = 32        // bytes of the method kept for the request record
	maxTarget    = 1024      // bytes of the target kept
	maxHost      = 256       // bytes of Host kept
	maxReqLine   = 16 << 10  // a request line carried across segments
	maxSmallLine = 256       // a chunk-size or short header line carried
	maxNameScan  = 256       // bytes of a carried line searched for its colon
	holdBudget   = 64 << 20  // held bytes in all connections of one tracker
	carryKeepCap = xff.MaxValue + 64
)

// Options tune a Tracker.
type Options struct {
	IdleTimeout time.Duration // 0: DefaultIdleTimeout
	MaxConns    int           // 0: DefaultMaxConns
	// Log makes this a chunk worker's tracker: it logs the segments that
	// reach it and where it took each connection up, for Join.
	Log bool
}

// Hit is one address of one forwarding header line.
type Hit struct {
	Off    int64 // record carrying the line's first byte
	Addr   netip.Addr
	Header xff.Header
	Pos    int // position in the request's list of that header
	// ConnStart is the record where the tracker took the connection up:
	// its SYN (ConnSYN), or the request line it began at; -1 when it began
	// in an earlier capture.
	ConnStart int64
	ConnSYN   bool
	serial    uint32 // the connection's, in a chunk's tracker (for Join)
}

// RequestInfo describes the request behind the hits of one record, for the
// records whose packet alone does not show it: a header block begun in an
// earlier segment, or going on in later ones.
type RequestInfo struct {
	Off      int64  // the record
	Seq      uint32 // stream position of the request's first byte: tells the requests of one record apart
	Method   []byte
	Target   []byte
	Host     []byte
	First    bool // this record holds the request line
	Complete bool // the header block was followed to its end: Lists are whole
	// Lists holds, per header with lines in the request, all its values
	// joined with ", " (at most xff.MaxValue bytes; Capped says it was cut).
	Lists          [xff.NumHeaders][]byte
	Listed, Capped xff.HeaderSet
	serial         uint32 // the connection's, in a chunk's tracker (for Join)
}

// Counts sums what a tracker saw.
type Counts struct {
	XFFLines, OtherLines int64 // forwarding header lines (obs-folds included)
	// ContLines: forwarding lines in a record that does not hold their
	// request line (found only by following the connection).
	ContLines  int64
	HitPackets int64 // records with at least one hit
	NonAddr    int64 // elements that are not addresses
	Requests   int64 // request header blocks begun
	Dups       int64 // segments whose bytes were all seen already
	Early      int64 // segments held because they came before their predecessor
	Gaps       int64 // holes in a client stream that never filled
	Evicted    int64 // open header blocks dropped by the idle timeout or a full table
	Overflow   int64 // connections dropped or held bytes refused because a bound was reached
}

func (c *Counts) add(o Counts) {
	c.XFFLines += o.XFFLines
	c.OtherLines += o.OtherLines
	c.ContLines += o.ContLines
	c.HitPackets += o.HitPackets
	c.NonAddr += o.NonAddr
	c.Requests += o.Requests
	c.Dups += o.Dups
	c.Early += o.Early
	c.Gaps += o.Gaps
	c.Evicted += o.Evicted
	c.Overflow += o.Overflow
}

// Add folds o into c.
func (c *Counts) Add(o Counts) { c.add(o) }

// Output is what a tracker found since it was last drained.
type Output struct {
	Hits     []Hit
	Requests []RequestInfo
	Counts   Counts
}

// Tracker follows the connections of one walk. It is not safe for
// concurrent use.
type Tracker struct {
	opt     Options
	idleNS  int64
	conns   table
	live    int // connections with state
	out     Output
	cnt     *Counts // where counts go: out.Counts, or a connection's (logging)
	maxTS   int64
	held    int // held payload bytes over all connections
	sweepAt int

	// Logging trackers (Options.Log) only.
	log     chunkLog
	serials uint32
	logged  int     // the log index of the segment being handled
	retired []*conn // connections taken up here and swept before the end

	// fetch reads a logged segment's payload during Join.
	fetch func(pos int64, n int, buf []byte) ([]byte, error)
	fbuf  []byte
	ferr  error

	seg segment // the segment being handled
	dec decoded

	// The parser's per-record bookkeeping: the record being consumed, the
	// requests that ended in it (whether they are recorded depends on how
	// the record ends), and whether a header block ended.
	freeParsers []*parser
	// freeConns are connection states no longer in use. The true tracker
	// collects those it forgets, and Join hands them to the chunks'
	// trackers (through the chunk they get back as a spare): one state is
	// made per connection, and fresh memory is dear (page faults, cache
	// misses), reused memory is not.
	freeConns []*conn
	join      joinState // Join's memory, on the true tracker

	seen seenIndex // a record's addresses, once it has many

	cur   int64
	here  []RequestInfo
	arena []byte
	ended bool
	lbuf  []byte
}

// New returns an empty tracker.
func New(opt Options) *Tracker {
	if opt.IdleTimeout <= 0 {
		opt.IdleTimeout = DefaultIdleTimeout
	}
	if opt.MaxConns <= 0 {
		opt.MaxConns = DefaultMaxConns
	}
	t := &Tracker{opt: opt, idleNS: int64(opt.IdleTimeout), sweepAt: 1 << 14, cur: -1}
	t.cnt = &t.out.Counts
	return t
}

// Drain returns the output gathered so far and forgets it.
func (t *Tracker) Drain() Output {
	o := t.out
	t.out = Output{}
	return o
}

// Reuse gives the tracker back the memory of an output Drain returned,
// once the caller is done with it: a tracker drained after every chunk
// would otherwise grow its lists from nothing each time.
func (t *Tracker) Reuse(o Output) {
	if len(t.out.Hits) == 0 && cap(o.Hits) > cap(t.out.Hits) {
		t.out.Hits = o.Hits[:0]
	}
	if len(t.out.Requests) == 0 && cap(o.Requests) > cap(t.out.Requests) {
		clear(o.Requests) // their bytes are not kept alive
		t.out.Requests = o.Requests[:0]
	}
}

// Conns returns the number of connections the tracker holds state for.
func (t *Tracker) Conns() int { return t.live }

// Record follows one packet record. dataPos is the file offset of rec.Data.
func (t *Tracker) Record(rec *format.Record, dataPos int64) {
	d := &t.dec
	ok, handled := fastTCP(rec.LinkType, rec.Data, d)
	if !handled {
		var seg packet.Segment
		if seg, ok = packet.InnermostTCP(rec.LinkType, rec.Data); ok {
			d.key, d.dir = keyOf(&seg)
			d.seq, d.flags, d.payload = seg.Seq, seg.Flags, seg.Payload
		}
	}
	const synFinRst = 0x07
	if !ok || len(d.payload) == 0 && d.flags&synFinRst == 0 {
		return // not TCP, or a pure ACK: it changes nothing
	}
	h := d.key.hash()
	if t.serverSide(&d.key, h, d.dir, d.flags, rec.TS) {
		return
	}
	s := &t.seg
	*s = segment{
		off:   rec.Offset,
		ts:    rec.TS,
		pos:   dataPos + int64(len(rec.Data)-cap(d.payload)),
		seq:   d.seq,
		n:     uint32(len(d.payload)),
		wire:  uint32(len(d.payload)) + rec.OrigLen - min(rec.CapLen, rec.OrigLen),
		flags: d.flags,
		dir:   d.dir,
		data:  d.payload,
	}
	t.handleChecked(&d.key, h, s)
}

// segment is one TCP segment as the tracker uses it. data is its captured
// payload, or nil while Join has not needed to read it.
type segment struct {
	off   int64 // record offset
	ts    int64
	pos   int64 // file offset of the payload
	seq   uint32
	n     uint32 // captured payload bytes
	wire  uint32 // payload bytes on the wire (more when the snap length cut it)
	flags uint8
	dir   uint8 // 0: from key.a to key.b
	data  []byte
}

const (
	flagFIN = 0x01
	flagSYN = 0x02
	flagRST = 0x04
	flagACK = 0x10
)

// payload returns the segment's captured payload, reading it if needed.
func (t *Tracker) payload(s *segment) []byte {
	if s.data != nil || s.n == 0 {
		return s.data
	}
	if t.fetch == nil {
		return nil
	}
	if cap(t.fbuf) < int(s.n) {
		t.fbuf = make([]byte, s.n)
	}
	b, err := t.fetch(s.pos, int(s.n), t.fbuf[:s.n])
	if err != nil {
		if t.ferr == nil {
			t.ferr = err
		}
		return nil
	}
	s.data = b
	return b
}
