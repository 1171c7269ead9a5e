package stream

import (
	"bytes"
	"net/netip"
	"slices"

	"github.com/xffidx/xffidx/format/xff"
)

// consume feeds the bytes of s from skip on, which continue c's client
// stream at c.next, to the request parser.
func (t *Tracker) consume(c *conn, s *segment, skip uint32) {
	p := t.payload(s)
	if int(skip) < len(p) {
		p = p[skip:]
	} else {
		p = nil
	}
	t.cur, t.here, t.arena = s.off, t.here[:0], t.arena[:0]
	startClean := skip == 0 && c.mode == modeIdle
	guess := c.mode == modeGuess
	if guess && skip == 0 && t.startsRequest(s) {
		// The cut block ended in what the snap length hid: a new request.
		t.finishRequest(c, false)
		c.mode, guess = modeIdle, false
	}
	var mark outMark
	if guess {
		// The snap length cut the previous segment inside the header
		// block: read this one as its continuation from a line start, and
		// keep what it gives only if the block ends in it.
		mark = t.markOut(c)
		c.mode = modeHeaders
		t.ended = false
	}
	t.parse(c, p, s.off, s.seq+skip)
	t.flushPend(c)
	if guess && !t.ended {
		t.rollback(c, mark)
		t.finishRequest(c, false)
		c.mode, c.p.line = modeDead, carry{buf: c.p.line.buf[:0]}
	}
	if missing := int64(s.wire) - int64(skip) - int64(len(p)); missing > 0 && c.mode != modeDead {
		t.hole(c, missing)
	}
	c.next = s.seq + s.wire
	// A record parsed alone shows its requests when it starts at a request
	// boundary and ends outside any header block; otherwise the requests
	// with hits in it are recorded with it.
	if !startClean || c.mode == modeReqLine || c.mode == modeHeaders || c.mode == modeGuess {
		for _, ri := range t.here {
			t.out.Requests = append(t.out.Requests, cloneInfo(ri))
		}
	}
	t.cur, t.here, t.arena = -1, t.here[:0], t.arena[:0]
	if s.flags&(flagFIN|flagRST) != 0 {
		t.close(c)
	}
	t.idleParser(c)
}

// outMark is where a tentative parse started, to undo it.
type outMark struct {
	hits, reqs int
	counts     Counts
	req        request
	hitRec     int64
	seen       []seenAddr
}

func (t *Tracker) markOut(c *conn) outMark {
	// The request's slices only grow past the mark (pend is not set at a
	// segment start), so a copy of the struct restores them.
	return outMark{hits: len(t.out.Hits), reqs: len(t.out.Requests), counts: *t.cnt, req: c.p.req, hitRec: c.hitRec, seen: slices.Clone(c.seen)}
}

func (t *Tracker) rollback(c *conn, m outMark) {
	t.out.Hits, t.out.Requests, *t.cnt = t.out.Hits[:m.hits], t.out.Requests[:m.reqs], m.counts
	t.here = t.here[:0]
	c.p.req, c.hitRec, c.seen = m.req, m.hitRec, append(c.seen[:0], m.seen...)
	t.seen.c = nil
}

// hole accounts for payload bytes the snap length cut off.
func (t *Tracker) hole(c *conn, missing int64) {
	switch c.mode {
	case modeBody, modeChunkData:
		if missing <= c.remaining {
			c.remaining -= missing
			if c.remaining == 0 {
				if c.mode == modeBody {
					c.mode = modeIdle
				} else {
					c.mode, c.skipCRLF = modeChunkEnd, 2
				}
			}
			return
		}
	case modeHeaders:
		// The line the cut falls in ends there: a forwarding line gives
		// the elements that are complete.
		t.finishCarry(c)
		if !c.p.req.chunked && c.p.req.cl <= 0 {
			// Without a body announced, the block may go on in the next
			// segment: modeGuess reads it, and keeps it if it ends there.
			c.mode = modeGuess
			return
		}
	}
	t.finishRequest(c, false)
	c.mode, c.p.line = modeDead, carry{buf: c.p.line.buf[:0]}
}

// parse runs the request parser over p, the bytes at stream position base
// carried by record off.
func (t *Tracker) parse(c *conn, p []byte, off int64, base uint32) {
	i := 0
	for i < len(p) {
		switch c.mode {
		case modeIdle:
			i += xff.SkipEmptyLines(p[i:])
			if i == len(p) {
				return
			}
			if !xff.IsTokenPrefix(p[i : i+1]) {
				// Not a method: whatever this is, it is not a request.
				c.mode = modeDead
				return
			}
			if c.p == nil {
				c.p = t.newParser()
			}
			c.p.req.reset()
			c.p.req.on, c.p.req.seq, c.p.req.firstRec = true, base+uint32(i), off
			c.mode = modeReqLine
		case modeReqLine:
			i = t.requestLine(c, p, i, off)
		case modeHeaders:
			i = t.headers(c, p, i, off)
		case modeBody:
			n := int(min(c.remaining, int64(len(p)-i)))
			i += n
			c.remaining -= int64(n)
			if c.remaining == 0 {
				c.mode = modeIdle
			}
		case modeChunkSize:
			i = t.chunkSize(c, p, i, off)
		case modeChunkData:
			n := int(min(c.remaining, int64(len(p)-i)))
			i += n
			c.remaining -= int64(n)
			if c.remaining == 0 {
				c.mode, c.skipCRLF = modeChunkEnd, 2
			}
		case modeChunkEnd:
			for i < len(p) && c.skipCRLF > 0 && (p[i] == '\r' || p[i] == '\n') {
				i++
				c.skipCRLF--
			}
			if i < len(p) || c.skipCRLF == 0 {
				c.mode = modeChunkSize
			}
		case modeTrailer:
			i = t.trailer(c, p, i, off)
		default:
			return
		}
	}
}

// lineAt returns the line that ends at the next LF in p[i:] (without the
// LF), joined with what the carry holds of its start, and where parsing
// goes on; ok is false when p ends first (the line is then carried, up to
// keep bytes of it). truncated says the line was longer than what is kept.
func (t *Tracker) lineAt(c *conn, p []byte, i int, off int64, keep int) (line []byte, next int, truncated, ok bool) {
	lf := bytes.IndexByte(p[i:], '\n')
	if lf < 0 {
		c.p.line.add(p[i:], off, keep)
		return nil, len(p), false, false
	}
	line = p[i : i+lf]
	if c.p.line.on {
		line, truncated = c.p.line.join(line, keep)
	}
	return line, i + lf + 1, truncated, true
}

func (t *Tracker) requestLine(c *conn, p []byte, i int, off int64) int {
	line, next, truncated, ok := t.lineAt(c, p, i, off, maxReqLine)
	if !ok {
		return next
	}
	c.p.line.reset()
	var n int
	var method, target []byte
	if !truncated {
		// RequestLine wants the line end.
		t.lbuf = append(append(t.lbuf[:0], line...), '\n')
		n, method, target = xff.RequestLine(t.lbuf)
	}
	if n == 0 {
		c.p.req.on = false
		c.mode = modeDead
		return len(p)
	}
	r := &c.p.req
	r.method = append(r.method[:0], method[:min(len(method), maxMethod)]...)
	r.target = append(r.target[:0], target[:min(len(target), maxTarget)]...)
	t.cnt.Requests++
	c.mode = modeHeaders
	return next
}

// headers reads header lines until the block ends or p does.
func (t *Tracker) headers(c *conn, p []byte, i int, off int64) int {
	for i < len(p) && c.mode == modeHeaders {
		lineOff := off
		if c.p.line.on && c.p.line.off >= 0 {
			lineOff = c.p.line.off // -1: begun in the previous capture
		}
		line, next, truncated, ok := t.lineAt(c, p, i, off, carryKeepCap)
		if !ok {
			return next
		}
		named := c.p.line.named || !c.p.line.on
		colon := c.p.line.colon
		if truncated && !colon {
			colon = bytes.IndexByte(p[i:next], ':') >= 0
		}
		c.p.line.reset()
		i = next
		t.headerLine(c, line, lineOff, truncated, named, colon)
	}
	return i
}

// headerLine acts on one complete header line. A line longer than what a
// carry keeps arrives truncated; colon then says whether the whole line
// has one.
func (t *Tracker) headerLine(c *conn, line []byte, off int64, truncated, named, colon bool) {
	var f xff.Field
	if truncated && !named && bytes.IndexByte(line, ':') < 0 {
		// No colon in the part kept: a name longer than any header's, or
		// no field line at all.
		if colon {
			f.Kind = xff.FieldOther
		} else {
			f.Kind = xff.FieldMalformed
		}
	} else {
		f = xff.ParseField(line)
	}
	if f.Kind != xff.FieldFold {
		t.flushPend(c)
	}
	r := &c.p.req
	switch f.Kind {
	case xff.FieldEmpty:
		t.endBlock(c)
	case xff.FieldFold:
		if r.pend {
			r.pendVal = append(append(r.pendVal, ' '), f.Value...)
			r.pendCut = r.pendCut || truncated
			r.pendLns++
		}
	case xff.FieldMalformed:
		t.finishRequest(c, false)
		c.mode = modeDead
	case xff.FieldForward:
		r.pend, r.pendH, r.pendOff, r.pendCut, r.pendLns = true, f.Header, off, truncated, 1
		r.pendVal = append(r.pendVal[:0], f.Value...)
	case xff.FieldHost:
		if !r.hostSet {
			r.host, r.hostSet = append(r.host[:0], f.Value[:min(len(f.Value), maxHost)]...), true
		}
	case xff.FieldLength:
		r.cl = xff.ContentLength(f.Value)
	case xff.FieldTransfer:
		r.chunked = xff.IsChunked(f.Value)
	}
}

// endBlock ends a request header block: the request is complete, and its
// body (if any) follows.
func (t *Tracker) endBlock(c *conn) {
	r := &c.p.req
	chunked, cl := r.chunked, r.cl
	t.ended = true
	t.finishRequest(c, true)
	switch {
	case chunked:
		c.mode = modeChunkSize
	case cl > 0:
		c.mode, c.remaining = modeBody, cl
	default:
		c.mode = modeIdle
	}
}

func (t *Tracker) chunkSize(c *conn, p []byte, i int, off int64) int {
	line, next, truncated, ok := t.lineAt(c, p, i, off, maxSmallLine)
	if !ok {
		if c.p.line.n > maxSmallLine {
			c.p.line.reset()
			c.mode = modeDead
			return len(p)
		}
		return next
	}
	c.p.line.reset()
	var size int64
	digits := 0
	for _, ch := range line {
		v := xff.HexDigit(ch)
		if v < 0 || digits == 15 {
			break
		}
		size = size<<4 | int64(v)
		digits++
	}
	if digits == 0 || truncated {
		c.mode = modeDead
		return len(p)
	}
	if size == 0 {
		c.mode = modeTrailer
	} else {
		c.mode, c.remaining = modeChunkData, size
	}
	return next
}

func (t *Tracker) trailer(c *conn, p []byte, i int, off int64) int {
	for i < len(p) {
		line, next, truncated, ok := t.lineAt(c, p, i, off, 2)
		if !ok {
			return next
		}
		c.p.line.reset()
		i = next
		if !truncated && (len(line) == 0 || len(line) == 1 && line[0] == '\r') {
			c.mode = modeIdle
			return i
		}
	}
	return i
}

// flushPend emits the forwarding line whose obs-folds were awaited.
func (t *Tracker) flushPend(c *conn) {
	if c.p == nil {
		return
	}
	r := &c.p.req
	if !r.pend {
		return
	}
	r.pend = false
	if r.pendH == xff.XForwardedFor {
		t.cnt.XFFLines += int64(r.pendLns)
	} else {
		t.cnt.OtherLines += int64(r.pendLns)
	}
	if r.pendOff != r.firstRec {
		t.cnt.ContLines += int64(r.pendLns)
	}
	t.emitLine(c, r.pendH, r.pendVal, r.pendOff, r.pendCut)
}

// finishCarry ends a carried line where the stream was cut: a forwarding
// line gives its complete elements.
func (t *Tracker) finishCarry(c *conn) {
	if c.p == nil {
		return
	}
	if !c.p.line.on || c.mode != modeHeaders || !c.p.line.keep || !c.p.line.named {
		c.p.line.reset()
		return
	}
	f := xff.ParseField(c.p.line.buf)
	off := c.p.line.off
	if off < 0 {
		off = t.cur // begun in the previous capture
	}
	c.p.line.reset()
	if f.Kind == xff.FieldForward && off >= 0 {
		t.flushPend(c)
		r := &c.p.req
		r.pend, r.pendH, r.pendOff, r.pendCut, r.pendLns = true, f.Header, off, true, 1
		r.pendVal = append(r.pendVal[:0], f.Value...)
		t.flushPend(c)
	}
}

// emitLine indexes the elements of one forwarding header value.
func (t *Tracker) emitLine(c *conn, h xff.Header, value []byte, off int64, cut bool) {
	r := &c.p.req
	// The request's list may be capped, but the line is whole (unless cut
	// is set): its elements are all read. A client that pads the block
	// with forwarding lines must not hide the line a proxy appends.
	r.addList(h, value)
	h.Elements(value, cut, func(elem []byte) {
		a, ok := xff.ParseAddr(elem)
		if ok {
			t.hit(c, off, a, h, r.pos[h])
		} else {
			t.cnt.NonAddr++
		}
		r.pos[h]++
	})
}

// hit records one address, once per record and header.
func (t *Tracker) hit(c *conn, off int64, a netip.Addr, h xff.Header, pos int) {
	if c.hitRec != off {
		c.hitRec, c.seen = off, c.seen[:0]
		t.cnt.HitPackets++
		if t.seen.c == c {
			t.seen.c = nil
		}
	}
	sa := seenAddr{a, h}
	if t.seenBefore(c, sa) {
		return
	}
	c.seen = append(c.seen, sa)
	t.out.Hits = append(t.out.Hits, Hit{Off: off, Addr: a, Header: h, Pos: pos, ConnStart: c.start, ConnSYN: c.startSYN, serial: c.serial})
	r := &c.p.req
	if n := len(r.hitRecs); (n == 0 || r.hitRecs[n-1] != off) && n < maxHitRecs && !slices.Contains(r.hitRecs, off) {
		r.hitRecs = append(r.hitRecs, off)
	}
}

// finishRequest ends the current request: what its records with hits need
// to be read back is recorded (now, or when the current record is done).
// complete says its header block was read to the end.
func (t *Tracker) finishRequest(c *conn, complete bool) {
	if c.p == nil || !c.p.req.on {
		return
	}
	r := &c.p.req
	if !complete {
		t.finishCarry(c)
	}
	t.flushPend(c)
	// The records of a request share one copy of its bytes (read only):
	// a copy each would cost up to maxHitRecs times xff.MaxValue bytes
	// per request, a request of small records each with a hit made that
	// tens of times its own size.
	var shared *RequestInfo
	for _, rec := range r.hitRecs {
		if rec == t.cur {
			// Whether this record needs it is known at its end; until
			// then the copy lives in a buffer reused from record to record.
			ri := t.info(r, rec, complete, &t.arena)
			ri.serial = c.serial
			t.here = append(t.here, ri)
			continue
		}
		var ri RequestInfo
		if shared == nil {
			ri = t.info(r, rec, complete, nil)
			shared = &ri
		} else {
			ri = *shared
			ri.Off, ri.First = rec, rec == r.firstRec
		}
		ri.serial = c.serial
		t.out.Requests = append(t.out.Requests, ri)
	}
	r.on = false
}

// info builds the request record of one of r's records, its bytes copied to
// the end of *arena, or to new memory when arena is nil.
func (t *Tracker) info(r *request, rec int64, complete bool, arena *[]byte) RequestInfo {
	cp := func(b []byte) []byte {
		if arena == nil {
			return bytes.Clone(b)
		}
		n := len(*arena)
		*arena = append(*arena, b...)
		return (*arena)[n:len(*arena):len(*arena)]
	}
	ri := RequestInfo{
		Off: rec, Seq: r.seq, First: rec == r.firstRec, Complete: complete, Listed: r.listed, Capped: r.capped,
		Method: cp(r.method), Target: cp(r.target), Host: cp(r.host),
	}
	for h := range r.lists {
		if r.listed.Has(xff.Header(h)) {
			ri.Lists[h] = cp(r.lists[h])
		}
	}
	return ri
}

// cloneInfo copies a request record out of the arena.
// All its byte strings share one new allocation; each keeps its own
// capacity, so that appending to one never writes into the next.
func cloneInfo(ri RequestInfo) RequestInfo {
	n := len(ri.Method) + len(ri.Target) + len(ri.Host)
	for _, l := range ri.Lists {
		n += len(l)
	}
	buf := make([]byte, 0, n)
	clone := func(b []byte) []byte {
		if b == nil {
			return nil
		}
		at := len(buf)
		buf = append(buf, b...)
		return buf[at:len(buf):len(buf)]
	}
	ri.Method, ri.Target, ri.Host = clone(ri.Method), clone(ri.Target), clone(ri.Host)
	for h := range ri.Lists {
		ri.Lists[h] = clone(ri.Lists[h])
	}
	return ri
}

// add carries the start of a line the end of a segment cut. Up to keep
// bytes of it are kept, but of a header line only while it may matter: its
// name is not known yet, or it is a forwarding header, Host,
// Content-Length or Transfer-Encoding.
func (l *carry) add(b []byte, off int64, keep int) {
	if !l.on {
		*l = carry{on: true, off: off, keep: true, buf: l.buf[:0]}
	}
	l.n += len(b)
	if !l.colon && bytes.IndexByte(b, ':') >= 0 {
		l.colon = true
	}
	if !l.keep {
		return
	}
	room := keep - len(l.buf)
	if room <= 0 {
		return
	}
	from := len(l.buf)
	l.buf = append(l.buf, b[:min(len(b), room)]...)
	if keep == carryKeepCap && !l.named {
		l.decide(from)
	}
}

// decide looks for the colon of a carried header line in its newly kept
// bytes, and stops keeping a line that cannot matter.
func (l *carry) decide(from int) {
	if len(l.buf) > 0 && (l.buf[0] == ' ' || l.buf[0] == '\t') {
		l.keep, l.fold = false, true // obs-fold: the line it folds was read already
		return
	}
	colon := bytes.IndexByte(l.buf[from:], ':')
	if colon < 0 {
		if len(l.buf) > maxNameScan {
			// A name longer than any header's: whether the line is a field
			// line at all (it has a colon) is all that can matter.
			l.named, l.keep = true, false
		}
		return
	}
	l.named = true
	f := xff.ParseField(l.buf[:from+colon+1])
	switch f.Kind {
	case xff.FieldForward, xff.FieldHost, xff.FieldLength, xff.FieldTransfer:
	default:
		l.keep = false
	}
}

// join returns the whole carried line with its rest; truncated when only a
// part of it was kept.
func (l *carry) join(rest []byte, keep int) ([]byte, bool) {
	if !l.keep {
		if !l.fold && !l.colon && bytes.IndexByte(rest, ':') < 0 {
			return []byte("\x00"), false // no colon: not a field line
		}
		return []byte("x:"), false // an uninteresting field
	}
	total := l.n + len(rest)
	l.buf = append(l.buf, rest[:min(len(rest), max(0, keep-len(l.buf)))]...)
	return l.buf, total > len(l.buf)
}

func (l *carry) reset() {
	*l = carry{buf: l.buf[:0]}
}
