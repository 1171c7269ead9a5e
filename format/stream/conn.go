package stream

import (
	"cmp"
	"net/netip"
	"slices"

	"github.com/xffidx/xffidx/format/packet"
	"github.com/xffidx/xffidx/format/xff"
)

// keyOf returns the connection of seg and the direction seg travels in (0:
// from the key's first endpoint).
func keyOf(seg *packet.Segment) (connKey, uint8) {
	return makeKey(addrWords(seg.SrcIP), addrWords(seg.DstIP), seg.SrcPort, seg.DstPort)
}

// Modes of a connection's client stream.
const (
	modeAbsent    uint8 = iota // no state: waiting for a SYN or a request line at a segment start
	modeDead                   // not followable (not HTTP, malformed, after a gap or a close): as absent, but retransmissions of what was seen are known
	modeIdle                   // between requests: the next byte starts one
	modeReqLine                // inside a request line
	modeHeaders                // inside a request header block
	modeGuess                  // the snap length cut a header block: the next segment may continue it, if it ends it
	modeBody                   // inside a Content-Length body
	modeChunkSize              // inside a chunk-size line
	modeChunkData              // inside a chunk's data
	modeChunkEnd               // after a chunk's data: its CRLF
	modeTrailer                // inside a chunked body's trailer
	numModes
)

// conn is one connection's state.
//
// The small fields are grouped, so that the struct packs into a smaller
// allocation size class: one is allocated per connection.
type conn struct {
	key    connKey
	id     uint32 // logging trackers: index of key in the chunk's key list
	client int8   // direction of requests, -1 before it is known
	mode   uint8
	closed bool // FIN or RST seen: remembered only briefly
	// startSYN: start is the SYN.
	startSYN bool
	next     uint32
	skipCRLF uint8 // chunk-end bytes still to skip
	lastTS   int64
	start    int64 // record of the SYN, or of the request line the connection was taken up at

	held     []heldSeg
	heldSize int
	holdTS   int64 // when the oldest held segment came

	// The parser: p while a request or a body is being read (nil between
	// requests and when not followed, so that idle connections stay small).
	p         *parser
	remaining int64 // body or chunk bytes still to come

	// Hits of the record being handled, for the one-hit-per-address rule.
	hitRec int64
	seen   []seenAddr

	// Logging trackers only: where the tracker took the connection up, and
	// a number telling apart the connections it created for one key.
	anchor anchorInfo
	serial uint32
}

type heldSeg struct {
	seq   uint32
	wire  uint32
	off   int64
	ts    int64
	pos   int64
	flags uint8
	data  []byte
}

type seenAddr struct {
	addr netip.Addr
	h    xff.Header
}

// seenLinear: up to this many addresses, a record's list of the addresses
// it has given is searched; past it, the tracker indexes the list, so that
// a record of thousands of addresses costs linear time, not quadratic.
const seenLinear = 32

// seenIndex indexes one connection's seen list for one record.
type seenIndex struct {
	c   *conn // nil: indexes nothing
	rec int64
	n   int // entries of c.seen in set
	set map[seenAddr]struct{}
}

// seenBefore reports whether the record c.hitRec gave sa already.
func (t *Tracker) seenBefore(c *conn, sa seenAddr) bool {
	if len(c.seen) < seenLinear {
		return slices.Contains(c.seen, sa)
	}
	x := &t.seen
	if x.c != c || x.rec != c.hitRec || x.n > len(c.seen) {
		if x.set == nil || len(x.set) > 8*len(c.seen) {
			// A map grown by a record of thousands of addresses is let go
			// rather than cleared for each record of a few dozen.
			x.set = make(map[seenAddr]struct{}, 2*len(c.seen))
		} else {
			clear(x.set)
		}
		x.c, x.rec, x.n = c, c.hitRec, 0
	}
	for ; x.n < len(c.seen); x.n++ {
		x.set[c.seen[x.n]] = struct{}{}
	}
	_, ok := x.set[sa]
	return ok
}

// parser is the request parser's state that lives only while a request or
// its body is being read.
type parser struct {
	line carry
	req  request
}

// newParser takes a parser from the tracker's free list, or a new one.
func (t *Tracker) newParser() *parser {
	if n := len(t.freeParsers); n > 0 {
		p := t.freeParsers[n-1]
		t.freeParsers = t.freeParsers[:n-1]
		return p
	}
	return &parser{}
}

// idleParser gives c's parser back when nothing is being read.
func (t *Tracker) idleParser(c *conn) {
	p := c.p
	if p == nil || p.req.on || p.line.on || (c.mode != modeIdle && c.mode != modeDead) {
		return
	}
	c.p = nil
	if len(t.freeParsers) < 256 {
		p.req.reset()
		p.line.reset()
		t.freeParsers = append(t.freeParsers, p)
	}
}

// carry is a line the end of a segment cut: what of it may still matter.
type carry struct {
	on   bool
	off  int64 // record of the line's first byte
	n    int   // bytes so far
	buf  []byte
	keep bool // buf holds the line from its start (up to a cap)
	// named: the name is known (its colon was seen among the first bytes,
	// or none is there: a name longer than any header's); colon: a colon
	// was seen anywhere; fold: the line is an obs-fold.
	named, colon, fold bool
}

// request is the request whose header block (or body) is being read.
type request struct {
	on       bool
	seq      uint32 // stream position of its first byte
	firstRec int64  // record holding the request line
	method   []byte
	target   []byte
	host     []byte
	hostSet  bool
	cl       int64
	chunked  bool
	pos      [xff.NumHeaders]int
	lists    [xff.NumHeaders][]byte
	listed   xff.HeaderSet // headers with lines
	capped   xff.HeaderSet
	hitRecs  []int64 // records holding hits of this request
	// Forwarding line whose value may still be folded (same segment only).
	pend    bool
	pendH   xff.Header
	pendOff int64
	pendVal []byte
	pendCut bool
	pendLns int
}

// reset empties r for the next request, keeping its buffers. Field by
// field: assigning a whole new request copies some 300 bytes with their
// pointers once per request (TestResetClearsEveryField keeps it whole).
func (r *request) reset() {
	r.on, r.seq, r.firstRec = false, 0, 0
	r.method, r.target, r.host = r.method[:0], r.target[:0], r.host[:0]
	r.hostSet, r.cl, r.chunked = false, 0, false
	r.pos = [xff.NumHeaders]int{}
	for h := range r.lists {
		r.lists[h] = r.lists[h][:0]
	}
	r.listed, r.capped = 0, 0
	r.hitRecs = r.hitRecs[:0]
	r.pend, r.pendH, r.pendOff, r.pendVal, r.pendCut, r.pendLns = false, 0, 0, r.pendVal[:0], false, 0
}

// addList appends a value to the request's list of header h, up to
// xff.MaxValue bytes. A capped list takes nothing more, not even the
// separators: a block of thousands of lines must not grow it.
func (r *request) addList(h xff.Header, v []byte) {
	if r.capped.Has(h) {
		return
	}
	l := r.lists[h]
	if r.listed.Has(h) {
		l = append(l, ", "...)
	}
	r.listed |= xff.SetOf(h)
	if room := xff.MaxValue - len(l); len(v) > room {
		r.capped |= xff.SetOf(h)
		v = v[:max(0, room)]
		l = l[:min(len(l), xff.MaxValue)]
	}
	r.lists[h] = append(l, v...)
}

// lookup returns the state of key, nil if none. A connection silent for
// longer than its timeout at ts is dropped first: what it held is finished
// as cut off.
func (t *Tracker) lookup(key connKey, ts int64) *conn {
	return t.lookupHashed(&key, key.hash(), ts)
}

func (t *Tracker) lookupHashed(key *connKey, h uint64, ts int64) *conn {
	sl := t.conns.find(key, h)
	if sl == nil || sl.c == nil {
		return nil
	}
	c := sl.c
	if t.expired(c, ts) {
		t.drop(c, true)
		return nil
	}
	return c
}

func (t *Tracker) timeout(c *conn) int64 {
	if c.closed {
		return int64(closedTimeout)
	}
	return t.idleNS
}

// expired reports whether c has been silent for longer than its timeout at
// ts. Packets without a timestamp never expire anything.
func (t *Tracker) expired(c *conn, ts int64) bool {
	return ts != 0 && c.lastTS != 0 && ts-c.lastTS > t.timeout(c)
}

// drop forgets c. evict says an open request header block was cut off by
// the timeout or a full table (and is counted so).
func (t *Tracker) drop(c *conn, evict bool) {
	if c.p != nil && c.p.req.on && evict && c.mode >= modeReqLine && c.mode <= modeGuess {
		t.cnt.Evicted++
	}
	t.finishRequest(c, false)
	t.release(c)
	if t.opt.Log {
		// The key keeps its id: its later segments are logged under it.
		if sl := t.conns.find(&c.key, c.key.hash()); sl != nil {
			sl.c, sl.client = nil, -1
		}
		if c.anchor.set {
			t.retired = append(t.retired, c)
		}
		t.live--
		return
	}
	t.conns.remove(&c.key, c.key.hash())
	t.live--
	t.recycle(c)
}

// maxFreeConns bounds a tracker's list of unused connection states.
const maxFreeConns = 1 << 14

// recycle keeps c, which nothing refers to any more, for a later
// connection. Only a tracker that does not log recycles: a logging one's
// states go to Join with its chunk.
func (t *Tracker) recycle(c *conn) {
	if t.opt.Log {
		return
	}
	if t.seen.c == c {
		t.seen.c = nil
	}
	if len(t.freeConns) < maxFreeConns {
		*c = conn{seen: c.seen[:0]}
		t.freeConns = append(t.freeConns, c)
	}
}

// newConn returns an empty connection state, a recycled one if there is
// one.
func (t *Tracker) newConn() *conn {
	if n := len(t.freeConns); n > 0 {
		c := t.freeConns[n-1]
		t.freeConns[n-1] = nil
		t.freeConns = t.freeConns[:n-1]
		return c
	}
	return &conn{}
}

// release gives back a connection's held bytes.
func (t *Tracker) release(c *conn) {
	t.held -= c.heldSize
	c.held, c.heldSize = nil, 0
}

// add creates the state of key.
func (t *Tracker) add(key *connKey) *conn {
	if t.live >= t.sweepAt {
		t.sweep()
	}
	t.serials++
	c := t.newConn()
	c.key, c.client, c.hitRec, c.serial = *key, -1, -1, t.serials
	sl := t.slotHashed(key, key.hash())
	c.id = sl.id
	sl.c = c
	t.live++
	return c
}

// slotHashed returns the slot of key (whose hash is h), adding it (with a
// new id, for a logging tracker) if needed.
func (t *Tracker) slotHashed(key *connKey, h uint64) *slot {
	sl := t.conns.find(key, h)
	if sl == nil {
		if t.opt.Log {
			id := uint32(len(t.log.keys))
			t.log.keys = append(t.log.keys, *key)
			t.log.counts = append(t.log.counts, Counts{})
			sl = t.conns.insert(key, h)
			sl.id = id
		} else {
			sl = t.conns.insert(key, h)
		}
	}
	return sl
}

// sweep forgets connections that no packet could find alive any more (silent
// for twice their timeout before the latest timestamp seen), and, if the
// table is still full, the longest silent ones.
func (t *Tracker) sweep() {
	t.log.swept = true
	var old []*conn
	t.conns.each(func(c *conn) {
		if t.maxTS != 0 && c.lastTS != 0 && t.maxTS-c.lastTS > 2*t.timeout(c) {
			old = append(old, c)
		}
	})
	for _, c := range old {
		t.drop(c, true)
	}
	if t.live >= t.opt.MaxConns {
		all := make([]*conn, 0, t.live)
		t.conns.each(func(c *conn) { all = append(all, c) })
		slices.SortFunc(all, func(x, y *conn) int { return cmp.Compare(x.lastTS, y.lastTS) })
		for _, c := range all[:len(all)-t.opt.MaxConns*3/4] {
			t.cnt.Overflow++
			t.drop(c, true)
		}
	}
	t.sweepAt = max(1<<14, min(2*t.live, t.opt.MaxConns))
}
