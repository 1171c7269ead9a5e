// Package packet finds the innermost TCP segment of a captured frame without allocating.
//
// It is a deliberately narrow decoder for the indexing hot path: it walks only
// the headers needed to reach TCP (link layers, VLAN/QinQ, PPPoE, MPLS, IPv4,
// IPv6 with extension headers, and the IP-in-IP, GRE, ERSPAN, VXLAN and GENEVE
// tunnels) and gives up on anything else. The query side uses gopacket for the
// same job; the tests keep the two, and tshark, in agreement.
//
// Every length read from the frame is checked before it is used to slice, so
// hostile input yields ok == false, never a panic.
package packet

import (
	"encoding/binary"
	"net/netip"
)

// Segment is a TCP segment found inside a frame. Payload aliases the frame.
type Segment struct {
	SrcIP, DstIP     netip.Addr
	SrcPort, DstPort uint16
	Seq              uint32
	Flags            uint8 // TCP flags byte (FIN=0x01 SYN=0x02 RST=0x04 PSH=0x08 ACK=0x10)
	Payload          []byte
}

// maxIPHeaders bounds how many IP headers (outer plus tunnelled) one frame may
// stack. Every tunnel level in this decoder passes through an IP header, so this
// also bounds tunnel nesting: a crafted frame of GRE-in-GRE-in-... cannot make
// the walk long. Real deployments rarely exceed three levels.
const maxIPHeaders = 8

// LINKTYPE_* values from the pcap/pcapng link-layer header type registry.
const (
	linkTypeNull     = 0
	linkTypeEthernet = 1
	linkTypeRawBSD12 = 12 // DLT_RAW on most BSDs, written raw into old files
	linkTypeRawBSD14 = 14 // DLT_RAW on OpenBSD, likewise
	linkTypeRaw      = 101
	linkTypeLoop     = 108
	linkTypeLinuxSLL = 113
	linkTypeIPv4     = 228
	linkTypeIPv6     = 229
	linkTypeSLL2     = 276
)

// layer names the header that starts at the front of the bytes still to decode.
type layer uint8

const (
	layerNone layer = iota
	layerEthernet
	layerIPv4
	layerIPv6
	layerIPAny // raw IP: the version nibble decides
	layerGRE
	layerUDP
	layerTCP
)

// EtherType values this decoder follows.
const (
	etherIPv4      = 0x0800
	etherIPv6      = 0x86DD
	etherVLAN      = 0x8100
	etherQinQ      = 0x88A8
	etherQinQOld   = 0x9100
	etherPPPoESess = 0x8864
	etherMPLS      = 0x8847
	etherTEB       = 0x6558 // transparent Ethernet bridging (GRE, GENEVE)
	etherERSPAN2   = 0x88BE // ERSPAN type I or II, told apart by the GRE S bit
	etherERSPAN3   = 0x22EB
)

// IP protocol numbers this decoder follows.
const (
	protoHopByHop = 0
	protoIPIP     = 4
	protoTCP      = 6
	protoUDP      = 17
	protoIPv6     = 41
	protoRouting  = 43
	protoFragment = 44
	protoGRE      = 47
	protoAH       = 51
	protoDstOpts  = 60
)

const (
	portVXLAN  = 4789
	portGENEVE = 6081
)

// InnermostTCP decodes frame (captured bytes of one record, link type as in pcap LINKTYPE_* numbers)
// down to the innermost TCP segment, following tunnels. ok is false when there is none or the headers are cut/invalid.
func InnermostTCP(linkType uint32, frame []byte) (seg Segment, ok bool) {
	next, data := linkLayer(linkType, frame)
	var src, dst netip.Addr
	ipHeaders := 0
	// Each pass consumes at least one header. Link and tunnel headers always lead
	// to an IP header (or stop), so bounding IP headers bounds the loop.
	for {
		switch next {
		case layerEthernet:
			next, data = ethernet(data)
		case layerIPv4, layerIPv6, layerIPAny:
			ipHeaders++
			if ipHeaders > maxIPHeaders {
				return Segment{}, false
			}
			if next == layerIPAny {
				next = ipByVersion(data)
				if next == layerNone {
					return Segment{}, false
				}
			}
			if next == layerIPv4 {
				next, data, src, dst = ipv4(data)
			} else {
				next, data, src, dst = ipv6(data)
			}
		case layerGRE:
			next, data = gre(data)
		case layerUDP:
			next, data = udp(data)
		case layerTCP:
			return tcp(data, src, dst)
		default:
			return Segment{}, false
		}
	}
}

// linkLayer strips the capture's link-layer header and says what follows.
func linkLayer(linkType uint32, frame []byte) (layer, []byte) {
	switch linkType {
	case linkTypeEthernet:
		return layerEthernet, frame
	case linkTypeLinuxSLL:
		if len(frame) < 16 {
			return layerNone, nil
		}
		return etherType(binary.BigEndian.Uint16(frame[14:16]), frame[16:])
	case linkTypeSLL2:
		if len(frame) < 20 {
			return layerNone, nil
		}
		return etherType(binary.BigEndian.Uint16(frame[0:2]), frame[20:])
	case linkTypeRaw, linkTypeRawBSD12, linkTypeRawBSD14:
		return layerIPAny, frame
	case linkTypeIPv4:
		return layerIPv4, frame
	case linkTypeIPv6:
		return layerIPv6, frame
	case linkTypeNull:
		if len(frame) < 4 {
			return layerNone, nil
		}
		// The AF is in the byte order of the capturing host, which the file does
		// not record, so try both; the valid values are small enough that the
		// two readings never collide.
		if l := addressFamily(binary.LittleEndian.Uint32(frame)); l != layerNone {
			return l, frame[4:]
		}
		return addressFamily(binary.BigEndian.Uint32(frame)), frame[4:]
	case linkTypeLoop:
		if len(frame) < 4 {
			return layerNone, nil
		}
		return addressFamily(binary.BigEndian.Uint32(frame)), frame[4:]
	}
	return layerNone, nil
}

// addressFamily maps a BSD AF_* value to the IP version it carries. AF_INET6
// differs between BSDs (24 NetBSD/OpenBSD, 28 FreeBSD, 30 Darwin).
func addressFamily(af uint32) layer {
	switch af {
	case 2:
		return layerIPv4
	case 24, 28, 30:
		return layerIPv6
	}
	return layerNone
}

func ipByVersion(data []byte) layer {
	if len(data) == 0 {
		return layerNone
	}
	switch data[0] >> 4 {
	case 4:
		return layerIPv4
	case 6:
		return layerIPv6
	}
	return layerNone
}

// ethernet strips a 14-byte Ethernet II header. 802.3 length frames (type
// below 0x0600) carry LLC, never IP that we care about.
func ethernet(data []byte) (layer, []byte) {
	if len(data) < 14 {
		return layerNone, nil
	}
	return etherType(binary.BigEndian.Uint16(data[12:14]), data[14:])
}

// etherType follows an EtherType through VLAN tags, PPPoE and MPLS to the
// header it finally names. Tag stacks are walked in a loop rather than counted
// against maxIPHeaders: each tag consumes bytes, so the frame length bounds it.
func etherType(et uint16, data []byte) (layer, []byte) {
	for {
		switch et {
		case etherIPv4:
			return layerIPv4, data
		case etherIPv6:
			return layerIPv6, data
		case etherVLAN, etherQinQ, etherQinQOld:
			if len(data) < 4 {
				return layerNone, nil
			}
			et = binary.BigEndian.Uint16(data[2:4])
			data = data[4:]
		case etherPPPoESess:
			return pppoe(data)
		case etherMPLS:
			return mpls(data)
		default:
			return layerNone, nil
		}
	}
}

// pppoe strips a PPPoE session header and the 2-byte PPP protocol field.
func pppoe(data []byte) (layer, []byte) {
	if len(data) < 8 {
		return layerNone, nil
	}
	// The PPPoE length covers the PPP protocol field and payload. Honour it when
	// it is shorter than what was captured (trailing padding), but never read
	// past the capture.
	end := 6 + int(binary.BigEndian.Uint16(data[4:6]))
	if end < 8 {
		return layerNone, nil
	}
	if end < len(data) {
		data = data[:end]
	}
	switch binary.BigEndian.Uint16(data[6:8]) {
	case 0x0021:
		return layerIPv4, data[8:]
	case 0x0057:
		return layerIPv6, data[8:]
	}
	return layerNone, nil
}

// mpls pops labels to the bottom of the stack. MPLS does not say what it
// carries, so the IP version nibble decides, as routers and tshark also guess.
func mpls(data []byte) (layer, []byte) {
	for {
		if len(data) < 4 {
			return layerNone, nil
		}
		bottom := data[2]&0x01 != 0
		data = data[4:]
		if bottom {
			return ipByVersion(data), data
		}
	}
}

// ipv4 validates an IPv4 header and returns its payload bounded by both the
// total length (which drops Ethernet padding) and the captured bytes (a snap
// length cut keeps what was captured).
func ipv4(data []byte) (next layer, payload []byte, src, dst netip.Addr) {
	if len(data) < 20 || data[0]>>4 != 4 {
		return layerNone, nil, src, dst
	}
	hlen := int(data[0]&0x0F) * 4
	if hlen < 20 || hlen > len(data) {
		return layerNone, nil, src, dst
	}
	total := int(binary.BigEndian.Uint16(data[2:4]))
	if total == 0 {
		// TCP segmentation offload hands the capture a super-packet whose
		// length field is not filled in yet; the captured size is the length.
		total = len(data)
	}
	if total < hlen {
		return layerNone, nil, src, dst
	}
	// A non-first fragment starts mid-payload: whatever follows is not a header.
	if binary.BigEndian.Uint16(data[6:8])&0x1FFF != 0 {
		return layerNone, nil, src, dst
	}
	if total < len(data) {
		data = data[:total]
	}
	src = netip.AddrFrom4([4]byte(data[12:16]))
	dst = netip.AddrFrom4([4]byte(data[16:20]))
	return ipProtocol(data[9]), data[hlen:], src, dst
}

// ipv6 validates an IPv6 header, skips extension headers and returns the
// upper-layer payload bounded like ipv4's.
func ipv6(data []byte) (next layer, payload []byte, src, dst netip.Addr) {
	if len(data) < 40 || data[0]>>4 != 6 {
		return layerNone, nil, src, dst
	}
	// Payload length 0 means a jumbogram (the real length is in a hop-by-hop
	// option) or a TSO super-packet; either way the capture is the best bound.
	if plen := int(binary.BigEndian.Uint16(data[4:6])); plen != 0 && 40+plen < len(data) {
		data = data[:40+plen]
	}
	src = netip.AddrFrom16([16]byte(data[8:24]))
	dst = netip.AddrFrom16([16]byte(data[24:40]))
	nh := data[6]
	data = data[40:]
	// Every extension header is at least 8 bytes, so the length bounds the loop.
	for {
		var hlen int
		switch nh {
		case protoHopByHop, protoRouting, protoDstOpts:
			if len(data) < 2 {
				return layerNone, nil, src, dst
			}
			hlen = (int(data[1]) + 1) * 8
		case protoAH:
			// AH counts 4-byte units minus 2, unlike the other extension headers.
			if len(data) < 2 {
				return layerNone, nil, src, dst
			}
			hlen = (int(data[1]) + 2) * 4
		case protoFragment:
			if len(data) < 8 {
				return layerNone, nil, src, dst
			}
			if binary.BigEndian.Uint16(data[2:4])>>3 != 0 {
				return layerNone, nil, src, dst
			}
			hlen = 8
		default:
			return ipProtocol(nh), data, src, dst
		}
		if hlen > len(data) {
			return layerNone, nil, src, dst
		}
		nh = data[0]
		data = data[hlen:]
	}
}

func ipProtocol(p uint8) layer {
	switch p {
	case protoTCP:
		return layerTCP
	case protoIPIP:
		return layerIPv4
	case protoIPv6:
		return layerIPv6
	case protoGRE:
		return layerGRE
	case protoUDP:
		return layerUDP
	}
	return layerNone
}

// gre strips a version 0 GRE header (RFC 2784 with the RFC 2890 key and
// sequence fields) and any ERSPAN header behind it.
func gre(data []byte) (layer, []byte) {
	if len(data) < 4 {
		return layerNone, nil
	}
	flags := data[0]
	// Version 1 is PPTP's enhanced GRE; the routing bit (RFC 1701) brings a
	// variable source-route list nobody sends any more.
	if data[1]&0x07 != 0 || flags&0x40 != 0 {
		return layerNone, nil
	}
	proto := binary.BigEndian.Uint16(data[2:4])
	seqPresent := flags&0x10 != 0
	hlen := 4
	if flags&0x80 != 0 { // C: checksum + reserved
		hlen += 4
	}
	if flags&0x20 != 0 { // K: key
		hlen += 4
	}
	if seqPresent { // S: sequence number
		hlen += 4
	}
	if hlen > len(data) {
		return layerNone, nil
	}
	data = data[hlen:]
	switch proto {
	case etherTEB:
		return layerEthernet, data
	case etherERSPAN2:
		// Type I has no ERSPAN header and never sets S; type II always sets S
		// and adds 8 bytes. The S bit is the only thing that tells them apart.
		if !seqPresent {
			return layerEthernet, data
		}
		if len(data) < 8 {
			return layerNone, nil
		}
		return layerEthernet, data[8:]
	case etherERSPAN3:
		if len(data) < 12 {
			return layerNone, nil
		}
		// The O flag announces an 8-byte platform-specific subheader.
		n := 12
		if data[11]&0x01 != 0 {
			n += 8
		}
		if n > len(data) {
			return layerNone, nil
		}
		return layerEthernet, data[n:]
	}
	return etherType(proto, data)
}

// udp follows only the UDP ports of Ethernet-carrying tunnels; TCP cannot be
// inside anything else we care about.
func udp(data []byte) (layer, []byte) {
	if len(data) < 8 {
		return layerNone, nil
	}
	switch n := int(binary.BigEndian.Uint16(data[4:6])); {
	case n == 0:
		// Zero is legal only for IPv6 jumbograms; the IP bound already applies.
	case n < 8:
		return layerNone, nil
	case n < len(data):
		data = data[:n]
	}
	srcPort := binary.BigEndian.Uint16(data[0:2])
	dstPort := binary.BigEndian.Uint16(data[2:4])
	data = data[8:]
	// The destination port names the service; the source port only matters
	// for replies from a tunnel endpoint that picked the well-known port.
	port := dstPort
	if port != portVXLAN && port != portGENEVE {
		port = srcPort
	}
	switch port {
	case portVXLAN:
		if len(data) < 8 {
			return layerNone, nil
		}
		return layerEthernet, data[8:]
	case portGENEVE:
		if len(data) < 8 {
			return layerNone, nil
		}
		n := 8 + int(data[0]&0x3F)*4
		if n > len(data) {
			return layerNone, nil
		}
		proto := binary.BigEndian.Uint16(data[2:4])
		data = data[n:]
		switch proto {
		case etherTEB:
			return layerEthernet, data
		case etherIPv4:
			return layerIPv4, data
		case etherIPv6:
			return layerIPv6, data
		}
	}
	return layerNone, nil
}

func tcp(data []byte, src, dst netip.Addr) (Segment, bool) {
	if len(data) < 20 {
		return Segment{}, false
	}
	off := int(data[12]>>4) * 4
	if off < 20 || off > len(data) {
		return Segment{}, false
	}
	return Segment{
		SrcIP:   src,
		DstIP:   dst,
		SrcPort: binary.BigEndian.Uint16(data[0:2]),
		DstPort: binary.BigEndian.Uint16(data[2:4]),
		Seq:     binary.BigEndian.Uint32(data[4:8]),
		Flags:   data[13],
		Payload: data[off:],
	}, true
}
