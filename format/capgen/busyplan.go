package capgen

import (
	"net/netip"
	"slices"
	"strconv"
)

// Forced segment ends (BusyConfig.SplitRate), counted in BusyTruth.splits.
const (
	spInName    = iota // inside a forwarding header name (or right before its colon)
	spColon            // right after the colon
	spInValue          // inside the value
	spCRLF             // between the CR and the LF ending the line
	spLineStart        // right before the line
	spFinalCRLF        // between the CR and the LF of the block's empty line
	numSplits
)

// Where a forwarding header line goes in its request's header block.
const (
	slotFirst  = iota // right after the request line
	slotMiddle        // among the other headers, before a Cookie
	slotAfter         // right after the Cookie (or where it would be)
	slotLast          // last line, as haproxy and nginx append X-Forwarded-For
)

type fwdSlot struct {
	hdr, slot uint8
}

type retxCopy struct {
	at int
	it bitem
}

var busyPaths = []string{
	"/", "/index.html", "/api/v1/items", "/api/v1/items/4711", "/api/v1/users/me", "/api/v2/orders?page=3",
	"/static/app.js", "/static/app.css", "/img/logo.png", "/search?q=forwarded+for", "/cart", "/checkout",
	"/login", "/graphql", "/healthz", "/feed.xml", "/download/report.pdf?id=42&fmt=pdf",
}

var bodyCTypes = []string{"application/json", "application/x-www-form-urlencoded", "text/plain", "application/octet-stream"}

// lookalikes are header names an exact indexer must not take for forwarding
// headers.
var lookalikes = []string{
	"X-Original-Forwarded-For", "X-Forwarded-Host", "X-Real-IPs", "X-Forwarded-For-Original",
	"Forwarded-For", "X-Forwarded", "X-Client-IP", "True-Client-IPv6",
}

// planBatch plans one or (PipelineRate) 2-3 requests written back to
// back, then their responses.
func (b *busy) planBatch(c *bconn) {
	r := &b.g.r
	c.exch++
	k := 1
	if c.nreq >= 2 && r.chance(b.pipeRate) {
		k = min(c.nreq, 2+r.intn(2))
		b.tr.piped++
	}
	c.nreq -= k
	c.maxSeg = -1
	xb := b.xb[:0]
	b.cuts, b.nocut = b.cuts[:0], b.nocut[:0]
	for range k {
		xb = b.request(c, xb)
	}
	b.xb = xb
	c.cbuf = append(b.getBuf(len(xb)), xb...)
	b.segment(c)
	for b.chunkAfterPDU(c) {
		c.segs = c.segs[:0]
		b.segment(c)
	}

	base := c.seq[0]
	c.base = base
	last := len(c.segs) - 1
	for si := range c.segs {
		s := &c.segs[si]
		fl := uint8(tcpACK)
		if si == last {
			fl |= tcpPSH
		}
		c.items = append(c.items, bitem{dir: 0, flags: fl, src: srcBuf, off: s.off, n: s.n,
			seq: base + uint32(s.off), ack: c.seq[1], seg: int32(si)})
		if si%2 == 1 || si == last {
			c.items = append(c.items, bitem{dir: 1, flags: tcpACK, seq: c.seq[1], ack: base + uint32(s.off+s.n), seg: -1})
		}
	}
	c.seq[0] += uint32(len(c.cbuf))
	b.perturb(c)
	b.responses(c, k)
	b.retransmit(c)
}

// segment cuts cbuf into segments of at most the MSS, ending also at the
// forced cuts, and assigns the lines to the segments they start in.
func (b *busy) segment(c *bconn) {
	slices.Sort(b.cuts)
	n, m := len(c.cbuf), int(c.p.mss)
	a, ci := 0, 0
	for a < n {
		for ci < len(b.cuts) && b.cuts[ci] <= a {
			ci++
		}
		e := min(a+m, n)
		if ci < len(b.cuts) && b.cuts[ci] < e {
			e = b.cuts[ci]
		} else {
			for e > a+1 && slices.Contains(b.nocut, e) {
				e-- // see nocut
			}
		}
		c.segs = append(c.segs, bseg{off: int32(a), n: int32(e - a)})
		a = e
	}
	li := 0
	for si := range c.segs {
		s := &c.segs[si]
		s.l0 = int32(li)
		for li < len(c.lines) && c.lines[li].start < s.off+s.n {
			li++
		}
		s.l1 = int32(li)
	}
	for ri := range c.reqs {
		rq := &c.reqs[ri]
		n := 0
		for si := range c.segs {
			if s := &c.segs[si]; s.off < rq.hdrEnd && s.off+s.n > rq.start {
				n++
			}
		}
		b.tr.maxHdr = max(b.tr.maxHdr, n)
	}
}

// chunkAfterPDU finds a pipelined request with a chunked body that starts
// inside a segment which ends a request begun in an earlier segment; it
// adds a cut so that the request starts its own segment, and reports
// whether it did. tshark 4.0 mishandles such a request when the same frame
// completes the reassembly of the one before: it dissects it at once as a
// "Malformed Packet" if its body goes on in later segments (its
// chunked-body check asks for "one more segment", which is lost there, and
// the rest of the body is then read as new requests), or only with the next
// segment if it ends with this one. Content-Length bodies and header
// blocks do not have the problem.
func (b *busy) chunkAfterPDU(c *bconn) bool {
	for ri := 1; ri < len(c.reqs); ri++ {
		rq := &c.reqs[ri]
		if !rq.chunked {
			continue
		}
		for si := range c.segs {
			s := &c.segs[si]
			if s.off > rq.start || s.off+s.n <= rq.start {
				continue
			}
			if s.off < rq.start {
				for pj := ri - 1; pj >= 0; pj-- {
					if p := &c.reqs[pj]; p.start <= s.off && p.end > s.off {
						if p.start < s.off {
							b.cuts = append(b.cuts, int(rq.start))
							return true
						}
						break
					}
				}
			}
			break
		}
	}
	return false
}

// itemOf returns the index in c.items of the first item of segment si.
func (c *bconn) itemOf(si int) int {
	for i := range c.items {
		if c.items[i].seg == int32(si) {
			return i
		}
	}
	return -1
}

// perturb applies gaps, reordering and back-to-back duplicates to the
// client data segments just planned. The first segment of a connection
// open before the capture is left alone: it marks where its flow starts.
func (b *busy) perturb(c *bconn) {
	r := &b.g.r
	first := c.pre && c.exch == 1
	nseg := len(c.segs)
	if b.gapRate > 0 {
		for si := range c.segs {
			if first && si == 0 || si > 0 && c.segs[si-1].gap || !r.chance(b.gapRate) {
				continue
			}
			c.segs[si].gap = true
			c.items[c.itemOf(si)].mode = imGhost
		}
	}
	if b.reorderRate > 0 {
		for si := 0; si < nseg-1; si++ {
			if first && si == 0 || !r.chance(b.reorderRate) {
				continue
			}
			d := min(1+r.intn(3), nseg-1-si)
			ok := true
			for j := si; j <= si+d; j++ {
				ok = ok && !c.segs[j].gap
			}
			// tshark 4.0 mishandles a chunked request in the segments
			// written ahead (see chunkAfterPDU): not those.
			lo, hi := c.segs[si+1].off, c.segs[si+d].off+c.segs[si+d].n
			for ri := range c.reqs {
				rq := &c.reqs[ri]
				ok = ok && !(rq.chunked && rq.start >= lo && rq.start < hi)
			}
			if !ok {
				continue
			}
			x, y := c.itemOf(si), c.itemOf(si+d)
			if x > y {
				continue
			}
			it := c.items[x]
			copy(c.items[x:y], c.items[x+1:y+1])
			c.items[y] = it
			si += d
		}
	}
	if b.dupRate > 0 {
		for i := range c.items {
			if it := &c.items[i]; it.seg >= 0 && it.mode == imNormal && r.chance(b.dupRate) {
				it.mode = imDup
			}
		}
	}
}

// retransmit adds later exact copies of client data segments: a few items
// later, or after everything else of the batch (the responses included).
func (b *busy) retransmit(c *bconn) {
	if b.retxRate <= 0 {
		return
	}
	r := &b.g.r
	b.retx = b.retx[:0]
	for i := range c.items {
		it := c.items[i]
		if it.seg < 0 || it.mode == imGhost || !r.chance(b.retxRate) {
			continue
		}
		at := len(c.items)
		if r.intn(2) == 0 {
			at = min(at, i+2+r.intn(4))
		}
		it.mode = imCopy
		b.retx = append(b.retx, retxCopy{at: at, it: it})
	}
	if len(b.retx) == 0 {
		return
	}
	slices.SortStableFunc(b.retx, func(x, y retxCopy) int { return x.at - y.at })
	out := b.spare[:0]
	j := 0
	for i := 0; i <= len(c.items); i++ {
		for j < len(b.retx) && b.retx[j].at == i {
			out = append(out, b.retx[j].it)
			j++
		}
		if i < len(c.items) {
			out = append(out, c.items[i])
		}
	}
	b.spare, c.items = c.items, out
}

// ---- requests ----------------------------------------------------------------

// token appends n random characters of [A-Za-z0-9_-].
func (b *busy) token(dst []byte, n int) []byte {
	const alpha = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	r := &b.g.r
	for n > 0 {
		x := r.u64()
		for k := 0; k < 10 && n > 0; k++ {
			dst = append(dst, alpha[x&63])
			x >>= 6
			n--
		}
	}
	return dst
}

// filler appends about n bytes of word-like text with spaces and line
// ends: no colons, nothing that looks like a header or a request line.
func (b *busy) filler(dst []byte, n int, eol string) []byte {
	r := &b.g.r
	end := len(dst) + n
	col := 0
	for len(dst) < end {
		w := min(2+r.intn(10), end-len(dst))
		dst = b.token(dst, w)
		col += w
		switch {
		case len(dst) >= end:
		case col > 60:
			dst = append(dst, eol...)
			col = 0
		default:
			dst = append(dst, ' ')
			col++
		}
	}
	return dst
}

func (b *busy) slot() uint8 {
	switch u := b.g.r.intn(100); {
	case u < 15:
		return slotFirst
	case u < 35:
		return slotMiddle
	case u < 55:
		return slotAfter
	}
	return slotLast
}

// request renders one request at the end of xb and records it in c.reqs
// and its forwarding lines in c.lines.
func (b *busy) request(c *bconn, xb []byte) []byte {
	r := &b.g.r
	eol := "\r\n"
	lf := r.chance(0.03)
	if lf {
		eol = "\n"
		b.tr.lfOnly++
	}
	ri := int16(len(c.reqs))
	c.reqs = append(c.reqs, breq{start: int32(len(xb)), l0: int32(len(c.lines))})
	hasBody := r.chance(b.bodyRate)
	chunked := hasBody && !lf && r.chance(b.chunkRate)
	method := "GET"
	if hasBody {
		method = [...]string{"POST", "POST", "POST", "PUT", "PATCH"}[r.intn(5)]
	} else if u := r.intn(20); u == 0 {
		method = "DELETE"
	} else if u == 1 {
		method = "OPTIONS"
	}
	target := busyPaths[r.intn(len(busyPaths))]
	v := 0
	if c.p.v6 {
		v = 1
	}
	host := b.host[v][c.p.backend][c.hostIdx]
	{
		rq := &c.reqs[ri]
		rq.method, rq.target, rq.host = method, target, host
	}

	// The forwarding lines and where they go.
	slots := b.slots[:0]
	if r.chance(b.fwdRate) {
		nx := 1
		if u := r.intn(100); u >= 95 {
			nx = 3
		} else if u >= 80 {
			nx = 2
		} else if u < 8 {
			nx = 0 // other headers only
		}
		for range nx {
			slots = append(slots, fwdSlot{hXFF, b.slot()})
		}
		if r.chance(0.25) {
			slots = append(slots, fwdSlot{hForwarded, b.slot()})
			if r.chance(0.1) {
				slots = append(slots, fwdSlot{hForwarded, b.slot()})
			}
		}
		if r.chance(0.3) {
			slots = append(slots, fwdSlot{hRealIP, b.slot()})
		}
		if r.chance(0.1) {
			slots = append(slots, fwdSlot{hTrueClient, b.slot()})
		}
		if r.chance(0.1) {
			slots = append(slots, fwdSlot{hCFConnecting, b.slot()})
		}
		if len(slots) == 0 {
			slots = append(slots, fwdSlot{hXFF, slotLast})
		}
	}
	b.slots = slots
	emitSlot := func(xb []byte, sl uint8) []byte {
		for _, s := range b.slots {
			if s.slot == sl {
				xb = b.fwdLine(c, xb, s.hdr, eol, ri)
			}
		}
		return xb
	}

	var body []byte
	fake := -1 // offset in body of request-like decoy text
	if hasBody {
		body, fake = b.body(c, b.sb[:0], lf)
		b.sb = body[:0]
	}

	xb = append(xb, method...)
	xb = append(xb, ' ')
	xb = append(xb, target...)
	xb = append(xb, " HTTP/1.1"...)
	xb = append(xb, eol...)
	xb = emitSlot(xb, slotFirst)
	xb = append(xb, "Host: "...)
	xb = append(xb, host...)
	xb = append(xb, eol...)
	xb = append(xb, "User-Agent: "...)
	xb = append(xb, userAgents[r.intn(len(userAgents))]...)
	xb = append(xb, eol...)
	xb = append(xb, "Accept: */*"...)
	xb = append(xb, eol...)
	if r.chance(b.decoyRate) {
		b.tr.Decoys++
		switch u := r.intn(len(lookalikes) + 2); {
		case u < len(lookalikes):
			xb = append(xb, lookalikes[u]...)
			xb = append(xb, ": "...)
			xb = r.decoyAddr().AppendTo(xb)
		case u == len(lookalikes):
			xb = append(xb, "Referer: http://shop.example/?X-Forwarded-For: "...)
			xb = r.decoyAddr().AppendTo(xb)
		default:
			xb = append(xb, "X-Debug: Forwarded: for="...)
			xb = r.decoyAddr().AppendTo(xb)
			xb = append(xb, "; X-Real-IP: "...)
			xb = r.decoyAddr().AppendTo(xb)
		}
		xb = append(xb, eol...)
	}
	xb = emitSlot(xb, slotMiddle)
	if r.chance(b.cookieRate) {
		b.tr.cookies++
		size := b.cookieMin + r.intn(b.cookieMax-b.cookieMin+1)
		xb = append(xb, "Cookie: "...)
		end := len(xb) + size
		for i := 0; len(xb) < end-4; i++ {
			if i > 0 {
				xb = append(xb, "; "...)
			}
			xb = append(xb, 'c')
			xb = strconv.AppendInt(xb, int64(i), 10)
			xb = append(xb, '=')
			xb = b.token(xb, max(1, min(16+r.intn(112), end-len(xb))))
		}
		xb = append(xb, eol...)
	}
	xb = emitSlot(xb, slotAfter)
	if hasBody {
		xb = append(xb, "Content-Type: "...)
		xb = append(xb, bodyCTypes[r.intn(len(bodyCTypes))]...)
		xb = append(xb, eol...)
		if chunked {
			xb = append(xb, "Transfer-Encoding: chunked"...)
		} else {
			xb = append(xb, "Content-Length: "...)
			xb = strconv.AppendInt(xb, int64(len(body)), 10)
		}
		xb = append(xb, eol...)
	}
	xb = append(xb, "Connection: keep-alive"...)
	xb = append(xb, eol...)
	xb = emitSlot(xb, slotLast)
	xb = append(xb, eol...)
	hdrEnd := len(xb)

	// The body, and where its request-like decoy text lands in xb.
	fakeAt := -1
	switch {
	case chunked:
		b.tr.chunked++
		rest := body
		pos := 0
		for len(rest) > 0 {
			n := len(rest)
			if n > 64 && r.intn(3) > 0 {
				n = 1 + r.intn(n-1)
				// Chunk data never ends in a CR nor starts with a LF,
				// see nocut.
				for n < len(rest) && (rest[n-1] == '\r' || rest[n] == '\n') {
					n++
				}
			}
			xb = strconv.AppendInt(xb, int64(n), 16)
			xb = append(xb, "\r\n"...)
			b.nocut = append(b.nocut, len(xb)-1)
			if fake >= pos && fake < pos+n {
				fakeAt = len(xb) + fake - pos
			}
			xb = append(xb, rest[:n]...)
			xb = append(xb, "\r\n"...)
			b.nocut = append(b.nocut, len(xb)-1)
			rest = rest[n:]
			pos += n
		}
		xb = append(xb, "0\r\n\r\n"...)
		b.nocut = append(b.nocut, len(xb)-3, len(xb)-1)
	case hasBody:
		if fake >= 0 {
			fakeAt = len(xb) + fake
		}
		xb = append(xb, body...)
	}
	rq := &c.reqs[ri]
	rq.hdrEnd, rq.end, rq.l1 = int32(hdrEnd), int32(len(xb)), int32(len(c.lines))
	rq.chunked = chunked
	if fakeAt >= 0 && r.intn(2) == 0 {
		// The decoy request text starts a segment.
		b.cuts = append(b.cuts, fakeAt)
		b.tr.fakeAt++
	}
	if rq.l1 > rq.l0 && r.chance(b.splitRate) {
		b.forcedSplit(c, rq, lf)
	}
	return xb
}

// forcedSplit ends a segment at a chosen place of a forwarding line of rq.
func (b *busy) forcedSplit(c *bconn, rq *breq, lf bool) {
	r := &b.g.r
	ln := &c.lines[int(rq.l0)+r.intn(int(rq.l1-rq.l0))]
	nameEnd := ln.start + int32(len(headerNames[ln.hdr]))
	kind := r.intn(numSplits)
	if lf && (kind == spCRLF || kind == spFinalCRLF) {
		kind = spInValue
	}
	if kind == spInValue && ln.vend-ln.vstart < 2 {
		kind = spColon
	}
	var cut int32
	switch kind {
	case spInName:
		cut = ln.start + 1 + int32(r.intn(int(nameEnd-ln.start)))
	case spColon:
		cut = nameEnd + 1
	case spInValue:
		cut = ln.vstart + 1 + int32(r.intn(int(ln.vend-ln.vstart-1)))
	case spCRLF:
		cut = ln.end - 1
	case spLineStart:
		cut = ln.start
	case spFinalCRLF:
		cut = rq.hdrEnd - 1
	}
	b.tr.splits[kind]++
	b.cuts = append(b.cuts, int(cut))
}

// fwdLine renders one forwarding header line of header h and records it.
func (b *busy) fwdLine(c *bconn, xb []byte, h uint8, eol string, ri int16) []byte {
	r := &b.g.r
	ln := bline{start: int32(len(xb)), hdr: h, req: ri, a0: int32(len(c.addrs))}
	name := headerNames[h]
	s := len(xb)
	xb = append(xb, name...)
	switch u := r.intn(100); {
	case u < 8:
		for i := s; i < len(xb); i++ {
			if xb[i] >= 'A' && xb[i] <= 'Z' {
				xb[i] += 'a' - 'A'
			}
		}
	case u < 11:
		for i := s; i < len(xb); i++ {
			if xb[i] >= 'a' && xb[i] <= 'z' {
				xb[i] -= 'a' - 'A'
			}
		}
	}
	xb = append(xb, ':')
	switch u := r.intn(100); {
	case u < 85:
		xb = append(xb, ' ')
	case u < 93:
	case u < 97:
		xb = append(xb, "  "...)
	default:
		xb = append(xb, '\t')
	}
	ln.vstart = int32(len(xb))
	switch h {
	case hXFF:
		n := 1
		switch u := r.intn(100); {
		case u >= 95:
			n = 4
		case u >= 85:
			n = 3
		case u >= 60:
			n = 2
		}
		for i := range n {
			if i > 0 {
				xb = append(xb, [...]string{", ", ", ", ", ", ",", " , "}[r.intn(5)]...)
			}
			a := r.clientAddr()
			if i > 0 {
				a = r.proxyAddr()
			}
			xb = b.xffElem(c, &ln, xb, a)
		}
	case hForwarded:
		n := 1
		if u := r.intn(100); u >= 90 {
			n = 3
		} else if u >= 65 {
			n = 2
		}
		for i := range n {
			if i > 0 {
				xb = append(xb, [...]string{", ", ","}[r.intn(2)]...)
			}
			a := r.clientAddr()
			if i > 0 {
				a = r.proxyAddr()
			}
			xb = b.fwdElem(c, &ln, xb, a)
		}
	default:
		a := r.clientAddr()
		switch u := r.intn(100); {
		case u < 90:
			xb = a.AppendTo(xb)
			c.addrs = append(c.addrs, a)
		case u < 95 && a.Is4():
			xb = appendElem(xb, &elemSpec{kind: ekPort, addr: a, port: uint16(1024 + r.intn(60000))})
			c.addrs = append(c.addrs, a)
		default:
			xb = append(xb, "unknown"...)
			ln.nonAddr++
		}
	}
	ln.vend = int32(len(xb))
	if r.chance(0.03) {
		xb = append(xb, [...]string{" ", "\t", " \t "}[r.intn(3)]...)
	}
	xb = append(xb, eol...)
	ln.end = int32(len(xb))
	ln.a1 = int32(len(c.addrs))
	c.lines = append(c.lines, ln)
	c.reqs[ri].lines[h]++
	return xb
}

// xffElem appends one X-Forwarded-For element for address a (or, rarely,
// a non-address) in one of several spellings, and records it.
func (b *busy) xffElem(c *bconn, ln *bline, xb []byte, a netip.Addr) []byte {
	r := &b.g.r
	e := elemSpec{kind: ekPlain, addr: a}
	switch u := r.intn(100); {
	case u < 78:
	case u < 84:
		e.kind, e.port = ekPort, uint16(1024+r.intn(60000))
	case u < 87:
		if a.Is6() {
			e.kind = ekPort // "[a]"
		}
	case u < 90:
		if a.Is6() {
			e.kind = ekV6UpperShort
		}
	case u < 93:
		if a.Is4() {
			e.kind = ekMapped // "::ffff:a.b.c.d"
		}
	default:
		ln.nonAddr++
		return append(xb, [...]string{"unknown", "_hidden", "_gw7"}[r.intn(3)]...)
	}
	c.addrs = append(c.addrs, a)
	return appendElem(xb, &e)
}

// fwdElem appends one RFC 7239 Forwarded element whose for= node is a (or
// not an address), and records it.
func (b *busy) fwdElem(c *bconn, ln *bline, xb []byte, a netip.Addr) []byte {
	r := &b.g.r
	node := func(xb []byte, port []byte) []byte {
		if a.Is4() && len(port) == 0 {
			return a.AppendTo(xb)
		}
		xb = append(xb, '"')
		if a.Is6() {
			xb = append(xb, '[')
			xb = a.AppendTo(xb)
			xb = append(xb, ']')
		} else {
			xb = a.AppendTo(xb)
		}
		xb = append(xb, port...)
		return append(xb, '"')
	}
	switch u := r.intn(100); {
	case u < 40:
		xb = append(xb, "for="...)
		xb = node(xb, nil)
	case u < 55:
		xb = append(xb, "for="...)
		var port [8]byte
		xb = node(xb, strconv.AppendInt(append(port[:0], ':'), int64(1024+r.intn(60000)), 10))
	case u < 65:
		xb = append(xb, [...]string{"by=10.0.0.2;for=", "by=\"[fd00::2]\";For="}[r.intn(2)]...)
		xb = node(xb, nil)
	case u < 75:
		xb = append(xb, "for="...)
		xb = node(xb, nil)
		xb = append(xb, [...]string{";proto=http", ";proto=https;host=shop.example", ";by=10.0.0.2"}[r.intn(3)]...)
	case u < 82:
		ln.nonAddr++
		return append(xb, "for=unknown;proto=https"...)
	case u < 88:
		ln.nonAddr++
		return append(xb, [...]string{"for=_hidden", "for=\"_hidden\"", "for=_Kx9;proto=http"}[r.intn(3)]...)
	case u < 93:
		xb = append(xb, "for="...)
		xb = node(xb, []byte(":_hidden"))
	default:
		ln.nonAddr++
		return append(xb, "proto=https;by=10.0.0.2"...)
	}
	c.addrs = append(c.addrs, a)
	return xb
}

// body renders a request body into dst and returns it with the offset of
// request-like decoy text in it (-1 if none).
func (b *busy) body(c *bconn, dst []byte, lf bool) ([]byte, int) {
	r := &b.g.r
	eol := "\r\n"
	if lf {
		eol = "\n"
	}
	size := 20 + r.intn(1500)
	if r.intn(5) == 0 {
		size = 1500 + r.intn(4500)
	}
	fake := -1
	if !r.chance(b.decoyRate) {
		return b.filler(dst, size, eol), fake
	}
	b.tr.Decoys++
	switch r.intn(4) {
	case 0: // an echo of a request's headers, as JSON
		dst = append(dst, `{"headers":{"X-Forwarded-For":"`...)
		dst = r.decoyAddr().AppendTo(dst)
		dst = append(dst, ", "...)
		dst = r.decoyAddr().AppendTo(dst)
		dst = append(dst, `","X-Real-IP":"`...)
		dst = r.decoyAddr().AppendTo(dst)
		dst = append(dst, `"},"note":"`...)
		dst = b.filler(dst, size, " ")
		dst = append(dst, `"}`...)
	case 1: // an uploaded log with header lines at line starts
		dst = b.filler(dst, size/2, eol)
		dst = append(dst, eol...)
		dst = append(dst, "X-Forwarded-For: "...)
		dst = r.decoyAddr().AppendTo(dst)
		dst = append(dst, eol...)
		dst = append(dst, "Forwarded: for="...)
		dst = r.decoyAddr().AppendTo(dst)
		dst = append(dst, ";proto=http"...)
		dst = append(dst, eol...)
		dst = append(dst, "CF-Connecting-IP: "...)
		dst = r.decoyAddr().AppendTo(dst)
		dst = append(dst, eol...)
		dst = b.filler(dst, size/2, eol)
	default: // a whole request, at the start of the body or inside it
		if r.intn(2) == 0 {
			dst = b.filler(dst, size/2, eol)
			dst = append(dst, eol...)
		}
		fake = len(dst)
		dst = append(dst, "GET / HTTP/1.1\r\nHost: decoy.example\r\nX-Forwarded-For: "...)
		dst = r.decoyAddr().AppendTo(dst)
		dst = append(dst, "\r\nX-Real-IP: "...)
		dst = r.decoyAddr().AppendTo(dst)
		dst = append(dst, "\r\nForwarded: for="...)
		dst = r.decoyAddr().AppendTo(dst)
		dst = append(dst, "\r\n\r\n"...)
		dst = b.filler(dst, size/2, eol)
	}
	return dst, fake
}

// ---- responses ---------------------------------------------------------------

// responses plans the responses to the k requests of the batch (server
// segments and the proxy's ACKs).
func (b *busy) responses(c *bconn, k int) {
	r := &b.g.r
	g := b.g
	sb := b.sb[:0]
	type part struct {
		hs, he  int // in sb: header (and text body, or the first bytes of a binary body)
		poolLen int // binary body bytes after sb[hs:he], from the pool
	}
	var parts [3]part
	m := int(c.p.mss)
	for i := range k {
		hs := len(sb)
		switch u := r.intn(20); {
		case u == 0:
			sb = append(sb, "HTTP/1.1 404 Not Found\r\n"...)
		case u == 1:
			sb = append(sb, "HTTP/1.1 302 Found\r\nLocation: /login\r\n"...)
		default:
			sb = append(sb, "HTTP/1.1 200 OK\r\n"...)
		}
		sb = append(sb, "Server: backend/1.4\r\nDate: Thu, 01 Jan 2026 00:00:00 GMT\r\n"...)
		if r.chance(b.decoyRate / 2) {
			// Proxies' echo of the request header, in a response: not a request.
			b.tr.Decoys++
			sb = append(sb, "X-Forwarded-For: "...)
			sb = r.decoyAddr().AppendTo(sb)
			sb = append(sb, "\r\nX-Real-IP: "...)
			sb = r.decoyAddr().AppendTo(sb)
			sb = append(sb, "\r\n"...)
		}
		if r.intn(5) < 2 {
			// A text body.
			sb = append(sb, "Content-Type: text/html\r\nContent-Length: "...)
			var body []byte
			if r.chance(b.decoyRate) {
				b.tr.Decoys++
				body = append(b.tb[:0], "<html><body><pre>\r\nGET / HTTP/1.1\r\nX-Forwarded-For: "...)
				body = r.decoyAddr().AppendTo(body)
				body = append(body, "\r\nForwarded: for="...)
				body = r.decoyAddr().AppendTo(body)
				body = append(body, "\r\n\r\n</pre>"...)
			} else {
				body = append(b.tb[:0], "<html><body><p>"...)
			}
			body = b.filler(body, 100+r.intn(2500), "\r\n")
			body = append(body, "</p></body></html>\r\n"...)
			b.tb = body
			sb = strconv.AppendInt(sb, int64(len(body)), 10)
			sb = append(sb, "\r\n\r\n"...)
			sb = append(sb, body...)
			parts[i] = part{hs: hs, he: len(sb)}
			continue
		}
		n := 100 + r.intn(1300)
		switch u := r.intn(10); {
		case u >= 9:
			n = (5+r.intn(16))*m - r.intn(m)
		case u >= 5:
			n = (1+r.intn(4))*m - r.intn(m)
		}
		sb = append(sb, "Content-Type: application/octet-stream\r\nContent-Length: "...)
		sb = strconv.AppendInt(sb, int64(n), 10)
		sb = append(sb, "\r\n\r\n"...)
		k0 := min(n, max(0, m-(len(sb)-hs)))
		o := g.poolOff(k0)
		sb = append(sb, g.pool[o:o+k0]...)
		parts[i] = part{hs: hs, he: len(sb), poolLen: n - k0}
	}
	b.sb = sb
	c.sbuf = append(b.getBuf(len(sb)), sb...)
	cli := c.seq[0]
	for i := range k {
		p := parts[i]
		nseg := 0
		add := func(it bitem) {
			c.items = append(c.items, it)
			c.seq[1] += uint32(it.n)
			nseg++
			if nseg%2 == 0 {
				c.items = append(c.items, bitem{dir: 0, flags: tcpACK, seq: cli, ack: c.seq[1], seg: -1})
			}
		}
		for a := p.hs; a < p.he; a += m {
			n := min(m, p.he-a)
			add(bitem{dir: 1, flags: tcpACK, src: srcBuf, off: int32(a), n: int32(n), seq: c.seq[1], ack: cli, seg: -1})
		}
		for rem := p.poolLen; rem > 0; {
			n := min(m, rem)
			add(bitem{dir: 1, flags: tcpACK, src: srcPool, off: int32(g.poolOff(n)), n: int32(n), seq: c.seq[1], ack: cli, seg: -1})
			rem -= n
		}
		last := len(c.items) - 1
		if nseg%2 == 0 {
			last--
		}
		c.items[last].flags |= tcpPSH
		if nseg%2 == 1 {
			c.items = append(c.items, bitem{dir: 0, flags: tcpACK, seq: cli, ack: c.seq[1], seg: -1})
		}
	}
}

// ---- buffers -------------------------------------------------------------------

// Batch buffers come in size classes (512 bytes << class) and are reused,
// so that memory follows the batches in flight, not the capture's size.
func classOf(n int) int {
	cl := 0
	for 512<<cl < n && cl < numBufClasses-1 {
		cl++
	}
	return cl
}

func (b *busy) getBuf(n int) []byte {
	cl := classOf(n)
	if 512<<cl < n {
		return make([]byte, 0, n)
	}
	if l := len(b.bufs[cl]); l > 0 {
		buf := b.bufs[cl][l-1]
		b.bufs[cl] = b.bufs[cl][:l-1]
		return buf[:0]
	}
	return make([]byte, 0, 512<<cl)
}

func (b *busy) putBuf(buf []byte) {
	if cap(buf) == 0 {
		return
	}
	if cl := classOf(cap(buf)); 512<<cl == cap(buf) {
		b.bufs[cl] = append(b.bufs[cl], buf[:0])
	}
}
