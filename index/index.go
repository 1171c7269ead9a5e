// Package index stores where X-Forwarded-For addresses occur in capture files,
// in a Pebble key-value store, and answers look-ups by address.
//
// # Key schema
//
// Every key starts with a one-byte tag naming its table. Integers are
// big-endian so that byte order is numeric order.
//
//	'h' fam addr fid off   → pos       one hit: address addr was in the XFF
//	                                    list of the packet record at byte
//	                                    offset off of capture file fid
//	'v' fid off            → raw       the raw XFF value(s) of that packet,
//	                                    only where the packet alone does not
//	                                    show them (a value continued in the
//	                                    next TCP segment, or a header block
//	                                    begun in an earlier segment)
//	'f' fid                → FileInfo  catalog entry of one capture (JSON)
//	'm' "schema"           → version   schema version ("1")
//
// fam is 4 or 6; addr is the 4- or 16-byte address (IPv4-mapped IPv6 is
// stored as IPv4); fid is a uint32; off a uint64; pos the uvarint position of
// the address's first occurrence in the list (0 = left-most, the client as the
// first proxy saw it).
//
// Hits are keyed address first so that one address, and a CIDR prefix, is one
// contiguous range scan; file then offset after it so that a look-up reads
// each capture front to back. An address that occurs twice in one packet is
// one key: a hit is a packet.
//
// A file's keys are written as one sorted SSTable and ingested in a single
// Ingest call, catalog entry included, so a file is either wholly in the
// index or not at all. Rebuilding a changed file gives it a new fid; its old
// keys are then deleted, and until that delete lands a look-up ignores hits
// of any entry but the newest (highest fid) of each path.
package index

import (
	"encoding/binary"
	"net/netip"
)

// SchemaVersion is stored under 'm' "schema"; bump it when keys change.
const SchemaVersion = "1"

const (
	tagFile  = 'f'
	tagHit   = 'h'
	tagMeta  = 'm'
	tagValue = 'v'
)

// AddrKey appends the address part of a hit key (fam + bytes) to dst.
func AddrKey(dst []byte, a netip.Addr) []byte {
	a = a.Unmap()
	if a.Is4() {
		b := a.As4()
		return append(append(dst, 4), b[:]...)
	}
	b := a.As16()
	return append(append(dst, 6), b[:]...)
}

// HitKey appends the key of one hit to dst.
func HitKey(dst []byte, a netip.Addr, fid uint32, off int64) []byte {
	dst = append(dst, tagHit)
	dst = AddrKey(dst, a)
	dst = binary.BigEndian.AppendUint32(dst, fid)
	return binary.BigEndian.AppendUint64(dst, uint64(off))
}

// ValueKey appends the key of a stored raw XFF value to dst.
func ValueKey(dst []byte, fid uint32, off int64) []byte {
	dst = append(dst, tagValue)
	dst = binary.BigEndian.AppendUint32(dst, fid)
	return binary.BigEndian.AppendUint64(dst, uint64(off))
}

func fileKey(fid uint32) []byte {
	return binary.BigEndian.AppendUint32([]byte{tagFile}, fid)
}

// decodeHitKey splits a hit key; ok is false for a malformed key.
func decodeHitKey(k []byte) (a netip.Addr, fid uint32, off int64, ok bool) {
	if len(k) < 2 || k[0] != tagHit {
		return a, 0, 0, false
	}
	var rest []byte
	switch k[1] {
	case 4:
		if len(k) != 2+4+12 {
			return a, 0, 0, false
		}
		a = netip.AddrFrom4([4]byte(k[2:6]))
		rest = k[6:]
	case 6:
		if len(k) != 2+16+12 {
			return a, 0, 0, false
		}
		a = netip.AddrFrom16([16]byte(k[2:18]))
		rest = k[18:]
	default:
		return a, 0, 0, false
	}
	return a, binary.BigEndian.Uint32(rest), int64(binary.BigEndian.Uint64(rest[4:])), true
}

// PrefixRange returns the key range [lo, hi) holding every hit of an address
// in prefix p.
func PrefixRange(p netip.Prefix) (lo, hi []byte) {
	p = p.Masked()
	addr := p.Addr()
	bits := p.Bits()
	if addr.Is4In6() && bits >= 96 {
		addr, bits = addr.Unmap(), bits-96
	}
	lo = AddrKey([]byte{tagHit}, addr)
	if bits == 0 {
		return lo, []byte{tagHit, lo[1] + 1}
	}
	// hi is lo plus one at the prefix's last bit. The masked bits after it are
	// zero, and a carry out of the address moves into the family byte, which
	// still bounds the range.
	hi = append([]byte(nil), lo...)
	inc := uint16(1) << (7 - uint((bits-1)%8))
	for idx := 2 + (bits-1)/8; idx >= 1; idx-- {
		s := uint16(hi[idx]) + inc
		hi[idx] = byte(s)
		if s < 256 {
			break
		}
		inc = 1
	}
	return lo, hi
}
