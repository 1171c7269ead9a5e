// Package format reads capture files at the byte level: it recognises pcap and
// pcapng by their magic numbers, parses their file and interface headers, and
// finds packet record boundaries in arbitrary chunks of a file so that several
// workers can walk one capture in parallel.
//
// Nothing here allocates from a length field read from the file: every length
// is checked against MaxCapLen or the bytes at hand before it is used.
package format

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
)

// Kind is a capture container format.
type Kind uint8

const (
	KindUnknown Kind = iota
	KindPcap         // libpcap classic format, µs or ns, either byte order
	KindPcapNG       // pcapng, any number of sections and interfaces
)

func (k Kind) String() string {
	switch k {
	case KindPcap:
		return "pcap"
	case KindPcapNG:
		return "pcapng"
	}
	return "unknown"
}

// MaxCapLen is the largest captured length accepted for one packet. A record
// claiming more is treated as corruption, never allocated for: it matches the
// largest snap length tcpdump and dumpcap write (262144).
const MaxCapLen = 256 << 10

// maxBlockLen bounds non-packet pcapng blocks (section and interface headers
// with their options, name resolution blocks). Real ones are a few KiB.
const maxBlockLen = 1 << 20

// ErrNotCapture says the bytes do not start with a pcap or pcapng magic number.
var ErrNotCapture = errors.New("not a pcap or pcapng capture (unknown magic number)")

const (
	pcapMagicMicro   = 0xa1b2c3d4
	pcapMagicNano    = 0xa1b23c4d
	pcapngSHBType    = 0x0a0d0d0a
	pcapngByteOrder  = 0x1a2b3c4d
	pcapHeaderLen    = 24
	pcapRecordHdrLen = 16
)

// Detect recognises a capture from its first bytes (at least 4; 12 lets it
// also check a pcapng byte-order magic).
func Detect(head []byte) Kind {
	if len(head) < 4 {
		return KindUnknown
	}
	le := binary.LittleEndian.Uint32(head)
	be := binary.BigEndian.Uint32(head)
	switch {
	case le == pcapMagicMicro || le == pcapMagicNano || be == pcapMagicMicro || be == pcapMagicNano:
		return KindPcap
	case le == pcapngSHBType:
		if len(head) >= 12 {
			bom := binary.LittleEndian.Uint32(head[8:])
			if bom != pcapngByteOrder && binary.BigEndian.Uint32(head[8:]) != pcapngByteOrder {
				return KindUnknown
			}
		}
		return KindPcapNG
	}
	return KindUnknown
}

// Interface describes one capture interface: the pcap file header or a
// pcapng Interface Description Block.
type Interface struct {
	LinkType uint32
	SnapLen  uint32
	// TSResol is the pcapng if_tsresol byte: high bit clear means units of
	// 10^-n seconds, set means 2^-n. pcap files use 6 (µs) or 9 (ns).
	TSResol  uint8
	TSOffset int64 // seconds added to every timestamp (pcapng if_tsoffset)
}

// Nanos converts a raw timestamp in this interface's units to Unix nanoseconds.
func (i Interface) Nanos(raw uint64) int64 {
	n := uint(i.TSResol & 0x7f)
	var ns int64
	if i.TSResol&0x80 == 0 {
		switch {
		case n == 9:
			ns = int64(raw)
		case n < 9:
			ns = int64(raw) * pow10[9-n]
		case n-9 < uint(len(pow10)):
			ns = int64(raw / uint64(pow10[n-9]))
		}
	} else if n < 64 {
		// Binary fractions: scale the fraction by 1e9 in 128 bits so that
		// fine resolutions (2^-32 and below) cannot overflow.
		sec := raw >> n
		hi, lo := bits.Mul64(raw&(1<<n-1), 1e9)
		frac := lo>>n | hi<<(64-n)
		if n == 0 {
			frac = 0
		}
		ns = int64(sec)*1e9 + int64(frac)
	}
	return ns + i.TSOffset*1e9
}

var pow10 = [...]int64{1, 10, 100, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18}

// Section is what is needed to read the packet records that follow a pcap
// file header or a pcapng Section Header Block.
type Section struct {
	Offset    int64 // file offset of the file header or SHB
	BigEndian bool
	Ifaces    []Interface
}

func (s *Section) order() binary.ByteOrder {
	if s.BigEndian {
		return binary.BigEndian
	}
	return binary.LittleEndian
}

// ParsePcapHeader parses the 24-byte classic pcap file header.
func ParsePcapHeader(b []byte) (Section, error) {
	if len(b) < pcapHeaderLen {
		return Section{}, fmt.Errorf("pcap file header cut short (%d of 24 bytes)", len(b))
	}
	var s Section
	var resol uint8
	switch binary.LittleEndian.Uint32(b) {
	case pcapMagicMicro:
		resol = 6
	case pcapMagicNano:
		resol = 9
	default:
		s.BigEndian = true
		switch binary.BigEndian.Uint32(b) {
		case pcapMagicMicro:
			resol = 6
		case pcapMagicNano:
			resol = 9
		default:
			return Section{}, ErrNotCapture
		}
	}
	o := s.order()
	major := o.Uint16(b[4:])
	if major != 2 {
		return Section{}, fmt.Errorf("pcap version %d.%d not supported", major, o.Uint16(b[6:]))
	}
	snap := o.Uint32(b[16:])
	// The link type field's upper bits carry FCS information (LINKTYPE_* uses 16 bits
	// in practice; libpcap masks with 0x03FFFFFF).
	link := o.Uint32(b[20:]) & 0x03ffffff
	s.Ifaces = []Interface{{LinkType: link, SnapLen: snap, TSResol: resol}}
	return s, nil
}
