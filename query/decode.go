package query

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// FiveTuple is the innermost TCP connection of a packet.
type FiveTuple struct {
	SrcIP, DstIP     netip.Addr
	SrcPort, DstPort uint16
	Proto            string // "tcp"
}

// errFrameNoTCP is wrapped into the error for frames that decode but carry no TCP.
var errFrameNoTCP = errors.New("no TCP layer")

// maxFrameNesting bounds how often DecodeFrame restarts gopacket on an inner
// payload (ERSPAN type I/III, first fragments), so a crafted frame cannot make
// it recurse without limit. It matches the fast decoder's IP header bound.
const maxFrameNesting = 8

// DecodeFrame decodes one captured frame with gopacket and returns the innermost TCP connection.
// Also returns the TCP payload (for later use by callers).
func DecodeFrame(linkType uint32, frame []byte) (ft FiveTuple, payload []byte, err error) {
	var d frameDecoder
	return d.decode(linkType, frame)
}

// frameDecoder is DecodeFrame for many frames: the common frame (Ethernet,
// IPv4 not fragmented or IPv6 without extension headers, TCP) is decoded
// by gopacket's DecodingLayerParser into layers reused from one frame to
// the next, without the allocations of a gopacket.Packet (a query decodes
// thousands of frames, and a short process pays for every new page of
// heap); any other frame, and any frame that does not decode cleanly that
// way, goes through decodeFrameLayers, whose answer is the same
// (TestFastDecodeEqualsPacketDecode).
type frameDecoder struct {
	parser  *gopacket.DecodingLayerParser
	eth     layers.Ethernet
	ip4     layers.IPv4
	ip6     layers.IPv6
	tcp     layers.TCP
	decoded []gopacket.LayerType
}

const linkTypeEthernet = 1

func (d *frameDecoder) decode(linkType uint32, frame []byte) (FiveTuple, []byte, error) {
	if linkType == linkTypeEthernet {
		if ft, payload, ok := d.fast(frame); ok {
			return ft, payload, nil
		}
	}
	return decodeFrameLayers(linkType, frame)
}

// fast decodes Ethernet, IPv4 or IPv6, TCP; ok is false for anything else.
func (d *frameDecoder) fast(frame []byte) (ft FiveTuple, payload []byte, ok bool) {
	defer func() {
		if recover() != nil {
			ok = false // decodeFrameLayers reports it
		}
	}()
	if d.parser == nil {
		d.parser = gopacket.NewDecodingLayerParser(layers.LayerTypeEthernet, &d.eth, &d.ip4, &d.ip6, &d.tcp)
		d.decoded = make([]gopacket.LayerType, 0, 4)
	}
	err := d.parser.DecodeLayers(frame, &d.decoded)
	if len(d.decoded) != 3 || d.decoded[2] != layers.LayerTypeTCP {
		return FiveTuple{}, nil, false
	}
	// Past TCP comes its payload, which the parser leaves alone: no other
	// error may have stopped it.
	if err != nil {
		if _, unsupported := err.(gopacket.UnsupportedLayerType); !unsupported {
			return FiveTuple{}, nil, false
		}
	}
	var src, dst netip.Addr
	switch d.decoded[1] {
	case layers.LayerTypeIPv4:
		src, _ = netip.AddrFromSlice(d.ip4.SrcIP)
		dst, _ = netip.AddrFromSlice(d.ip4.DstIP)
	case layers.LayerTypeIPv6:
		if d.ip6.HopByHop != nil {
			return FiveTuple{}, nil, false
		}
		src, _ = netip.AddrFromSlice(d.ip6.SrcIP)
		dst, _ = netip.AddrFromSlice(d.ip6.DstIP)
	default:
		return FiveTuple{}, nil, false
	}
	t := &d.tcp
	if !src.IsValid() || !dst.IsValid() || t.DataOffset < 5 || len(t.Contents) != int(t.DataOffset)*4 {
		return FiveTuple{}, nil, false
	}
	return FiveTuple{SrcIP: src, DstIP: dst, SrcPort: uint16(t.SrcPort), DstPort: uint16(t.DstPort), Proto: "tcp"}, t.LayerPayload(), true
}

// decodeFrameLayers decodes a frame into a gopacket.Packet and walks its
// layers: every link type, tunnel and oddity DecodeFrame handles.
func decodeFrameLayers(linkType uint32, frame []byte) (ft FiveTuple, payload []byte, err error) {
	// gopacket recovers its own decoder panics, but not those in our walk over
	// its layers; a hostile frame must come back as an error either way.
	defer func() {
		if r := recover(); r != nil {
			ft, payload, err = FiveTuple{}, nil, fmt.Errorf("decode panic: %v", r)
		}
	}()
	first, data, err := frameLinkDecoder(linkType, frame)
	if err != nil {
		return FiveTuple{}, nil, err
	}
	return frameDecodeFrom(first, data, netip.Addr{}, netip.Addr{}, 0)
}

// frameLinkDecoder picks the gopacket decoder for the capture's link type and
// the bytes it should start on.
func frameLinkDecoder(linkType uint32, frame []byte) (gopacket.Decoder, []byte, error) {
	// LINKTYPE_* values gopacket v1.1.19 does not handle the way we need:
	// layers.LinkType is a uint8, so 276 (SLL2) cannot even be expressed, and
	// raw IP must be told apart by its version nibble.
	const (
		linkTypeNull  = 0
		linkTypeRaw12 = 12
		linkTypeRaw14 = 14
		linkTypeRaw   = 101
		linkTypeLoop  = 108
		linkTypeIPv4  = 228
		linkTypeIPv6  = 229
		linkTypeSLL2  = 276
	)
	switch linkType {
	case linkTypeSLL2:
		// Linux cooked v2: protocol(2) reserved(2) ifindex(4) arphrd(2)
		// pkttype(1) addrlen(1) addr(8). The protocol is an EtherType.
		if len(frame) < 20 {
			return nil, nil, fmt.Errorf("truncated SLL2 header: %d bytes, need 20", len(frame))
		}
		return frameEtherTypeDecoder(layers.EthernetType(binary.BigEndian.Uint16(frame[0:2]))), frame[20:], nil
	case linkTypeRaw, linkTypeRaw12, linkTypeRaw14, linkTypeIPv4, linkTypeIPv6:
		if len(frame) == 0 {
			return nil, nil, errors.New("truncated raw IP frame: empty")
		}
		switch frame[0] >> 4 {
		case 4:
			return layers.LayerTypeIPv4, frame, nil
		case 6:
			return layers.LayerTypeIPv6, frame, nil
		}
		return nil, nil, fmt.Errorf("raw IP frame with IP version %d", frame[0]>>4)
	case linkTypeNull, linkTypeLoop:
		// gopacket's loopback decoder accepts the AF in either byte order,
		// which covers LOOP's big-endian AF too.
		return layers.LinkTypeNull, frame, nil
	}
	if linkType > 0xFF {
		// layers.LinkType(linkType) would silently wrap to another link type.
		return nil, nil, fmt.Errorf("unsupported link type %d", linkType)
	}
	return layers.LinkType(linkType), frame, nil
}

// frameDecodeFrom runs gopacket from decoder over data and returns the last
// TCP layer. Where gopacket stops short of, or goes wrong on, a layer that the
// fast decoder (format/packet) follows, it restarts gopacket on that layer's
// payload. outerSrc and outerDst are the addresses of the IP header enclosing
// data, for a restart inside an IP fragment where no IP layer is re-decoded.
func frameDecodeFrom(decoder gopacket.Decoder, data []byte, outerSrc, outerDst netip.Addr, nesting int) (FiveTuple, []byte, error) {
	if nesting > maxFrameNesting {
		return FiveTuple{}, nil, fmt.Errorf("tunnel nesting deeper than %d", maxFrameNesting)
	}
	pkt := gopacket.NewPacket(data, decoder, gopacket.DecodeOptions{
		Lazy:   false, // every layer must exist before we walk them
		NoCopy: true,  // the payload we return aliases the caller's frame
	})
	ls := pkt.Layers()
	for i, l := range ls {
		next, inner, ok, err := frameRestart(l)
		if err != nil {
			return FiveTuple{}, nil, err
		}
		if !ok {
			continue
		}
		src, dst, netLayer := frameNetworkBefore(ls[:i+1])
		if netLayer == nil {
			src, dst = outerSrc, outerDst
		}
		// Everything gopacket decoded after l is wrong or missing, so the
		// inner decode's answer is the whole answer.
		ft, payload, err := frameDecodeFrom(next, inner, src, dst, nesting+1)
		if err != nil {
			return FiveTuple{}, nil, fmt.Errorf("inside %v: %w", l.LayerType(), err)
		}
		return ft, payload, nil
	}
	for i := len(ls) - 1; i >= 0; i-- {
		t, ok := ls[i].(*layers.TCP)
		if !ok {
			continue
		}
		// gopacket adds the TCP layer even when its header is cut or its data
		// offset is invalid; only a full header gives a trustworthy payload.
		if t.DataOffset < 5 || len(t.Contents) != int(t.DataOffset)*4 {
			return FiveTuple{}, nil, fmt.Errorf("truncated TCP header (%d bytes, data offset %d)", len(t.Contents), t.DataOffset)
		}
		src, dst, netLayer := frameNetworkBefore(ls[:i])
		if netLayer == nil {
			if !outerSrc.IsValid() {
				return FiveTuple{}, nil, errors.New("TCP layer without an IP layer")
			}
			src, dst = outerSrc, outerDst
		}
		payload := t.LayerPayload()
		if ip6, ok := netLayer.(*layers.IPv6); ok && ip6.HopByHop != nil {
			var err error
			if payload, err = frameTrimHopByHop(ip6, payload); err != nil {
				return FiveTuple{}, nil, err
			}
		}
		return FiveTuple{
			SrcIP:   src,
			DstIP:   dst,
			SrcPort: uint16(t.SrcPort),
			DstPort: uint16(t.DstPort),
			Proto:   "tcp",
		}, payload, nil
	}
	if el := pkt.ErrorLayer(); el != nil {
		return FiveTuple{}, nil, fmt.Errorf("%w (decoding stopped: %v)", errFrameNoTCP, el.Error())
	}
	return FiveTuple{}, nil, errFrameNoTCP
}

// frameEtherType9100 is the pre-802.1ad QinQ outer tag, still emitted by some
// switches; gopacket v1.1.19 does not know it.
const frameEtherType9100 = 0x9100

// frameEtherTypeDecoder is et as a decoder, with the EtherTypes gopacket lacks
// mapped to the layer that decodes them.
func frameEtherTypeDecoder(et layers.EthernetType) gopacket.Decoder {
	if et == frameEtherType9100 {
		return layers.LayerTypeDot1Q
	}
	return et
}

// frameRestart reports whether gopacket's decoding must be redone from inside
// l, and if so with which decoder on which bytes.
func frameRestart(l gopacket.Layer) (gopacket.Decoder, []byte, bool, error) {
	const (
		etherTypeERSPAN  = 0x88BE // gopacket always assumes type II
		etherTypeERSPAN3 = 0x22EB // unknown to gopacket v1.1.19
	)
	switch l := l.(type) {
	case *layers.GRE:
		switch l.Protocol {
		case etherTypeERSPAN:
			// ERSPAN type I has no header of its own and is recognisable only
			// by the absent sequence number; gopacket treats every 0x88BE as
			// type II and eats 8 bytes of the mirrored Ethernet frame.
			if !l.SeqPresent {
				return layers.LayerTypeEthernet, l.LayerPayload(), true, nil
			}
		case etherTypeERSPAN3:
			p := l.LayerPayload()
			if len(p) < 12 {
				return nil, nil, false, fmt.Errorf("truncated ERSPAN III header: %d bytes, need 12", len(p))
			}
			n := 12
			if p[11]&0x01 != 0 { // O flag: 8-byte platform-specific subheader
				n += 8
			}
			if len(p) < n {
				return nil, nil, false, fmt.Errorf("truncated ERSPAN III header: %d bytes, need %d", len(p), n)
			}
			return layers.LayerTypeEthernet, p[n:], true, nil
		}
	case *layers.Ethernet:
		if l.EthernetType == frameEtherType9100 {
			return layers.LayerTypeDot1Q, l.LayerPayload(), true, nil
		}
	case *layers.Dot1Q:
		if l.Type == frameEtherType9100 {
			return layers.LayerTypeDot1Q, l.LayerPayload(), true, nil
		}
	case *layers.LinuxSLL:
		if l.EthernetType == frameEtherType9100 {
			return layers.LayerTypeDot1Q, l.LayerPayload(), true, nil
		}
	case *layers.IPv4:
		// gopacket hands every fragment to the reassembly placeholder, but the
		// first one (offset 0, more-fragments set) still starts with the
		// header the fast decoder reads.
		if l.FragOffset == 0 && l.Flags&layers.IPv4MoreFragments != 0 {
			return l.Protocol, l.LayerPayload(), true, nil
		}
	case *layers.IPv6Fragment:
		if l.FragmentOffset == 0 {
			return l.NextHeader, l.LayerPayload(), true, nil
		}
	}
	return nil, nil, false, nil
}

// frameTrimHopByHop corrects a gopacket v1.1.19 bug: with a hop-by-hop header,
// IPv6 bounds the bytes after that header by the full payload length, which
// also counts the hop-by-hop header, so trailing Ethernet padding leaks into
// the TCP payload. The TCP payload ends where the IPv6 payload does (the
// extension headers in between only cut from the front), so the excess is cut
// from its end.
func frameTrimHopByHop(ip6 *layers.IPv6, payload []byte) ([]byte, error) {
	if ip6.Length == 0 {
		return payload, nil // jumbogram: gopacket used the jumbo length
	}
	want := int(ip6.Length) - ip6.HopByHop.ActualLength // bytes that belong after the hop-by-hop header
	excess := len(ip6.LayerPayload()) - want
	if excess <= 0 {
		return payload, nil
	}
	if excess > len(payload) {
		return nil, errors.New("truncated TCP header: it extends past the IPv6 payload length")
	}
	return payload[:len(payload)-excess], nil
}

// frameNetworkBefore returns the last IP layer in ls and its addresses, or a
// nil layer when ls has none (or its addresses are malformed).
func frameNetworkBefore(ls []gopacket.Layer) (src, dst netip.Addr, network gopacket.Layer) {
	for i := len(ls) - 1; i >= 0; i-- {
		var s, d []byte
		switch l := ls[i].(type) {
		case *layers.IPv4:
			s, d = l.SrcIP, l.DstIP
		case *layers.IPv6:
			s, d = l.SrcIP, l.DstIP
		default:
			continue
		}
		src, ok1 := netip.AddrFromSlice(s)
		dst, ok2 := netip.AddrFromSlice(d)
		if !ok1 || !ok2 {
			return netip.Addr{}, netip.Addr{}, nil
		}
		return src, dst, ls[i]
	}
	return netip.Addr{}, netip.Addr{}, nil
}
