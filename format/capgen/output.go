package capgen

import "time"

// Format names accepted in Config.Format.
const (
	FormatPcap        = "pcap"         // little-endian, µs timestamps
	FormatPcapNs      = "pcap-ns"      // little-endian, ns timestamps
	FormatPcapBE      = "pcap-be"      // big-endian, µs timestamps
	FormatPcapNG      = "pcapng"       // one section, one interface, if_tsresol 9
	FormatPcapNGMulti = "pcapng-multi" // two sections of two interfaces each
)

// Formats lists every accepted Config.Format value.
var Formats = []string{FormatPcap, FormatPcapNs, FormatPcapBE, FormatPcapNG, FormatPcapNGMulti}

// LinkTypes lists every accepted Config.LinkType value.
var LinkTypes = []uint32{LinkEthernet, LinkSLL, LinkSLL2, LinkRaw, LinkNull}

// multiSections are the interfaces of the two sections of "pcapng-multi":
// every interface differs from the others in link type, and each section
// has one µs and one ns interface.
var multiSections = [2][2]iface{
	{{link: LinkEthernet, tsres: 6}, {link: LinkSLL2, tsres: 9}},
	{{link: LinkRaw, tsres: 9}, {link: LinkSLL, tsres: 6}},
}

func (g *gen) write(b []byte) {
	if g.err != nil {
		return
	}
	n, err := g.bw.Write(b)
	g.n += int64(n)
	g.err = err
}

func (g *gen) zeros(n int) {
	z := g.rec[56:64]
	clear(z)
	g.write(z[:n])
}

func pad4(n int) int { return (4 - n&3) & 3 }

func (g *gen) writeFileHeader() {
	if g.pcapng {
		g.writeSection()
		return
	}
	h := g.rec[:24]
	magic := uint32(0xa1b2c3d4)
	if g.nsPcap {
		magic = 0xa1b23c4d
	}
	g.order.PutUint32(h[0:], magic)
	g.order.PutUint16(h[4:], 2)
	g.order.PutUint16(h[6:], 4)
	g.order.PutUint32(h[8:], 0)
	g.order.PutUint32(h[12:], 0)
	g.order.PutUint32(h[16:], uint32(g.snap))
	g.order.PutUint32(h[20:], g.ifaces[0].link)
	g.write(h)
}

// writeSection writes a Section Header Block and one Interface Description
// Block per entry of g.ifaces.
func (g *gen) writeSection() {
	o := g.order
	const appl = "xffidx capgen"
	optLen := 4 + len(appl) + pad4(len(appl)) + 4
	total := 28 + optLen
	h := g.rec[:28]
	o.PutUint32(h[0:], 0x0A0D0D0A)
	o.PutUint32(h[4:], uint32(total))
	o.PutUint32(h[8:], 0x1A2B3C4D)
	o.PutUint16(h[12:], 1)
	o.PutUint16(h[14:], 0)
	o.PutUint64(h[16:], ^uint64(0)) // section length not specified
	o.PutUint16(h[24:], 4)          // shb_userappl
	o.PutUint16(h[26:], uint16(len(appl)))
	g.write(h)
	g.write([]byte(appl))
	g.zeros(pad4(len(appl)))
	end := g.rec[40:48]
	clear(end)
	o.PutUint32(end[4:], uint32(total))
	g.write(end)

	for i := range g.ifaces {
		f := &g.ifaces[i]
		name := [4]byte{'c', 'a', 'p', byte('0' + i)}
		total := 16 + 8 + 8 + 4 + 4
		h := g.rec[:40]
		o.PutUint32(h[0:], 1)
		o.PutUint32(h[4:], uint32(total))
		o.PutUint16(h[8:], uint16(f.link))
		o.PutUint16(h[10:], 0)
		o.PutUint32(h[12:], uint32(g.snap))
		o.PutUint16(h[16:], 2) // if_name
		o.PutUint16(h[18:], 4)
		copy(h[20:24], name[:])
		o.PutUint16(h[24:], 9) // if_tsresol
		o.PutUint16(h[26:], 1)
		h[28], h[29], h[30], h[31] = f.tsres, 0, 0, 0
		o.PutUint32(h[32:], 0) // opt_endofopt
		o.PutUint32(h[36:], uint32(total))
		g.write(h)
	}
}

// writePacket writes one packet record whose frame is hdr followed by
// payload, cut at the snap length. It returns the record's file offset and
// its timestamp as stored (zero for a Simple Packet Block). When limit is
// not negative only the first limit bytes of the record are written (a
// capture cut short in the middle of its last record).
func (g *gen) writePacket(ifIdx int, ts int64, spb bool, hdr, payload []byte, limit int) (int64, time.Time) {
	off := g.n
	orig := len(hdr) + len(payload)
	capLen := min(orig, g.snap)
	h1 := min(len(hdr), capLen)
	p1 := capLen - h1
	o := g.order
	var stored int64
	var rh []byte
	var trailer int
	switch {
	case !g.pcapng:
		rh = g.rec[:16]
		sec := ts / 1e9
		frac := ts % 1e9
		if g.nsPcap {
			stored = ts
		} else {
			frac /= 1000
			stored = sec*1e9 + frac*1000
		}
		o.PutUint32(rh[0:], uint32(sec))
		o.PutUint32(rh[4:], uint32(frac))
		o.PutUint32(rh[8:], uint32(capLen))
		o.PutUint32(rh[12:], uint32(orig))
	case spb:
		total := 16 + capLen + pad4(capLen)
		rh = g.rec[:12]
		o.PutUint32(rh[0:], 3)
		o.PutUint32(rh[4:], uint32(total))
		o.PutUint32(rh[8:], uint32(orig))
		trailer = total
	default:
		total := 32 + capLen + pad4(capLen)
		units := ts
		if g.ifaces[ifIdx].tsres == 6 {
			units = ts / 1000
			stored = units * 1000
		} else {
			stored = ts
		}
		rh = g.rec[:28]
		o.PutUint32(rh[0:], 6)
		o.PutUint32(rh[4:], uint32(total))
		o.PutUint32(rh[8:], uint32(ifIdx))
		o.PutUint32(rh[12:], uint32(uint64(units)>>32))
		o.PutUint32(rh[16:], uint32(units))
		o.PutUint32(rh[20:], uint32(capLen))
		o.PutUint32(rh[24:], uint32(orig))
		trailer = total
	}
	if limit >= 0 {
		// Assemble the whole record, then write a prefix of it.
		t := append(g.tmp[:0], rh...)
		t = append(t, hdr[:h1]...)
		t = append(t, payload[:p1]...)
		if g.pcapng {
			var z [4]byte
			t = append(t, z[:pad4(capLen)]...)
			var tl [4]byte
			o.PutUint32(tl[:], uint32(trailer))
			t = append(t, tl[:]...)
		}
		g.tmp = t
		g.write(t[:min(limit, len(t)-1)])
		return off, time.Time{}
	}
	g.write(rh)
	g.write(hdr[:h1])
	g.write(payload[:p1])
	if g.pcapng {
		tl := g.rec[32:40] // not a local array: it would escape to the heap
		clear(tl)
		n := pad4(capLen)
		o.PutUint32(tl[n:], uint32(trailer))
		g.write(tl[:n+4])
	}
	if spb {
		return off, time.Time{}
	}
	return off, time.Unix(0, stored).UTC()
}
