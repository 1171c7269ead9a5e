// Package index stores where forwarding-header addresses (X-Forwarded-For
// and the others package xff knows) occur in capture files, in a Pebble
// key-value store, and answers look-ups by address.
//
// # Key schema (version 4)
//
// Every key starts with a one-byte tag naming its table. Integers are
// big-endian so that byte order is numeric order.
//
//	'h' fam addr fid off hdr → pos conn  one hit: address addr was in the
//	                                      list of header hdr of a request in
//	                                      the packet record at byte offset
//	                                      off of capture file fid (the
//	                                      record holding the line's first
//	                                      byte)
//	'r' fid off seq          → request   the request behind the hits of
//	                                      that packet, where the packet
//	                                      alone does not show it (its header
//	                                      block began in an earlier TCP
//	                                      segment, goes on in a later one, or
//	                                      it starts behind another request's
//	                                      body); seq is the TCP sequence
//	                                      number of its first byte. The value
//	                                      is encoded by appendRequest
//	                                      (request.go): version, flags (1 the
//	                                      request line is in this packet, 2
//	                                      the block was read to its end),
//	                                      method, target, Host, the headers
//	                                      listed and capped, and each listed
//	                                      header's whole list
//	's' fid                  → state     the connection state at the file's
//	                                      end (format/stream), from which a
//	                                      build of the grown file, or of the
//	                                      next capture of a rotation, goes on
//	'v' fid off hdr          → raw       version 2 only: the raw value(s) of
//	                                      header hdr of that packet, where the
//	                                      packet alone did not show them
//	'z' fid out              → point     a restart point of a compressed
//	                                      capture at uncompressed offset out:
//	                                      encoded by format/compressed
//	                                      (AppendPoint): version, flags
//	                                      (1: a gzip member or zstd/lz4
//	                                      frame start), the bit (0-7), the
//	                                      compressed offset, and for a
//	                                      deflate block inside a member
//	                                      the 32 KiB window before it,
//	                                      deflated
//	'f' fid                  → FileInfo  catalog entry of one capture: a
//	                                      binary record led by its version
//	                                      byte (appendFileInfo, catalog.go)
//	'd' fid                  → entries   a removed file whose hit keys may
//	                                      remain (uvarint: how many it had),
//	                                      until Collect removes them
//	'm' "lastfid"            → fid       the highest id of a removed file
//	                                      (4 bytes), never given again
//	'm' "schema"             → version   schema version ("4")
//
// fam is 4 or 6; addr is the 4- or 16-byte address (IPv4-mapped IPv6 is
// stored as IPv4); fid is a uint32; off a uint64; hdr one byte, the
// xff.Header number (0 X-Forwarded-For, 1 Forwarded, 2 X-Real-IP,
// 3 True-Client-IP, 4 CF-Connecting-IP); pos the uvarint position of the
// address's first occurrence in that header's list (0 = left-most, the
// client as the first proxy saw it); conn, when present, the uvarint
// (off - start + 1) << 1 | syn, where start is the record where the build's
// connection tracking took the hit's connection up (its SYN when syn is 1),
// so that --write reads the conversation from there (encodeConn).
//
// Hits are keyed address first so that one address, and a CIDR prefix, is one
// contiguous range scan; file then offset after it so that a look-up reads
// each capture front to back. The header comes last: a packet whose
// X-Forwarded-For and X-Real-IP both name the address is two adjacent keys,
// and a look-up of X-Forwarded-For alone (the default) skips the others'
// keys as it meets them. An address that occurs twice in one header of one
// packet is one key: a hit is a packet and a header.
//
// A file's keys are written as sorted SSTables and ingested in a single
// Ingest call, catalog entry and schema key included, so a file is either
// wholly in the index or not at all. Rebuilding a changed file gives it a new
// fid, and the same Ingest removes the old one (dead.go): there is one
// catalog entry per path. A removed file's catalog entry and fid-first keys
// go at once; its hit keys stay, behind a 'd' key, until Collect removes
// them in one scan for many files. Readers ignore hits whose fid has no
// catalog entry.
//
// Version 3 had no 'd' keys: a file's hit keys were deleted with it (one
// scan of the hit table per file removed), and two entries of one path
// were possible after a crash, and catalog entries were JSON; Store.Upgrade
// rewrites the entries in the binary form, removes the older of two entries
// of a path and marks it version 4. Version 2 (before connection tracking) had
// no 'r' or 's' keys, and 'v' keys instead; Store.Upgrade marks it without
// changing a key, and builds read its files again (FileInfo.Tracking).
// Version 1 (xffidx before the other headers) had no hdr byte and no 'm'
// key; Store.Upgrade rewrites such an index in place (migrate.go).
package index

import (
	"encoding/binary"
	"net/netip"

	"github.com/xffidx/xffidx/format/xff"
)

// SchemaVersion is stored under 'm' "schema"; bump it when keys change, and
// teach Store.Upgrade to rewrite the previous version.
const SchemaVersion = "4"

const (
	tagDead    = 'd'
	tagFile    = 'f'
	tagHit     = 'h'
	tagMeta    = 'm'
	tagRequest = 'r'
	tagState   = 's'
	tagValue   = 'v'
	tagSeek    = 'z'
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
func HitKey(dst []byte, a netip.Addr, fid uint32, off int64, h xff.Header) []byte {
	dst = append(dst, tagHit)
	dst = AddrKey(dst, a)
	dst = binary.BigEndian.AppendUint32(dst, fid)
	dst = binary.BigEndian.AppendUint64(dst, uint64(off))
	return append(dst, byte(h))
}

// ValueKey appends the key of a stored raw header value to dst.
func ValueKey(dst []byte, fid uint32, off int64, h xff.Header) []byte {
	dst = append(dst, tagValue)
	dst = binary.BigEndian.AppendUint32(dst, fid)
	dst = binary.BigEndian.AppendUint64(dst, uint64(off))
	return append(dst, byte(h))
}

// Key lengths of version 2, by table and family.
const (
	hitKeyLen4  = 1 + 1 + 4 + 4 + 8 + 1
	hitKeyLen6  = 1 + 1 + 16 + 4 + 8 + 1
	valueKeyLen = 1 + 4 + 8 + 1
)

var schemaKey = []byte{tagMeta, 's', 'c', 'h', 'e', 'm', 'a'}

func fileKey(fid uint32) []byte {
	return binary.BigEndian.AppendUint32([]byte{tagFile}, fid)
}

// hitKey is a decoded hit key.
type hitKey struct {
	addr   netip.Addr
	fid    uint32
	off    int64
	header xff.Header
}

// decodeHitKey splits a hit key; ok is false for a malformed key.
func decodeHitKey(k []byte) (hk hitKey, ok bool) {
	if len(k) < 2 || k[0] != tagHit {
		return hk, false
	}
	var rest []byte
	switch k[1] {
	case 4:
		if len(k) != hitKeyLen4 {
			return hk, false
		}
		hk.addr = netip.AddrFrom4([4]byte(k[2:6]))
		rest = k[6:]
	case 6:
		if len(k) != hitKeyLen6 {
			return hk, false
		}
		hk.addr = netip.AddrFrom16([16]byte(k[2:18]))
		rest = k[18:]
	default:
		return hk, false
	}
	hk.fid = binary.BigEndian.Uint32(rest)
	hk.off = int64(binary.BigEndian.Uint64(rest[4:]))
	hk.header = xff.Header(rest[12])
	return hk, true
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
