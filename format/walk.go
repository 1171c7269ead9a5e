package format

import (
	"encoding/binary"
)

// Record is one packet record found in a window of file bytes.
type Record struct {
	Offset   int64  // file offset of the pcap record header or pcapng block
	Size     int    // bytes the record occupies in the file
	Iface    uint32 // interface index within the section (0 for pcap)
	LinkType uint32 // link type of the record's interface
	TS       int64  // Unix nanoseconds; 0 for pcapng Simple Packet Blocks
	CapLen   uint32
	OrigLen  uint32
	DataOff  int    // where Data starts, from the record's first byte
	Data     []byte // captured bytes; aliases the window
}

// Status says what Walker.Next found at a position.
type Status uint8

const (
	// Packet: a packet record was returned.
	Packet Status = iota
	// Header: a pcapng block that is not a packet (section or interface header,
	// statistics, name resolution...) was consumed; SHB and IDB update the walker.
	Header
	// Short: the record at this position does not fit in the window. At the end
	// of the file this is a truncated last record.
	Short
	// Bad: no valid record starts at this position.
	Bad
)

// syncChain is how many consecutive valid records a candidate position must
// start before a resync trusts it: one plausible header inside payload bytes
// is common, four chained ones are not.
const syncChain = 4

// Walker walks the records of one capture. It carries the section context
// (byte order, interfaces) that pcapng blocks need, so one walker per worker.
type Walker struct {
	Kind Kind
	Sec  Section
	// HeaderBlocks counts the SHBs and IDBs this walker has applied, so a
	// caller can tell whether two walkers started from the same context.
	HeaderBlocks int
	// chainChecks counts the positions Sync checked as the start of a
	// chain of records: the costly part of a resync, which the tests keep
	// from growing faster than the bytes crossed.
	chainChecks int
}

// Next reads the record starting at buf[pos:], where buf holds the file's
// bytes from offset base on. It returns the record and its size for Packet,
// the consumed size for Header, and 0 for Short and Bad.
func (w *Walker) Next(buf []byte, base int64, pos int) (Record, int, Status) {
	var rec Record
	n, st := w.Read(&rec, buf, base, pos)
	return rec, n, st
}

// Read is Next for a loop over many records: it fills *rec, which the
// loop keeps, and leaves it as it was unless the status is Packet.
// (Returning the record by value costs more, in copies of its 72 bytes,
// than reading a pcap record header.)
func (w *Walker) Read(rec *Record, buf []byte, base int64, pos int) (int, Status) {
	if w.Kind == KindPcap {
		return w.readPcap(rec, buf, base, pos)
	}
	r, n, st := w.nextPcapNG(buf, base, pos, true, false)
	if st == Packet {
		*rec = r
	}
	return n, st
}

func (w *Walker) nextPcap(buf []byte, base int64, pos int) (Record, int, Status) {
	var rec Record
	n, st := w.readPcap(&rec, buf, base, pos)
	return rec, n, st
}

func (w *Walker) readPcap(rec *Record, buf []byte, base int64, pos int) (int, Status) {
	if len(buf)-pos < pcapRecordHdrLen {
		return 0, Short
	}
	h := buf[pos : pos+pcapRecordHdrLen]
	iface := &w.Sec.Ifaces[0]
	var sec, frac, capLen, origLen uint32
	if w.Sec.BigEndian {
		sec, frac, capLen, origLen = binary.BigEndian.Uint32(h), binary.BigEndian.Uint32(h[4:]), binary.BigEndian.Uint32(h[8:]), binary.BigEndian.Uint32(h[12:])
	} else {
		sec, frac, capLen, origLen = binary.LittleEndian.Uint32(h), binary.LittleEndian.Uint32(h[4:]), binary.LittleEndian.Uint32(h[8:]), binary.LittleEndian.Uint32(h[12:])
	}
	// libpcap and tshark read any record whose captured length is within
	// their maximum, whatever the file header's snap length, the wire
	// length or the fraction of a second say: so does a walk. Those fields
	// are only checked where a resync must tell a record from other bytes.
	if capLen > MaxCapLen {
		return 0, Bad
	}
	size := pcapRecordHdrLen + int(capLen)
	if len(buf)-pos < size {
		return 0, Short
	}
	rec.Offset, rec.Size, rec.Iface, rec.LinkType = base+int64(pos), size, 0, iface.LinkType
	rec.TS, rec.CapLen, rec.OrigLen = pcapNanos(iface, sec, frac), capLen, origLen
	rec.DataOff, rec.Data = pcapRecordHdrLen, buf[pos+pcapRecordHdrLen:pos+size:pos+size]
	return size, Packet
}

// pcapNanos converts a pcap record's timestamp to Unix nanoseconds. A
// fraction of a second out of range (which libpcap and tshark read as is)
// runs over into the next seconds.
func pcapNanos(iface *Interface, sec, frac uint32) int64 {
	if iface.TSResol == 6 {
		return int64(sec)*1e9 + int64(frac)*1e3
	}
	return int64(sec)*1e9 + int64(frac)
}

// Empty is a run of consecutive pcap records that captured nothing.
type Empty struct {
	Records      int
	Bytes        int   // bytes they occupy
	MinTS, MaxTS int64 // of their nonzero timestamps; 0 when all are zero
}

// SkipEmpty walks the run of pcap records that captured nothing (captured
// length 0) starting at buf[pos:] and ending before position stop (a
// chunk's end, or len(buf)). Such records are all header: libpcap and tshark
// read each as a frame, but there is nothing in them to decode, so a build
// counts them here, at a few nanoseconds each, instead of one by one (a
// zero-filled region of a capture is one such run, 16 bytes a record).
// For pcapng, or when the record at pos captured something, the run is
// empty.
func (w *Walker) SkipEmpty(buf []byte, pos, stop int) Empty {
	var e Empty
	if w.Kind != KindPcap {
		return e
	}
	stop = min(stop, len(buf)-pcapRecordHdrLen+1)
	iface := &w.Sec.Ifaces[0]
	big := w.Sec.BigEndian
	p := pos
	for ; p < stop; p += pcapRecordHdrLen {
		h := buf[p : p+pcapRecordHdrLen]
		if u32(h[8:], big) != 0 {
			break
		}
		if sec, frac := u32(h, big), u32(h[4:], big); sec|frac != 0 {
			ts := pcapNanos(iface, sec, frac)
			if e.MinTS == 0 || ts < e.MinTS {
				e.MinTS = ts
			}
			e.MaxTS = max(e.MaxTS, ts)
		}
	}
	e.Bytes = p - pos
	e.Records = e.Bytes / pcapRecordHdrLen
	return e
}

// plausiblePcapRecord applies the rules of the format that a writer keeps
// but a reader does not enforce: a resync lands only on records that keep
// them.
func plausiblePcapRecord(iface *Interface, frac, capLen, origLen uint32) bool {
	limit := uint32(MaxCapLen)
	if iface.SnapLen != 0 && iface.SnapLen < limit {
		limit = iface.SnapLen
	}
	fracLimit := uint32(1e6)
	if iface.TSResol == 9 {
		fracLimit = 1e9
	}
	// A zero wire length never happens on a real packet, and rejecting it
	// keeps runs of zero bytes (preallocated or sparse regions), which read
	// as records that captured nothing, from chaining as a resync target.
	return capLen <= limit && origLen != 0 && capLen <= origLen && frac < fracLimit
}

const (
	blockIDB = 1
	blockPB  = 2 // obsolete Packet Block
	blockSPB = 3
	blockNRB = 4
	blockISB = 5
	blockEPB = 6
	blockDSB = 10
)

// knownBlock lists the block types a resync may land on.
func knownBlock(t uint32) bool {
	switch t {
	case pcapngSHBType, blockIDB, blockPB, blockSPB, blockNRB, blockISB, blockEPB, blockDSB, 9, 0xbad, 0x40000bad:
		return true
	}
	return false
}

// nextPcapNG reads one block. When apply is false, SHBs and IDBs are checked
// but do not change the walker (used while probing resync candidates).
// strict adds the checks only a resync makes: a packet's captured length
// within its interface's snap length.
func (w *Walker) nextPcapNG(buf []byte, base int64, pos int, apply, strict bool) (Record, int, Status) {
	if len(buf)-pos < 12 {
		return Record{}, 0, Short
	}
	b := buf[pos:]
	big := w.Sec.BigEndian
	typ := u32(b, big)
	if typ == pcapngSHBType {
		switch uint32(pcapngByteOrder) {
		case binary.LittleEndian.Uint32(b[8:]):
			big = false
		case binary.BigEndian.Uint32(b[8:]):
			big = true
		default:
			return Record{}, 0, Bad
		}
	}
	blen := u32(b[4:], big)
	if blen < 12 || blen%4 != 0 || blen > maxBlockLen || (typ == pcapngSHBType && blen < 28) {
		return Record{}, 0, Bad
	}
	if uint32(len(b)) < blen {
		return Record{}, 0, Short
	}
	size := int(blen)
	if u32(b[size-4:], big) != blen {
		return Record{}, 0, Bad
	}
	body := b[8 : size-4]
	rec := Record{Offset: base + int64(pos), Size: size}
	switch typ {
	case pcapngSHBType:
		if apply {
			w.Sec = Section{Offset: rec.Offset, BigEndian: big}
			w.HeaderBlocks++
		}
		return rec, size, Header
	case blockIDB:
		if len(body) < 8 {
			return Record{}, 0, Bad
		}
		if apply {
			w.Sec.Ifaces = append(w.Sec.Ifaces, parseIDB(body, big))
			w.HeaderBlocks++
		}
		return rec, size, Header
	case blockEPB, blockPB:
		if len(body) < 20 {
			return Record{}, 0, Bad
		}
		var ifid uint32
		if typ == blockEPB {
			ifid = u32(body, big)
		} else {
			ifid = uint32(u16(body, big))
		}
		raw := uint64(u32(body[4:], big))<<32 | uint64(u32(body[8:], big))
		rec.CapLen, rec.OrigLen = u32(body[12:], big), u32(body[16:], big)
		if ifid >= uint32(len(w.Sec.Ifaces)) || rec.CapLen > uint32(len(body)-20) || rec.CapLen > MaxCapLen ||
			strict && !withinSnapLen(&w.Sec.Ifaces[ifid], rec.CapLen) {
			return Record{}, 0, Bad
		}
		iface := &w.Sec.Ifaces[ifid]
		rec.Iface, rec.LinkType, rec.TS = ifid, iface.LinkType, iface.Nanos(raw)
		rec.DataOff, rec.Data = 8+20, body[20:20+rec.CapLen:20+rec.CapLen]
		return rec, size, Packet
	case blockSPB:
		if len(body) < 4 || len(w.Sec.Ifaces) == 0 {
			return Record{}, 0, Bad
		}
		iface := &w.Sec.Ifaces[0]
		rec.OrigLen = u32(body, big)
		// The captured length is implicit: the wire length cut to the snap length
		// and to the block (whose last 0-3 bytes may be padding).
		capLen := min(rec.OrigLen, uint32(len(body)-4))
		if iface.SnapLen != 0 {
			capLen = min(capLen, iface.SnapLen)
		}
		if capLen > MaxCapLen {
			return Record{}, 0, Bad
		}
		rec.CapLen, rec.LinkType = capLen, iface.LinkType
		rec.DataOff, rec.Data = 8+4, body[4:4+capLen:4+capLen]
		return rec, size, Packet
	}
	return rec, size, Header
}

// withinSnapLen reports whether a captured length keeps the interface's snap
// length, as a writer does; readers (libpcap, tshark) do not require it.
func withinSnapLen(iface *Interface, capLen uint32) bool {
	return iface.SnapLen == 0 || capLen <= iface.SnapLen
}

func parseIDB(body []byte, big bool) Interface {
	iface := Interface{LinkType: uint32(u16(body, big)), SnapLen: u32(body[4:], big), TSResol: 6}
	opts := body[8:]
	for len(opts) >= 4 {
		code, olen := u16(opts, big), int(u16(opts[2:], big))
		if code == 0 || 4+olen > len(opts) {
			break
		}
		val := opts[4 : 4+olen]
		switch {
		case code == 9 && olen >= 1:
			iface.TSResol = val[0]
		case code == 14 && olen >= 8:
			iface.TSOffset = int64(u64(val, big))
		}
		opts = opts[min(len(opts), 4+(olen+3)&^3):]
	}
	return iface
}

// SizeAt returns the size the record at buf[pos:] claims, from its first
// bytes (16 for pcap, 8 for pcapng), bounded by the largest record a walk
// accepts; ok is false if too few bytes are there.
func (w *Walker) SizeAt(buf []byte, pos int) (int, bool) {
	if w.Kind == KindPcap {
		if len(buf)-pos < pcapRecordHdrLen {
			return 0, false
		}
		return pcapRecordHdrLen + int(min(u32(buf[pos+8:], w.Sec.BigEndian), MaxCapLen)), true
	}
	if len(buf)-pos < 8 {
		return 0, false
	}
	return int(min(u32(buf[pos+4:], w.Sec.BigEndian), maxBlockLen)), true
}

// Peek is Next without applying section or interface headers to the walker:
// for looking ahead from a record without disturbing the walk.
func (w *Walker) Peek(buf []byte, base int64, pos int) (Record, int, Status) {
	if w.Kind == KindPcap {
		return w.nextPcap(buf, base, pos)
	}
	return w.nextPcapNG(buf, base, pos, false, false)
}

// Sync returns the first position at or after from where syncChain records
// in a row are valid (or valid up to the end of buf when atEOF). Sync never
// changes the walker's context; for pcapng it only considers 4-byte aligned
// positions relative to base, as blocks always are. ok is false if none is found.
//
// Its cost is linear in the bytes it crosses, whatever they are: a position
// is first judged by the one field most byte patterns fail (the wire length
// of a pcap record, the type of a pcapng block), and a run of zero bytes,
// where no record a resync trusts can start, is crossed in one step.
func (w *Walker) Sync(buf []byte, base int64, from int, atEOF bool) (pos int, ok bool) {
	big := w.Sec.BigEndian
	if w.Kind == KindPcap {
		for p := from; p+12 <= len(buf); p++ {
			if p+pcapRecordHdrLen <= len(buf) {
				switch origLen := u32(buf[p+12:], big); {
				case origLen == 0:
					// No record that starts before the next nonzero byte
					// z has a nonzero wire length, but from z-15 on.
					p = max(p, nonZero(buf, p+pcapRecordHdrLen)-pcapRecordHdrLen)
					continue
				case origLen > maxSyncOrigLen:
					continue
				}
			}
			if w.chainValid(buf, base, p, atEOF) {
				return p, true
			}
		}
		return 0, false
	}
	if r := int((base + int64(from)) % 4); r != 0 {
		from += 4 - r
	}
	for p := from; p+12 <= len(buf); p += 4 {
		if u32(buf[p:], big) == 0 {
			// Block type 0 is reserved: skip to the aligned position that
			// holds the next nonzero byte.
			z := nonZero(buf, p+4)
			p = z - int((base+int64(z))%4) - 4
			continue
		}
		if w.chainValid(buf, base, p, atEOF) {
			return p, true
		}
	}
	return 0, false
}

// nonZero returns the index of the first nonzero byte of buf at or after
// i, or len(buf). Zero-filled regions are crossed 32 bytes a step.
func nonZero(buf []byte, i int) int {
	le := binary.LittleEndian
	for i+32 <= len(buf) {
		b := buf[i : i+32]
		if le.Uint64(b)|le.Uint64(b[8:])|le.Uint64(b[16:])|le.Uint64(b[24:]) != 0 {
			break
		}
		i += 32
	}
	for i+8 <= len(buf) && binary.LittleEndian.Uint64(buf[i:]) == 0 {
		i += 8
	}
	for i < len(buf) && buf[i] == 0 {
		i++
	}
	return i
}

func (w *Walker) chainValid(buf []byte, base int64, p int, atEOF bool) bool {
	w.chainChecks++
	for i := 0; i < syncChain; i++ {
		if len(buf)-p < 12 {
			// Too few bytes left to judge: trust a chain that reached the end
			// of the file, and one that ran off a window that goes on.
			return i > 0 && (p == len(buf) || !atEOF)
		}
		var size int
		var st Status
		if w.Kind == KindPcap {
			if !w.syncablePcapRecord(buf[p:]) {
				return false
			}
			_, size, st = w.nextPcap(buf, base, p)
		} else {
			if !knownBlock(u32(buf[p:], w.Sec.BigEndian)) && u32(buf[p:], false) != pcapngSHBType {
				return false
			}
			_, size, st = w.nextPcapNG(buf, base, p, false, true)
			if st == Header && u32(buf[p:], w.Sec.BigEndian) == blockIDB {
				// An IDB mid-chain would change the context; accept the chain here.
				return true
			}
		}
		switch st {
		case Bad:
			return false
		case Short:
			return i > 0
		}
		p += size
	}
	return true
}

// syncablePcapRecord applies checks stricter than a walk's to a record header
// a resync might land on. Reading a true header four bytes late gives a
// record whose "captured length" is the true wire length, so it chains
// perfectly; its "wire length" is then packet bytes, rarely a small number,
// and its data rarely starts like a frame of the link type.
func (w *Walker) syncablePcapRecord(b []byte) bool {
	if len(b) < pcapRecordHdrLen {
		return true // left to nextPcap
	}
	big := w.Sec.BigEndian
	frac, capLen, origLen := u32(b[4:], big), u32(b[8:], big), u32(b[12:], big)
	iface := &w.Sec.Ifaces[0]
	if origLen > maxSyncOrigLen || !plausiblePcapRecord(iface, frac, capLen, origLen) {
		return false
	}
	data := b[pcapRecordHdrLen:]
	data = data[:min(len(data), int(capLen))]
	return plausibleFrame(iface.LinkType, data, origLen)
}

func u16(b []byte, big bool) uint16 {
	if big {
		return binary.BigEndian.Uint16(b)
	}
	return binary.LittleEndian.Uint16(b)
}

func u32(b []byte, big bool) uint32 {
	if big {
		return binary.BigEndian.Uint32(b)
	}
	return binary.LittleEndian.Uint32(b)
}

func u64(b []byte, big bool) uint64 {
	if big {
		return binary.BigEndian.Uint64(b)
	}
	return binary.LittleEndian.Uint64(b)
}

// maxSyncOrigLen bounds the wire length of a record a resync may land on.
// Longer packets (TSO, BIG TCP) are still walked; they are just not trusted
// as the first record after corruption.
const maxSyncOrigLen = 256 << 10

// plausibleFrame reports whether data starts like a frame of the link type:
// a cheap content check that keeps resyncs off misaligned headers.
func plausibleFrame(linkType uint32, data []byte, origLen uint32) bool {
	switch linkType {
	case 1: // Ethernet
		if len(data) < 14 {
			return true // too little to judge (a tiny snap length, or a cut record)
		}
		et := binary.BigEndian.Uint16(data[12:])
		if et >= 0x0600 {
			return true // an EtherType; exotic ones are real too
		}
		// An 802.3 length field: the frame is that payload (at least the
		// 46-byte minimum) plus header and FCS.
		return et <= 1500 && origLen <= 14+max(uint32(et), 46)+4
	case 113: // Linux SLL: packet type 0-4
		return len(data) < 2 || binary.BigEndian.Uint16(data) <= 4
	case 276: // Linux SLL2: reserved field zero
		return len(data) < 4 || binary.BigEndian.Uint16(data[2:]) == 0
	case 101, 12, 14, 228, 229: // raw IP
		return len(data) > 0 && (data[0]>>4 == 4 || data[0]>>4 == 6)
	case 0: // BSD loopback, address family in host byte order
		if len(data) < 4 {
			return true
		}
		af := binary.LittleEndian.Uint32(data)
		if af > 0xffff {
			af = binary.BigEndian.Uint32(data)
		}
		return af == 2 || af == 24 || af == 28 || af == 30
	}
	return true
}
