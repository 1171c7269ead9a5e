package capgen

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// ---- an independent reader for what Write produces -----------------------

type record struct {
	off     int64
	frame   int64 // 1-based
	link    uint32
	order   binary.ByteOrder
	ts      time.Time // zero for SPB
	spb     bool
	capLen  int
	origLen int
	data    []byte
	cut     bool // the file ends inside this record
}

// walk reads every record of a pcap or pcapng file.
func walk(t testing.TB, file []byte) []record {
	t.Helper()
	if len(file) < 24 {
		t.Fatalf("file too short: %d bytes", len(file))
	}
	var recs []record
	frame := int64(0)
	switch binary.LittleEndian.Uint32(file) {
	case 0xa1b2c3d4, 0xa1b23c4d, 0xd4c3b2a1, 0x4d3cb2a1:
		var o binary.ByteOrder = binary.LittleEndian
		magic := o.Uint32(file)
		if magic == 0xd4c3b2a1 || magic == 0x4d3cb2a1 {
			o = binary.BigEndian
			magic = o.Uint32(file)
		}
		ns := magic == 0xa1b23c4d
		if o.Uint16(file[4:]) != 2 || o.Uint16(file[6:]) != 4 {
			t.Fatalf("bad pcap version")
		}
		snap := int(o.Uint32(file[16:]))
		link := o.Uint32(file[20:])
		off := 24
		for off < len(file) {
			frame++
			r := record{off: int64(off), frame: frame, link: link, order: o}
			if off+16 > len(file) {
				r.cut = true
				recs = append(recs, r)
				break
			}
			h := file[off:]
			sec, frac := int64(o.Uint32(h)), int64(o.Uint32(h[4:]))
			if ns {
				if frac >= 1e9 {
					t.Fatalf("record %d: ns fraction %d", frame, frac)
				}
				r.ts = time.Unix(sec, frac).UTC()
			} else {
				if frac >= 1e6 {
					t.Fatalf("record %d: µs fraction %d", frame, frac)
				}
				r.ts = time.Unix(sec, frac*1000).UTC()
			}
			r.capLen, r.origLen = int(o.Uint32(h[8:])), int(o.Uint32(h[12:]))
			if r.capLen > r.origLen || r.capLen > snap {
				t.Fatalf("record %d: caplen %d origlen %d snap %d", frame, r.capLen, r.origLen, snap)
			}
			if off+16+r.capLen > len(file) {
				r.cut = true
				recs = append(recs, r)
				break
			}
			r.data = file[off+16 : off+16+r.capLen]
			recs = append(recs, r)
			off += 16 + r.capLen
		}
	case 0x0A0D0D0A:
		var o binary.ByteOrder
		type ifc struct {
			link uint32
			snap int
			res  int
		}
		var ifs []ifc
		off := 0
		for off < len(file) {
			if off+12 > len(file) {
				recs = append(recs, record{off: int64(off), frame: frame + 1, cut: true})
				break
			}
			if binary.LittleEndian.Uint32(file[off:]) == 0x0A0D0D0A {
				switch binary.LittleEndian.Uint32(file[off+8:]) {
				case 0x1A2B3C4D:
					o = binary.LittleEndian
				case 0x4D3C2B1A:
					o = binary.BigEndian
				default:
					t.Fatalf("bad byte-order magic at %d", off)
				}
				ifs = ifs[:0]
			}
			typ, blen := o.Uint32(file[off:]), int(o.Uint32(file[off+4:]))
			if blen < 12 || blen%4 != 0 {
				t.Fatalf("bad block length %d at %d", blen, off)
			}
			if off+blen > len(file) {
				frame++
				recs = append(recs, record{off: int64(off), frame: frame, cut: true})
				break
			}
			b := file[off : off+blen]
			if o.Uint32(b[blen-4:]) != uint32(blen) {
				t.Fatalf("block at %d: trailing length mismatch", off)
			}
			switch typ {
			case 1:
				f := ifc{link: uint32(o.Uint16(b[8:])), snap: int(o.Uint32(b[12:])), res: 6}
				for p := 16; p+4 <= blen-4; {
					code, l := o.Uint16(b[p:]), int(o.Uint16(b[p+2:]))
					if code == 0 {
						break
					}
					if code == 9 {
						f.res = int(b[p+4])
					}
					p += 4 + l + pad4(l)
				}
				ifs = append(ifs, f)
			case 6:
				frame++
				id := o.Uint32(b[8:])
				if int(id) >= len(ifs) {
					t.Fatalf("EPB at %d: interface %d of %d", off, id, len(ifs))
				}
				f := ifs[id]
				units := int64(o.Uint32(b[12:]))<<32 | int64(o.Uint32(b[16:]))
				var ts time.Time
				switch f.res {
				case 6:
					ts = time.Unix(0, units*1000).UTC()
				case 9:
					ts = time.Unix(0, units).UTC()
				default:
					t.Fatalf("if_tsresol %d", f.res)
				}
				cl, ol := int(o.Uint32(b[20:])), int(o.Uint32(b[24:]))
				if cl > ol || 32+cl+pad4(cl) != blen || cl > f.snap {
					t.Fatalf("EPB at %d: caplen %d origlen %d blen %d snap %d", off, cl, ol, blen, f.snap)
				}
				recs = append(recs, record{off: int64(off), frame: frame, link: f.link, order: o, ts: ts,
					capLen: cl, origLen: ol, data: b[28 : 28+cl]})
			case 3:
				frame++
				if len(ifs) == 0 {
					t.Fatalf("SPB without interface")
				}
				ol := int(o.Uint32(b[8:]))
				cl := min(ol, ifs[0].snap)
				if 16+cl+pad4(cl) != blen {
					t.Fatalf("SPB at %d: origlen %d blen %d", off, ol, blen)
				}
				recs = append(recs, record{off: int64(off), frame: frame, link: ifs[0].link, order: o, spb: true,
					capLen: cl, origLen: ol, data: b[12 : 12+cl]})
			case 0x0A0D0D0A:
			default:
				t.Fatalf("unexpected block type %#x at %d", typ, off)
			}
			off += blen
		}
	default:
		t.Fatalf("unknown magic %x", file[:4])
	}
	return recs
}

type decoded struct {
	src, dst netip.AddrPort
	flags    byte
	seq      uint32
	payload  []byte // captured part
	whole    bool   // the payload was captured completely
	encaps   []string
}

func csumOK(b []byte, pseudo uint64) bool { return fold(pseudo+sum16(b)) == 0xffff }

var errTrunc = fmt.Errorf("headers cut by the snap length")

// decode parses a frame down to the innermost TCP segment, checking every
// checksum over bytes that were captured.
func decode(r *record) (d decoded, err error) {
	defer func() {
		if e := recover(); e != nil {
			if r.capLen == r.origLen {
				panic(e)
			}
			err = errTrunc
		}
	}()
	b := r.data
	whole := r.capLen == r.origLen
	var proto uint16
	switch r.link {
	case LinkEthernet:
		if len(b) < 14 {
			return d, fmt.Errorf("short ethernet")
		}
		proto = be.Uint16(b[12:])
		b = b[14:]
		for proto == 0x8100 || proto == 0x88A8 {
			d.encaps = append(d.encaps, "vlan")
			proto = be.Uint16(b[2:])
			b = b[4:]
		}
	case LinkSLL:
		proto = be.Uint16(b[14:])
		b = b[16:]
	case LinkSLL2:
		proto = be.Uint16(b[0:])
		b = b[20:]
	case LinkRaw:
		proto = 0x0800
		if b[0]>>4 == 6 {
			proto = 0x86DD
		}
	case LinkNull:
		af := r.order.Uint32(b)
		switch af {
		case 2:
			proto = 0x0800
		case 24, 28, 30:
			proto = 0x86DD
		default:
			return d, fmt.Errorf("NULL af %d", af)
		}
		b = b[4:]
	default:
		return d, fmt.Errorf("link %d", r.link)
	}
	for {
		var src, dst netip.Addr
		var ipProto byte
		var pseudo uint64
		var l4 []byte
		switch proto {
		case 0x0800:
			if b[0] != 0x45 {
				return d, fmt.Errorf("ipv4 byte 0 %#x", b[0])
			}
			if !csumOK(b[:20], 0) {
				return d, fmt.Errorf("bad IPv4 header checksum")
			}
			tot := int(be.Uint16(b[2:]))
			src, dst = netip.AddrFrom4([4]byte(b[12:16])), netip.AddrFrom4([4]byte(b[16:20]))
			ipProto = b[9]
			l4 = b[20:min(tot, len(b))]
			if whole && tot != len(b) {
				return d, fmt.Errorf("IPv4 total length %d, have %d", tot, len(b))
			}
			pseudo = sum16(b[12:20]) + uint64(ipProto) + uint64(tot-20)
		case 0x86DD:
			pl := int(be.Uint16(b[4:]))
			src, dst = netip.AddrFrom16([16]byte(b[8:24])), netip.AddrFrom16([16]byte(b[24:40]))
			ipProto = b[6]
			l4 = b[40:min(40+pl, len(b))]
			if whole && 40+pl != len(b) {
				return d, fmt.Errorf("IPv6 payload length %d, have %d", pl, len(b)-40)
			}
			pseudo = sum16(b[8:40]) + uint64(ipProto) + uint64(pl)
		default:
			return d, fmt.Errorf("ethertype %#x", proto)
		}
		switch ipProto {
		case 47:
			flags, gp := be.Uint16(l4), be.Uint16(l4[2:])
			if flags != 0 {
				return d, fmt.Errorf("GRE flags %#x", flags)
			}
			b = l4[4:]
			proto = gp
			if gp == 0x88BE {
				d.encaps = append(d.encaps, "erspan1")
				proto = be.Uint16(b[12:])
				b = b[14:]
			} else {
				d.encaps = append(d.encaps, "gre")
			}
			continue
		case 17:
			if whole && !csumOK(l4, pseudo) {
				return d, fmt.Errorf("bad UDP checksum")
			}
			dport := be.Uint16(l4[2:])
			b = l4[8:]
			switch dport {
			case 4789:
				d.encaps = append(d.encaps, "vxlan")
				b = b[8:]
			case 6081:
				d.encaps = append(d.encaps, "geneve")
				if be.Uint16(b[2:]) != 0x6558 {
					return d, fmt.Errorf("geneve protocol %#x", be.Uint16(b[2:]))
				}
				b = b[8+int(b[0]&0x3f)*4:]
			default:
				return d, fmt.Errorf("udp port %d", dport)
			}
			proto = be.Uint16(b[12:])
			b = b[14:]
			continue
		case 6:
			if whole && !csumOK(l4, pseudo) {
				return d, fmt.Errorf("bad TCP checksum")
			}
			hl := int(l4[12]>>4) * 4
			d.src = netip.AddrPortFrom(src, be.Uint16(l4[0:]))
			d.dst = netip.AddrPortFrom(dst, be.Uint16(l4[2:]))
			d.flags = l4[13]
			d.seq = be.Uint32(l4[4:])
			if hl > len(l4) {
				d.payload = nil
			} else {
				d.payload = l4[hl:]
			}
			d.whole = whole
			return d, nil
		default:
			return d, fmt.Errorf("ip proto %d", ipProto)
		}
	}
}

// ---- an independent XFF reading of single packets -------------------------

var methods = []string{"GET ", "POST ", "PUT ", "HEAD ", "DELETE ", "OPTIONS ", "PATCH "}

func startsRequest(p []byte) bool {
	for _, m := range methods {
		if bytes.HasPrefix(p, []byte(m)) {
			return true
		}
	}
	return false
}

type xffVal struct {
	val      string
	complete bool // its CRLF was in the packet
}

// scanRequests reads the request header blocks of a segment that starts
// with a request line (and of pipelined requests after it) and returns
// their XFF values. cutName reports that the segment ends inside a line
// that is a prefix of "X-Forwarded-For".
func scanRequests(p []byte) (vals []xffVal, cutName bool) {
	for startsRequest(p) {
		i := bytes.Index(p, []byte("\r\n"))
		if i < 0 {
			return
		}
		p = p[i+2:]
		clen := 0
		for {
			j := bytes.Index(p, []byte("\r\n"))
			line := p
			if j >= 0 {
				line = p[:j]
			}
			if j == 0 {
				p = p[2:]
				break
			}
			name, val, ok := bytes.Cut(line, []byte(":"))
			if ok && strings.EqualFold(string(name), "X-Forwarded-For") {
				vals = append(vals, xffVal{string(bytes.Trim(val, " \t\r")), j >= 0})
			}
			if ok && strings.EqualFold(string(name), "Content-Length") {
				clen, _ = strconv.Atoi(strings.TrimSpace(string(val)))
			}
			if j < 0 {
				cutName = !ok && len(line) > 0 && strings.HasPrefix("x-forwarded-for", strings.ToLower(string(line)))
				return
			}
			p = p[j+2:]
		}
		p = p[min(clen, len(p)):]
	}
	return
}

// canon reads one XFF element the way the package comment says.
func canon(el string) (netip.Addr, bool) {
	s := strings.Trim(el, " \t")
	if strings.HasPrefix(s, "[") {
		i := strings.IndexByte(s, ']')
		if i < 0 {
			return netip.Addr{}, false
		}
		s = s[1:i]
	} else if strings.Count(s, ":") == 1 && strings.Count(s, ".") == 3 {
		s = s[:strings.IndexByte(s, ':')]
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap(), true
	}
	parts := strings.Split(s, ".")
	if len(parts) != 4 {
		return netip.Addr{}, false
	}
	var x [4]byte
	for i, p := range parts {
		v, err := strconv.ParseUint(p, 10, 8)
		if err != nil || len(p) > 3 {
			return netip.Addr{}, false
		}
		x[i] = byte(v)
	}
	return netip.AddrFrom4(x), true
}

// elements reads the addresses of XFF values; when lastPartial, the
// element after the last comma of the last value is left out.
func elements(raw []string, lastPartial bool) (addrs []netip.Addr, non int) {
	for i, v := range raw {
		els := strings.Split(v, ",")
		if lastPartial && i == len(raw)-1 {
			els = els[:len(els)-1]
		}
		for _, e := range els {
			if a, ok := canon(e); ok {
				addrs = append(addrs, a)
			} else {
				non++
			}
		}
	}
	return
}

func gen1(t testing.TB, cfg Config) ([]byte, Truth) {
	t.Helper()
	var buf bytes.Buffer
	tr, err := Write(&buf, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if tr.Bytes != int64(buf.Len()) {
		t.Fatalf("Truth.Bytes %d, wrote %d", tr.Bytes, buf.Len())
	}
	return buf.Bytes(), tr
}

// check validates a capture against its Truth without tshark: record
// structure, checksums, timestamps, and each Hit against an independent
// reading of the packet bytes.
func check(t *testing.T, cfg Config, file []byte, tr Truth) []record {
	t.Helper()
	recs := walk(t, file)
	n := int64(len(recs))
	if cfg.TruncateLast {
		if n == 0 || !recs[n-1].cut {
			t.Fatalf("TruncateLast: last record is complete")
		}
		n--
		recs = recs[:n]
	}
	for _, r := range recs {
		if r.cut {
			t.Fatalf("record %d cut short", r.frame)
		}
	}
	if n != tr.Packets {
		t.Fatalf("walked %d complete records, Truth.Packets %d", n, tr.Packets)
	}
	byOff := make(map[int64]*record, n)
	var last time.Time
	for i := range recs {
		r := &recs[i]
		byOff[r.off] = r
		if r.spb {
			continue
		}
		if r.ts.Before(last) {
			t.Fatalf("record %d: time goes back (%v after %v)", r.frame, r.ts, last)
		}
		last = r.ts
	}
	if len(tr.notes) != len(tr.Hits) {
		t.Fatalf("%d notes for %d hits", len(tr.notes), len(tr.Hits))
	}
	hitAt := make(map[int64]int)
	for i, h := range tr.Hits {
		r := byOff[h.Offset]
		if r == nil {
			t.Fatalf("hit %d: offset %d is not a record start", i, h.Offset)
		}
		if _, dup := hitAt[h.Offset]; dup {
			t.Fatalf("hit %d: two hits at offset %d", i, h.Offset)
		}
		hitAt[h.Offset] = i
		if !h.TS.Equal(r.ts) || r.spb != h.TS.IsZero() {
			t.Errorf("hit %d (frame %d): TS %v, record %v (spb %v)", i, r.frame, h.TS, r.ts, r.spb)
		}
		for _, a := range h.Addrs {
			if DecoyPrefix.Contains(a) {
				t.Errorf("hit %d: decoy address %v", i, a)
			}
			if !a.IsValid() || a.Is4In6() {
				t.Errorf("hit %d: address %v not canonical", i, a)
			}
		}
		addrs, non := elements(h.Raw, tr.notes[i]&notePartial != 0)
		if !slices.Equal(addrs, h.Addrs) || non != h.NonAddr {
			t.Errorf("hit %d (frame %d): Raw %q reads as %v + %d non-addresses, Truth has %v + %d",
				i, r.frame, h.Raw, addrs, non, h.Addrs, h.NonAddr)
		}
	}
	for i := range recs {
		r := &recs[i]
		d, err := decode(r)
		if err == errTrunc {
			if _, isHit := hitAt[r.off]; isHit {
				t.Errorf("hit at frame %d: headers not captured", r.frame)
			}
			continue
		}
		if err != nil {
			t.Fatalf("record %d (offset %d): %v", r.frame, r.off, err)
		}
		hi, isHit := hitAt[r.off]
		if isHit {
			h := tr.Hits[hi]
			if d.src != h.Src || d.dst != h.Dst {
				t.Errorf("hit %d (frame %d): tuple %v→%v, Truth %v→%v", hi, r.frame, d.src, d.dst, h.Src, h.Dst)
			}
		}
		if p := d.dst.Port(); p != 80 && p != 8080 || len(d.payload) == 0 {
			if isHit {
				t.Errorf("hit %d (frame %d): not a request segment", hi, r.frame)
			}
			continue
		}
		if !startsRequest(d.payload) {
			// A later segment of a request: the generator says which.
			if isHit {
				if tr.notes[hi]&noteCont == 0 {
					t.Errorf("hit %d (frame %d): continuation segment without noteCont", hi, r.frame)
				}
				// The line starts after a line end in the packet, or at its
				// start (the block cut at a line start or between a CR and
				// its LF, as Config.CookieRate may); it may be cut in its
				// name by the end of the packet.
				lower := bytes.ToLower(d.payload)
				tail := lower[bytes.LastIndexByte(lower, '\n')+1:]
				if !bytes.Contains(lower, []byte("\nx-forwarded-for:")) && !bytes.HasPrefix(lower, []byte("x-forwarded-for:")) &&
					!(tr.notes[hi]&noteCutName != 0 && len(tail) > 0 && strings.HasPrefix("x-forwarded-for", string(tail))) {
					t.Errorf("hit %d (frame %d): no XFF line in %q", hi, r.frame, d.payload)
				}
			}
			continue
		}
		vals, cutName := scanRequests(d.payload)
		if !isHit {
			if len(vals) > 0 || cutName && d.whole {
				t.Errorf("frame %d: XFF %v (cut name %v) but no hit", r.frame, vals, cutName)
			}
			continue
		}
		h, note := tr.Hits[hi], tr.notes[hi]
		if note&noteCutName != 0 {
			if !cutName || len(vals) != len(h.Raw)-1 {
				t.Errorf("hit %d (frame %d): noteCutName but packet reads %v, cut %v", hi, r.frame, vals, cutName)
			}
			continue
		}
		if len(vals) != len(h.Raw) {
			t.Errorf("hit %d (frame %d): packet has XFF %v, Truth %q", hi, r.frame, vals, h.Raw)
			continue
		}
		for k, v := range vals {
			switch {
			case v.complete && v.val != h.Raw[k]:
				t.Errorf("hit %d (frame %d): value %q, Truth %q", hi, r.frame, v.val, h.Raw[k])
			case !v.complete && d.whole && (note&noteSplit == 0 || !strings.HasPrefix(h.Raw[k], v.val)):
				t.Errorf("hit %d (frame %d): split value %q, Truth %q, notes %b", hi, r.frame, v.val, h.Raw[k], note)
			case !v.complete && !d.whole && note&notePartial != 0 && v.val != h.Raw[k]:
				t.Errorf("hit %d (frame %d): cut value %q, Truth %q", hi, r.frame, v.val, h.Raw[k])
			}
		}
	}
	return recs
}

// ---- tests -------------------------------------------------------------

func sha(b []byte) [32]byte { return sha256.Sum256(b) }

func TestDeterministic(t *testing.T) {
	for _, cfg := range []Config{
		{Seed: 7, Format: FormatPcapNGMulti, Variants: true, Tunnels: true, IPv6Transport: true, TargetBytes: 300 << 10},
		{Seed: 7, Format: FormatPcap, LinkType: LinkEthernet, TargetBytes: 4 << 20},
		{Seed: 7, Format: FormatPcapNs, LinkType: LinkSLL, Variants: true, SnapLen: 200, TruncateLast: true, TargetBytes: 200 << 10},
	} {
		a, ta := gen1(t, cfg)
		b, tb := gen1(t, cfg)
		if sha(a) != sha(b) || !reflect.DeepEqual(ta, tb) {
			t.Errorf("%+v: two runs differ", cfg)
		}
		cfg.Seed++
		c, _ := gen1(t, cfg)
		if sha(a) == sha(c) {
			t.Errorf("%+v: seeds %d and %d give the same bytes", cfg, cfg.Seed-1, cfg.Seed)
		}
	}
}

// combos is every Format and link type combination (pcapng-multi mixes its
// own link types), with VLAN and QinQ variants of Ethernet.
func combos() []Config {
	var out []Config
	for _, f := range Formats {
		if f == FormatPcapNGMulti {
			out = append(out, Config{Format: f, VLAN: true})
			continue
		}
		for _, l := range LinkTypes {
			out = append(out, Config{Format: f, LinkType: l})
			if l == LinkEthernet {
				out = append(out, Config{Format: f, LinkType: l, VLAN: true}, Config{Format: f, LinkType: l, QinQ: true})
			}
		}
	}
	return out
}

func name(cfg Config) string {
	s := fmt.Sprintf("%s-link%d", cfg.Format, cfg.LinkType)
	if cfg.QinQ {
		s += "-qinq"
	} else if cfg.VLAN {
		s += "-vlan"
	}
	if cfg.SnapLen != 0 {
		s += fmt.Sprintf("-snap%d", cfg.SnapLen)
	}
	if cfg.TruncateLast {
		s += "-trunc"
	}
	return s
}

func TestStructure(t *testing.T) {
	cfgs := combos()
	cfgs = append(cfgs,
		Config{Format: FormatPcap, LinkType: LinkEthernet, SnapLen: 200},
		Config{Format: FormatPcapNGMulti, SnapLen: 256},
		Config{Format: FormatPcapNG, LinkType: LinkSLL2, SnapLen: 120},
		Config{Format: FormatPcapBE, LinkType: LinkNull, SnapLen: 700},
		Config{Format: FormatPcapNs, LinkType: LinkRaw, TruncateLast: true},
		Config{Format: FormatPcapNGMulti, TruncateLast: true, SnapLen: 300},
	)
	for i, cfg := range cfgs {
		cfg.Seed = int64(100 + i)
		cfg.Variants, cfg.Tunnels, cfg.IPv6Transport = true, true, true
		cfg.TargetBytes = 256 << 10
		t.Run(name(cfg), func(t *testing.T) {
			file, tr := gen1(t, cfg)
			recs := check(t, cfg, file, tr)
			var notes uint8
			for _, n := range tr.notes {
				notes |= n
			}
			if cfg.SnapLen != 0 && cfg.SnapLen < 400 && notes&notePartial == 0 {
				t.Errorf("SnapLen %d: no XFF line cut by the snap length", cfg.SnapLen)
			}
			if cfg.Format == FormatPcapNGMulti {
				if notes&noteSPB == 0 {
					t.Errorf("no hit in a Simple Packet Block")
				}
				links := map[uint32]bool{}
				for _, r := range recs {
					links[r.link] = true
				}
				if len(links) != 4 {
					t.Errorf("link types %v, want 4", links)
				}
			}
			if cfg.Format == FormatPcapNs || cfg.Format == FormatPcapNG {
				for _, r := range recs {
					if r.ts.Nanosecond()%1000 == 0 {
						t.Fatalf("frame %d: ns timestamp %v has no sub-µs digits", r.frame, r.ts)
					}
				}
			}
		})
	}
}

// TestStructureBulk runs the same checks on bulk-mode captures.
func TestStructureBulk(t *testing.T) {
	for i, f := range Formats {
		for _, snap := range []uint32{0, 150} {
			cfg := Config{Seed: int64(i), Format: f, LinkType: LinkTypes[i%len(LinkTypes)], VLAN: i == 0,
				Tunnels: true, IPv6Transport: true, SnapLen: snap, TargetBytes: 3 << 20}
			t.Run(name(cfg), func(t *testing.T) {
				file, tr := gen1(t, cfg)
				check(t, cfg, file, tr)
				if snap == 0 && len(tr.Hits) == 0 {
					t.Errorf("no hits")
				}
			})
		}
	}
}

// TestVariants checks that each variant is in the Truth several times.
func TestVariants(t *testing.T) {
	cfg := Config{Seed: 3, Format: FormatPcapNG, LinkType: LinkEthernet, Variants: true, Tunnels: true, IPv6Transport: true, TargetBytes: 1 << 20}
	file, tr := gen1(t, cfg)
	check(t, cfg, file, tr)
	count := func(f func(h Hit, note uint8) bool) int {
		n := 0
		for i, h := range tr.Hits {
			if f(h, tr.notes[i]) {
				n++
			}
		}
		return n
	}
	rawHas := func(s string) func(Hit, uint8) bool {
		return func(h Hit, _ uint8) bool {
			for _, r := range h.Raw {
				if strings.Contains(r, s) {
					return true
				}
			}
			return false
		}
	}
	addrHas := func(s string) func(Hit, uint8) bool {
		a := netip.MustParseAddr(s)
		return func(h Hit, _ uint8) bool { return slices.Contains(h.Addrs, a) }
	}
	for _, c := range []struct {
		what string
		min  int
		f    func(Hit, uint8) bool
	}{
		{"chain of 3+", 3, func(h Hit, _ uint8) bool { return len(h.Raw) == 1 && len(h.Addrs) >= 3 }},
		{"no space", 3, func(h Hit, _ uint8) bool { return len(h.Raw) == 1 && regexpNoSpace(h.Raw[0]) }},
		{"two values in one packet", 6, func(h Hit, _ uint8) bool { return len(h.Raw) >= 2 }},
		{"tab", 2, rawHas("\t")},
		{"v4:port", 3, func(h Hit, _ uint8) bool { return v4port.MatchString(strings.Join(h.Raw, ",")) }},
		{"[v6]:port", 1, rawHas("[2001:db8::1]:443")},
		{"expanded v6", 1, rawHas("2001:0DB8:0:0:0:0:0:1")},
		{"mapped", 1, rawHas("::ffff:192.0.2.5")},
		{"leading zeros", 1, rawHas("10.000.000.03")},
		{"10.0.0.3", 1, addrHas("10.0.0.3")},
		{"192.0.2.5", 1, addrHas("192.0.2.5")},
		{"2001:db8::1", 2, addrHas("2001:db8::1")},
		{"unknown", 3, rawHas("unknown")},
		{"_hidden", 3, rawHas("_hidden")},
		{"jndi", 3, rawHas("${jndi:ldap://x}")},
		{"empty element", 3, rawHas(",,")},
		{"non-address", 3, func(h Hit, _ uint8) bool { return h.NonAddr >= 4 }},
		{"split line", 6, func(_ Hit, n uint8) bool { return n&noteSplit != 0 }},
		{"split in name", 1, func(_ Hit, n uint8) bool { return n&noteCutName != 0 }},
		{"header block continued", 3, func(_ Hit, n uint8) bool { return n&noteCont != 0 }},
		{"IPv6 transport", 3, func(h Hit, _ uint8) bool { return h.Src.Addr().Is6() }},
		{"198.51.100.7", 3, addrHas("198.51.100.7")},
	} {
		if n := count(c.f); n < c.min {
			t.Errorf("%s: %d hits, want at least %d", c.what, n, c.min)
		}
	}
	for k := kChain; k < numKinds; k++ {
		if k != kSnapCut && tr.kinds[k] < rounds {
			t.Errorf("variant %v written %d times", k, tr.kinds[k])
		}
	}
	if len(tr.decoyFrames) != rounds+2 {
		// resphdr ×3, echo and postlog round 0
		t.Errorf("%d frames where tshark should show decoys, want %d", len(tr.decoyFrames), rounds+2)
	}
	// Decoy text is in the file.
	for _, s := range []string{"X-Original-Forwarded-For: 100.", "X-Forwarded-Host: 100.", "X-Real-IP: 100.",
		"X-Forwarded-For-Test: 100.", "\"X-Forwarded-For\":\"100.", "\r\n\r\nX-Forwarded-For: 100."} {
		if !bytes.Contains(file, []byte(s)) {
			t.Errorf("no %q in the capture", s)
		}
	}
}

var v4port = regexp.MustCompile(`(^|[ ,])\d+\.\d+\.\d+\.\d+:\d+`)

func regexpNoSpace(s string) bool {
	return strings.Contains(s, ",") && !strings.ContainsAny(s, " \t")
}

func TestConfigErrors(t *testing.T) {
	for _, cfg := range []Config{{Format: "pcapx"}, {LinkType: 42}, {XFFRate: 1.5}} {
		if _, err := Write(io.Discard, cfg); err == nil {
			t.Errorf("%+v: no error", cfg)
		}
	}
}

func TestBulkRate(t *testing.T) {
	if testing.Short() {
		t.Skip("64 MB")
	}
	for _, rate := range []float64{0, 0.1} {
		cfg := Config{Seed: 11, Format: FormatPcap, LinkType: LinkEthernet, TargetBytes: 64 << 20, XFFRate: rate}
		file, tr := gen1(t, cfg)
		want := rate
		if want == 0 {
			want = 0.02
		}
		got := float64(len(tr.Hits)) / float64(tr.Packets)
		t.Logf("rate %v: %d bytes, %d packets, %d hits (%.4f)", rate, tr.Bytes, tr.Packets, len(tr.Hits), got)
		if math.Abs(got-want) > 0.2*want {
			t.Errorf("XFF packet fraction %.4f, want %.4f ±20%%", got, want)
		}
		if tr.Bytes < cfg.TargetBytes || tr.Bytes > cfg.TargetBytes+cfg.TargetBytes/10 {
			t.Errorf("wrote %d bytes for a target of %d", tr.Bytes, cfg.TargetBytes)
		}
		// ~25% of requests come from the hot client.
		hot := 0
		for _, h := range tr.Hits {
			if h.Addrs[0] == hotClient {
				hot++
			}
		}
		if f := float64(hot) / float64(len(tr.Hits)); f < 0.2 || f > 0.3 {
			t.Errorf("198.51.100.7 first in %.3f of hits, want about 0.25", f)
		}
		if rate == 0 {
			check(t, cfg, file, tr)
		}
	}
}

// TestBulkAllocs checks that the bulk loop does not allocate per packet.
func TestBulkAllocs(t *testing.T) {
	for _, f := range Formats {
		allocs := func(size int64) float64 {
			return testing.AllocsPerRun(1, func() {
				cfg := Config{Seed: 1, Format: f, LinkType: LinkEthernet, TargetBytes: size, NoTruth: true}
				if _, err := Write(io.Discard, cfg); err != nil {
					t.Fatal(err)
				}
			})
		}
		small, big := allocs(8<<20), allocs(64<<20)
		t.Logf("%s: allocations: %v for 8 MB, %v for 64 MB", f, small, big)
		if big-small > 100 {
			t.Errorf("%s: 56 MB more output took %v more allocations", f, big-small)
		}
	}
}

func BenchmarkWrite(b *testing.B) {
	for _, cfg := range []Config{
		{Format: FormatPcap, LinkType: LinkEthernet},
		{Format: FormatPcapNG, LinkType: LinkEthernet, VLAN: true},
	} {
		cfg.Seed, cfg.TargetBytes, cfg.NoTruth = 1, 256<<20, true
		b.Run(cfg.Format, func(b *testing.B) {
			b.SetBytes(cfg.TargetBytes)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Write(io.Discard, cfg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// ---- tshark ------------------------------------------------------------

type tsRow struct {
	frame          int64
	ipSrc, ipv6Src []string
	ipDst, ipv6Dst []string
	sport, dport   string
	xff            []string
	raw            string
}

func splitAgg(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, "|")
}

func runTshark(t *testing.T, path string) (map[int64]tsRow, string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "tshark", "-r", path,
		"-o", "tcp.desegment_tcp_streams:FALSE", "-o", "tcp.analyze_sequence_numbers:FALSE",
		"-Y", "http.x_forwarded_for", "-T", "fields",
		"-e", "frame.number", "-e", "ip.src", "-e", "ipv6.src", "-e", "tcp.srcport",
		"-e", "ip.dst", "-e", "ipv6.dst", "-e", "tcp.dstport", "-e", "http.x_forwarded_for",
		"-E", "occurrence=a", "-E", "aggregator=|")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil && !strings.Contains(stderr.String(), "cut short") {
		t.Fatalf("tshark: %v\n%s", err, stderr.String())
	}
	rows := map[int64]tsRow{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		f := strings.Split(sc.Text(), "\t")
		if len(f) != 8 {
			t.Fatalf("tshark line %q", sc.Text())
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			t.Fatalf("tshark line %q", sc.Text())
		}
		r := tsRow{frame: n, ipSrc: splitAgg(f[1]), ipv6Src: splitAgg(f[2]), sport: f[3],
			ipDst: splitAgg(f[4]), ipv6Dst: splitAgg(f[5]), dport: f[6], raw: f[7]}
		for _, v := range strings.Split(f[7], "|") {
			r.xff = append(r.xff, strings.Trim(unescapeTshark(v), " \t"))
		}
		rows[n] = r
	}
	return rows, stderr.String()
}

func last(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[len(s)-1]
}

// TestTshark compares tshark's reading (no TCP reassembly) of a small
// Variants capture of every format and link type with the Truth.
//
// Where tshark and the Truth differ, by design:
//   - An XFF line split across two segments: tshark shows the first frame
//     with the part of the value in it (a prefix of Raw; "" when the split
//     is right after the colon, the whole value when it is between CR and
//     LF) and nothing when the split is inside the header name.
//   - A header block continued in a second segment: tshark has no stream
//     state, but parses a segment whose first line contains a colon as
//     header lines, so it shows the XFF line of the second segment too.
//   - That heuristic makes tshark show decoys where the generator starts a
//     body segment with a decoy "X-Forwarded-For: " line (uploaded log and
//     echo, round 0), and tshark shows the X-Forwarded-For field of
//     response headers. Truth.decoyFrames lists exactly those frames; all
//     other body segments start where tshark does not parse headers.
//   - Under a snap length tshark shows a cut XFF line with the captured
//     part of its value, which is Raw.
//   - tshark keeps trailing spaces and tabs of a value (Raw does not) and
//     prints a tab as \t; the test undoes both.
func TestTshark(t *testing.T) {
	if _, err := exec.LookPath("tshark"); err != nil {
		t.Skip("tshark not installed")
	}
	dir := t.TempDir()
	cfgs := combos()
	cfgs = append(cfgs,
		Config{Format: FormatPcap, LinkType: LinkEthernet, SnapLen: 200},
		Config{Format: FormatPcapNGMulti, SnapLen: 256},
		Config{Format: FormatPcapNG, LinkType: LinkEthernet, TruncateLast: true},
		Config{Format: FormatPcap, LinkType: LinkSLL, TruncateLast: true, SnapLen: 300},
	)
	for i, cfg := range cfgs {
		cfg.Seed = int64(1000 + i)
		cfg.Variants, cfg.Tunnels, cfg.IPv6Transport = true, true, true
		cfg.TargetBytes = 200 << 10
		t.Run(name(cfg), func(t *testing.T) {
			t.Parallel()
			file, tr := gen1(t, cfg)
			recs := check(t, cfg, file, tr)
			path := filepath.Join(dir, name(cfg)+".cap")
			if err := os.WriteFile(path, file, 0o644); err != nil {
				t.Fatal(err)
			}
			rows, stderr := runTshark(t, path)
			if cfg.TruncateLast && !strings.Contains(stderr, "cut short") {
				t.Errorf("tshark did not notice the truncated record: %q", stderr)
			}
			frameOf := make(map[int64]int64, len(recs))
			for _, r := range recs {
				frameOf[r.off] = r.frame
			}
			seen := map[int64]bool{}
			contHits, contMissing := 0, 0
			for i, h := range tr.Hits {
				fr := frameOf[h.Offset]
				note := tr.notes[i]
				row, ok := rows[fr]
				seen[fr] = true
				if note&noteCutName != 0 {
					if ok {
						t.Errorf("frame %d: XFF split inside its name, tshark shows %q", fr, row.raw)
					}
					continue
				}
				if note&noteCont != 0 {
					contHits++
					if !ok {
						contMissing++
						continue
					}
				}
				if !ok {
					t.Errorf("frame %d: hit %q (notes %b) not shown by tshark", fr, h.Raw, note)
					continue
				}
				src, dst := last(row.ipSrc), last(row.ipDst)
				if h.Src.Addr().Is6() {
					src, dst = last(row.ipv6Src), last(row.ipv6Dst)
				}
				if src != h.Src.Addr().String() || dst != h.Dst.Addr().String() ||
					row.sport != strconv.Itoa(int(h.Src.Port())) || row.dport != strconv.Itoa(int(h.Dst.Port())) {
					t.Errorf("frame %d: tshark tuple %s:%s→%s:%s, Truth %v→%v", fr, src, row.sport, dst, row.dport, h.Src, h.Dst)
				}
				if len(row.xff) != len(h.Raw) {
					t.Errorf("frame %d: tshark XFF %q, Truth %q", fr, row.xff, h.Raw)
					continue
				}
				for k, v := range row.xff {
					if note&noteSplit != 0 && k == len(row.xff)-1 {
						if !strings.HasPrefix(h.Raw[k], v) {
							t.Errorf("frame %d: split value: tshark %q is not a prefix of %q", fr, v, h.Raw[k])
						}
					} else if v != h.Raw[k] {
						t.Errorf("frame %d: tshark XFF %q, Truth %q (notes %b)", fr, v, h.Raw[k], note)
					}
				}
			}
			decoyFrames := map[int64]bool{}
			for _, f := range tr.decoyFrames {
				decoyFrames[f] = true
			}
			for fr, row := range rows {
				decoys := 0
				for _, v := range row.xff {
					for _, e := range strings.Split(v, ",") {
						if a, ok := canon(e); ok && DecoyPrefix.Contains(a) {
							decoys++
						}
					}
				}
				switch {
				case decoyFrames[fr]:
					if decoys == 0 {
						t.Errorf("frame %d: expected decoys, tshark shows %q", fr, row.raw)
					}
				case decoys > 0:
					t.Errorf("frame %d: tshark shows decoy addresses: %q", fr, row.raw)
				case !seen[fr]:
					t.Errorf("frame %d: tshark shows XFF %q, not in Truth", fr, row.raw)
				}
			}
			// tshark 4.0 parses continuation segments that look like header
			// lines; a tshark without that heuristic would show none of
			// the continued header blocks, and fewer decoys.
			heuristic := contMissing == 0
			if contMissing != 0 && contMissing != contHits {
				t.Errorf("tshark shows %d of %d XFF lines in continued header blocks", contHits-contMissing, contHits)
			}
			if cfg.SnapLen == 0 && heuristic {
				for f := range decoyFrames {
					if _, ok := rows[f]; !ok {
						t.Errorf("frame %d: tshark was expected to show decoys", f)
					}
				}
			}
			t.Logf("%d hits (%d in continued header blocks), %d tshark rows, %d decoy frames", len(tr.Hits), contHits, len(rows), len(decoyFrames))
		})
	}
}
