package stream

import (
	"slices"

	"github.com/xffidx/xffidx/format/xff"
)

// seqLT compares sequence numbers modulo 2^32.
func seqLT(a, b uint32) bool { return int32(a-b) < 0 }
func seqLE(a, b uint32) bool { return int32(a-b) <= 0 }

// serverSide settles a segment that is the server's side of a followed
// connection, and carries no SYN, FIN or RST: it changes nothing (not even
// the connection's clock, which only its client side moves).
func (t *Tracker) serverSide(key *connKey, h uint64, dir, flags uint8, ts int64) bool {
	if flags&(flagSYN|flagFIN|flagRST) != 0 || t.conns.n == 0 {
		return false
	}
	sl := t.conns.find(key, h)
	if sl == nil || sl.client < 0 || dir == uint8(sl.client) {
		return false
	}
	t.maxTS = max(t.maxTS, ts)
	return true
}

// setClient records c's client side in its slot.
func (t *Tracker) setClient(c *conn) {
	if sl := t.conns.find(&c.key, c.key.hash()); sl != nil {
		sl.client = c.client
	}
}

// handle follows one segment of connection key. A logging tracker logs
// every segment that reaches it (all but the server's side of a followed
// connection, which changes nothing for a state that agrees on the client
// side), and what each connection's segments added to the counts.
func (t *Tracker) handle(key connKey, s *segment) {
	h := key.hash()
	if t.serverSide(&key, h, s.dir, s.flags, s.ts) {
		return
	}
	t.handleChecked(&key, h, s)
}

// handleChecked is handle for a segment serverSide has ruled on.
func (t *Tracker) handleChecked(key *connKey, h uint64, s *segment) {
	if !t.opt.Log {
		t.follow(key, h, s)
		return
	}
	id := t.slotHashed(key, h).id
	t.logged = t.log.add(id, s)
	// What the connection's segments count goes to its own counts (the
	// key has its slot: nothing appends to them meanwhile).
	t.cnt = &t.log.counts[id]
	t.follow(key, h, s)
	t.cnt = &t.out.Counts
}

// follow is handle for a segment that may change the connection's state.
func (t *Tracker) follow(key *connKey, h uint64, s *segment) {
	if s.ts > t.maxTS {
		t.maxTS = s.ts
	}
	c := t.lookupHashed(key, h, s.ts)
	if c == nil {
		syn := s.flags&(flagSYN|flagACK) == flagSYN
		if !syn && !t.startsRequest(s) {
			return
		}
		c = t.add(key)
	}
	if s.ts != 0 {
		c.lastTS = s.ts
	}
	if t.opt.Log && !c.anchor.set {
		// Everything before this segment was logged: the tracker takes the
		// connection up here, from no state.
		c.anchor = anchorInfo{set: true, serial: c.serial, seq: s.seq, wire: s.wire, dir: s.dir, ts: s.ts, syn: s.flags&(flagSYN|flagACK) == flagSYN, logLen: t.logged}
	}
	switch {
	case s.flags&(flagSYN|flagACK) == flagSYN:
		// A new connection (perhaps on a port an old one used).
		t.finishRequest(c, false)
		t.release(c)
		c.client, c.mode, c.closed, c.next = int8(s.dir), modeIdle, false, s.seq+1
		c.start, c.startSYN = s.off, true
		t.setClient(c)
		return
	case c.client < 0:
		// Taken up at a request line.
		c.client, c.mode, c.next, c.start, c.startSYN = int8(s.dir), modeIdle, s.seq, s.off, false
		t.setClient(c)
	case s.dir != uint8(c.client):
		// The server's side: never a request.
		if s.flags&flagRST != 0 {
			t.close(c)
		}
		return
	}
	if c.mode == modeDead {
		t.dead(c, s)
		return
	}
	t.inOrder(c, s)
}

// startsRequest reports whether s's payload starts with a request line.
func (t *Tracker) startsRequest(s *segment) bool {
	if s.n < 16 {
		return false
	}
	p := t.payload(s)
	if len(p) == 0 {
		return false
	}
	// Most payloads are decided by their first byte.
	if c := p[0]; !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c == '\r' || c == '\n') {
		return false
	}
	i := xff.SkipEmptyLines(p)
	n, _, _ := xff.RequestLine(p[i:])
	return n > 0
}

// dead handles a client segment of a connection that is not being
// followed: it is taken up again at a segment that starts with a request
// line and is not wholly a retransmission of what was seen (one that
// overlaps junk read before, such as trailer bytes counted as payload, is
// read from its start).
func (t *Tracker) dead(c *conn, s *segment) {
	end := s.seq + s.wire
	if s.n > 0 && seqLE(end, c.next) {
		t.cnt.Dups++
		return
	}
	if s.flags&flagRST != 0 {
		t.close(c)
		return
	}
	if !c.closed && t.startsRequest(s) {
		c.mode, c.next = modeIdle, s.seq
		t.inOrder(c, s)
		return
	}
	if seqLT(c.next, end) {
		c.next = end
	}
	if s.flags&flagFIN != 0 {
		t.close(c)
	}
}

// inOrder places a client segment of a followed connection in sequence.
func (t *Tracker) inOrder(c *conn, s *segment) {
	if t.expiredHold(c, s.ts) {
		t.gap(c)
		if c.mode == modeDead {
			t.dead(c, s)
			return
		}
	}
	d := int32(s.seq - c.next)
	switch {
	case d == 0:
		t.consume(c, s, 0)
		t.drainHeld(c)
	case d < 0:
		if int32(s.seq+s.wire-c.next) <= 0 {
			if s.flags&flagRST != 0 {
				t.close(c)
			} else if s.wire > 0 {
				t.cnt.Dups++
			}
			return
		}
		// Partly new: a retransmission that carries more than the original.
		t.consume(c, s, uint32(-d))
		t.drainHeld(c)
	case s.flags&flagRST != 0:
		// The connection is gone: the hole before it will not fill.
		t.gap(c)
		t.close(c)
	default:
		t.hold(c, s)
	}
}

// hold keeps a segment that came before its predecessor.
func (t *Tracker) hold(c *conn, s *segment) {
	for _, h := range c.held {
		if h.seq == s.seq && h.wire == s.wire {
			t.cnt.Dups++
			return
		}
	}
	p := t.payload(s)
	if len(c.held) >= maxHeld || c.heldSize+len(p) > maxHeldBytes || t.held+len(p) > holdBudget {
		if t.held+len(p) > holdBudget {
			t.cnt.Overflow++
		}
		// No room: the hole is a gap. The segment itself is then handled
		// after the held ones, in sequence order.
		t.gap(c)
		if c.mode == modeDead {
			t.dead(c, s)
		} else {
			t.inOrder(c, s)
		}
		return
	}
	if len(c.held) == 0 {
		c.holdTS = s.ts
	}
	t.cnt.Early++
	h := heldSeg{seq: s.seq, wire: s.wire, off: s.off, ts: s.ts, pos: s.pos, flags: s.flags, data: append([]byte(nil), p...)}
	i, _ := slices.BinarySearchFunc(c.held, h, func(a, b heldSeg) int { return int(int32(a.seq - b.seq)) })
	c.held = slices.Insert(c.held, i, h)
	c.heldSize += len(p)
	t.held += len(p)
}

// expiredHold reports whether c's hole has stayed open too long at ts.
func (t *Tracker) expiredHold(c *conn, ts int64) bool {
	return len(c.held) > 0 && ts != 0 && c.holdTS != 0 && ts-c.holdTS > holdTimeout
}

// drainHeld consumes held segments that are now in order.
func (t *Tracker) drainHeld(c *conn) {
	for len(c.held) > 0 && c.mode != modeDead && c.mode != modeAbsent {
		h := c.held[0]
		if seqLT(c.next, h.seq) {
			return
		}
		c.held = c.held[1:]
		c.heldSize -= len(h.data)
		t.held -= len(h.data)
		if len(c.held) == 0 {
			c.held = nil
		}
		s := &segment{off: h.off, ts: h.ts, pos: h.pos, seq: h.seq, n: uint32(len(h.data)), wire: h.wire, flags: h.flags, dir: uint8(c.client), data: h.data}
		if int32(s.seq+s.wire-c.next) <= 0 {
			t.cnt.Dups++
			continue
		}
		t.consume(c, s, c.next-s.seq)
	}
}

// gap gives up on the hole before c's held segments: the request it cuts is
// finished with what was read, and the held segments are handled again as
// if they came now, from no request state.
func (t *Tracker) gap(c *conn) {
	if len(c.held) == 0 {
		return
	}
	held := c.held
	t.release(c)
	first := held[0]
	if c.mode == modeBody && !seqLT(first.seq, c.next) && int64(first.seq-c.next) < c.remaining {
		// The hole is inside a body of known length: nothing is lost.
		c.remaining -= int64(first.seq - c.next)
		c.next = first.seq
	} else {
		t.cnt.Gaps++
		t.finishRequest(c, false)
		c.mode = modeDead
		if c.p != nil {
			c.p.line.reset()
		}
		c.next = first.seq
	}
	for i := range held {
		h := &held[i]
		s := &segment{off: h.off, ts: h.ts, pos: h.pos, seq: h.seq, n: uint32(len(h.data)), wire: h.wire, flags: h.flags, dir: uint8(c.client), data: h.data}
		if c.mode == modeDead {
			t.dead(c, s)
		} else {
			t.inOrder(c, s)
		}
	}
}

// close ends a connection on FIN or RST: an open request is finished as it
// stands, and the connection is remembered briefly for retransmissions.
func (t *Tracker) close(c *conn) {
	t.finishRequest(c, false)
	t.release(c)
	c.mode, c.closed = modeDead, true
	if c.p != nil {
		c.p.line.reset()
	}
	t.idleParser(c)
}
