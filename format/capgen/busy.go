package capgen

import (
	"cmp"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// BusyConfig selects what WriteBusy generates. For every rate, 0 means the
// default given and a negative value means none.
type BusyConfig struct {
	Seed int64
	// Format is FormatPcap (the default), FormatPcapNs, FormatPcapBE or
	// FormatPcapNG.
	Format string
	// LinkType is LinkEthernet (0 means Ethernet too), LinkSLL, LinkSLL2 or
	// LinkRaw. BSD NULL is not offered in busy mode.
	LinkType uint32
	VLAN     bool // 802.1Q tag on Ethernet frames
	// TargetBytes: the capture stops, wherever its connections are, at the
	// first record that reaches this size.
	TargetBytes int64
	// Conns is the number of connections open at once (0: 5000; at most
	// 20000). No connection closes before Conns are open, so a capture of
	// more than about 600 bytes per connection reaches Conns concurrently
	// open connections (BusyTruth.MaxOpen).
	Conns int
	// PreOpenRate: share of the first Conns connections that are already
	// open when the capture starts: no handshake, and their first client
	// segment starts with a request line (default 0.1).
	PreOpenRate float64
	RSTRate     float64 // share of connections closed by a RST instead of FINs (default 0.1)
	// ReuseRate: share of new connections that reuse the 5-tuple (client
	// port) of an earlier, closed connection, with a new SYN and ISN
	// (default 0.05).
	ReuseRate float64
	IPv6Rate  float64 // share of connections over IPv6 (default 0.3)
	// Requests is the mean number of requests of a keep-alive connection
	// (0: 4; geometric, at most 8 times the mean).
	Requests int
	FwdRate  float64 // share of requests with forwarding header lines (default 0.85)
	// CookieRate: share of requests with a Cookie header of CookieMin to
	// CookieMax bytes (defaults 0.1, 1 KiB, 16 KiB): header blocks of up to
	// 12 segments.
	CookieRate           float64
	CookieMin, CookieMax int
	// SplitRate: share of requests with forwarding headers in which a
	// segment ends at a chosen place: inside a forwarding header name, right
	// after its colon, inside its value, between the CR and the LF ending
	// it, right before it, or between the CR and the LF of the block's
	// final empty line (default 0.2). Header blocks longer than a segment
	// are cut at the MSS wherever it falls, too.
	SplitRate float64
	// PipelineRate: share of request batches of 2 or 3 requests written
	// back to back before their responses (default 0.1).
	PipelineRate float64
	// BodyRate: share of requests with a body (default 0.3), of which
	// ChunkedRate have chunked transfer coding (default 0.4) and the others
	// a Content-Length.
	BodyRate, ChunkedRate float64
	// DecoyRate: share of requests, request bodies and responses given
	// forwarding header text where it does not count (default 0.2).
	DecoyRate float64
	// Client flow misbehaviour, per client data segment: RetransRate (an
	// exact copy written later: a few segments of its connection later, or
	// after the responses; default 0.01), DupRate (the same frame twice,
	// back to back; default 0.005), ReorderRate (the segment is written 1 to
	// 3 segments of its flow later than sequence order; default 0.01) and
	// GapRate (the segment is missing from the capture; default 0.002).
	RetransRate, DupRate, ReorderRate, GapRate float64
	// MSS is the payload size of full client segments; 0 draws one per
	// connection: 1460 or 1448 over IPv4, 1440 or 1428 over IPv6.
	MSS int
	// NoTruth skips collecting the hits (the counts are kept): for
	// multi-GB runs.
	NoTruth bool
}

// BusyHit is what an exact indexer must report for one packet record and
// one forwarding header: the lines of that header whose first byte (of the
// name) the record carries.
type BusyHit struct {
	Offset  int64        // file offset of the record (pcap record header / pcapng block)
	Header  string       // "X-Forwarded-For", "Forwarded", "X-Real-IP", "True-Client-IP" or "CF-Connecting-IP"
	Addrs   []netip.Addr // canonical addresses of the elements of those lines, in order, each once
	NonAddr int          // elements that are not addresses
	Raw     []string     // the values of those lines, in order, trimmed of spaces and tabs
	Src     netip.AddrPort
	Dst     netip.AddrPort // the client flow (proxy → backend)
	TS      time.Time      // the record's timestamp as stored
	// Method, Target, Host and List describe the request of the first of
	// those lines: its request line, its Host value, and its whole list for
	// Header (the values of all its lines of Header, in order, joined with
	// ", ").
	Method, Target, Host, List string
	// More describes, in order, the other requests (pipelined) with lines
	// of Header starting in the record; usually empty.
	More []BusyReq `json:",omitempty"`
	// Cont: the record does not hold the start of that first request (its
	// header block began in an earlier segment).
	Cont bool `json:",omitempty"`
	// Split: a line of the hit ends in a later segment.
	Split bool `json:",omitempty"`
}

// BusyReq describes one request of a BusyHit.
type BusyReq struct {
	Method, Target, Host, List string
}

// BusyTruth is what an exact indexer must find in a WriteBusy capture.
type BusyTruth struct {
	// Hits, sorted by Offset then header (xff.Header order), leave out the
	// gap-affected requests.
	Hits []BusyHit
	// GapHits are the (record, header) pairs with a line of a gap-affected
	// request, built like Hits from what was generated. An indexer may
	// report them or parts of them; a pair is in Hits or GapHits, not both.
	GapHits []BusyHit
	Packets int64 // records written
	Bytes   int64 // bytes written
	// Conns counts connections with a record in the capture; MaxOpen the
	// most open at once (first record written, last one not yet).
	Conns, MaxOpen int
	PreOpen        int // connections already open when the capture starts
	Reused         int // connections with the 5-tuple of an earlier one
	Resets         int // connections closed by a RST
	// Requests counts the requests whose header block is wholly in the
	// capture and that are not gap-affected; GapRequests the gap-affected
	// ones with a header block byte in the capture.
	Requests, GapRequests int
	// Lines counts the forwarding header lines of the Requests by header
	// name ("X-Forwarded-For", ...), lines without addresses included.
	// LinesBodyCut counts those of them in requests whose body is not
	// wholly in the capture (a gap in it, or the end of the capture): their
	// hits are exact, but a dissector that waits for the whole request
	// (tshark with http.desegment_body) does not show them.
	Lines, LinesBodyCut map[string]int
	// Gaps counts client segments missing from the capture (a gap reached
	// before the end of the capture); Retrans the later exact copies; Dups
	// the frames written twice back to back; Reordered the segments written
	// after a later segment of their flow.
	Gaps, Retrans, Dups, Reordered int
	// GapSegs are the client segments missing from the capture. Whatever an
	// indexer finds in a flow after one of them is read across a gap: a
	// body segment there that starts like a request cannot be told from
	// one, so tests except such finds.
	GapSegs []BusyGap `json:",omitempty"`
	Decoys  int       // decoy texts: look-alike header lines, request bodies, response headers and bodies

	lines   [numHeaders]int
	tsLost  [numHeaders]int // lines of Requests whose body is not wholly in the capture
	gapSegs []busyGap       // the missing segments
	endSegs []busyGap       // segments not written because the capture ended first
	copies  []busyCopy      // the later copies (retransmissions and duplicates) of segments that start a request
	splits  [numSplits]int
	cookies int // requests with a Cookie header
	maxHdr  int // most segments of one header block
	piped   int // pipelined batches
	chunked int // chunked request bodies
	fakeAt  int // segments that start with request-like decoy text in a body
	lfOnly  int // requests with LF line ends
}

type busyGap struct {
	src, dst netip.AddrPort
	seq      uint32
	n        int
}

// BusyGap is a client segment missing from a busy capture.
type BusyGap struct {
	Src, Dst netip.AddrPort
	Seq      uint32
	Len      int
}

// busyCopy is a later copy of a client segment that starts with a request
// line: tshark without sequence analysis dissects its whole requests again
// (TestBusyTsharkCopies).
type busyCopy struct {
	off  int64
	fwd  [numHeaders]int // forwarding lines of the requests wholly inside it
	reqs int             // whole requests it holds
}

// Forwarding headers, numbered as xff.Header.
const (
	hXFF = iota
	hForwarded
	hRealIP
	hTrueClient
	hCFConnecting
	numHeaders
)

var headerNames = [numHeaders]string{"X-Forwarded-For", "Forwarded", "X-Real-IP", "True-Client-IP", "CF-Connecting-IP"}

const (
	maxBusyConns    = 20000
	numBusyBackends = 64
	portLo, portHi  = 32768, 60999
	numClasses      = 8  // slice size classes: 16 elements << class
	numBufClasses   = 12 // byte buffer size classes: 512 bytes << class, to 1 MiB
)

// busy is the state of one WriteBusy run. It writes records with g's
// writers (file header, link, IP, TCP, timestamps).
type busy struct {
	g       *gen
	cfg     BusyConfig
	collect bool
	tr      BusyTruth

	conns                                   int
	meanReq                                 int
	preRate, rstRate, reuseRate, v6Rate     float64
	fwdRate, cookieRate, splitRate          float64
	pipeRate, bodyRate, chunkRate           float64
	decoyRate                               float64
	retxRate, dupRate, reorderRate, gapRate float64
	cookieMin, cookieMax                    int

	active   []*bconn
	free     []*bconn
	opened   int  // connections created
	open     int  // connections with a first record and no last one yet
	ramp     bool // fewer than conns created: nothing closes yet
	inUse    [2][65536]bool
	nextPort [2]int
	closed   [256]closedTuple // recently closed connections, for reuse
	closedN  int

	bufs [numBufClasses][][]byte
	// Batches are planned in the scratch slices of sc, then copied into
	// slices of these pools (size classes, reused), so that allocation
	// follows the batches in flight, not the capture's size.
	sc    batchSlices
	items pool[bitem]
	segs  pool[bseg]
	reqs  pool[breq]
	lines pool[bline]
	addrs pool[netip.Addr]
	host  [2][numBusyBackends][2]string

	xb, sb, tb []byte // rendering scratch
	cuts       []int  // forced segment ends in the batch
	// nocut holds the offsets in a batch of the LFs of chunked-coding
	// CRLFs (after a chunk-size line, after chunk data, in the final
	// "0\r\n\r\n"): a segment never ends between such a CR and its LF,
	// nor does chunk data end with a CR or start with a LF. tshark 4.0
	// takes the lone CR at the end of a segment for a line end there and
	// stops dissecting the request ("Malformed Packet"). Chunk data is cut
	// anywhere else.
	nocut []int
	slots []fwdSlot
	spare []bitem
	retx  []retxCopy
}

type closedTuple struct {
	v6      bool
	port    uint16
	backend int
	srvPort uint16
	seqEnd  uint32
}

// WriteBusy writes a capture of a busy proxy-to-backend link following cfg
// to w and returns what an exact indexer must find in it (see the package
// comment). Output is a deterministic function of cfg; memory does not grow
// with TargetBytes beyond the truth.
func WriteBusy(w io.Writer, cfg BusyConfig) (BusyTruth, error) {
	b, err := newBusy(w, cfg)
	if err != nil {
		return BusyTruth{}, err
	}
	b.g.writeFileHeader()
	b.run()
	g := b.g
	if g.err == nil {
		g.err = g.bw.Flush()
	}
	b.tr.Bytes = g.n
	b.tr.Lines = make(map[string]int, numHeaders)
	b.tr.LinesBodyCut = make(map[string]int, numHeaders)
	for h := range numHeaders {
		b.tr.Lines[headerNames[h]] = b.tr.lines[h]
		b.tr.LinesBodyCut[headerNames[h]] = b.tr.tsLost[h]
	}
	cmpHit := func(a, b BusyHit) int {
		if c := cmp.Compare(a.Offset, b.Offset); c != 0 {
			return c
		}
		return cmp.Compare(headerNum(a.Header), headerNum(b.Header))
	}
	slices.SortFunc(b.tr.Hits, cmpHit)
	slices.SortFunc(b.tr.GapHits, cmpHit)
	return b.tr, g.err
}

func headerNum(name string) int {
	for h, n := range headerNames {
		if n == name {
			return h
		}
	}
	return numHeaders
}

// rate returns v, or def when v is 0, or 0 when v is negative.
func rate(v, def float64) float64 {
	switch {
	case v == 0:
		return def
	case v < 0:
		return 0
	}
	return v
}

func newBusy(w io.Writer, cfg BusyConfig) (*busy, error) {
	link := cfg.LinkType
	switch link {
	case 0:
		link = LinkEthernet
	case LinkEthernet, LinkSLL, LinkSLL2, LinkRaw:
	default:
		return nil, fmt.Errorf("capgen: busy mode: unsupported link type %d", cfg.LinkType)
	}
	if cfg.Format == FormatPcapNGMulti {
		return nil, fmt.Errorf("capgen: busy mode: format %q not supported", cfg.Format)
	}
	if cfg.Conns < 0 || cfg.Conns > maxBusyConns {
		return nil, fmt.Errorf("capgen: busy mode: Conns %d not in 0..%d", cfg.Conns, maxBusyConns)
	}
	for _, r := range []float64{cfg.PreOpenRate, cfg.RSTRate, cfg.ReuseRate, cfg.IPv6Rate, cfg.FwdRate, cfg.CookieRate,
		cfg.SplitRate, cfg.PipelineRate, cfg.BodyRate, cfg.ChunkedRate, cfg.DecoyRate,
		cfg.RetransRate, cfg.DupRate, cfg.ReorderRate, cfg.GapRate} {
		if r > 1 {
			return nil, fmt.Errorf("capgen: busy mode: rate %v above 1", r)
		}
	}
	if cfg.MSS != 0 && (cfg.MSS < 536 || cfg.MSS > 1460) {
		return nil, fmt.Errorf("capgen: busy mode: MSS %d not in 536..1460", cfg.MSS)
	}
	if cfg.CookieMin < 0 || cfg.CookieMax < 0 || cfg.CookieMax > 64<<10 {
		return nil, fmt.Errorf("capgen: busy mode: cookie sizes %d..%d not in 0..64 KiB", cfg.CookieMin, cfg.CookieMax)
	}
	g, err := newGen(w, Config{Seed: cfg.Seed, Format: cfg.Format, LinkType: link, VLAN: cfg.VLAN,
		TargetBytes: cfg.TargetBytes, NoTruth: true, XFFRate: -1})
	if err != nil {
		return nil, err
	}
	b := &busy{g: g, cfg: cfg, collect: !cfg.NoTruth}
	b.conns = cfg.Conns
	if b.conns == 0 {
		b.conns = 5000
	}
	b.meanReq = cfg.Requests
	if b.meanReq <= 0 {
		b.meanReq = 4
	}
	b.preRate = rate(cfg.PreOpenRate, 0.1)
	b.rstRate = rate(cfg.RSTRate, 0.1)
	b.reuseRate = rate(cfg.ReuseRate, 0.05)
	b.v6Rate = rate(cfg.IPv6Rate, 0.3)
	b.fwdRate = rate(cfg.FwdRate, 0.85)
	b.cookieRate = rate(cfg.CookieRate, 0.1)
	b.splitRate = rate(cfg.SplitRate, 0.2)
	b.pipeRate = rate(cfg.PipelineRate, 0.1)
	b.bodyRate = rate(cfg.BodyRate, 0.3)
	b.chunkRate = rate(cfg.ChunkedRate, 0.4)
	b.decoyRate = rate(cfg.DecoyRate, 0.2)
	b.retxRate = rate(cfg.RetransRate, 0.01)
	b.dupRate = rate(cfg.DupRate, 0.005)
	b.reorderRate = rate(cfg.ReorderRate, 0.01)
	b.gapRate = rate(cfg.GapRate, 0.002)
	b.cookieMin, b.cookieMax = cfg.CookieMin, cfg.CookieMax
	if b.cookieMin == 0 {
		b.cookieMin = 1 << 10
	}
	if b.cookieMax == 0 {
		b.cookieMax = 16 << 10
	}
	if b.cookieMax < b.cookieMin {
		b.cookieMax = b.cookieMin
	}
	b.ramp = true
	b.nextPort = [2]int{portLo, portLo}
	for v6 := 0; v6 < 2; v6++ {
		for i := 0; i < numBusyBackends; i++ {
			a := backendAddr(v6 == 1, i).String()
			if v6 == 1 {
				a = "[" + a + "]"
			}
			b.host[v6][i][0] = a + ":8080"
			b.host[v6][i][1] = fmt.Sprintf("svc%02d.backend.internal", i)
		}
	}
	return b, nil
}

// run writes records until TargetBytes: each step writes the next record
// (two for a duplicated frame) of a connection picked at random.
func (b *busy) run() {
	g := b.g
	r := &g.r
	for g.err == nil && g.n < b.cfg.TargetBytes {
		if b.ramp && (len(b.active) == 0 || r.chance(0.5)) {
			b.startNew(true)
			continue
		}
		i := r.intn(len(b.active))
		c := b.active[i]
		if b.ramp && c.closing() {
			// Nothing closes before all conns are open.
			b.startNew(true)
			continue
		}
		b.step(c)
		if c.done {
			last := len(b.active) - 1
			b.active[i] = b.active[last]
			b.active = b.active[:last]
			b.retire(c)
			if !b.ramp {
				b.active = append(b.active, b.newConn(false))
			}
		}
	}
	// The capture ends: requests not wholly written are cut by its end.
	for _, c := range b.active {
		b.finalize(c, true)
	}
}

// startNew creates a connection during the ramp and writes its first
// record.
func (b *busy) startNew(initial bool) {
	c := b.newConn(initial && b.g.r.chance(b.preRate))
	b.active = append(b.active, c)
	b.opened++
	if b.opened >= b.conns {
		b.ramp = false
	}
	b.step(c)
}

// step writes c's next record.
func (b *busy) step(c *bconn) {
	for {
		if c.next == len(c.items) {
			if !b.refill(c) {
				c.done = true
				return
			}
		}
		it := &c.items[c.next]
		c.next++
		if it.mode == imGhost {
			b.tr.Gaps++
			if b.collect {
				b.tr.gapSegs = append(b.tr.gapSegs, busyGap{src: c.p.cli, dst: c.p.srv, seq: it.seq, n: int(it.n)})
				b.tr.GapSegs = append(b.tr.GapSegs, BusyGap{Src: c.p.cli, Dst: c.p.srv, Seq: it.seq, Len: int(it.n)})
			}
			continue
		}
		b.emit(c, it)
		if c.next == len(c.items) && c.phase == phClosed {
			c.done = true
		}
		return
	}
}

// retire ends a connection whose last record was written.
func (b *busy) retire(c *bconn) {
	b.finalize(c, false)
	if c.started {
		b.open--
	}
	v := 0
	if c.p.v6 {
		v = 1
	}
	b.inUse[v][c.p.cli.Port()] = false
	b.closed[b.closedN%len(b.closed)] = closedTuple{v6: c.p.v6, port: c.p.cli.Port(), backend: c.p.backend,
		srvPort: c.p.srv.Port(), seqEnd: c.seq[0]}
	b.closedN++
	b.release(c)
	b.free = append(b.free, c)
}

// ---- connections ---------------------------------------------------------

// A bconn is one connection of the busy link. Its records are planned one
// batch (handshake, requests and responses, close) at a time, into items.
type bconn struct {
	p       conn // addressing, for gen.frameHeader
	seq     [2]uint32
	nreq    int  // requests still to plan
	pre     bool // open before the capture
	reused  bool // the 5-tuple of a closed connection
	phase   uint8
	started bool // a record was written
	done    bool
	gapped  bool // a client byte is missing: later requests are gap-affected
	exch    int  // batches planned
	rst     bool // closes with a RST
	hostIdx int  // which Host spelling its requests use
	maxSeg  int32
	base    uint32 // sequence number of cbuf[0]

	items      []bitem
	next       int
	cbuf, sbuf []byte // client and server bytes of the batch
	segs       []bseg
	reqs       []breq
	lines      []bline
	addrs      []netip.Addr
}

const (
	phNew     = iota // handshake not planned
	phData           // batches
	phClosing        // close planned
	phClosed         // close planned and nothing after it
)

type bitem struct {
	dir, flags uint8
	src        uint8 // srcNone, srcBuf (cbuf or sbuf by dir), srcPool
	mode       uint8
	off, n     int32
	seq, ack   uint32
	seg        int32 // client data segment, or -1
}

// Item modes.
const (
	imNormal = iota
	imDup    // written twice, back to back
	imGhost  // a missing segment: not written
	imCopy   // a later exact copy of an earlier item
	imClose  // a FIN or RST, or what follows it
)

// bseg is a client data segment of the current batch.
type bseg struct {
	off, n  int32 // in cbuf
	l0, l1  int32 // the lines starting in it
	gap     bool
	written bool
	recOff  int64
	ts      time.Time
}

type breq struct {
	start, hdrEnd, end int32 // in cbuf: request line, just after the empty line, end of the body
	l0, l1             int32 // its lines
	method, target     string
	host               string
	lines              [numHeaders]int16
	chunked            bool
}

type bline struct {
	start, end   int32 // first byte of the name; just after the line end
	vstart, vend int32 // the trimmed value
	a0, a1       int32 // its addresses in bconn.addrs
	nonAddr      int16
	hdr          uint8
	req          int16
}

func (c *bconn) closing() bool {
	return c.next < len(c.items) && c.items[c.next].mode == imClose ||
		c.next == len(c.items) && c.phase == phData && c.nreq == 0
}

// newConn plans a connection: a fresh client port, or (ReuseRate) the
// 5-tuple of a recently closed connection with a new ISN far from its old
// sequence numbers.
func (b *busy) newConn(pre bool) *bconn {
	g := b.g
	r := &g.r
	var c *bconn
	if n := len(b.free); n > 0 {
		c = b.free[n-1]
		b.free = b.free[:n-1]
	} else {
		c = new(bconn)
	}
	*c = bconn{}
	c.pre = pre
	c.hostIdx = r.intn(2)
	x := r.u64()
	c.seq = [2]uint32{uint32(x), uint32(x >> 32)}
	x = r.u64()
	c.p.ipid = [4]uint16{uint16(x), uint16(x >> 16), uint16(x >> 32), uint16(x >> 48)}
	reused := false
	if !pre && b.closedN > 0 && r.chance(b.reuseRate) {
		n := min(b.closedN, len(b.closed))
		ct := b.closed[(b.closedN-1-r.intn(n))%len(b.closed)]
		v := 0
		if ct.v6 {
			v = 1
		}
		if !b.inUse[v][ct.port] {
			reused = true
			c.p.v6, c.p.backend = ct.v6, ct.backend
			c.p.cli = netip.AddrPortFrom(proxyAddrOf(ct.v6), ct.port)
			c.p.srv = netip.AddrPortFrom(backendAddr(ct.v6, ct.backend), ct.srvPort)
			c.seq[0] = ct.seqEnd + 1<<31 + uint32(r.intn(1<<30))
			b.inUse[v][ct.port] = true
			c.reused = true
		}
	}
	if !reused {
		c.p.v6 = r.chance(b.v6Rate)
		c.p.backend = r.intn(numBusyBackends)
		v := 0
		if c.p.v6 {
			v = 1
		}
		for b.inUse[v][b.nextPort[v]] {
			b.advancePort(v)
		}
		port := uint16(b.nextPort[v])
		b.advancePort(v)
		b.inUse[v][port] = true
		srvPort := uint16(8080)
		if r.intn(10) < 3 {
			srvPort = 80
		}
		c.p.cli = netip.AddrPortFrom(proxyAddrOf(c.p.v6), port)
		c.p.srv = netip.AddrPortFrom(backendAddr(c.p.v6, c.p.backend), srvPort)
	}
	c.p.mac = macBackend
	c.p.mac[5] = byte(1 + c.p.backend)
	c.p.tun, c.p.iface = tunNone, 0
	m := b.cfg.MSS
	if m == 0 {
		m = 1460 - 12*r.intn(2)
		if c.p.v6 {
			m -= 20
		}
	}
	c.p.mss = uint16(m)
	c.nreq = 1 + min(geometric(r, b.meanReq), 8*b.meanReq-1)
	c.rst = r.chance(b.rstRate)
	if pre {
		c.phase = phData
	}
	return c
}

func (b *busy) advancePort(v int) {
	b.nextPort[v]++
	if b.nextPort[v] > portHi {
		b.nextPort[v] = portLo
	}
}

func proxyAddrOf(v6 bool) netip.Addr {
	if v6 {
		return proxy6
	}
	return proxy4
}

// geometric draws a count >= 0 with mean about mean-1.
func geometric(r *rng, mean int) int {
	if mean <= 1 {
		return 0
	}
	p := 1 / float64(mean)
	n := 0
	for !r.chance(p) && n < 1<<16 {
		n++
	}
	return n
}

// ---- writing ---------------------------------------------------------------

// emit writes one record of c.
func (b *busy) emit(c *bconn, it *bitem) {
	g := b.g
	var pl []byte
	switch it.src {
	case srcBuf:
		if it.dir == 0 {
			pl = c.cbuf[it.off : it.off+it.n]
		} else {
			pl = c.sbuf[it.off : it.off+it.n]
		}
	case srcPool:
		pl = g.pool[it.off : it.off+it.n]
	}
	hdr := g.frameHeader(&c.p, it.dir, it.flags, it.seq, it.ack, pl)
	off, ts := g.writePacket(0, g.tick(), false, hdr, pl, -1)
	b.tr.Packets++
	if !c.started {
		c.started = true
		b.tr.Conns++
		b.open++
		b.tr.MaxOpen = max(b.tr.MaxOpen, b.open)
		if c.pre {
			b.tr.PreOpen++
		}
		if c.reused {
			b.tr.Reused++
		}
	}
	if it.seg >= 0 {
		s := &c.segs[it.seg]
		if !s.written {
			s.written, s.recOff, s.ts = true, off, ts
			if it.seg < c.maxSeg {
				b.tr.Reordered++
			}
			c.maxSeg = max(c.maxSeg, it.seg)
		} else {
			b.tr.Retrans++
			b.noteCopy(c, s, off)
		}
	}
	if it.mode == imDup {
		// The same frame again (same IP ID): a duplicate made by the
		// capture path.
		off2, _ := g.writePacket(0, g.tick(), false, hdr, pl, -1)
		b.tr.Packets++
		b.tr.Dups++
		if it.seg >= 0 {
			b.noteCopy(c, &c.segs[it.seg], off2)
		}
	}
	if it.flags&tcpRST != 0 {
		b.tr.Resets++
	}
}

// noteCopy records a later copy of segment s that starts with a request
// line, for the tshark test.
func (b *busy) noteCopy(c *bconn, s *bseg, off int64) {
	if !b.collect {
		return
	}
	cp := busyCopy{off: off}
	starts := false
	for ri := range c.reqs {
		rq := &c.reqs[ri]
		if rq.start == s.off {
			starts = true
		}
		if rq.start >= s.off && rq.end <= s.off+s.n {
			cp.reqs++
			for h := range numHeaders {
				cp.fwd[h] += int(rq.lines[h])
			}
		}
	}
	if starts {
		b.tr.copies = append(b.tr.copies, cp)
	}
}

// refill plans c's next batch of records; false when c is finished.
func (b *busy) refill(c *bconn) bool {
	b.finalize(c, false)
	b.release(c)
	if c.phase == phClosed {
		return false
	}
	c.items, c.segs, c.reqs, c.lines, c.addrs = b.sc.items[:0], b.sc.segs[:0], b.sc.reqs[:0], b.sc.lines[:0], b.sc.addrs[:0]
	c.next = 0
	switch {
	case c.phase == phNew:
		b.handshake(c)
		c.phase = phData
	case c.nreq > 0:
		b.planBatch(c)
	default:
		b.planClose(c)
		c.phase = phClosed
	}
	b.commit(c)
	return true
}

// batchSlices are the slices of one planned batch.
type batchSlices struct {
	items []bitem
	segs  []bseg
	reqs  []breq
	lines []bline
	addrs []netip.Addr
}

// commit moves the batch c was planned into (the scratch slices) into
// pooled slices.
func (b *busy) commit(c *bconn) {
	b.sc = batchSlices{c.items, c.segs, c.reqs, c.lines, c.addrs}
	c.items = append(b.items.get(len(c.items)), c.items...)
	c.segs = append(b.segs.get(len(c.segs)), c.segs...)
	c.reqs = append(b.reqs.get(len(c.reqs)), c.reqs...)
	c.lines = append(b.lines.get(len(c.lines)), c.lines...)
	c.addrs = append(b.addrs.get(len(c.addrs)), c.addrs...)
}

// release returns c's batch memory to the pools.
func (b *busy) release(c *bconn) {
	b.items.put(c.items)
	b.segs.put(c.segs)
	b.reqs.put(c.reqs)
	b.lines.put(c.lines)
	b.addrs.put(c.addrs)
	b.putBuf(c.cbuf)
	b.putBuf(c.sbuf)
	c.items, c.segs, c.reqs, c.lines, c.addrs, c.cbuf, c.sbuf = nil, nil, nil, nil, nil, nil, nil
}

// pool holds free slices in size classes of 16 << class elements.
type pool[T any] struct {
	free [numClasses][][]T
}

func (p *pool[T]) get(n int) []T {
	if n == 0 {
		return nil
	}
	cl := 0
	for 16<<cl < n && cl < numClasses-1 {
		cl++
	}
	if 16<<cl < n {
		return make([]T, 0, n)
	}
	if l := len(p.free[cl]); l > 0 {
		s := p.free[cl][l-1]
		p.free[cl] = p.free[cl][:l-1]
		return s
	}
	return make([]T, 0, 16<<cl)
}

func (p *pool[T]) put(s []T) {
	for cl := range numClasses {
		if cap(s) == 16<<cl {
			p.free[cl] = append(p.free[cl], s[:0])
			return
		}
	}
}

func (b *busy) handshake(c *bconn) {
	c.items = append(c.items,
		bitem{dir: 0, flags: tcpSYN, seq: c.seq[0], seg: -1},
		bitem{dir: 1, flags: tcpSYN | tcpACK, seq: c.seq[1], ack: c.seq[0] + 1, seg: -1},
		bitem{dir: 0, flags: tcpACK, seq: c.seq[0] + 1, ack: c.seq[1] + 1, seg: -1})
	c.seq[0]++
	c.seq[1]++
}

func (b *busy) planClose(c *bconn) {
	if c.rst {
		fl := uint8(tcpRST | tcpACK)
		if b.g.r.intn(2) == 0 {
			c.items = append(c.items, bitem{dir: 0, flags: fl, seq: c.seq[0], ack: c.seq[1], seg: -1, mode: imClose})
		} else {
			c.items = append(c.items, bitem{dir: 1, flags: fl, seq: c.seq[1], ack: c.seq[0], seg: -1, mode: imClose})
		}
		return
	}
	c.items = append(c.items,
		bitem{dir: 0, flags: tcpFIN | tcpACK, seq: c.seq[0], ack: c.seq[1], seg: -1, mode: imClose},
		bitem{dir: 1, flags: tcpFIN | tcpACK, seq: c.seq[1], ack: c.seq[0] + 1, seg: -1, mode: imClose},
		bitem{dir: 0, flags: tcpACK, seq: c.seq[0] + 1, ack: c.seq[1] + 1, seg: -1, mode: imClose})
	c.seq[0]++
	c.seq[1]++
}

// ---- the truth ---------------------------------------------------------------

// finalize accounts for c's current batch once its records are written,
// or, with end, when the capture ends before they are. A request is
// gap-affected when a client byte of its connection before the end of its
// header block (from the first captured one on) is not in the capture: a
// missing segment of this batch or an earlier one, or one the capture
// ended before.
func (b *busy) finalize(c *bconn, end bool) {
	if len(c.reqs) == 0 {
		return
	}
	missing := int32(len(c.cbuf)) // the lowest cbuf offset not in the capture
	for i := range c.segs {
		if s := &c.segs[i]; !s.written {
			missing = min(missing, s.off)
			if end && !s.gap && b.collect {
				b.tr.endSegs = append(b.tr.endSegs, busyGap{src: c.p.cli, dst: c.p.srv, seq: c.base + uint32(s.off), n: int(s.n)})
			}
		}
	}
	var affected [4]bool // per request of the batch (at most 3)
	for ri := range c.reqs {
		rq := &c.reqs[ri]
		aff := c.gapped || missing < rq.hdrEnd
		affected[ri] = aff
		if !c.wroteAny(rq.start, rq.hdrEnd) {
			continue
		}
		if aff {
			b.tr.GapRequests++
			continue
		}
		b.tr.Requests++
		bodyLost := missing < rq.end
		for h := range numHeaders {
			b.tr.lines[h] += int(rq.lines[h])
			if bodyLost {
				b.tr.tsLost[h] += int(rq.lines[h])
			}
		}
	}
	if missing < int32(len(c.cbuf)) {
		c.gapped = true
	}
	if b.collect {
		b.collectHits(c, affected[:len(c.reqs)])
	}
	c.reqs = c.reqs[:0]
}

// wroteAny reports whether a byte of cbuf[from:to] is in the capture.
func (c *bconn) wroteAny(from, to int32) bool {
	for i := range c.segs {
		s := &c.segs[i]
		if s.written && s.off < to && s.off+s.n > from {
			return true
		}
	}
	return false
}

// collectHits adds the hits of c's batch: per written segment and header,
// the lines of that header starting in it.
func (b *busy) collectHits(c *bconn, affected []bool) {
	for si := range c.segs {
		s := &c.segs[si]
		if !s.written || s.l0 == s.l1 {
			continue
		}
		for h := uint8(0); h < numHeaders; h++ {
			var hit BusyHit
			n, aff, last := 0, false, int16(-1)
			for li := s.l0; li < s.l1; li++ {
				ln := &c.lines[li]
				if ln.hdr != h {
					continue
				}
				rq := &c.reqs[ln.req]
				switch {
				case n == 0:
					hit = BusyHit{Offset: s.recOff, Header: headerNames[h], Src: c.p.cli, Dst: c.p.srv, TS: s.ts,
						Method: rq.method, Target: rq.target, Host: rq.host, List: c.list(rq, h),
						Cont: rq.start < s.off || rq.start >= s.off+s.n}
				case ln.req != last:
					hit.More = append(hit.More, BusyReq{Method: rq.method, Target: rq.target, Host: rq.host, List: c.list(rq, h)})
				}
				last = ln.req
				n++
				hit.Raw = append(hit.Raw, string(c.cbuf[ln.vstart:ln.vend]))
				for _, a := range c.addrs[ln.a0:ln.a1] {
					if !slices.Contains(hit.Addrs, a) {
						hit.Addrs = append(hit.Addrs, a)
					}
				}
				hit.NonAddr += int(ln.nonAddr)
				if ln.end > s.off+s.n {
					hit.Split = true
				}
				aff = aff || affected[ln.req]
			}
			if n == 0 || len(hit.Addrs) == 0 {
				continue
			}
			if aff {
				b.tr.GapHits = append(b.tr.GapHits, hit)
			} else {
				b.tr.Hits = append(b.tr.Hits, hit)
			}
		}
	}
}

// list returns request rq's values of header h joined with ", ".
func (c *bconn) list(rq *breq, h uint8) string {
	var sb strings.Builder
	for li := rq.l0; li < rq.l1; li++ {
		if ln := &c.lines[li]; ln.hdr == h {
			if sb.Len() > 0 {
				sb.WriteString(", ")
			}
			sb.Write(c.cbuf[ln.vstart:ln.vend])
		}
	}
	return sb.String()
}
