package stream

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/xffidx/xffidx/format/xff"
)

// Finish ends the walk of one capture's records and returns the state to
// save with it, from which a walk of the same capture grown goes on
// (Resume).
//
// Connections silent for longer than their timeout at the capture's last
// timestamp are dropped first (their open header blocks counted as
// evicted), as a later packet would have found them. The state is taken
// then. After it, what is still open is finished provisionally, so that a
// capture that does not grow is indexed whole: a hole still open in a
// client stream is a gap (the segments held after it are read as after any
// gap), and an open request is finished as it stands (a forwarding line
// cut by the end of the capture gives its complete elements; its records
// are recorded with Complete false). The counts of that provisional part go
// with the state: a walk that resumes from it takes them back, since it
// reads what they counted again, whole.
func (t *Tracker) Finish() []byte {
	var old []*conn
	t.conns.each(func(c *conn) {
		if t.expired(c, t.maxTS) {
			old = append(old, c)
		}
	})
	for _, c := range old {
		t.drop(c, true)
	}
	conns := t.saveConns()
	before, hits := t.out.Counts, len(t.out.Hits)
	var open []*conn
	t.conns.each(func(c *conn) { open = append(open, c) })
	for _, c := range open {
		if len(c.held) > 0 {
			t.gap(c)
		}
	}
	for _, c := range open {
		t.finishRequest(c, false)
	}
	prov := t.out.Counts
	prov.sub(before)
	b := []byte{stateVersion}
	b = binary.AppendVarint(b, t.maxTS)
	b = appendCounts(b, prov)
	b = binary.AppendUvarint(b, uint64(len(t.out.Hits)-hits))
	return append(b, conns...)
}

// stateVersion is the first byte of a saved state. Version 2 (before a
// carried line kept whether it holds a colon) is read too.
const stateVersion = 3

// maxSavedConns bounds a saved state; the most recently active are kept.
const maxSavedConns = 1 << 18

// saveConns encodes the connections' state.
func (t *Tracker) saveConns() []byte {
	var b []byte
	n := 0
	t.conns.each(func(c *conn) {
		if n < maxSavedConns {
			n++
			b = appendConn(b, c)
		}
	})
	return b
}

// countFields lists a Counts' fields, for encoding them in order.
func (c *Counts) fields() []*int64 {
	return []*int64{&c.XFFLines, &c.OtherLines, &c.ContLines, &c.HitPackets, &c.NonAddr, &c.Requests, &c.Dups, &c.Early, &c.Gaps, &c.Evicted, &c.Overflow}
}

func (c *Counts) sub(o Counts) {
	of := o.fields()
	for i, f := range c.fields() {
		*f -= *of[i]
	}
}

func appendCounts(b []byte, c Counts) []byte {
	for _, f := range c.fields() {
		b = binary.AppendVarint(b, *f)
	}
	return b
}

func appendBytes(b, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

func appendConn(b []byte, c *conn) []byte {
	b = append(b, 1) // a connection follows
	for _, w := range [4]uint64{c.key.a[0], c.key.a[1], c.key.b[0], c.key.b[1]} {
		b = binary.BigEndian.AppendUint64(b, w)
	}
	b = binary.BigEndian.AppendUint32(b, c.key.ports)
	flags := byte(0)
	if c.closed {
		flags |= 1
	}
	if c.startSYN {
		flags |= 2
	}
	b = append(b, byte(c.client), c.mode, flags)
	b = binary.BigEndian.AppendUint32(b, c.next)
	b = binary.AppendVarint(b, c.lastTS)
	b = binary.AppendVarint(b, c.start)
	b = binary.AppendVarint(b, c.holdTS)
	b = binary.AppendUvarint(b, uint64(len(c.held)))
	for _, h := range c.held {
		b = binary.BigEndian.AppendUint32(b, h.seq)
		b = binary.BigEndian.AppendUint32(b, h.wire)
		b = binary.AppendVarint(b, h.off)
		b = binary.AppendVarint(b, h.ts)
		b = binary.AppendVarint(b, h.pos)
		b = append(b, h.flags)
		b = appendBytes(b, h.data)
	}
	b = binary.AppendVarint(b, c.remaining)
	b = append(b, c.skipCRLF)
	if c.p == nil {
		b = append(b, 0)
	} else {
		b = append(b, 1)
		b = appendParser(b, c.p)
	}
	b = binary.AppendVarint(b, c.hitRec)
	b = binary.AppendUvarint(b, uint64(len(c.seen)))
	for _, s := range c.seen {
		ab, _ := s.addr.MarshalBinary()
		b = appendBytes(b, ab)
		b = append(b, byte(s.h))
	}
	return b
}

func appendParser(b []byte, p *parser) []byte {
	l := &p.line
	lf := byte(0)
	for i, v := range []bool{l.on, l.keep, l.named, l.colon, l.fold} {
		if v {
			lf |= 1 << i
		}
	}
	b = append(b, lf)
	b = binary.AppendVarint(b, l.off)
	b = binary.AppendUvarint(b, uint64(l.n))
	b = appendBytes(b, l.buf)
	r := &p.req
	rf := byte(0)
	for i, v := range []bool{r.on, r.hostSet, r.chunked} {
		if v {
			rf |= 1 << i
		}
	}
	b = append(b, rf)
	b = binary.BigEndian.AppendUint32(b, r.seq)
	b = binary.AppendVarint(b, r.firstRec)
	b = appendBytes(b, r.method)
	b = appendBytes(b, r.target)
	b = appendBytes(b, r.host)
	b = binary.AppendVarint(b, r.cl)
	for h := range r.pos {
		b = binary.AppendUvarint(b, uint64(r.pos[h]))
		b = appendBytes(b, r.lists[h])
	}
	b = append(b, byte(r.listed), byte(r.capped))
	b = binary.AppendUvarint(b, uint64(len(r.hitRecs)))
	for _, o := range r.hitRecs {
		b = binary.AppendVarint(b, o)
	}
	return b
}

// errState is wrapped by every error of a saved state that does not decode.
var errState = errors.New("connection state does not decode")

type stateReader struct {
	b       []byte
	err     error
	version byte
}

func (r *stateReader) fail() {
	if r.err == nil {
		r.err = errState
	}
}

func (r *stateReader) bytes(n int) []byte {
	if r.err != nil || n < 0 || n > len(r.b) {
		r.fail()
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

func (r *stateReader) byte1() byte {
	if v := r.bytes(1); v != nil {
		return v[0]
	}
	return 0
}

func (r *stateReader) u32() uint32 {
	if v := r.bytes(4); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}

func (r *stateReader) varint() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *stateReader) uvarint(limit int) int {
	v, n := binary.Uvarint(r.b)
	if n <= 0 || v > uint64(limit) {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return int(v)
}

// blob reads a length-prefixed byte string of at most limit bytes, copied.
func (r *stateReader) blob(limit int) []byte {
	n := r.uvarint(limit)
	return append([]byte(nil), r.bytes(n)...)
}

// Resume loads a state returned by Finish. With sameCapture, the walk goes
// on over the same capture grown: the counts of what Finish did
// provisionally are taken back (made negative in the output), and
// provisionalHits says how many hits it recorded, which this walk records
// again. Otherwise the state is the previous capture's of a rotation: record
// offsets in it name that capture, so what refers to its records is let go
// (held segments, the records of open requests), and a line going on from
// it is recorded at the first record of this capture that carries it.
func (t *Tracker) Resume(state []byte, sameCapture bool) (provisionalHits int64, err error) {
	r := &stateReader{b: state}
	if r.version = r.byte1(); r.version != stateVersion && r.version != 2 {
		return 0, fmt.Errorf("%w: unknown version", errState)
	}
	t.maxTS = r.varint()
	var prov Counts
	for _, f := range prov.fields() {
		*f = r.varint()
	}
	provHits := int64(r.uvarint(1 << 62))
	for len(r.b) > 0 && r.err == nil {
		if r.byte1() != 1 {
			r.fail()
			break
		}
		c := readConn(r)
		if r.err != nil {
			break
		}
		if !sameCapture {
			c.held, c.heldSize, c.holdTS = nil, 0, 0
			c.start, c.startSYN, c.hitRec, c.seen = -1, false, -1, nil
			if p := c.p; p != nil {
				p.req.hitRecs, p.req.firstRec = nil, -1
				if p.line.on {
					p.line.off = -1
				}
			}
		}
		if t.live >= t.opt.MaxConns {
			break
		}
		t.put(c)
	}
	if r.err != nil {
		t.conns, t.held, t.live = table{}, 0, 0
		return 0, r.err
	}
	if !sameCapture {
		return 0, nil
	}
	t.out.Counts.sub(prov)
	return provHits, nil
}

func readConn(r *stateReader) *conn {
	c := &conn{}
	if v := r.bytes(36); v != nil {
		c.key.a = [2]uint64{binary.BigEndian.Uint64(v), binary.BigEndian.Uint64(v[8:])}
		c.key.b = [2]uint64{binary.BigEndian.Uint64(v[16:]), binary.BigEndian.Uint64(v[24:])}
		c.key.ports = binary.BigEndian.Uint32(v[32:])
	}
	c.client = int8(r.byte1())
	c.mode = r.byte1()
	cf := r.byte1()
	c.closed, c.startSYN = cf&1 != 0, cf&2 != 0
	if c.client < -1 || c.client > 1 || c.mode >= numModes {
		r.fail()
	}
	c.next = r.u32()
	c.lastTS, c.start, c.holdTS = r.varint(), r.varint(), r.varint()
	nh := r.uvarint(maxHeld)
	for range nh {
		h := heldSeg{seq: r.u32(), wire: r.u32(), off: r.varint(), ts: r.varint(), pos: r.varint(), flags: r.byte1()}
		h.data = r.blob(maxHeldBytes)
		c.heldSize += len(h.data)
		c.held = append(c.held, h)
	}
	if c.heldSize > maxHeldBytes {
		r.fail()
	}
	c.remaining = r.varint()
	c.skipCRLF = r.byte1()
	if r.byte1() == 1 {
		c.p = readParser(r)
	}
	c.hitRec = r.varint()
	ns := r.uvarint(1 << 16)
	for range ns {
		var a netip.Addr
		if err := a.UnmarshalBinary(r.blob(16)); err != nil {
			r.fail()
		}
		c.seen = append(c.seen, seenAddr{a, xff.Header(r.byte1())})
	}
	return c
}

func readParser(r *stateReader) *parser {
	p := &parser{}
	lf := r.byte1()
	p.line = carry{on: lf&1 != 0, keep: lf&2 != 0, named: lf&4 != 0}
	p.line.off = r.varint()
	p.line.n = r.uvarint(1 << 40)
	p.line.buf = r.blob(maxReqLine)
	if r.version >= 3 {
		p.line.colon, p.line.fold = lf&8 != 0, lf&16 != 0
	} else {
		// Version 2's bit 8 said a named line was malformed; a line it
		// stopped keeping otherwise read as a field line.
		l := &p.line
		l.fold = !l.keep && len(l.buf) > 0 && (l.buf[0] == ' ' || l.buf[0] == '\t')
		l.colon = l.named && lf&8 == 0
	}
	rq := &p.req
	rf := r.byte1()
	rq.on, rq.hostSet, rq.chunked = rf&1 != 0, rf&2 != 0, rf&4 != 0
	rq.seq = r.u32()
	rq.firstRec = r.varint()
	rq.method, rq.target, rq.host = r.blob(maxMethod), r.blob(maxTarget), r.blob(maxHost)
	rq.cl = r.varint()
	for h := range rq.pos {
		rq.pos[h] = r.uvarint(1 << 30)
		rq.lists[h] = r.blob(xff.MaxValue)
	}
	rq.listed, rq.capped = xff.HeaderSet(r.byte1()), xff.HeaderSet(r.byte1())
	n := r.uvarint(maxHitRecs)
	for range n {
		rq.hitRecs = append(rq.hitRecs, r.varint())
	}
	return p
}
