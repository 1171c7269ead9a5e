package capgen

import "encoding/binary"

// Link types (LINKTYPE_* values as written in pcap and pcapng headers).
const (
	LinkNull     = 0   // BSD loopback: 4-byte address family in the writer's byte order
	LinkEthernet = 1   // Ethernet II, optionally 802.1Q / 802.1ad tagged
	LinkRaw      = 101 // raw IPv4/IPv6, no link header
	LinkSLL      = 113 // Linux cooked capture v1
	LinkSLL2     = 276 // Linux cooked capture v2
)

// BSD NULL address families written by the generator.
const (
	afInet  = 2
	afInet6 = 30 // Darwin's AF_INET6
)

const (
	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpPSH = 0x08
	tcpACK = 0x10
)

// mss is the TCP payload size of full segments.
const mss = 1448

type tunKind uint8

const (
	tunNone   tunKind = iota
	tunGRE            // IPv4 / GRE (0x0800 or 0x86DD) / inner IP
	tunERSPAN         // IPv4 / GRE 0x88BE without sequence number (ERSPAN type I) / Ethernet / inner IP
	tunVXLAN          // IPv4 / UDP 4789 / VXLAN / Ethernet / inner IP
	tunGENEVE         // IPv4 / UDP 6081 / Geneve (0x6558) / Ethernet / inner IP
	numTun
)

// Outer tunnel endpoints.
var (
	tunA = [4]byte{172, 16, 0, 1}
	tunB = [4]byte{172, 16, 0, 2}
)

var (
	macProxy   = [6]byte{0x02, 0x00, 0x00, 0x00, 0x00, 0x02}
	macBackend = [6]byte{0x02, 0x00, 0x00, 0x00, 0x01, 0x00} // last byte = backend number
	macTunA    = [6]byte{0x02, 0x00, 0x00, 0x00, 0xac, 0x01}
	macTunB    = [6]byte{0x02, 0x00, 0x00, 0x00, 0xac, 0x02}
)

type iface struct {
	link       uint32
	tsres      uint8 // 6 (µs) or 9 (ns)
	vlan, qinq bool
}

func (f *iface) hdrLen() int {
	switch f.link {
	case LinkEthernet:
		switch {
		case f.qinq:
			return 22
		case f.vlan:
			return 18
		}
		return 14
	case LinkSLL:
		return 16
	case LinkSLL2:
		return 20
	case LinkNull:
		return 4
	}
	return 0 // LinkRaw
}

func tunOverhead(t tunKind) int {
	switch t {
	case tunGRE:
		return 20 + 4
	case tunERSPAN:
		return 20 + 4 + 14
	case tunVXLAN, tunGENEVE:
		return 20 + 8 + 8 + 14
	}
	return 0
}

// dataHdrLen is the number of frame bytes before the TCP payload of a
// non-SYN segment of c.
func (g *gen) dataHdrLen(c *conn) int {
	n := g.ifaces[c.iface].hdrLen() + tunOverhead(c.tun) + 20 + 20
	if c.v6 {
		n += 20
	}
	return n
}

var be = binary.BigEndian

func putEth(b []byte, dst, src [6]byte, typ uint16) int {
	copy(b[0:6], dst[:])
	copy(b[6:12], src[:])
	be.PutUint16(b[12:], typ)
	return 14
}

func putIPv4(b []byte, total int, id uint16, proto byte, src, dst [4]byte) {
	b[0] = 0x45
	b[1] = 0
	be.PutUint16(b[2:], uint16(total))
	be.PutUint16(b[4:], id)
	be.PutUint16(b[6:], 0x4000) // DF
	b[8] = 64
	b[9] = proto
	b[10], b[11] = 0, 0
	copy(b[12:16], src[:])
	copy(b[16:20], dst[:])
	be.PutUint16(b[10:], ^fold(sum16(b[:20])))
}

// sum16 adds b as big-endian 16-bit words (odd tail padded with a zero
// byte) without folding. 32-bit words are added whole: 2^16 ≡ 1 modulo
// 0xffff, so the folded result is the same.
func sum16(b []byte) uint64 {
	var s uint64
	for len(b) >= 32 {
		s += uint64(be.Uint32(b[0:])) + uint64(be.Uint32(b[4:])) +
			uint64(be.Uint32(b[8:])) + uint64(be.Uint32(b[12:])) +
			uint64(be.Uint32(b[16:])) + uint64(be.Uint32(b[20:])) +
			uint64(be.Uint32(b[24:])) + uint64(be.Uint32(b[28:]))
		b = b[32:]
	}
	for len(b) >= 4 {
		s += uint64(be.Uint32(b))
		b = b[4:]
	}
	if len(b) >= 2 {
		s += uint64(be.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		s += uint64(b[0]) << 8
	}
	return s
}

func fold(s uint64) uint16 {
	for s>>16 != 0 {
		s = (s & 0xffff) + (s >> 16)
	}
	return uint16(s)
}

func swap16(v uint16) uint16 { return v<<8 | v>>8 }

// frameHeader writes every header byte of one TCP segment of c (link,
// tunnel, IP, TCP) into g.scratch and returns it; the payload follows it on
// the wire. Checksums (IPv4, TCP, outer IPv4, UDP) are filled in.
func (g *gen) frameHeader(c *conn, dir uint8, flags uint8, seq, ack uint32, payload []byte) []byte {
	ifc := &g.ifaces[c.iface]
	b := g.scratch[:]
	tcpLen := 20
	if flags&tcpSYN != 0 {
		tcpLen = 24
	}
	ipLen := 20
	inner := uint16(0x0800)
	if c.v6 {
		ipLen, inner = 40, 0x86DD
	}
	innerTot := ipLen + tcpLen + len(payload)
	l2 := inner
	if c.tun != tunNone {
		l2 = 0x0800
	}

	// Link layer.
	p := 0
	srcMAC, dstMAC := macProxy, c.mac
	if dir == 1 {
		srcMAC, dstMAC = c.mac, macProxy
	}
	switch ifc.link {
	case LinkEthernet:
		copy(b[0:6], dstMAC[:])
		copy(b[6:12], srcMAC[:])
		p = 12
		if ifc.qinq {
			be.PutUint16(b[p:], 0x88A8)
			be.PutUint16(b[p+2:], 0x0000|300)
			be.PutUint16(b[p+4:], 0x8100)
			be.PutUint16(b[p+6:], 0x2000|100)
			p += 8
		} else if ifc.vlan {
			be.PutUint16(b[p:], 0x8100)
			be.PutUint16(b[p+2:], 0x2000|100)
			p += 4
		}
		be.PutUint16(b[p:], l2)
		p += 2
	case LinkSLL:
		pt := uint16(4) // sent by us
		if dir == 1 {
			pt = 0 // to us
		}
		be.PutUint16(b[0:], pt)
		be.PutUint16(b[2:], 1) // ARPHRD_ETHER
		be.PutUint16(b[4:], 6)
		copy(b[6:12], srcMAC[:])
		b[12], b[13] = 0, 0
		be.PutUint16(b[14:], l2)
		p = 16
	case LinkSLL2:
		be.PutUint16(b[0:], l2)
		b[2], b[3] = 0, 0
		be.PutUint32(b[4:], 2) // interface index
		be.PutUint16(b[8:], 1) // ARPHRD_ETHER
		b[10] = 4
		if dir == 1 {
			b[10] = 0
		}
		b[11] = 6
		copy(b[12:18], srcMAC[:])
		b[18], b[19] = 0, 0
		p = 20
	case LinkNull:
		af := uint32(afInet)
		if l2 == 0x86DD {
			af = afInet6
		}
		g.order.PutUint32(b[0:], af)
		p = 4
	}

	// Tunnel.
	udp := -1
	if c.tun != tunNone {
		proto := byte(47)
		if c.tun == tunVXLAN || c.tun == tunGENEVE {
			proto = 17
		}
		os, od := tunA, tunB
		om, odm := macTunA, macTunB
		if dir == 1 {
			os, od = tunB, tunA
			om, odm = macTunB, macTunA
		}
		c.ipid[2+dir]++
		putIPv4(b[p:], tunOverhead(c.tun)+innerTot, c.ipid[2+dir], proto, os, od)
		p += 20
		switch c.tun {
		case tunGRE:
			b[p], b[p+1] = 0, 0
			be.PutUint16(b[p+2:], inner)
			p += 4
		case tunERSPAN:
			b[p], b[p+1] = 0, 0
			be.PutUint16(b[p+2:], 0x88BE)
			p += 4
			p += putEth(b[p:], odm, om, inner)
		case tunVXLAN, tunGENEVE:
			udp = p
			be.PutUint16(b[p:], c.tunPort)
			if c.tun == tunVXLAN {
				be.PutUint16(b[p+2:], 4789)
			} else {
				be.PutUint16(b[p+2:], 6081)
			}
			be.PutUint16(b[p+4:], uint16(8+8+14+innerTot))
			b[p+6], b[p+7] = 0, 0
			p += 8
			if c.tun == tunVXLAN {
				b[p], b[p+1], b[p+2], b[p+3] = 0x08, 0, 0, 0
			} else {
				b[p], b[p+1] = 0, 0
				be.PutUint16(b[p+2:], 0x6558)
			}
			b[p+4], b[p+5], b[p+6], b[p+7] = byte(c.vni>>16), byte(c.vni>>8), byte(c.vni), 0
			p += 8
			p += putEth(b[p:], odm, om, inner)
		}
	}

	// Inner IP.
	src, dst := c.cli, c.srv
	if dir == 1 {
		src, dst = c.srv, c.cli
	}
	c.ipid[dir]++
	var ps uint64 // pseudo-header sum
	if c.v6 {
		s16, d16 := src.Addr().As16(), dst.Addr().As16()
		be.PutUint32(b[p:], 0x60000000)
		be.PutUint16(b[p+4:], uint16(tcpLen+len(payload)))
		b[p+6] = 6
		b[p+7] = 64
		copy(b[p+8:p+24], s16[:])
		copy(b[p+24:p+40], d16[:])
		ps = sum16(b[p+8:p+40]) + 6 + uint64(tcpLen+len(payload))
	} else {
		putIPv4(b[p:], innerTot, c.ipid[dir], 6, src.Addr().As4(), dst.Addr().As4())
		ps = sum16(b[p+12:p+20]) + 6 + uint64(tcpLen+len(payload))
	}
	p += ipLen

	// TCP.
	t := p
	be.PutUint16(b[t:], src.Port())
	be.PutUint16(b[t+2:], dst.Port())
	be.PutUint32(b[t+4:], seq)
	be.PutUint32(b[t+8:], ack)
	b[t+12] = byte(tcpLen/4) << 4
	b[t+13] = flags
	be.PutUint16(b[t+14:], 0xfaf0)
	b[t+16], b[t+17], b[t+18], b[t+19] = 0, 0, 0, 0
	if tcpLen == 24 {
		b[t+20], b[t+21] = 2, 4
		m := uint16(mss)
		if c.mss != 0 {
			m = c.mss
		}
		be.PutUint16(b[t+22:], m)
	}
	p += tcpLen
	pls := sum16(payload)
	be.PutUint16(b[t+16:], ^fold(ps+sum16(b[t:p])+pls))

	if udp >= 0 {
		us := sum16(b[udp-8:udp]) + 17 + uint64(8+8+14+innerTot) // outer src+dst
		us += sum16(b[udp:p])
		pf := fold(pls)
		if (p-udp)&1 == 1 {
			pf = swap16(pf)
		}
		ck := ^fold(us + uint64(pf))
		if ck == 0 {
			ck = 0xffff
		}
		be.PutUint16(b[udp+6:], ck)
	}
	return b[:p]
}
