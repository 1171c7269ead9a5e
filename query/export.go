package query

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strings"

	"github.com/xffidx/xffidx/format"
	"github.com/xffidx/xffidx/format/packet"
	"github.com/xffidx/xffidx/index"
)

// Export writes the complete conversations of the matched rows (every packet
// of each matched connection, both directions, handshake and responses
// included) as a capture. The index keeps no per-connection ranges, so each
// connection's extent is found around its hits: backwards from the first hit
// in growing windows (1 MiB up to exportReach) until the connection's SYN,
// forwards from the last hit until it has closed (FIN both ways, or RST).
// Only those windows are read, never the whole capture.
//
// The output is pcap (nanosecond) when every packet has one link type and
// path does not end in ".pcapng", else pcapng with one interface per link
// type. It is written to a temporary file renamed into place at the end
// (mode 0600); path must not be a capture of files (the catalog), nor a
// symbolic link, nor exist unless force (see checkOutput).
func Export(path string, rows []Row, files []index.FileInfo, force bool) (ExportStats, error) {
	var st ExportStats
	out, err := createOutput(path, files, force)
	if err != nil {
		return st, err
	}
	defer out.abort()
	byPath := map[string]*index.FileInfo{}
	for i := range files {
		byPath[files[i].Path] = &files[i]
	}
	type fileFlows struct {
		info  *index.FileInfo
		flows map[flowKey]*span
	}
	var order []*fileFlows
	seen := map[string]*fileFlows{}
	for _, r := range rows {
		ff := seen[r.File]
		if ff == nil {
			info := byPath[r.File]
			if info == nil {
				return st, fmt.Errorf("%s: not in the catalog", r.File)
			}
			ff = &fileFlows{info: info, flows: map[flowKey]*span{}}
			seen[r.File] = ff
			order = append(order, ff)
		}
		k := keyOf(r.FiveTuple)
		if sp := ff.flows[k]; sp != nil {
			sp.minHit, sp.maxHit = min(sp.minHit, r.Offset), max(sp.maxHit, r.Offset)
			sp.noteSYN(r)
		} else {
			sp := &span{minHit: r.Offset, maxHit: r.Offset, syn: -1}
			sp.noteSYN(r)
			ff.flows[k] = sp
		}
	}
	linkTypes := map[uint32]bool{}
	for _, ff := range order {
		for _, sec := range ff.info.Sections {
			for _, iface := range sec.Ifaces {
				linkTypes[iface.LinkType] = true
			}
		}
	}
	w := newCaptureWriter(out, strings.HasSuffix(path, ".pcapng") || len(linkTypes) != 1, linkTypes)
	// Packets are gathered first so that those of several captures come out
	// in time order.
	var recs []format.Record
	for _, ff := range order {
		f, err := os.Open(ff.info.Path)
		if err != nil {
			return st, fmt.Errorf("%s: %w", ff.info.Path, err)
		}
		x := &extent{f: f, info: ff.info}
		for k, sp := range ff.flows {
			x.find(k, sp)
			if !sp.startFound || !sp.endFound {
				st.Partial++
			}
		}
		err = x.emit(ff.flows, func(rec format.Record) error {
			rec.Data = bytes.Clone(rec.Data)
			recs = append(recs, rec)
			return nil
		})
		f.Close()
		if err != nil {
			return st, fmt.Errorf("%s: %w", ff.info.Path, err)
		}
		st.Conversations += len(ff.flows)
		st.FromIndex += x.byIndex
	}
	slices.SortStableFunc(recs, func(a, b format.Record) int { return cmp.Compare(a.TS, b.TS) })
	for _, rec := range recs {
		if err := w.write(rec); err != nil {
			return st, fmt.Errorf("%s: %w", path, err)
		}
	}
	st.Packets = len(recs)
	if err := w.flush(); err != nil {
		return st, fmt.Errorf("%s: %w", path, err)
	}
	return st, out.commit()
}

// ExportStats counts what Export wrote.
type ExportStats struct {
	Packets, Conversations int
	// FromIndex counts conversations whose start (SYN) the index gave, so
	// that the capture was not searched backwards for it.
	FromIndex int
	// Partial counts conversations whose start or end was not found within
	// reach (a connection open for very long, or cut by the capture).
	Partial int
}

// segKey is the connection of a TCP segment.
func segKey(seg *packet.Segment) flowKey {
	return keyOf(FiveTuple{SrcIP: seg.SrcIP, DstIP: seg.DstIP, SrcPort: seg.SrcPort, DstPort: seg.DstPort, Proto: "tcp"})
}

// span is where a connection's packets lie in one file.
type span struct {
	minHit, maxHit       int64
	first, last          int64 // record offsets of its first and last packets
	startFound, endFound bool
	// syn is the connection's SYN as the build saw it (-1: no row said),
	// the earliest one when rows of the same 5-tuple name several (ports
	// reused).
	syn int64
}

// noteSYN takes the SYN the build recorded for r's connection.
func (sp *span) noteSYN(r Row) {
	if r.connSYN && r.conn >= 0 && (sp.syn < 0 || r.conn < sp.syn) {
		sp.syn = r.conn
	}
}

// exportReach bounds how far from its hits a connection is looked for;
// closeRecords, how many records after its close its last ACK may come.
const (
	exportReach  = 256 << 20
	closeRecords = 64
)

// extent walks windows of one capture.
type extent struct {
	f       *os.File
	info    *index.FileInfo
	buf     []byte
	byIndex int // connections whose start the index gave
}

// find sets sp.first and sp.last.
func (x *extent) find(k flowKey, sp *span) {
	sp.first, sp.last = sp.minHit, sp.maxHit
	if sp.syn >= 0 && sp.syn <= sp.minHit {
		// The build followed the connection from its SYN: no looking back.
		sp.first, sp.startFound = sp.syn, true
		x.byIndex++
	}
	for window := int64(1 << 20); !sp.startFound; window *= 4 {
		from := max(x.dataStart(sp.minHit), sp.minHit-window)
		first, syn, aligned := int64(-1), int64(-1), false
		x.walk(from, from == x.dataStart(sp.minHit), sp.minHit+1, func(rec format.Record, seg *packet.Segment, ok bool) bool {
			if rec.Offset == sp.minHit {
				aligned = true
			}
			if ok && rec.Offset <= sp.minHit && segKey(seg) == k {
				if first < 0 {
					first = rec.Offset
				}
				if seg.Flags&0x12 == 0x02 { // SYN without ACK: the connection opens
					syn = rec.Offset
				}
			}
			return true
		})
		switch {
		case aligned && syn >= 0:
			sp.first, sp.startFound = syn, true
		case aligned && first >= 0 && (from == x.dataStart(sp.minHit) || window >= exportReach):
			// No SYN: the capture began, or we gave up, mid-connection.
			sp.first, sp.startFound = first, from == x.dataStart(sp.minHit)
		case from > x.dataStart(sp.minHit) && window < exportReach:
			continue
		}
		break
	}
	// Forwards: until FIN both ways or RST, and a little after for the last ACK.
	finA, finB, closedAt := false, false, int64(-1)
	after := 0
	x.walk(sp.maxHit, true, min(x.info.Size, sp.maxHit+exportReach), func(rec format.Record, seg *packet.Segment, ok bool) bool {
		if closedAt >= 0 {
			after++
		}
		if ok && segKey(seg) == k {
			if seg.Flags&0x02 != 0 && rec.Offset > sp.maxHit {
				return false // a new connection reusing the ports
			}
			sp.last = rec.Offset
			if seg.Flags&0x04 != 0 {
				closedAt = rec.Offset
			}
			if seg.Flags&0x01 != 0 {
				if netip.AddrPortFrom(seg.SrcIP, seg.SrcPort) == k.lo {
					finA = true
				} else {
					finB = true
				}
				if finA && finB && closedAt < 0 {
					closedAt = rec.Offset
				}
			}
		}
		return after < closeRecords // the last ACK follows closely
	})
	sp.endFound = closedAt >= 0
}

// dataStart is where records of off's section begin.
func (x *extent) dataStart(off int64) int64 {
	sec, ok := x.info.SectionAt(off)
	if !ok {
		return 0
	}
	if x.info.Format == format.KindPcap.String() {
		return sec.Offset + 24
	}
	return sec.Offset
}

// emit writes, in file order, every packet of each flow within its span.
func (x *extent) emit(flows map[flowKey]*span, fn func(format.Record) error) error {
	type rng struct{ from, to int64 }
	var rs []rng
	for _, sp := range flows {
		rs = append(rs, rng{sp.first, sp.last + 1})
	}
	slices.SortFunc(rs, func(a, b rng) int { return cmp.Compare(a.from, b.from) })
	var merged []rng
	for _, r := range rs {
		if n := len(merged); n > 0 && r.from <= merged[n-1].to {
			merged[n-1].to = max(merged[n-1].to, r.to)
		} else {
			merged = append(merged, r)
		}
	}
	var err error
	for _, r := range merged {
		x.walk(r.from, true, r.to, func(rec format.Record, seg *packet.Segment, ok bool) bool {
			if !ok {
				return true
			}
			sp := flows[segKey(seg)]
			if sp != nil && rec.Offset >= sp.first && rec.Offset <= sp.last {
				err = fn(rec)
			}
			return err == nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// walk calls fn for each packet record starting in [from, to), with its
// innermost TCP segment. With trusted, a record starts at from; otherwise
// the walk resyncs there first. fn returns false to stop.
func (x *extent) walk(from int64, trusted bool, to int64, fn func(format.Record, *packet.Segment, bool) bool) {
	sec, ok := x.info.SectionAt(from)
	if !ok {
		return
	}
	kind := format.KindPcap
	if x.info.Format == format.KindPcapNG.String() {
		kind = format.KindPcapNG
	}
	w := format.Walker{Kind: kind, Sec: *sec}
	w.Sec.Ifaces = slices.Clone(sec.Ifaces)
	const piece = 4 << 20
	if cap(x.buf) < piece+format.MaxCapLen+(1<<20) {
		x.buf = make([]byte, 0, piece+format.MaxCapLen+(1<<20))
	}
	base, buf, pos := from, x.buf[:0], 0
	fill := func() bool { // append the next piece; false at the end
		n := int(min(int64(cap(buf)-len(buf)), x.info.Size-(base+int64(len(buf)))))
		if n <= 0 {
			return false
		}
		got, err := x.f.ReadAt(buf[len(buf):len(buf)+n], base+int64(len(buf)))
		buf = buf[:len(buf)+got]
		return got > 0 && (err == nil || errors.Is(err, io.EOF))
	}
	fill()
	if !trusted {
		p, ok := w.Sync(buf, base, 0, base+int64(len(buf)) == x.info.Size)
		if !ok {
			return
		}
		pos = p
	}
	for base+int64(pos) < to {
		rec, n, st := w.Next(buf, base, pos)
		switch st {
		case format.Packet:
			seg, ok := packet.InnermostTCP(rec.LinkType, rec.Data)
			if !fn(rec, &seg, ok) {
				return
			}
			pos += n
		case format.Header:
			pos += n
		case format.Short:
			// Move what is left to the front and read on.
			copy(buf, buf[pos:])
			buf, base, pos = buf[:len(buf)-pos], base+int64(pos), 0
			if !fill() {
				return
			}
		default:
			p, ok := w.Sync(buf, base, pos+1, base+int64(len(buf)) == x.info.Size)
			if !ok {
				return
			}
			pos = p
		}
	}
}

// captureWriter writes pcap (nanosecond) or pcapng.
type captureWriter struct {
	w      *bufio.Writer
	ng     bool
	ifaces map[uint32]uint32 // link type -> pcapng interface id
	err    error
}

func newCaptureWriter(out io.Writer, ng bool, linkTypes map[uint32]bool) *captureWriter {
	cw := &captureWriter{w: bufio.NewWriterSize(out, 1<<20), ng: ng, ifaces: map[uint32]uint32{}}
	types := make([]uint32, 0, len(linkTypes))
	for lt := range linkTypes {
		types = append(types, lt)
	}
	slices.Sort(types)
	le := binary.LittleEndian
	if !ng {
		h := make([]byte, 24)
		le.PutUint32(h, 0xa1b23c4d) // nanosecond pcap
		le.PutUint16(h[4:], 2)
		le.PutUint16(h[6:], 4)
		le.PutUint32(h[16:], format.MaxCapLen)
		if len(types) > 0 {
			le.PutUint32(h[20:], types[0])
		}
		cw.w.Write(h)
		return cw
	}
	shb := make([]byte, 28)
	le.PutUint32(shb, 0x0a0d0d0a)
	le.PutUint32(shb[4:], 28)
	le.PutUint32(shb[8:], 0x1a2b3c4d)
	le.PutUint16(shb[12:], 1)
	le.PutUint64(shb[16:], ^uint64(0)) // section length unknown
	le.PutUint32(shb[24:], 28)
	cw.w.Write(shb)
	for i, lt := range types {
		idb := make([]byte, 32)
		le.PutUint32(idb, 1)
		le.PutUint32(idb[4:], 32)
		le.PutUint16(idb[8:], uint16(lt))
		le.PutUint32(idb[12:], format.MaxCapLen)
		le.PutUint16(idb[16:], 9) // if_tsresol: nanoseconds
		le.PutUint16(idb[18:], 1)
		idb[20] = 9
		le.PutUint32(idb[28:], 32) // opt_endofopt is bytes 24-27
		cw.w.Write(idb)
		cw.ifaces[lt] = uint32(i)
	}
	return cw
}

func (cw *captureWriter) write(rec format.Record) error {
	if cw.err != nil {
		return cw.err
	}
	le := binary.LittleEndian
	ns := uint64(rec.TS)
	if !cw.ng {
		h := make([]byte, 16)
		le.PutUint32(h, uint32(ns/1e9))
		le.PutUint32(h[4:], uint32(ns%1e9))
		le.PutUint32(h[8:], uint32(len(rec.Data)))
		le.PutUint32(h[12:], rec.OrigLen)
		cw.w.Write(h)
		_, cw.err = cw.w.Write(rec.Data)
		return cw.err
	}
	pad := (4 - len(rec.Data)%4) % 4
	total := 32 + len(rec.Data) + pad
	h := make([]byte, 28)
	le.PutUint32(h, 6)
	le.PutUint32(h[4:], uint32(total))
	le.PutUint32(h[8:], cw.ifaces[rec.LinkType])
	le.PutUint32(h[12:], uint32(ns>>32))
	le.PutUint32(h[16:], uint32(ns))
	le.PutUint32(h[20:], uint32(len(rec.Data)))
	le.PutUint32(h[24:], rec.OrigLen)
	cw.w.Write(h)
	cw.w.Write(rec.Data)
	cw.w.Write(make([]byte, pad))
	var t [4]byte
	le.PutUint32(t[:], uint32(total))
	_, cw.err = cw.w.Write(t[:])
	return cw.err
}

func (cw *captureWriter) flush() error {
	if cw.err != nil {
		return cw.err
	}
	return cw.w.Flush()
}
