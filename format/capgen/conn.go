package capgen

import (
	"math"
	"net/netip"
	"strconv"
	"strings"
)

// A conn is one planned TCP connection: its segments are decided when it
// is opened and written one at a time, interleaved with other connections.
type conn struct {
	kind    scenKind
	round   int
	iface   int
	tun     tunKind
	v6      bool
	backend int
	cli     netip.AddrPort // the proxy side
	srv     netip.AddrPort
	mac     [6]byte
	tunPort uint16
	vni     uint32
	capPay  int    // TCP payload bytes the snap length keeps
	mss     uint16 // MSS option of SYNs; 0 means the mss constant
	counted int    // segments already added to gen.planPk

	buf   []byte // payload bytes of srcBuf segments
	segs  []seg
	next  int
	seq   [2]uint32
	ipid  [4]uint16
	lines []xline // request XFF lines, in stream order
	elems []xelem
	hits  []hitPlan
}

type seg struct {
	dir   uint8 // 0 proxy→backend, 1 backend→proxy
	flags uint8
	src   uint8
	cont  bool // a later segment of a proxy→backend message
	off   int32
	n     int32
	hit   int32 // index into conn.hits, or -1

	tsDecoy bool // tshark shows decoy XFF values in this segment
}

const (
	srcNone = iota
	srcBuf
	srcPool
)

// xline is an XFF header line rendered into conn.buf (absolute offsets).
type xline struct {
	start  int32 // first byte of the header name
	colon  int32 // just after ':'
	vstart int32 // value, trimmed
	vend   int32
	end    int32 // just after CRLF
	e0, e1 int32 // its elements in conn.elems
}

type xelem struct {
	start int32
	comma int32      // offset of the comma that ends it, -1 for the last
	addr  netip.Addr // canonical address, invalid when not an address
}

type hitPlan struct {
	addrs   []netip.Addr
	raw     []string
	nonAddr int
	note    uint8
}

func (c *conn) payload(s *seg, pool []byte) []byte {
	switch s.src {
	case srcBuf:
		return c.buf[s.off : s.off+s.n]
	case srcPool:
		return pool[s.off : s.off+s.n]
	}
	return nil
}

func (g *gen) newConn() *conn {
	var c *conn
	if n := len(g.free); n > 0 {
		c = g.free[n-1]
		g.free = g.free[:n-1]
	} else {
		c = new(conn)
	}
	c.buf, c.segs, c.lines, c.elems, c.hits = c.buf[:0], c.segs[:0], c.lines[:0], c.elems[:0], c.hits[:0]
	c.next, c.counted, c.round = 0, 0, 0
	c.iface = 0
	if len(g.ifaces) > 1 {
		c.iface = g.r.intn(len(g.ifaces))
	}
	c.v6 = g.cfg.IPv6Transport && g.r.chance(0.3)
	c.tun = tunNone
	if g.cfg.Tunnels && g.r.chance(0.3) {
		c.tun = tunKind(1 + g.r.intn(int(numTun)-1))
	}
	c.backend = g.r.intn(numBackends)
	c.mac = macBackend
	c.mac[5] = byte(1 + c.backend)
	c.tunPort = uint16(49152 + g.r.intn(16384))
	c.vni = uint32(1 + g.r.intn(1<<24-1))
	x := g.r.u64()
	c.seq = [2]uint32{uint32(x), uint32(x >> 32)}
	x = g.r.u64()
	c.ipid = [4]uint16{uint16(x), uint16(x >> 16), uint16(x >> 32), uint16(x >> 48)}
	port := g.nextPort
	g.nextPort++
	if g.nextPort > 60999 {
		g.nextPort = 32768
	}
	g.setPath(c, c.tun, c.v6, port)
	return c
}

func (g *gen) setPath(c *conn, tun tunKind, v6 bool, cport uint16) {
	c.tun, c.v6 = tun, v6
	p := proxy4
	if v6 {
		p = proxy6
	}
	c.cli = netip.AddrPortFrom(p, cport)
	c.capPay = g.snap - g.dataHdrLen(c)
}

func (g *gen) setServer(c *conn, port uint16) {
	c.srv = netip.AddrPortFrom(backendAddr(c.v6, c.backend), port)
}

func (g *gen) host(c *conn) string {
	v, p := 0, 0
	if c.v6 {
		v = 1
	}
	if c.srv.Port() == 80 {
		p = 1
	}
	return g.hostStr[v][c.backend][p]
}

func (g *gen) addSeg(c *conn, dir, flags, src uint8, off, n int, cont bool) {
	c.segs = append(c.segs, seg{dir: dir, flags: flags, src: src, cont: cont, off: int32(off), n: int32(n), hit: -1})
}

// commit adds c's new segments to the planned packet count.
func (g *gen) commit(c *conn) {
	g.planPk += float64(len(c.segs) - c.counted)
	c.counted = len(c.segs)
}

// wantXFF is the rate controller: a request carries XFF while the planned
// XFF packets lag behind XFFRate of all planned packets.
func (g *gen) wantXFF(c *conn) bool {
	g.commit(c)
	return g.rate > 0 && g.planXFF < g.rate*g.planPk
}

func (g *gen) drawSegs() int {
	u := g.r.float()
	n := 1 + int(-math.Log(1-u)*(g.meanSegs-1))
	return min(n, 2000)
}

func (g *gen) poolOff(n int) int {
	return g.r.intn((poolSize-n)/64+1) * 64
}

// open plans a new connection: the next variant scenario when one is due
// (they are spread over TargetBytes), otherwise bulk HTTP or TLS.
func (g *gen) open() *conn {
	c := g.newConn()
	kind := kBulk
	if g.scenNext < len(g.scen) {
		due := int64(float64(g.cfg.TargetBytes) * float64(g.scenNext) / float64(len(g.scen)+1))
		if g.n >= due {
			kind = g.scen[g.scenNext]
			g.scenNext++
		}
	}
	if kind == kBulk && g.r.chance(0.1) {
		kind = kTLS
	}
	g.plan(c, kind)
	return c
}

func (g *gen) handshake(c *conn) {
	g.addSeg(c, 0, tcpSYN, srcNone, 0, 0, false)
	g.addSeg(c, 1, tcpSYN|tcpACK, srcNone, 0, 0, false)
	g.addSeg(c, 0, tcpACK, srcNone, 0, 0, false)
}

func (g *gen) closeConn(c *conn) {
	g.addSeg(c, 0, tcpFIN|tcpACK, srcNone, 0, 0, false)
	g.addSeg(c, 1, tcpFIN|tcpACK, srcNone, 0, 0, false)
	g.addSeg(c, 0, tcpACK, srcNone, 0, 0, false)
}

// addMsg splits buf[start:end) into segments of direction dir: at the
// explicit cut offsets (absolute, -1 for none) and so that no segment is
// longer than the MSS. A cut made for the MSS inside a text body (from
// body on; body < 0 for none) goes to a tsharkSafe offset.
func (g *gen) addMsg(c *conn, dir uint8, start, end, body int, cuts [2]int) {
	if cuts[0] > cuts[1] {
		cuts[0], cuts[1] = cuts[1], cuts[0]
	}
	a := start
	first := true
	ci := 0
	for a < end {
		for ci < 2 && cuts[ci] <= a {
			ci++
		}
		b := end
		if ci < 2 && cuts[ci] < end {
			b = cuts[ci]
		}
		if b-a > mss {
			b = a + mss
			if body >= 0 && b > body {
				lo := max(a+1, body+1)
				for p := b; p >= lo; p-- {
					if tsharkSafe(c.buf[:end], p) {
						b = p
						break
					}
				}
			}
		}
		fl := uint8(tcpACK)
		if b == end {
			fl |= tcpPSH
		}
		g.addSeg(c, dir, fl, srcBuf, a, b-a, dir == 0 && !first)
		first = false
		a = b
	}
}

// tsharkSafe reports whether a segment may start at buf[p] without
// Wireshark's HTTP dissector taking it for the start of a message or for
// header lines: p is inside a token of digits, dots and lower-case hex
// letters, and the rest of its line holds no colon. (Wireshark parses a
// continuation segment as header lines when its first line contains a
// colon or is empty.)
func tsharkSafe(buf []byte, p int) bool {
	if p <= 0 || p >= len(buf) || !tokenByte(buf[p-1]) || !tokenByte(buf[p]) {
		return false
	}
	for _, ch := range buf[p:] {
		switch ch {
		case ':':
			return false
		case '\r', '\n':
			return true
		}
	}
	return true
}

func tokenByte(ch byte) bool {
	return ch >= '0' && ch <= '9' || ch >= 'a' && ch <= 'f' || ch == '.'
}

// markDecoy flags the segment of c starting at buf offset pos as one where
// tshark shows decoy XFF values.
func (c *conn) markDecoy(pos int) {
	for i := range c.segs {
		if s := &c.segs[i]; s.src == srcBuf && int(s.off) == pos {
			s.tsDecoy = true
		}
	}
}

// ---- request specs -------------------------------------------------------

type reqSpec struct {
	method, path string
	h0, h1       int
	body         []byte
	hasBody      bool
	bodyPos      int
}

type hdrSpec struct {
	name, value string
	xff         bool
	pre, post   string
	e0, e1      int
}

// Element spellings.
const (
	ekPlain        uint8 = iota // netip text
	ekPort                      // "a:port" / "[a]:port" ("[a]" when port is 0)
	ekV6Upper                   // fully expanded, upper case, first two groups zero-padded
	ekV6UpperShort              // compressed, upper case
	ekMapped                    // lit (default "::ffff:") + dotted IPv4
	ekMappedHex                 // "::ffff:hhhh:hhhh"
	ekLeadZero                  // lit if set, else dotted with octets zero-padded per bit of port
	ekLit                       // lit, not an address
)

type elemSpec struct {
	kind uint8
	addr netip.Addr
	port uint16
	lit  string
	sep  string // separator after it (contains one comma); "" means ", "
}

type hpos struct {
	start int
	line  int // index into conn.lines, -1 if not an XFF line
}

type splitKind uint8

const (
	spNone       splitKind = iota
	spValue                // inside the XFF value of header h (inside its second element if any)
	spAfterColon           // at the start of the value of XFF header h
	spName                 // k bytes into the line of header h
	spAfterCR              // between CR and LF of header h
	spBeforeHdr            // at the start of the line of header h
	spBodyAt               // k bytes into the body of request h
)

type splitSpec struct {
	kind splitKind
	h, k int
}

func (g *gen) resetReq() {
	g.rs, g.hs, g.es = g.rs[:0], g.hs[:0], g.es[:0]
	g.sp = [2]splitSpec{}
	g.want = false
}

func (g *gen) req(method, path string, body []byte) {
	g.rs = append(g.rs, reqSpec{method: method, path: path, h0: len(g.hs), h1: len(g.hs), body: body, hasBody: body != nil})
}

func (g *gen) hdr(name, value string) int {
	g.hs = append(g.hs, hdrSpec{name: name, value: value})
	g.rs[len(g.rs)-1].h1 = len(g.hs)
	return len(g.hs) - 1
}

func (g *gen) xff(name, pre, post string) int {
	g.hs = append(g.hs, hdrSpec{name: name, xff: true, pre: pre, post: post, e0: len(g.es), e1: len(g.es)})
	g.rs[len(g.rs)-1].h1 = len(g.hs)
	return len(g.hs) - 1
}

func (g *gen) el(kind uint8, a netip.Addr, port uint16, lit, sep string) {
	g.es = append(g.es, elemSpec{kind: kind, addr: a, port: port, lit: lit, sep: sep})
	g.hs[len(g.hs)-1].e1 = len(g.es)
}

func (g *gen) addr(a netip.Addr) { g.el(ekPlain, a, 0, "", "") }

func (g *gen) lit(s string) { g.el(ekLit, netip.Addr{}, 0, s, "") }

// render appends the requests of the current spec to c.buf; pad >= 0 adds
// an "X-Pad" header of pad bytes to the first one.
func (g *gen) render(c *conn, pad int) (int, int) {
	host := g.host(c)
	for len(g.hpos) < len(g.hs) {
		g.hpos = append(g.hpos, hpos{})
	}
	start := len(c.buf)
	for ri := range g.rs {
		r := &g.rs[ri]
		b := c.buf
		b = append(b, r.method...)
		b = append(b, ' ')
		b = append(b, r.path...)
		b = append(b, " HTTP/1.1\r\nHost: "...)
		b = append(b, host...)
		b = append(b, "\r\n"...)
		if ri == 0 && pad >= 0 {
			b = append(b, "X-Pad: "...)
			for i := 0; i < pad; i++ {
				b = append(b, 'a')
			}
			b = append(b, "\r\n"...)
		}
		c.buf = b
		for h := r.h0; h < r.h1; h++ {
			hs := &g.hs[h]
			g.hpos[h] = hpos{start: len(c.buf), line: -1}
			if !hs.xff {
				b := append(c.buf, hs.name...)
				b = append(b, ": "...)
				b = append(b, hs.value...)
				c.buf = append(b, "\r\n"...)
				continue
			}
			g.hpos[h].line = len(c.lines)
			g.renderXFF(c, hs)
		}
		if r.hasBody {
			c.buf = append(c.buf, "Content-Length: "...)
			c.buf = strconv.AppendInt(c.buf, int64(len(r.body)), 10)
			c.buf = append(c.buf, "\r\n"...)
		}
		c.buf = append(c.buf, "\r\n"...)
		r.bodyPos = len(c.buf)
		c.buf = append(c.buf, r.body...)
	}
	return start, len(c.buf)
}

func (g *gen) renderXFF(c *conn, hs *hdrSpec) {
	ln := xline{start: int32(len(c.buf)), e0: int32(len(c.elems))}
	c.buf = append(c.buf, hs.name...)
	c.buf = append(c.buf, ':')
	ln.colon = int32(len(c.buf))
	c.buf = append(c.buf, hs.pre...)
	ln.vstart = int32(len(c.buf))
	for i := hs.e0; i < hs.e1; i++ {
		e := &g.es[i]
		xe := xelem{start: int32(len(c.buf)), comma: -1}
		c.buf = appendElem(c.buf, e)
		if i < hs.e1-1 {
			sep := e.sep
			if sep == "" {
				sep = ", "
			}
			xe.comma = int32(len(c.buf) + strings.IndexByte(sep, ','))
			c.buf = append(c.buf, sep...)
		}
		if e.kind != ekLit {
			xe.addr = e.addr.Unmap()
		}
		c.elems = append(c.elems, xe)
	}
	ln.vend = int32(len(c.buf))
	c.buf = append(c.buf, hs.post...)
	c.buf = append(c.buf, "\r\n"...)
	ln.end = int32(len(c.buf))
	ln.e1 = int32(len(c.elems))
	c.lines = append(c.lines, ln)
}

const hexUpper = "0123456789ABCDEF"

func appendHex16(b []byte, v uint16, width int) []byte {
	var t [4]byte
	n := 0
	for i := 3; i >= 0; i-- {
		d := byte(v >> (4 * i) & 0xf)
		if d == 0 && n == 0 && i >= width && i > 0 {
			continue
		}
		t[n] = hexUpper[d]
		n++
	}
	return append(b, t[:n]...)
}

func appendElem(b []byte, e *elemSpec) []byte {
	switch e.kind {
	case ekPlain:
		return e.addr.AppendTo(b)
	case ekPort:
		if e.addr.Is4() {
			b = e.addr.AppendTo(b)
			b = append(b, ':')
			return strconv.AppendUint(b, uint64(e.port), 10)
		}
		b = append(b, '[')
		b = e.addr.AppendTo(b)
		b = append(b, ']')
		if e.port != 0 {
			b = append(b, ':')
			b = strconv.AppendUint(b, uint64(e.port), 10)
		}
		return b
	case ekV6Upper:
		x := e.addr.As16()
		for i := 0; i < 8; i++ {
			if i > 0 {
				b = append(b, ':')
			}
			w := 1
			if i < 2 {
				w = 4
			}
			b = appendHex16(b, uint16(x[2*i])<<8|uint16(x[2*i+1]), w)
		}
		return b
	case ekV6UpperShort:
		s := len(b)
		b = e.addr.AppendTo(b)
		for i := s; i < len(b); i++ {
			if b[i] >= 'a' && b[i] <= 'f' {
				b[i] -= 'a' - 'A'
			}
		}
		return b
	case ekMapped:
		if e.lit != "" {
			b = append(b, e.lit...)
		} else {
			b = append(b, "::ffff:"...)
		}
		return e.addr.AppendTo(b)
	case ekMappedHex:
		x := e.addr.As4()
		b = append(b, "::ffff:"...)
		b = strconv.AppendUint(b, uint64(x[0])<<8|uint64(x[1]), 16)
		b = append(b, ':')
		return strconv.AppendUint(b, uint64(x[2])<<8|uint64(x[3]), 16)
	case ekLeadZero:
		if e.lit != "" {
			return append(b, e.lit...)
		}
		x := e.addr.As4()
		for i := 0; i < 4; i++ {
			if i > 0 {
				b = append(b, '.')
			}
			if e.port>>i&1 == 1 {
				if x[i] < 100 {
					b = append(b, '0')
				}
				if x[i] < 10 {
					b = append(b, '0')
				}
			}
			b = strconv.AppendUint(b, uint64(x[i]), 10)
		}
		return b
	}
	return append(b, e.lit...)
}

// bodyStart is the buf offset of the body of the last request rendered,
// -1 if it has none.
func (g *gen) bodyStart() int {
	if r := &g.rs[len(g.rs)-1]; r.hasBody {
		return r.bodyPos
	}
	return -1
}

func (g *gen) resolveSplits(c *conn) [2]int {
	cuts := [2]int{-1, -1}
	for i, sp := range g.sp {
		if sp.kind == spNone {
			continue
		}
		hp := g.hpos[sp.h]
		var ln *xline
		if hp.line >= 0 && sp.kind != spBodyAt {
			ln = &c.lines[hp.line]
		}
		switch sp.kind {
		case spValue:
			if ln.e1-ln.e0 >= 2 {
				cuts[i] = int(c.elems[ln.e0+1].start) + 1
			} else {
				cuts[i] = int(ln.vstart+ln.vend) / 2
			}
		case spAfterColon:
			cuts[i] = int(ln.vstart)
		case spName:
			cuts[i] = hp.start + sp.k
		case spAfterCR:
			cuts[i] = int(ln.end) - 1
		case spBeforeHdr:
			cuts[i] = hp.start
		case spBodyAt:
			cuts[i] = g.rs[sp.h].bodyPos + sp.k
		}
	}
	return cuts
}

// Visibility classes of an XFF line under the snap length.
const (
	visNone    = iota // colon not captured: not a hit
	visFull           // whole line (with CRLF) captured
	visPartial        // cut after a comma and before the end of the value
	visUnclean        // cut where indexers could reasonably disagree (avoided)
)

// visible returns how many bytes of line ln, which starts in segment si,
// are captured, following the line into the next segment of the same
// message when its segment is captured whole.
func (c *conn) visible(ln *xline, si int) int32 {
	for {
		s := &c.segs[si]
		segEnd := s.off + s.n
		capEnd := s.off + int32(max(min(int(s.n), c.capPay), 0))
		if capEnd < segEnd || ln.end <= segEnd {
			return max(min(capEnd, ln.end)-ln.start, 0)
		}
		if si+1 >= len(c.segs) {
			return segEnd - ln.start
		}
		nx := &c.segs[si+1]
		if nx.dir != s.dir || nx.src != srcBuf || nx.off != segEnd {
			return segEnd - ln.start
		}
		si++
	}
}

func (c *conn) classify(ln *xline, vis int32) int {
	end := ln.start + vis
	switch {
	case end >= ln.end:
		return visFull
	case end < ln.colon:
		return visNone
	}
	if ln.e1-ln.e0 < 2 || end <= c.elems[ln.e0].comma || end >= ln.vend {
		return visUnclean
	}
	return visPartial
}

func (c *conn) segOf(pos int32, s0 int) int {
	for i := s0; i < len(c.segs); i++ {
		s := &c.segs[i]
		if s.dir == 0 && s.src == srcBuf && s.off <= pos && pos < s.off+s.n {
			return i
		}
	}
	return -1
}

// checkLines reports whether the XFF lines from l0 on are all cleanly
// classified, and whether one of them is a (clean) partial line.
func (g *gen) checkLines(c *conn, l0, s0 int) (clean, partial bool) {
	clean = true
	for i := l0; i < len(c.lines); i++ {
		ln := &c.lines[i]
		switch c.classify(ln, c.visible(ln, c.segOf(ln.start, s0))) {
		case visUnclean:
			clean = false
		case visPartial:
			partial = true
		}
	}
	return
}

// addRequest renders the current spec as one proxy→backend message and
// plans its segments and hits. Under a small snap length it pads the
// request until every XFF line is cut cleanly (see the package comment).
func (g *gen) addRequest(c *conn) {
	b0, s0, l0, e0 := len(c.buf), len(c.segs), len(c.lines), len(c.elems)
	pad, fallback := -1, -2
	for {
		start, end := g.render(c, pad)
		g.addMsg(c, 0, start, end, g.bodyStart(), g.resolveSplits(c))
		if !g.snapSmall {
			break
		}
		clean, partial := g.checkLines(c, l0, s0)
		if clean && (!g.want || partial) {
			break
		}
		if clean && fallback == -2 {
			fallback = pad
		}
		c.buf, c.segs, c.lines, c.elems = c.buf[:b0], c.segs[:s0], c.lines[:l0], c.elems[:e0]
		pad++
		if pad > c.capPay+64 || pad > 2*mss {
			if fallback == -2 {
				fallback = -1
			}
			start, end := g.render(c, fallback)
			g.addMsg(c, 0, start, end, g.bodyStart(), g.resolveSplits(c))
			break
		}
	}
	g.assignHits(c, l0, s0)
}

func trimWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

func (g *gen) assignHits(c *conn, l0, s0 int) {
	for i := l0; i < len(c.lines); i++ {
		ln := &c.lines[i]
		si := c.segOf(ln.start, s0)
		vis := c.visible(ln, si)
		cls := c.classify(ln, vis)
		if cls == visNone {
			continue
		}
		s := &c.segs[si]
		if s.hit < 0 {
			s.hit = int32(len(c.hits))
			c.hits = append(c.hits, hitPlan{})
			g.planXFF++
		}
		if !g.collect {
			continue
		}
		hp := &c.hits[s.hit]
		segEnd := s.off + s.n
		if ln.end > segEnd {
			hp.note |= noteSplit
			if segEnd < ln.colon {
				hp.note |= noteCutName
			}
		}
		if s.cont {
			hp.note |= noteCont
		}
		last := ln.end
		if cls == visFull {
			hp.raw = append(hp.raw, string(c.buf[ln.vstart:ln.vend]))
		} else {
			hp.note |= notePartial
			last = ln.start + vis
			hp.raw = append(hp.raw, string(trimWS(c.buf[ln.colon:last])))
		}
		for j := ln.e0; j < ln.e1; j++ {
			e := &c.elems[j]
			if cls != visFull && (e.comma < 0 || e.comma >= last) {
				break
			}
			if e.addr.IsValid() {
				hp.addrs = append(hp.addrs, e.addr)
			} else {
				hp.nonAddr++
			}
		}
	}
}

// ---- responses -------------------------------------------------------------

// binResponse plans a "200 OK" with a random binary body of about nseg
// segments, and the proxy's delayed ACKs. decoy adds XFF-like headers
// (addresses in DecoyPrefix) to the response header block.
func (g *gen) binResponse(c *conn, nseg int, decoy bool) {
	hs := len(c.buf)
	b := append(c.buf, "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"...)
	if decoy {
		b = append(b, "X-Forwarded-For: "...)
		b = g.r.decoyAddr().AppendTo(b)
		b = append(b, ", "...)
		b = g.r.decoyAddr().AppendTo(b)
		b = append(b, "\r\nX-Real-IP: "...)
		b = g.r.decoyAddr().AppendTo(b)
		b = append(b, "\r\n"...)
	}
	est := len(b) - hs + 48
	bodyLen := max(0, nseg*mss-est-g.r.intn(mss/2))
	b = append(b, "Content-Length: "...)
	b = strconv.AppendInt(b, int64(bodyLen), 10)
	b = append(b, "\r\nServer: backend\r\n\r\n"...)
	hl := len(b) - hs
	k := min(bodyLen, mss-hl)
	o := g.poolOff(k)
	c.buf = append(b, g.pool[o:o+k]...)
	g.addSeg(c, 1, tcpACK, srcBuf, hs, hl+k, false)
	last := len(c.segs) - 1
	c.segs[last].tsDecoy = decoy // tshark shows response header fields
	n := 1
	for rem := bodyLen - k; rem > 0; {
		l := min(rem, mss)
		g.addSeg(c, 1, tcpACK, srcPool, g.poolOff(l), l, false)
		last = len(c.segs) - 1
		rem -= l
		n++
		if n%2 == 0 {
			g.addSeg(c, 0, tcpACK, srcNone, 0, 0, false)
		}
	}
	c.segs[last].flags |= tcpPSH
	if n%2 == 1 {
		g.addSeg(c, 0, tcpACK, srcNone, 0, 0, false)
	}
}

// textResponse plans a response with a text body, cut into segments at
// body offset split (if >= 0) and at the MSS.
// It returns the buf offset of that cut.
func (g *gen) textResponse(c *conn, status, ctype string, body []byte, split int) int {
	hs := len(c.buf)
	b := append(c.buf, "HTTP/1.1 "...)
	b = append(b, status...)
	b = append(b, "\r\nContent-Type: "...)
	b = append(b, ctype...)
	b = append(b, "\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(body)), 10)
	b = append(b, "\r\n\r\n"...)
	bs := len(b)
	cut := -1
	if split >= 0 {
		cut = bs + split
	}
	c.buf = append(b, body...)
	g.addMsg(c, 1, hs, len(c.buf), bs, [2]int{cut, -1})
	g.addSeg(c, 0, tcpACK, srcNone, 0, 0, false)
	return cut
}

// ---- bulk traffic ------------------------------------------------------------

var bulkPaths = []string{
	"/", "/index.html", "/api/v1/items", "/api/v1/items/4711", "/api/v1/users/me",
	"/static/app.js", "/static/app.css", "/img/logo.png", "/search?q=capture",
	"/api/v2/orders?page=3", "/download/report.pdf", "/feed.xml",
}

var userAgents = []string{
	"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
	"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
	"curl/8.5.0",
	"okhttp/4.12.0",
}

func (g *gen) bulkRequest(c *conn, carry bool) {
	g.resetReq()
	path := bulkPaths[g.r.intn(len(bulkPaths))]
	if !carry && g.r.chance(0.5) {
		path = "/healthz"
	}
	g.req("GET", path, nil)
	g.hdr("User-Agent", userAgents[g.r.intn(len(userAgents))])
	g.hdr("Accept", "*/*")
	if g.cfg.CookieRate > 0 && g.r.chance(g.cfg.CookieRate) {
		lo, hi := g.cookieMin(), g.cookieMax()
		n := lo + g.r.intn(hi-lo+1)
		o := g.r.intn(len(g.cookie) - n + 1)
		g.hdr("Cookie", g.cookie[o:o+n])
	}
	if carry {
		g.xff("X-Forwarded-For", " ", "")
		g.addr(g.r.clientAddr())
		u := g.r.intn(100)
		if u >= 70 {
			g.addr(g.r.proxyAddr())
		}
		if u >= 95 {
			g.addr(g.r.proxyAddr())
		}
	}
	g.hdr("X-Forwarded-Proto", "https")
	g.hdr("Connection", "keep-alive")
	g.addRequest(c)
}

func (g *gen) cookieMin() int {
	if g.cfg.CookieMin == 0 {
		return min(1<<10, g.cookieMax())
	}
	return min(g.cfg.CookieMin, g.cookieMax())
}

func (g *gen) cookieMax() int {
	if g.cfg.CookieMax == 0 {
		return 16 << 10
	}
	return max(g.cfg.CookieMax, 1)
}

// cookieText returns n bytes of "name=value;" pairs (no spaces, so that any
// substring is a value with nothing to trim), from its own generator so
// that the option draws nothing from the main one.
func cookieText(seed int64, n int) string {
	const alpha = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	r := newRNG(seed ^ 0x636f6f6b6965)
	b := make([]byte, 0, n+64)
	for i := 0; len(b) < n; i++ {
		b = append(b, 'c')
		b = strconv.AppendInt(b, int64(i), 10)
		b = append(b, '=')
		for k := 16 + r.intn(48); k > 0; k-- {
			b = append(b, alpha[r.u64()&63])
		}
		b = append(b, ';')
	}
	return string(b[:n])
}

func (g *gen) planBulk(c *conn) {
	nreq := 1 + g.r.intn(g.maxReqs)
	for i := 0; i < nreq; i++ {
		g.bulkRequest(c, g.wantXFF(c))
		g.binResponse(c, g.drawSegs(), false)
	}
}

// planTLS plans a port-443 connection carrying random bytes both ways.
func (g *gen) planTLS(c *conn) {
	n := 200 + g.r.intn(400)
	g.addSeg(c, 0, tcpACK|tcpPSH, srcPool, g.poolOff(n), n, false)
	for k := 0; k < 2; k++ {
		segs := g.drawSegs()
		for i := 0; i < segs; i++ {
			l := mss
			if i == segs-1 {
				l = 100 + g.r.intn(mss-100)
			}
			g.addSeg(c, 1, tcpACK, srcPool, g.poolOff(l), l, false)
			if i%2 == 1 || i == segs-1 {
				g.addSeg(c, 0, tcpACK, srcNone, 0, 0, false)
			}
		}
		n := 50 + g.r.intn(300)
		g.addSeg(c, 0, tcpACK|tcpPSH, srcPool, g.poolOff(n), n, false)
	}
}

func (g *gen) planTruncTail(c *conn) {
	g.setServer(c, 8080)
	g.handshake(c)
	g.resetReq()
	g.req("GET", "/last", nil)
	g.hdr("User-Agent", userAgents[0])
	g.xff("X-Forwarded-For", " ", "")
	g.addr(g.r.clientAddr())
	g.addr(g.r.proxyAddr())
	g.addRequest(c)
}
