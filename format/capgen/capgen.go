// Package capgen writes deterministic synthetic captures of proxy-to-backend HTTP traffic for tests and benchmarks.
//
// A reverse proxy (10.0.0.2, fd00::2 over IPv6) opens TCP connections to
// backends (10.0.1.x / fd00::1:x) on ports 8080 and 80 (HTTP) and 443 (not
// HTTP). Each connection has a handshake, one or more requests, responses
// with random binary bodies segmented at MSS 1448, and a FIN exchange;
// several connections are open at once and their packets interleave. A
// fraction Config.XFFRate of packets are requests carrying X-Forwarded-For.
// With Config.CookieRate, that share of requests carries a Cookie header of
// 1 to 16 KiB before the X-Forwarded-For line, whose header block then
// spans several segments (for benchmarks that measure recall on them).
//
// Write returns the Truth: every packet an exact indexer must report, with
// the addresses it must extract. The rules the Truth follows:
//
//   - A Hit is a packet (record) holding the start of at least one request
//     XFF header line ("X-Forwarded-For:" in any letter case, at the start of
//     a line of a request header block). Offset is that record's offset.
//   - Raw holds the value of each such line starting in the packet, in order,
//     trimmed of spaces and tabs. A line split across two segments of the
//     connection (no CRLF in the first) belongs to the packet where it starts
//     and its value is the whole value. Addrs and NonAddr come from the
//     comma-separated elements of those values, in order; an empty element
//     ("a,,b") counts as a non-address element.
//   - Element spellings and their canonical address: "1.2.3.4:5678" is
//     1.2.3.4; "[2001:db8::1]:443" and "[2001:db8::1]" are 2001:db8::1; IPv6
//     in any letter case or expansion is the netip canonical form;
//     "::ffff:192.0.2.5" (and "::ffff:c000:205") is 192.0.2.5; IPv4 with
//     leading zeros ("10.000.000.03") is read as decimal (10.0.0.3).
//   - When the snap length cuts a packet inside an XFF line, the line counts
//     if its colon was captured; Raw is the captured part of the value
//     (trimmed) and only elements followed by a comma within the captured
//     bytes are listed. Lines whose colon was not captured are not hits. The
//     generator pads requests so that a cut never falls between the colon
//     and the first comma, nor between the end of the value and the LF.
//   - Decoys are never hits: XFF text in request bodies (also a body segment
//     that starts with "X-Forwarded-For: "), in response bodies and in
//     response header blocks, look-alike header names (X-Original-Forwarded-
//     For, X-Forwarded-Host, X-Real-IP, X-Forwarded-For-Test) and the text
//     inside other header values. Every address in a decoy is in DecoyPrefix.
//   - Src and Dst are the innermost TCP endpoints (client is the proxy).
//   - TS is the timestamp as stored (truncated to the record's resolution);
//     zero for packets written as pcapng Simple Packet Blocks.
//   - With Config.TruncateLast the file ends inside one more record that is
//     not counted in Packets and has no Hit.
//
// # Busy mode
//
// WriteBusy writes what a busy link behind a load balancer looks like, to
// test an indexer that follows every connection's open header block across
// the whole capture. The proxy (10.0.0.2, fd00::2) keeps BusyConfig.Conns
// (default 5000) keep-alive connections open at once to 64 backends (ports
// 8080 and 80), over IPv4 and IPv6; their segments interleave at random.
// Most connections open with a handshake inside the capture, some are
// already open when it starts (their first client segment starts with a
// request line); they close with FINs or a RST, and some new ones reuse the
// 5-tuple of a closed one (new SYN, new ISN). Nothing closes before Conns
// connections are open, so BusyTruth.MaxOpen reaches Conns.
//
// A connection sends one request at a time, or 2 or 3 pipelined back to
// back (a request then starts in the middle of a segment, right after the
// previous request's body), and the backend answers each (status line,
// headers, binary or text body). Requests have 1 to 12 MSS-sized segments
// of headers (MSS 1460 or 1448, 20 less over IPv6; Cookie headers of 1 to 16
// KiB), bodies with Content-Length or chunked coding (chunks cut across
// segments), and forwarding header lines of the five headers anywhere in
// the block: first line, middle, right after the cookie (ten segments in),
// last (as haproxy and nginx append X-Forwarded-For), several lines of one
// header, IPv4 and IPv6 elements in several spellings, RFC 7239 Forwarded
// elements (for=192.0.2.1;proto=http, for="[2001:db8::1]:4711",
// for="192.0.2.43:_hidden"), and non-address elements (unknown, _hidden).
// Segment boundaries fall wherever the MSS puts them and, for a share of
// requests, at a chosen place: inside a forwarding header name, right after
// its colon, inside its value, between the CR and the LF ending it, right
// before it, or between the CR and the LF of the block's final empty line.
// Some requests end their lines with LF alone. The client flow misbehaves:
// exact retransmissions (a few segments later, or after the responses),
// frames duplicated back to back, segments captured 1 to 3 places after
// their successors, and segments missing from the capture. Output streams
// to the writer; memory follows the connections, not the capture's size.
//
// WriteBusy returns a BusyTruth (nothing of it with BusyConfig.NoTruth but
// the counts). The rules it follows, which define an exact indexer:
//
//  1. A flow is one direction of a TCP connection (innermost source address
//     and port, destination address and port). Requests travel in the
//     client flow, proxy to backend.
//  2. A client flow's bytes are ordered by TCP sequence number. A SYN starts
//     a new connection in the flow; a connection seen without one starts at
//     its first data segment. A byte carried by several records
//     (retransmission, duplicate) counts once: the copy in the first record,
//     in file order, that carried it. Copies are whole segments with the
//     same bytes, never partial overlaps.
//  3. The stream is a sequence of HTTP/1.1 requests: request line, header
//     lines up to the first empty line (CRLF, or LF alone), then a body
//     framed by "Transfer-Encoding: chunked" (without trailers) or
//     Content-Length, none otherwise.
//  4. Each "X-Forwarded-For:", "Forwarded:", "X-Real-IP:", "True-Client-IP:"
//     or "CF-Connecting-IP:" line (name in any letter case) of a request
//     header block is a line of that header. Its record is the record
//     carrying its first byte; its value runs from after the colon to the
//     line end, possibly records later, trimmed of spaces and tabs.
//  5. A BusyHit is a (record, header) pair whose lines of that header
//     starting in that record have at least one address: the record's offset,
//     timestamp and client flow, the addresses (each once, in order), the
//     values, and the request's method, target, Host value and whole list
//     for that header (its values of that header joined with ", "). Elements
//     are read as format/xff reads them: comma-separated, and for Forwarded
//     the first for= of each element, unquoted, obfuscated port dropped;
//     unknown, _hidden and elements without for= are not addresses; ports
//     and brackets are stripped, IPv4-mapped IPv6 is IPv4. The truth comes
//     from the addresses the generator put in.
//  6. A request is gap-affected when a byte of its connection before the end
//     of its header block is not in the capture: a missing segment (Gaps), or
//     one the capture ended before. (An indexer cannot frame anything after a
//     hole.) A (record, header) pair with a line of a gap-affected request
//     is in GapHits instead of Hits; GapRequests counts these requests.
//  7. Never hits: forwarding header text in request bodies (header lines,
//     JSON, whole requests, also at the start of a segment), in responses
//     (header blocks and bodies), inside other header values, and the
//     look-alike names X-Original-Forwarded-For, X-Forwarded-Host, X-Real-IPs
//     and others. Their addresses are in DecoyPrefix.
//
// Lines counts the forwarding header lines of the requests that are not
// gap-affected; LinesBodyCut those of them in requests whose body is not
// wholly captured, which tshark, waiting for whole requests, does not
// show. busy_test.go explains the tshark options under which tshark shows
// exactly the other X-Forwarded-For lines, and how it counts retransmitted
// requests.
package capgen

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net/netip"
	"time"
)

// Config selects what Write generates.
type Config struct {
	Seed int64
	// Format is "pcap" (default; µs), "pcap-ns", "pcap-be" (big-endian µs),
	// "pcapng" (one section, one interface, if_tsresol 9) or "pcapng-multi"
	// (two sections with two interfaces each: Ethernet µs + SLL2 ns, then
	// raw IP ns + SLL µs; a Simple Packet Block in each section).
	Format string
	// LinkType is 1 Ethernet, 113 Linux SLL, 276 Linux SLL2, 101 raw IP or
	// 0 BSD NULL (the zero value). Ignored for "pcapng-multi".
	LinkType uint32
	VLAN     bool // 802.1Q tag on Ethernet frames
	QinQ     bool // 802.1ad + 802.1Q tags on Ethernet frames (implies VLAN)
	// TargetBytes: stop after roughly this many bytes (the generator
	// finishes the request segments in flight). In Variants mode every
	// variant is written at least three times even past TargetBytes.
	TargetBytes int64
	// XFFRate is the fraction of packets that are requests carrying XFF:
	// 0 means the default 0.02, negative means none. Rates above about 0.3
	// cannot be reached and saturate.
	XFFRate       float64
	IPv6Transport bool   // about 30% of connections over IPv6
	SnapLen       uint32 // 0 means 65535; smaller values cut packets
	// Variants adds every XFF spelling, split and decoy case (see the
	// package comment); false is the plain fast bulk mode.
	Variants bool
	// NoTruth skips collecting Truth.Hits (Packets and Bytes are still
	// counted): for multi-GB runs.
	NoTruth bool
	// TruncateLast ends the file in the middle of one more record (an XFF
	// request); Truth excludes it.
	TruncateLast bool
	// Tunnels wraps about 30% of connections in GRE, ERSPAN type I, VXLAN
	// or Geneve over IPv4.
	Tunnels bool
	// CookieRate gives that share of the bulk requests a Cookie header of
	// CookieMin to CookieMax bytes (defaults 1 KiB and 16 KiB), before the
	// X-Forwarded-For line: their header blocks span several segments and
	// the XFF line is in a later one, possibly split across two (Hit notes
	// it). 0 (the default) leaves the output as it was without the option.
	CookieRate           float64
	CookieMin, CookieMax int
}

// Hit is a packet an exact indexer must find.
type Hit struct {
	Offset  int64        // file offset of the packet record (pcap record header / pcapng block start) holding the start of the XFF line
	Addrs   []netip.Addr // canonical addresses of the XFF elements that are addresses, in order
	Raw     []string     // the raw XFF values of that packet's XFF lines, in order, trimmed of surrounding whitespace
	NonAddr int          // elements that are not addresses
	Src     netip.AddrPort
	Dst     netip.AddrPort // innermost TCP tuple of that packet
	TS      time.Time
}

// Truth is what an exact indexer must find.
type Truth struct {
	Hits    []Hit
	Packets int64 // complete packet records written
	Bytes   int64 // bytes written, including headers and a truncated last record

	notes       []uint8 // per Hit: note* bits, for this package's tests
	decoyFrames []int64 // 1-based numbers of the frames where tshark shows decoy XFF values
	kinds       [numKinds]int
}

// Bits of Truth.notes.
const (
	noteSplit   = 1 << iota // an XFF line starting here continues in a later segment
	noteCont                // the packet continues a request header block (does not start the request)
	notePartial             // an XFF line here is cut by the snap length
	noteSPB                 // written as a Simple Packet Block
	noteCutName             // the packet ends inside the XFF header name (split case)
)

var start2026 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()

type gen struct {
	cfg    Config
	r      rng
	bw     *bufio.Writer
	n      int64
	err    error
	order  binary.ByteOrder
	pcapng bool
	multi  bool
	nsPcap bool
	snap   int
	ifaces []iface
	sect   int

	pool    []byte
	clock   int64
	truth   Truth
	collect bool

	rate     float64
	meanSegs float64
	maxReqs  int
	planPk   float64
	planXFF  float64

	active   []*conn
	free     []*conn
	nextPort uint16

	scen      []scenKind
	scenNext  int
	scenCount [numKinds]int

	stopping  bool
	draining  bool
	switched  bool
	sectPk    int64
	spbLeft   int
	hostStr   [2][numBackends][2]string // [v6][backend][port 8080, 80]
	snapSmall bool

	// request/response specs, reused
	rs   []reqSpec
	hs   []hdrSpec
	es   []elemSpec
	hpos []hpos
	sp   [2]splitSpec
	want bool // accept only a plan with a partial (snap-cut) XFF line

	scratch [512]byte
	rec     [64]byte
	tmp     []byte

	cookie string // CookieRate: cookie values are substrings of it
}

const (
	numBackends = 20
	poolSize    = 4 << 20
	numActive   = 8
)

// Write writes a capture following cfg to w and returns what an exact
// indexer must find in it. Output is a deterministic function of cfg.
func Write(w io.Writer, cfg Config) (Truth, error) {
	g, err := newGen(w, cfg)
	if err != nil {
		return Truth{}, err
	}
	g.writeFileHeader()
	g.run()
	if cfg.TruncateLast {
		g.truncatedTail()
	}
	if g.err == nil {
		g.err = g.bw.Flush()
	}
	g.truth.Bytes = g.n
	g.truth.kinds = g.scenCount
	return g.truth, g.err
}

func newGen(w io.Writer, cfg Config) (*gen, error) {
	g := &gen{cfg: cfg, r: newRNG(cfg.Seed), order: binary.LittleEndian, snap: 65535}
	if cfg.SnapLen != 0 {
		g.snap = int(cfg.SnapLen)
	}
	if g.snap < mss+150 {
		g.snapSmall = true
	}
	switch cfg.Format {
	case "", FormatPcap:
	case FormatPcapNs:
		g.nsPcap = true
	case FormatPcapBE:
		g.order = binary.BigEndian
	case FormatPcapNG:
		g.pcapng = true
	case FormatPcapNGMulti:
		g.pcapng, g.multi = true, true
	default:
		return nil, fmt.Errorf("capgen: unknown format %q", cfg.Format)
	}
	switch cfg.LinkType {
	case LinkEthernet, LinkSLL, LinkSLL2, LinkRaw, LinkNull:
	default:
		if !g.multi {
			return nil, fmt.Errorf("capgen: unsupported link type %d", cfg.LinkType)
		}
	}
	if cfg.XFFRate > 1 {
		return nil, fmt.Errorf("capgen: XFFRate %v above 1", cfg.XFFRate)
	}
	if cfg.CookieRate > 1 || cfg.CookieMin < 0 || cfg.CookieMax < 0 || cfg.CookieMax > 64<<10 {
		return nil, fmt.Errorf("capgen: CookieRate %v above 1 or cookie sizes %d..%d not in 0..64 KiB", cfg.CookieRate, cfg.CookieMin, cfg.CookieMax)
	}
	ethTags := func(f iface) iface {
		if f.link == LinkEthernet {
			f.vlan = cfg.VLAN || cfg.QinQ
			f.qinq = cfg.QinQ
		}
		return f
	}
	if g.multi {
		g.ifaces = []iface{ethTags(multiSections[0][0]), ethTags(multiSections[0][1])}
		g.spbLeft = 1
	} else {
		res := uint8(6)
		if g.pcapng {
			res = 9
		}
		g.ifaces = []iface{ethTags(iface{link: cfg.LinkType, tsres: res})}
	}
	g.collect = !cfg.NoTruth
	g.bw = bufio.NewWriterSize(w, 4<<20)
	g.clock = start2026

	g.pool = make([]byte, poolSize+mss)
	for i := 0; i+8 <= len(g.pool); i += 8 {
		binary.LittleEndian.PutUint64(g.pool[i:], g.r.u64())
	}

	g.rate = cfg.XFFRate
	if g.rate == 0 {
		g.rate = 0.02
	}
	if g.rate < 0 {
		g.rate = 0
	}
	// Size responses so that requests come about a third more often than
	// the rate needs; the deficit controller in wantXFF does the rest.
	g.maxReqs = 3
	if g.rate > 0.08 {
		g.maxReqs = 8
	}
	if g.rate > 0 {
		rMean := float64(1+g.maxReqs) / 2
		perReq := 0.75 / g.rate
		g.meanSegs = max(1, (perReq-1-6/rMean)/1.5)
	} else {
		g.meanSegs = 25
	}
	g.nextPort = 32768

	for v6 := 0; v6 < 2; v6++ {
		for b := 0; b < numBackends; b++ {
			a := backendAddr(v6 == 1, b)
			if v6 == 1 {
				g.hostStr[v6][b][0] = "[" + a.String() + "]:8080"
				g.hostStr[v6][b][1] = "[" + a.String() + "]"
			} else {
				g.hostStr[v6][b][0] = a.String() + ":8080"
				g.hostStr[v6][b][1] = a.String()
			}
		}
	}

	if cfg.Variants {
		g.buildScenarios()
	}
	if cfg.CookieRate > 0 {
		g.cookie = cookieText(cfg.Seed, 2*g.cookieMax())
	}
	return g, nil
}

var (
	proxy4 = netip.AddrFrom4([4]byte{10, 0, 0, 2})
	proxy6 = netip.MustParseAddr("fd00::2")
)

func backendAddr(v6 bool, i int) netip.Addr {
	if v6 {
		return netip.AddrFrom16([16]byte{0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, byte(1 + i)})
	}
	return netip.AddrFrom4([4]byte{10, 0, 1, byte(1 + i)})
}

// tick advances the clock by 1 µs to 200 µs and returns it. The sub-µs
// digits are never all zero.
func (g *gen) tick() int64 {
	g.clock += int64(1000*(1+g.r.intn(200)) + g.r.intn(1000))
	if g.clock%1000 == 0 {
		g.clock++
	}
	return g.clock
}

func (g *gen) run() {
	for g.err == nil {
		if g.stopping {
			g.finishInFlight()
			return
		}
		for len(g.active) < numActive && !g.draining {
			g.active = append(g.active, g.open())
		}
		if len(g.active) == 0 {
			// drained: start the second section
			g.switchSection()
			continue
		}
		i := g.r.intn(len(g.active))
		c := g.active[i]
		g.emit(c, &c.segs[c.next], -1)
		c.next++
		if c.next == len(c.segs) {
			last := len(g.active) - 1
			g.active[i] = g.active[last]
			g.active = g.active[:last]
			g.free = append(g.free, c)
		}
		g.checkProgress()
	}
}

func (g *gen) checkProgress() {
	target := g.cfg.TargetBytes
	scenDone := g.scenNext >= len(g.scen)
	if g.multi && !g.switched {
		if !g.draining && g.n >= target/2 && g.scenNext >= len(g.scen)/2 {
			g.draining = true
		}
		return
	}
	if g.multi && g.sectPk < 200 {
		return
	}
	if g.n >= target && scenDone {
		g.stopping = true
	}
}

func (g *gen) switchSection() {
	g.draining = false
	g.switched = true
	g.sect = 1
	g.ifaces = g.ifaces[:0]
	for _, f := range multiSections[1] {
		g.ifaces = append(g.ifaces, f)
	}
	g.spbLeft = 1
	g.sectPk = 0
	g.writeSection()
}

// finishInFlight writes the rest of every Variants scenario connection, and
// the remaining segments of request messages already partly written in the
// others (so that no Hit's XFF line is left without its end); it drops the
// rest of those.
func (g *gen) finishInFlight() {
	for _, c := range g.active {
		whole := c.kind != kBulk && c.kind != kTLS
		for c.next < len(c.segs) && (whole || c.segs[c.next].dir == 0 && c.segs[c.next].cont) {
			g.emit(c, &c.segs[c.next], -1)
			c.next++
		}
	}
}

// emit writes one segment of c. With limit >= 0 the record is cut after
// limit bytes and not counted.
func (g *gen) emit(c *conn, s *seg, limit int) {
	pl := c.payload(s, g.pool)
	d := s.dir
	seq, ack := c.seq[d], c.seq[1-d]
	if s.flags&tcpACK == 0 {
		ack = 0
	}
	c.seq[d] += uint32(len(pl))
	if s.flags&(tcpSYN|tcpFIN) != 0 {
		c.seq[d]++
	}
	hdr := g.frameHeader(c, d, s.flags, seq, ack, pl)
	ts := g.tick()
	spb := false
	if g.multi && s.hit >= 0 && c.iface == 0 && g.spbLeft > 0 && limit < 0 {
		spb = true
		g.spbLeft--
	}
	off, tsOut := g.writePacket(c.iface, ts, spb, hdr, pl, limit)
	if limit >= 0 {
		return
	}
	g.truth.Packets++
	g.sectPk++
	if s.tsDecoy {
		g.truth.decoyFrames = append(g.truth.decoyFrames, g.truth.Packets)
	}
	if s.hit >= 0 && g.collect {
		hp := &c.hits[s.hit]
		note := hp.note
		if spb {
			note |= noteSPB
		}
		g.truth.Hits = append(g.truth.Hits, Hit{
			Offset: off, Addrs: hp.addrs, Raw: hp.raw, NonAddr: hp.nonAddr,
			Src: c.cli, Dst: c.srv, TS: tsOut,
		})
		g.truth.notes = append(g.truth.notes, note)
	}
}

// truncatedTail writes a new connection whose handshake is complete and
// whose XFF request record is cut in the middle of the XFF value (or of
// the captured bytes, if the snap length cuts earlier).
func (g *gen) truncatedTail() {
	if g.err != nil {
		return
	}
	c := g.newConn()
	g.planTruncTail(c)
	for c.next < len(c.segs) && c.segs[c.next].n == 0 {
		g.emit(c, &c.segs[c.next], -1)
		c.next++
	}
	s := &c.segs[c.next]
	recHdr := 16
	if g.pcapng {
		recHdr = 28
	}
	ln := c.lines[0]
	mid := g.dataHdrLen(c) + int(ln.vstart+ln.vend)/2 - int(s.off)
	orig := g.dataHdrLen(c) + int(s.n)
	capLen := min(orig, g.snap)
	if mid >= capLen {
		mid = capLen / 2
	}
	g.emit(c, s, recHdr+mid)
}
