package capgen

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net/netip"
	"strings"
)

// Hostile captures: records that are malformed by the letter of the format
// but that libpcap and tshark read, requests built to hide a forwarding
// header from a parser, and byte patterns that are costly for a walker or
// a header scanner. Tests write them and compare what xffidx finds with
// what tshark shows, or with the Want each case carries.

// PcapWriter builds a classic pcap file in memory whose record header
// fields are exactly the caller's: nothing is checked or made consistent.
type PcapWriter struct {
	buf   []byte
	order binary.ByteOrder
}

// NewPcapWriter starts a file with the given header fields (µs timestamps
// unless nano, little-endian unless bigEndian).
func NewPcapWriter(snapLen, linkType uint32, nano, bigEndian bool) *PcapWriter {
	w := &PcapWriter{order: binary.LittleEndian}
	if bigEndian {
		w.order = binary.BigEndian
	}
	magic := uint32(0xa1b2c3d4)
	if nano {
		magic = 0xa1b23c4d
	}
	h := make([]byte, 24)
	w.order.PutUint32(h, magic)
	w.order.PutUint16(h[4:], 2)
	w.order.PutUint16(h[6:], 4)
	w.order.PutUint32(h[16:], snapLen)
	w.order.PutUint32(h[20:], linkType)
	w.buf = h
	return w
}

// PcapHeader returns the 24-byte file header NewPcapWriter writes.
func PcapHeader(snapLen, linkType uint32, nano bool) []byte {
	return NewPcapWriter(snapLen, linkType, nano, false).Bytes()
}

// Record appends one record: its header with the fields given, then data
// (which should hold capLen bytes for the file to be consistent).
func (w *PcapWriter) Record(sec, frac, capLen, origLen uint32, data []byte) {
	var h [16]byte
	w.order.PutUint32(h[0:], sec)
	w.order.PutUint32(h[4:], frac)
	w.order.PutUint32(h[8:], capLen)
	w.order.PutUint32(h[12:], origLen)
	w.buf = append(append(w.buf, h[:]...), data...)
}

// Packet appends a record whose lengths are those of frame.
func (w *PcapWriter) Packet(sec, frac uint32, frame []byte) {
	w.Record(sec, frac, uint32(len(frame)), uint32(len(frame)), frame)
}

// Bytes returns the file so far.
func (w *PcapWriter) Bytes() []byte { return w.buf }

// TCPFrame returns an Ethernet frame carrying one TCP segment from src to
// dst (IPv4 or IPv6), with its checksums.
func TCPFrame(src, dst netip.AddrPort, seq, ack uint32, flags uint8, payload []byte) []byte {
	v6 := src.Addr().Is6() && !src.Addr().Is4In6()
	ipLen, etype := 20, uint16(0x0800)
	if v6 {
		ipLen, etype = 40, 0x86DD
	}
	f := make([]byte, 14+ipLen+20, 14+ipLen+20+len(payload))
	putEth(f, macBackend, macProxy, etype)
	ip := f[14:]
	var ps uint64 // pseudo-header sum
	if v6 {
		s, d := src.Addr().As16(), dst.Addr().As16()
		be.PutUint32(ip, 0x60000000)
		be.PutUint16(ip[4:], uint16(20+len(payload)))
		ip[6], ip[7] = 6, 64
		copy(ip[8:24], s[:])
		copy(ip[24:40], d[:])
		ps = sum16(ip[8:40])
	} else {
		putIPv4(ip, ipLen+20+len(payload), uint16(seq), 6, src.Addr().Unmap().As4(), dst.Addr().Unmap().As4())
		ps = sum16(ip[12:20])
	}
	ps += 6 + uint64(20+len(payload))
	tcp := ip[ipLen:]
	be.PutUint16(tcp, src.Port())
	be.PutUint16(tcp[2:], dst.Port())
	be.PutUint32(tcp[4:], seq)
	be.PutUint32(tcp[8:], ack)
	tcp[12], tcp[13] = 5<<4, flags
	be.PutUint16(tcp[14:], 0xfaf0)
	be.PutUint16(tcp[16:], ^fold(ps+sum16(tcp[:20])+sum16(payload)))
	return append(f, payload...)
}

// A HostileCase is one small capture and what a reader that agrees with
// tshark finds in it.
type HostileCase struct {
	Name string
	Data []byte
	// Frames is how many packet records libpcap and tshark read.
	Frames int
	// Want maps a frame number (from 1, as tshark counts) to the
	// X-Forwarded-For values, trimmed, of the lines in it (or the bare
	// addresses): the addresses their elements name are what xffidx must
	// find there.
	Want map[int][]string
	// Hidden lists, per frame, the addresses of Want that tshark does not
	// show: its X-Forwarded-For field ends at a NUL or a bare CR, and it
	// takes only the request methods it knows for requests.
	Hidden map[int][]string
}

// hostileFlow is a client connection of the hostile captures; each
// request goes in one segment of its own connection, which starts with a
// handshake, so that any reader that follows connections reads it as the
// request it is.
type hostileFlow struct {
	w   *PcapWriter
	cli netip.AddrPort
	srv netip.AddrPort
	seq uint32
	sec uint32
}

func newHostileFlow(w *PcapWriter, n int) *hostileFlow {
	return &hostileFlow{
		w:   w,
		cli: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, 2}), uint16(40000+n)),
		srv: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 1, 8}), 80),
		seq: 1000 * uint32(n+1),
		sec: 1700000000 + uint32(n),
	}
}

// syn writes the handshake's SYN as a plain record.
func (f *hostileFlow) syn() {
	f.w.Packet(f.sec, 0, TCPFrame(f.cli, f.srv, f.seq, 0, tcpSYN, nil))
	f.seq++
}

// request returns the frame of one client segment carrying payload.
func (f *hostileFlow) request(payload string) []byte {
	fr := TCPFrame(f.cli, f.srv, f.seq, 1, tcpACK|tcpPSH, []byte(payload))
	f.seq += uint32(len(payload))
	return fr
}

func xffRequest(addrs string) string {
	return "GET /r HTTP/1.1\r\nHost: backend\r\nX-Forwarded-For: " + addrs + "\r\n\r\n"
}

// OddRecordCaptures returns classic pcap captures whose records break a
// rule of the format that libpcap and tshark do not enforce when reading:
// a captured length above the file header's snap length, a wire length
// below the captured length (or zero), a fraction of a second of 10^6 µs or
// more (10^9 ns), and runs of records that capture nothing. Each odd record
// carries, or comes right before, a request with X-Forwarded-For.
func OddRecordCaptures() []HostileCase {
	var cases []HostileCase
	add := func(name string, snap uint32, nano bool, build func(w *PcapWriter, c *HostileCase)) {
		w := NewPcapWriter(snap, LinkEthernet, nano, false)
		c := HostileCase{Name: name, Want: map[int][]string{}}
		build(w, &c)
		c.Data = w.Bytes()
		cases = append(cases, c)
	}
	// rec writes a request on a new connection with the record header
	// fields set by mod, and notes what it holds.
	rec := func(w *PcapWriter, c *HostileCase, n int, addr string, mod func(frame []byte) (frac, capLen, origLen uint32, data []byte)) {
		f := newHostileFlow(w, n)
		f.syn()
		c.Frames++
		frame := f.request(xffRequest(addr))
		frac, capLen, origLen, data := mod(frame)
		w.Record(f.sec, frac, capLen, origLen, data)
		c.Frames++
		c.Want[c.Frames] = []string{addr}
	}
	plain := func(frame []byte) (uint32, uint32, uint32, []byte) {
		return 0, uint32(len(frame)), uint32(len(frame)), frame
	}
	add("caplen-above-snaplen", 64, false, func(w *PcapWriter, c *HostileCase) {
		// The header says 64; every record captured more (a writer that
		// set the snap length wrong, or a merge of captures).
		for i := range 6 {
			rec(w, c, i, fmt.Sprintf("203.0.113.%d", 10+i), plain)
		}
	})
	add("caplen-above-65535", 65535, false, func(w *PcapWriter, c *HostileCase) {
		// A GRO/TSO-sized frame of 70000 bytes in a file that says 65535.
		rec(w, c, 0, "203.0.113.20", plain)
		rec(w, c, 1, "203.0.113.21", func(frame []byte) (uint32, uint32, uint32, []byte) {
			big := append(frame[:len(frame):len(frame)], make([]byte, 70000-len(frame))...)
			return 0, uint32(len(big)), uint32(len(big)), big
		})
		rec(w, c, 2, "203.0.113.22", plain)
		rec(w, c, 3, "203.0.113.23", plain)
	})
	add("wirelen-below-caplen", 262144, false, func(w *PcapWriter, c *HostileCase) {
		for i := range 6 {
			rec(w, c, i, fmt.Sprintf("203.0.113.%d", 30+i), func(frame []byte) (uint32, uint32, uint32, []byte) {
				orig := []uint32{60, 1, 0, 14, 54, uint32(len(frame)) - 1}[i]
				return 0, uint32(len(frame)), orig, frame
			})
		}
	})
	add("usec-above-1e6", 262144, false, func(w *PcapWriter, c *HostileCase) {
		for i := range 6 {
			rec(w, c, i, fmt.Sprintf("203.0.113.%d", 40+i), func(frame []byte) (uint32, uint32, uint32, []byte) {
				frac := []uint32{1_000_000, 1_500_000, 999_999_999, 4_294_967_295, 2_000_000, 1_000_001}[i]
				return frac, uint32(len(frame)), uint32(len(frame)), frame
			})
		}
	})
	add("nsec-above-1e9", 262144, true, func(w *PcapWriter, c *HostileCase) {
		for i := range 6 {
			rec(w, c, i, fmt.Sprintf("203.0.113.%d", 50+i), func(frame []byte) (uint32, uint32, uint32, []byte) {
				frac := []uint32{1_000_000_000, 1_500_000_000, 4_294_967_295, 2_000_000_000, 1_000_000_001, 3_999_999_999}[i]
				return frac, uint32(len(frame)), uint32(len(frame)), frame
			})
		}
	})
	add("empty-records", 262144, false, func(w *PcapWriter, c *HostileCase) {
		// Runs of records that captured nothing, all-zero headers among
		// them, right before requests: 1, 4, 5 and 300 in a row.
		for i, run := range []int{1, 4, 5, 300} {
			for j := range run {
				switch j % 3 {
				case 0:
					w.Record(0, 0, 0, 0, nil)
				case 1:
					w.Record(1700000000, uint32(j), 0, 60, nil)
				default:
					w.Record(1700000000, 0, 0, 1500, nil)
				}
				c.Frames++
			}
			rec(w, c, i, fmt.Sprintf("203.0.113.%d", 60+i), plain)
		}
		// And a run at the end of the file.
		for range 7 {
			w.Record(0, 0, 0, 0, nil)
			c.Frames++
		}
	})
	add("all-odd", 64, false, func(w *PcapWriter, c *HostileCase) {
		// Everything at once: each record breaks every rule above.
		for i := range 6 {
			w.Record(0, 2_000_000, 0, 0, nil)
			c.Frames++
			rec(w, c, i, fmt.Sprintf("203.0.113.%d", 70+i), func(frame []byte) (uint32, uint32, uint32, []byte) {
				return 1_000_000 + uint32(i), uint32(len(frame)), uint32(i), frame
			})
		}
	})
	// The same in pcapng: Enhanced Packet Blocks captured beyond their
	// interface's snap length, with wire lengths below that.
	ng := NewPcapngWriter()
	ng.Interface(LinkEthernet, 64)
	c := HostileCase{Name: "pcapng-caplen-above-snaplen", Want: map[int][]string{}}
	for i := range 6 {
		f := newHostileFlow(nil, i)
		addr := fmt.Sprintf("203.0.113.%d", 80+i)
		fr := f.request(xffRequest(addr))
		orig := []uint32{uint32(len(fr)), 10, 0, uint32(len(fr)), 1, 60}[i]
		ng.Record(0, uint64(f.sec)*1e6+uint64(i)*1e6, uint32(len(fr)), orig, fr)
		c.Frames++
		c.Want[c.Frames] = []string{addr}
	}
	c.Data = ng.Bytes()
	return append(cases, c)
}

// PcapngWriter builds a pcapng file in memory (little-endian, one section)
// whose Enhanced Packet Block fields are exactly the caller's.
type PcapngWriter struct {
	buf []byte
}

// NewPcapngWriter starts a file with a Section Header Block.
func NewPcapngWriter() *PcapngWriter {
	w := &PcapngWriter{}
	shb := make([]byte, 28)
	le := binary.LittleEndian
	le.PutUint32(shb, 0x0A0D0D0A)
	le.PutUint32(shb[4:], 28)
	le.PutUint32(shb[8:], 0x1A2B3C4D)
	le.PutUint16(shb[12:], 1)
	le.PutUint64(shb[16:], ^uint64(0))
	le.PutUint32(shb[24:], 28)
	w.buf = shb
	return w
}

// Interface appends an Interface Description Block (µs timestamps).
func (w *PcapngWriter) Interface(linkType, snapLen uint32) {
	b := make([]byte, 20)
	le := binary.LittleEndian
	le.PutUint32(b, 1)
	le.PutUint32(b[4:], 20)
	le.PutUint16(b[8:], uint16(linkType))
	le.PutUint32(b[12:], snapLen)
	le.PutUint32(b[16:], 20)
	w.buf = append(w.buf, b...)
}

// Record appends an Enhanced Packet Block with the fields given; data is
// padded to 4 bytes.
func (w *PcapngWriter) Record(iface uint32, ts uint64, capLen, origLen uint32, data []byte) {
	total := 32 + len(data) + pad4(len(data))
	b := make([]byte, 28, total)
	le := binary.LittleEndian
	le.PutUint32(b, 6)
	le.PutUint32(b[4:], uint32(total))
	le.PutUint32(b[8:], iface)
	le.PutUint32(b[12:], uint32(ts>>32))
	le.PutUint32(b[16:], uint32(ts))
	le.PutUint32(b[20:], capLen)
	le.PutUint32(b[24:], origLen)
	b = append(b, data...)
	b = append(b, make([]byte, pad4(len(data)))...)
	b = le.AppendUint32(b, uint32(total))
	w.buf = append(w.buf, b...)
}

// Bytes returns the file so far.
func (w *PcapngWriter) Bytes() []byte { return w.buf }

// ZeroRegionCapture returns a classic pcap capture whose requests are
// separated by zero-filled regions, as a preallocated or sparse file has
// them: to libpcap each 16 zero bytes are a record that captured nothing
// (and tshark shows them as frames). The regions are 16 bytes to 1 MiB
// long; some records that captured nothing carry a timestamp.
func ZeroRegionCapture() HostileCase {
	w := NewPcapWriter(262144, LinkEthernet, false, false)
	c := HostileCase{Name: "zero-regions", Want: map[int][]string{}}
	for i, n := range []int{16, 48, 4096, 65536 + 16, 0, 1 << 20, 32} {
		w.buf = append(w.buf, make([]byte, n)...)
		c.Frames += n / 16
		if i%2 == 1 {
			w.Record(1600000000+uint32(i), 0, 0, 60, nil) // the earliest timestamps
			c.Frames++
		}
		f := newHostileFlow(w, i)
		f.syn()
		addr := fmt.Sprintf("203.0.113.%d", 100+i)
		w.Packet(f.sec, 1, f.request(xffRequest(addr)))
		c.Frames += 2
		c.Want[c.Frames] = []string{addr}
	}
	c.Data = w.Bytes()
	return c
}

// Request streams of WritePartialLines, each built so that a reader that
// looks ahead for the rest of a line (or keeps a cut line whole) would do
// work that grows faster than the bytes.
const (
	// PartialName: every client segment ends in the middle of a header
	// name ("X-Forwarded-F"), which the next segment of the connection
	// completes ("or: 192.0.2.7\r\n"); the segments of many connections
	// interleave.
	PartialName = "name-prefix"
	// PartialValue: every client segment ends in an X-Forwarded-For value
	// with no line end; the value goes on over 64 segments before its line
	// and its header block end.
	PartialValue = "open-value"
	// ManyNames: every client segment is a request line and thousands of
	// header names cut short and lines that are not forwarding headers
	// but start like one ("X-Forwarded-Fo: ", "X-Forwarded-F:"), and ends
	// in a name prefix that never goes on (the connection closes).
	ManyNames = "many-names"
	// ManyAddrs: every client segment is a request of 60 KB (a TSO or
	// GRO capture) whose X-Forwarded-For line lists 5000 distinct
	// addresses.
	ManyAddrs = "many-addrs"
)

// PartialConfig selects what WritePartialLines writes.
type PartialConfig struct {
	Kind  string // PartialName, PartialValue, ManyNames or ManyAddrs
	Conns int    // connections whose segments interleave (default 1000)
	Size  int64  // bytes to write, about
}

// WritePartialLines writes a classic pcap capture of HTTP requests cut by
// segment boundaries at the places cfg.Kind names. The addresses are in
// 192.0.2.0/24 (and 10.0.0.0/8 for ManyAddrs).
func WritePartialLines(w io.Writer, cfg PartialConfig) error {
	conns := cfg.Conns
	if conns <= 0 {
		conns = 1000
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	if _, err := bw.Write(PcapHeader(262144, LinkEthernet, false)); err != nil {
		return err
	}
	written := int64(24)
	type pconn struct {
		f    *hostileFlow
		segs int
	}
	cs := make([]pconn, conns)
	var rec [16]byte
	put := func(f *hostileFlow, payload []byte, flags uint8) error {
		fr := TCPFrame(f.cli, f.srv, f.seq, 1, flags, payload)
		f.seq += uint32(len(payload))
		if flags&(tcpSYN|tcpFIN) != 0 {
			f.seq++
		}
		binary.LittleEndian.PutUint32(rec[0:], f.sec)
		binary.LittleEndian.PutUint32(rec[4:], uint32(written%1e6))
		binary.LittleEndian.PutUint32(rec[8:], uint32(len(fr)))
		binary.LittleEndian.PutUint32(rec[12:], uint32(len(fr)))
		bw.Write(rec[:])
		_, err := bw.Write(fr)
		written += int64(16 + len(fr))
		return err
	}
	var seg []byte
	for i := 0; written < cfg.Size; i++ {
		c := &cs[i%conns]
		if c.f == nil {
			c.f = newHostileFlow(nil, i%conns)
			c.f.cli = netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(i % conns >> 8), byte(i % conns)}), uint16(30000+i/conns%30000))
			c.f.sec = 1700000000 + uint32(i/1000)
			if err := put(c.f, nil, tcpSYN); err != nil {
				return err
			}
			c.segs = 0
		}
		var last bool
		var err error
		seg, last, err = PartialSegment(seg[:0], cfg.Kind, c.segs, i)
		if err != nil {
			return err
		}
		if cfg.Kind == PartialValue && c.segs == 63 {
			c.segs = -1 // the block ended: the next segment starts a request
		}
		if err := put(c.f, seg, tcpACK|tcpPSH); err != nil {
			return err
		}
		c.segs++
		if last || c.segs >= 1000 {
			if err := put(c.f, nil, tcpACK|tcpFIN); err != nil {
				return err
			}
			c.f = nil
		}
	}
	return bw.Flush()
}

// PartialSegment appends to dst the payload of client segment k (from 0)
// of a connection of WritePartialLines of the given kind; n varies the
// addresses. last says the connection sends nothing more.
func PartialSegment(dst []byte, kind string, k, n int) (seg []byte, last bool, err error) {
	addr := fmt.Sprintf("192.0.2.%d", n%250+1)
	seg = dst
	switch kind {
	case PartialName:
		if k == 0 {
			seg = append(seg, "GET /p HTTP/1.1\r\nHost: backend\r\n"...)
		} else {
			seg = append(seg, "or: "...)
			seg = append(seg, addr...)
			seg = append(seg, "\r\n"...)
		}
		for len(seg)-len(dst) < mss-64 {
			seg = append(seg, "X-Forwarded-For: "...)
			seg = append(seg, addr...)
			seg = append(seg, "\r\nAccept: */*\r\n"...)
		}
		seg = append(seg, "X-Forwarded-F"...)
	case PartialValue:
		if k == 0 {
			seg = append(seg, "GET /v HTTP/1.1\r\nHost: backend\r\nX-Forwarded-For: "...)
			seg = append(seg, addr...)
		}
		for len(seg)-len(dst) < mss-16 {
			seg = append(seg, ", "...)
			seg = append(seg, addr...)
		}
		if k == 63 {
			seg = append(seg, "\r\n\r\n"...)
		}
	case ManyNames:
		seg = append(seg, "GET /n HTTP/1.1\r\nHost: backend\r\n"...)
		for j := 0; len(seg)-len(dst) < mss-32; j++ {
			switch j % 3 {
			case 0:
				seg = append(seg, "X-Forwarded-Fo: "...)
				seg = append(seg, addr...)
				seg = append(seg, "\r\n"...)
			case 1:
				seg = append(seg, "X-Forwarded-F:1\r\n"...)
			default:
				seg = append(seg, "X-Forwarded-FX-Forwarded-FX-Forwarded-Fo: x\r\n"...)
			}
		}
		seg = append(seg, "X-Forwarded-F"...)
		last = true
	case ManyAddrs:
		seg = append(seg, "GET /a HTTP/1.1\r\nHost: backend\r\nX-Forwarded-For: "...)
		for j := range 5000 {
			seg = fmt.Appendf(seg, "10.%d.%d.%d, ", byte(n), byte(j>>8), byte(j))
		}
		seg = append(seg, addr...)
		seg = append(seg, "\r\n\r\n"...)
	default:
		return dst, false, fmt.Errorf("unknown partial-line kind %q", kind)
	}
	return seg, last, nil
}

// HostileRequest appends to w connection n's handshake SYN and one client
// segment carrying request, as two records.
func HostileRequest(w *PcapWriter, n int, request string) {
	f := newHostileFlow(w, n)
	f.syn()
	w.Packet(f.sec, 1, f.request(request))
}

// EvasiveRequests returns a capture of requests built to hide their
// X-Forwarded-For lines from a parser, each on a connection of its own:
// control bytes (TAB, ESC, NUL, DEL, VT, FF...), bytes above 0x7f and
// spaces in the request target; control bytes, NUL and bare CR inside
// the value; header lines whose names are not tokens before the
// X-Forwarded-For line; a header block padded with hundreds of
// X-Forwarded-For lines before the one a proxy appends. The addresses are
// in 203.0.113.0/24 (and 10.1.0.0/16 for the padding).
func EvasiveRequests() HostileCase {
	type evasion struct {
		line   string // request line
		fields string // header lines, %[1]s and %[2]s the two addresses
		find   string // addresses xffidx must find, space-separated
		hidden string // of those, the addresses tshark does not show
	}
	const xffAB = "X-Forwarded-For: %[1]s, %[2]s\r\n"
	evasions := []evasion{
		// Request targets.
		{"GET /a\tb HTTP/1.1", xffAB, "%[1]s %[2]s", ""},
		{"GET /a\x1bb HTTP/1.1", xffAB, "%[1]s %[2]s", ""},
		{"GET /a\x01b HTTP/1.1", xffAB, "%[1]s %[2]s", ""},
		{"GET /a\x7fb HTTP/1.1", xffAB, "%[1]s %[2]s", ""},
		{"GET /a\x80b HTTP/1.1", xffAB, "%[1]s %[2]s", ""},
		{"GET /caf\xc3\xa9 HTTP/1.1", xffAB, "%[1]s %[2]s", ""},
		{"GET /a\xffb HTTP/1.1", xffAB, "%[1]s %[2]s", ""},
		{"GET /a\x00b HTTP/1.1", xffAB, "%[1]s %[2]s", ""},
		{"GET /a\x0bb HTTP/1.1", xffAB, "%[1]s %[2]s", ""},
		{"GET /a\x0cb HTTP/1.1", xffAB, "%[1]s %[2]s", ""},
		{"GET /a\x1fb HTTP/1.1", xffAB, "%[1]s %[2]s", ""},
		{"GET /a b HTTP/1.1", xffAB, "%[1]s %[2]s", ""},
		{"GET  /a HTTP/1.1", xffAB, "%[1]s %[2]s", ""},
		// A bare CR ends tshark's request line; neither reads a request.
		{"GET /a\rb HTTP/1.1", xffAB, "", ""},
		{"GET\t/a HTTP/1.1", xffAB, "", ""},
		// Any token is a method to xffidx; tshark knows a list.
		{"PURGE /a HTTP/1.1", xffAB, "%[1]s %[2]s", "%[1]s %[2]s"},
		// Values.
		{"GET /v HTTP/1.1", "X-Forwarded-For: %[1]s\x00, %[2]s\r\n", "%[1]s %[2]s", "%[2]s"},
		{"GET /v HTTP/1.1", "X-Forwarded-For: %[1]s\x00%[2]s\r\n", "%[1]s %[2]s", "%[2]s"},
		{"GET /v HTTP/1.1", "X-Forwarded-For: \x00%[1]s, %[2]s\r\n", "%[1]s %[2]s", "%[1]s %[2]s"},
		{"GET /v HTTP/1.1", "X-Forwarded-For: %[1]s, %[2]s\x00\r\n", "%[1]s %[2]s", ""},
		{"GET /v HTTP/1.1", "X-Forwarded-For: %[1]s\x1b, %[2]s\r\n", "%[1]s %[2]s", ""},
		{"GET /v HTTP/1.1", "X-Forwarded-For: %[1]s, \x01%[2]s\r\n", "%[1]s %[2]s", ""},
		{"GET /v HTTP/1.1", "X-Forwarded-For: %[1]s\x7f, %[2]s\r\n", "%[1]s %[2]s", ""},
		// A byte above 0x7f is no separator: "203.0.113.x\xff" is no
		// address (tshark shows it as U+FFFD).
		{"GET /v HTTP/1.1", "X-Forwarded-For: %[1]s\xff, %[2]s\r\n", "%[2]s", ""},
		{"GET /v HTTP/1.1", "X-Forwarded-For: %[1]s\t, %[2]s\r\n", "%[1]s %[2]s", ""},
		{"GET /v HTTP/1.1", "X-Forwarded-For: %[1]s\v, %[2]s\r\n", "%[1]s %[2]s", ""},
		{"GET /v HTTP/1.1", "X-Forwarded-For: %[1]s\f, %[2]s\r\n", "%[1]s %[2]s", ""},
		{"GET /v HTTP/1.1", "X-Forwarded-For: %[1]s\r, %[2]s\r\n", "%[1]s %[2]s", "%[2]s"},
		// tshark's value ends at the bare CR; to xffidx the CR separates
		// "X-Foo: 203.0.113.x", no address.
		{"GET /v HTTP/1.1", "X-Forwarded-For: %[1]s\rX-Foo: %[2]s\r\n", "%[1]s", ""},
		// Header lines whose names are not tokens: skipped, not the end
		// of the block. A line without a colon ends it, for both.
		{"GET /n HTTP/1.1", "X\x1bF: 1\r\n" + xffAB, "%[1]s %[2]s", ""},
		{"GET /n HTTP/1.1", ": novalue\r\n" + xffAB, "%[1]s %[2]s", ""},
		{"GET /n HTTP/1.1", "Foo\x7f: 1\r\n" + xffAB, "%[1]s %[2]s", ""},
		{"GET /n HTTP/1.1", "Fo\x80o: 1\r\n" + xffAB, "%[1]s %[2]s", ""},
		{"GET /n HTTP/1.1", "X-Forwarded-For\t: %[1]s\r\nX-Forwarded-For: %[2]s\r\n", "%[2]s", ""},
		{"GET /n HTTP/1.1", "X-Forwarded-For: %[1]s\r\n{\"json\": 1}\r\nX-Forwarded-For: %[2]s\r\n", "%[1]s %[2]s", ""},
		{"GET /n HTTP/1.1", "Garbage line\r\n" + xffAB, "", ""},
	}
	w := NewPcapWriter(262144, LinkEthernet, false, false)
	c := HostileCase{Name: "evasive-requests", Want: map[int][]string{}, Hidden: map[int][]string{}}
	note := func(find, hidden string, a, b string) {
		if find != "" {
			c.Want[c.Frames] = strings.Fields(fmt.Sprintf(find, a, b))
		}
		if hidden != "" {
			c.Hidden[c.Frames] = strings.Fields(fmt.Sprintf(hidden, a, b))
		}
	}
	for i, e := range evasions {
		a, b := fmt.Sprintf("203.0.113.%d", 2*i+1), fmt.Sprintf("203.0.113.%d", 2*i+2)
		HostileRequest(w, i, e.line+"\r\nHost: backend\r\n"+fmt.Sprintf(e.fields, a, b)+"\r\n")
		c.Frames += 2
		note(e.find, e.hidden, a, b)
	}
	// A block padded with 4 KiB and more of X-Forwarded-For lines before
	// the one a proxy appends (haproxy adds a line of its own).
	var pad strings.Builder
	pad.WriteString("GET /p HTTP/1.1\r\nHost: backend\r\n")
	var want []string
	for i := range 400 {
		v := fmt.Sprintf("10.1.%d.%d", i>>8, i&255)
		fmt.Fprintf(&pad, "X-Forwarded-For: %s\r\n", v)
		want = append(want, v)
	}
	pad.WriteString("X-Forwarded-For: 203.0.113.250\r\n\r\n")
	HostileRequest(w, len(evasions), pad.String())
	c.Frames += 2
	c.Want[c.Frames] = append(want, "203.0.113.250")
	c.Data = w.Bytes()
	return c
}
