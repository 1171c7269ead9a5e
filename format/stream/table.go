package stream

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
)

// connKey names a connection whichever way a segment travels: its two
// endpoints in a fixed order (the lower address, then port, first).
// Addresses are 16 bytes as two words (IPv4 mapped into IPv6).
type connKey struct {
	a, b  [2]uint64
	ports uint32 // port of a, then port of b
}

// eq compares keys word by word (the compiler's struct comparison calls
// memequal for 36 bytes).
func (k *connKey) eq(o *connKey) bool {
	return k.a[1] == o.a[1] && k.b[1] == o.b[1] && k.ports == o.ports && k.a[0] == o.a[0] && k.b[0] == o.b[0]
}

func (k *connKey) hash() uint64 {
	const m1, m2, m3 = 0x9e3779b97f4a7c15, 0xbf58476d1ce4e5b9, 0x94d049bb133111eb
	h := (k.a[0] ^ bits.RotateLeft64(k.b[0], 17)) * m1
	h ^= (k.a[1] ^ bits.RotateLeft64(k.b[1], 31)) * m2
	h ^= uint64(k.ports) * m3
	h ^= h >> 32
	h *= m1
	h ^= h >> 29
	return h | 1 // 0 marks an empty slot
}

// addrWords returns an address as two words, IPv4 mapped into IPv6.
func addrWords(a netip.Addr) [2]uint64 {
	b := a.As16()
	return [2]uint64{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

// makeKey orders two endpoints and returns the key and the direction from
// the first to the second (0: the key's a is the source).
func makeKey(src, dst [2]uint64, sport, dport uint16) (connKey, uint8) {
	if src[0] < dst[0] || src[0] == dst[0] && (src[1] < dst[1] || src[1] == dst[1] && sport <= dport) {
		return connKey{a: src, b: dst, ports: uint32(sport)<<16 | uint32(dport)}, 0
	}
	return connKey{a: dst, b: src, ports: uint32(dport)<<16 | uint32(sport)}, 1
}

// table is an open-addressing hash table of connections (linear probing,
// deletion by backward shift). A slot of a logging tracker may hold a key
// with no state: a connection it logs segments of, by id. A slot is one
// cache line, with the key and the connection's client side, so that the
// server's segments (most of them) are settled without reading the
// connection's state.
type table struct {
	slots []slot
	n     int
}

type slot struct {
	h      uint64 // 0: empty
	key    connKey
	c      *conn
	id     uint32
	client int8 // c.client
}

func (t *table) init(size int) {
	t.slots, t.n = make([]slot, size), 0
}

// find returns the slot of key, or nil.
func (t *table) find(k *connKey, h uint64) *slot {
	if i := t.index(k, h); i >= 0 {
		return &t.slots[i]
	}
	return nil
}

func (t *table) index(k *connKey, h uint64) int {
	if len(t.slots) == 0 {
		return -1
	}
	mask := uint64(len(t.slots) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		s := &t.slots[i]
		if s.h == 0 {
			return -1
		}
		if s.h == h && s.key.eq(k) {
			return int(i)
		}
	}
}

// insert returns the slot of key, adding an empty one if needed (the
// caller sets its connection or id before the table changes again).
func (t *table) insert(k *connKey, h uint64) *slot {
	if s := t.find(k, h); s != nil {
		return s
	}
	if (t.n+1)*4 > len(t.slots)*3 {
		t.grow()
	}
	mask := uint64(len(t.slots) - 1)
	i := h & mask
	for t.slots[i].h != 0 {
		i = (i + 1) & mask
	}
	t.slots[i] = slot{h: h, key: *k, client: -1}
	t.n++
	return &t.slots[i]
}

func (t *table) grow() {
	old := t.slots
	t.init(max(1024, 2*len(old)))
	mask := uint64(len(t.slots) - 1)
	for _, s := range old {
		if s.h == 0 {
			continue
		}
		i := s.h & mask
		for t.slots[i].h != 0 {
			i = (i + 1) & mask
		}
		t.slots[i] = s
		t.n++
	}
}

// remove deletes the slot of key, shifting back the slots that probed past it.
func (t *table) remove(k *connKey, h uint64) {
	at := t.index(k, h)
	if at < 0 {
		return
	}
	mask := uint64(len(t.slots) - 1)
	i := uint64(at)
	t.n--
	for j := (i + 1) & mask; ; j = (j + 1) & mask {
		s := t.slots[j]
		if s.h == 0 {
			break
		}
		// Move s back to i if its home is not in (i, j].
		home := s.h & mask
		if (j > i && (home <= i || home > j)) || (j < i && home <= i && home > j) {
			t.slots[i] = s
			i = j
		}
	}
	t.slots[i] = slot{}
}

// each calls fn for every slot that holds a connection's state.
func (t *table) each(fn func(c *conn)) {
	for i := range t.slots {
		if c := t.slots[i].c; c != nil {
			fn(c)
		}
	}
}

// decoded is what the tracker reads off a frame.
type decoded struct {
	key     connKey
	dir     uint8
	flags   uint8
	seq     uint32
	payload []byte
}

// fastTCP decodes the common frame, Ethernet (with at most one 802.1Q tag)
// carrying IPv4 without fragmentation or IPv6 without extension headers,
// carrying TCP, straight into d; handled is false for anything else, which
// packet.InnermostTCP decodes. Lengths are checked as there.
func fastTCP(linkType uint32, f []byte, d *decoded) (ok, handled bool) {
	if linkType != 1 || len(f) < 14 {
		return false, false
	}
	et := binary.BigEndian.Uint16(f[12:14])
	ip := f[14:]
	if et == 0x8100 {
		if len(f) < 18 {
			return false, false
		}
		et, ip = binary.BigEndian.Uint16(f[16:18]), f[18:]
	}
	var tcp []byte
	k := &d.key
	switch et {
	case 0x0800:
		if len(ip) < 20 {
			return false, false
		}
		_ = ip[19]
		if ip[0]>>4 != 4 || ip[9] != 6 || ip[6]&0x3F != 0 || ip[7] != 0 {
			return false, false
		}
		hl := int(ip[0]&0x0F) * 4
		total := int(binary.BigEndian.Uint16(ip[2:4]))
		if hl < 20 || total == 0 || total < hl || hl > len(ip) {
			return false, false
		}
		if total < len(ip) {
			ip = ip[:total]
		}
		const mapped = 0xffff << 32
		k.a = [2]uint64{0, mapped | uint64(binary.BigEndian.Uint32(ip[12:16]))}
		k.b = [2]uint64{0, mapped | uint64(binary.BigEndian.Uint32(ip[16:20]))}
		tcp = ip[hl:]
	case 0x86DD:
		if len(ip) < 40 || ip[0]>>4 != 6 || ip[6] != 6 {
			return false, false
		}
		plen := int(binary.BigEndian.Uint16(ip[4:6]))
		if plen == 0 {
			return false, false // a jumbogram: the general decoder knows
		}
		if 40+plen < len(ip) {
			ip = ip[:40+plen]
		}
		k.a = [2]uint64{binary.BigEndian.Uint64(ip[8:16]), binary.BigEndian.Uint64(ip[16:24])}
		k.b = [2]uint64{binary.BigEndian.Uint64(ip[24:32]), binary.BigEndian.Uint64(ip[32:40])}
		tcp = ip[40:]
	default:
		return false, false
	}
	if len(tcp) < 20 {
		return false, true
	}
	off := int(tcp[12]>>4) * 4
	if off < 20 || off > len(tcp) {
		return false, true
	}
	sport, dport := binary.BigEndian.Uint16(tcp[0:2]), binary.BigEndian.Uint16(tcp[2:4])
	k.ports, d.dir = uint32(sport)<<16|uint32(dport), 0
	if k.b[0] < k.a[0] || k.b[0] == k.a[0] && (k.b[1] < k.a[1] || k.b[1] == k.a[1] && dport < sport) {
		k.a, k.b = k.b, k.a
		k.ports, d.dir = uint32(dport)<<16|uint32(sport), 1
	}
	d.seq, d.flags, d.payload = binary.BigEndian.Uint32(tcp[4:8]), tcp[13], tcp[off:]
	return true, true
}
