package stream

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/xffidx/xffidx/format"
	"github.com/xffidx/xffidx/format/packet"
	"github.com/xffidx/xffidx/format/xff"
)

// A tiny capture writer for the tests: Ethernet, IPv4 or IPv6, TCP.

type capture struct {
	buf []byte
}

func newCapture() *capture {
	h := make([]byte, 24)
	binary.LittleEndian.PutUint32(h, 0xa1b23c4d) // ns
	binary.LittleEndian.PutUint16(h[4:], 2)
	binary.LittleEndian.PutUint16(h[6:], 4)
	binary.LittleEndian.PutUint32(h[16:], 262144)
	binary.LittleEndian.PutUint32(h[20:], 1)
	return &capture{buf: h}
}

type endpoint struct {
	ip   netip.Addr
	port uint16
}

// frame appends one TCP segment. snap, if > 0, cuts the record's captured
// payload to that many bytes.
func (c *capture) frame(ts int64, src, dst endpoint, seq uint32, flags byte, payload []byte, snap int) int64 {
	var f []byte
	f = append(f, make([]byte, 12)...)
	v6 := src.ip.Is6()
	if v6 {
		f = binary.BigEndian.AppendUint16(f, 0x86DD)
		ip := make([]byte, 40)
		ip[0] = 0x60
		binary.BigEndian.PutUint16(ip[4:], uint16(20+len(payload)))
		ip[6], ip[7] = 6, 64
		s, d := src.ip.As16(), dst.ip.As16()
		copy(ip[8:], s[:])
		copy(ip[24:], d[:])
		f = append(f, ip...)
	} else {
		f = binary.BigEndian.AppendUint16(f, 0x0800)
		ip := make([]byte, 20)
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], uint16(40+len(payload)))
		ip[8], ip[9] = 64, 6
		s, d := src.ip.As4(), dst.ip.As4()
		copy(ip[12:], s[:])
		copy(ip[16:], d[:])
		f = append(f, ip...)
	}
	tcp := make([]byte, 20)
	binary.BigEndian.PutUint16(tcp, src.port)
	binary.BigEndian.PutUint16(tcp[2:], dst.port)
	binary.BigEndian.PutUint32(tcp[4:], seq)
	tcp[12], tcp[13] = 5<<4, flags
	f = append(append(f, tcp...), payload...)
	orig := len(f)
	if snap > 0 && snap < len(payload) {
		f = f[:len(f)-len(payload)+snap]
	}
	off := int64(len(c.buf))
	h := make([]byte, 16)
	binary.LittleEndian.PutUint32(h, uint32(ts/1e9))
	binary.LittleEndian.PutUint32(h[4:], uint32(ts%1e9))
	binary.LittleEndian.PutUint32(h[8:], uint32(len(f)))
	binary.LittleEndian.PutUint32(h[12:], uint32(orig))
	c.buf = append(append(c.buf, h...), f...)
	return off
}

// records walks the capture.
func (c *capture) records(t testing.TB) []format.Record {
	sec, err := format.ParsePcapHeader(c.buf)
	if err != nil {
		t.Fatal(err)
	}
	w := format.Walker{Kind: format.KindPcap, Sec: sec}
	var out []format.Record
	for pos := 24; pos < len(c.buf); {
		rec, n, st := w.Next(c.buf, 0, pos)
		if st != format.Packet {
			t.Fatalf("record at %d: status %d", pos, st)
		}
		out = append(out, rec)
		pos += n
	}
	return out
}

func (c *capture) fetch(pos int64, n int, buf []byte) ([]byte, error) {
	if pos < 0 || pos+int64(n) > int64(len(c.buf)) {
		return nil, fmt.Errorf("fetch %d+%d out of range", pos, n)
	}
	return append(buf[:0], c.buf[pos:pos+int64(n)]...), nil
}

// sequential walks every record on one tracker.
func sequential(recs []format.Record, opt Options) Output {
	t := New(opt)
	for i := range recs {
		t.Record(&recs[i], recs[i].Offset+int64(recs[i].DataOff))
	}
	t.Finish()
	return t.Drain()
}

// chunked walks the records in chunks cut before the records in cuts, each
// on its own logging tracker, and joins them in order; a chunk Join refuses
// is walked again on the true tracker. It returns the output and how many
// chunks were walked again.
func chunked(t testing.TB, c *capture, recs []format.Record, cuts []int, opt Options) (Output, int) {
	truth := New(opt)
	reruns := 0
	bounds := append(append([]int{0}, cuts...), len(recs))
	for k := 0; k+1 < len(bounds); k++ {
		part := recs[bounds[k]:bounds[k+1]]
		lo := opt
		lo.Log = true
		w := New(lo)
		for i := range part {
			w.Record(&part[i], part[i].Offset+int64(part[i].DataOff))
		}
		ch := w.TakeChunk(nil)
		ok, err := truth.Join(ch, c.fetch)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			reruns++
			for i := range part {
				truth.Record(&part[i], part[i].Offset+int64(part[i].DataOff))
			}
		}
	}
	truth.Finish()
	return truth.Drain(), reruns
}

// canon puts an output in a comparable order.
func canon(o Output) Output {
	slices.SortFunc(o.Hits, func(a, b Hit) int {
		if a.Off != b.Off {
			return int(a.Off - b.Off)
		}
		if a.Header != b.Header {
			return int(a.Header) - int(b.Header)
		}
		if c := a.Addr.Compare(b.Addr); c != 0 {
			return c
		}
		return a.Pos - b.Pos
	})
	o.Hits = slices.Compact(o.Hits)
	slices.SortFunc(o.Requests, func(a, b RequestInfo) int {
		if a.Off != b.Off {
			return int(a.Off - b.Off)
		}
		return int(int32(a.Seq - b.Seq))
	})
	return o
}

func hitString(h Hit) string {
	return fmt.Sprintf("%d %v %v pos %d", h.Off, h.Header, h.Addr, h.Pos)
}

// hitStringStart adds where the connection started.
func hitStringStart(h Hit) string {
	return fmt.Sprintf("%s conn %d syn %v", hitString(h), h.ConnStart, h.ConnSYN)
}

// diffHits reports the hits only in a and only in b.
func diffHits(a, b []Hit) (onlyA, onlyB []string) {
	set := func(hs []Hit) map[string]bool {
		m := map[string]bool{}
		for _, h := range hs {
			m[hitString(h)] = true
		}
		return m
	}
	ma, mb := set(a), set(b)
	for k := range ma {
		if !mb[k] {
			onlyA = append(onlyA, k)
		}
	}
	for k := range mb {
		if !ma[k] {
			onlyB = append(onlyB, k)
		}
	}
	slices.Sort(onlyA)
	slices.Sort(onlyB)
	return
}

func reqString(r RequestInfo) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d seq %d %s %s host %q first %v complete %v listed %d capped %d", r.Off, r.Seq, r.Method, r.Target, r.Host, r.First, r.Complete, r.Listed, r.Capped)
	for h := range r.Lists {
		if r.Lists[h] != nil {
			fmt.Fprintf(&b, " %v=%q", xff.Header(h), r.Lists[h])
		}
	}
	return b.String()
}

func packetSegment(rec *format.Record) (packet.Segment, bool) {
	return packet.InnermostTCP(rec.LinkType, rec.Data)
}

var (
	ipA  = netip.MustParseAddr("10.0.0.2")
	ipB  = netip.MustParseAddr("10.0.1.5")
	ip6A = netip.MustParseAddr("fd00::2")
	ip6B = netip.MustParseAddr("fd00:1::5")
)
