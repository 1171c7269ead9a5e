package capgen

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xffidx/xffidx/format/xff"
)

// ---- an independent reading of busy captures ------------------------------
//
// busyRead re-reads a capture the way BusyTruth defines it: each client
// flow (to port 80 or 8080) is reassembled by sequence number, the first
// copy of a byte in file order winning; a SYN starts a new connection (a
// reused 5-tuple), a connection seen without one starts at its first data
// segment. The stream is parsed as HTTP/1.x requests up to its first
// missing byte.

type rseg struct {
	rel  uint32
	data []byte
	rec  int // index in recs
}

type rconn struct {
	src, dst netip.AddrPort
	base     uint32
	syn      bool
	segs     []rseg
	at       map[uint32]int // rel → index in segs
	fin      int64          // rel of the FIN, -1 if none
	maxRel   uint32         // highest rel of a first copy so far
	any      bool
}

// rline is a forwarding header line found by busyRead.
type rline struct {
	hdr        int
	value      string
	start, end int // in the stream: first byte of the name, just after the line end
}

// rreq is a request found by busyRead.
type rreq struct {
	conn                 *rconn
	method, target, host string
	start, hdrEnd, end   int
	lineEnd              int // just after the request line
	lines                []rline
	complete             bool // header block wholly captured, nothing missing before it
	bodyComplete         bool
	lastRec              int // the record completing the request (body included)
}

type busyReading struct {
	recs      []record
	dec       []decoded
	reqs      []*rreq // per connection, the complete ones and the one cut by a missing byte
	holes     []busyGap
	copies    int // records repeating a segment already captured
	copyRecs  map[int]bool
	reordered int
	resets    int
	reused    int
	own       map[*rconn][]int32 // stream byte → record
	conns     int
}

func busyRead(t testing.TB, file []byte) *busyReading {
	t.Helper()
	br := &busyReading{own: map[*rconn][]int32{}, copyRecs: map[int]bool{}}
	br.recs = walk(t, file)
	br.dec = make([]decoded, len(br.recs))
	cur := map[[2]netip.AddrPort]*rconn{}
	for i := range br.recs {
		r := &br.recs[i]
		if r.cut {
			t.Fatalf("record %d cut short", r.frame)
		}
		d, err := decode(r)
		if err != nil {
			t.Fatalf("record %d (offset %d): %v", r.frame, r.off, err)
		}
		br.dec[i] = d
		if d.flags&tcpRST != 0 {
			br.resets++
		}
		if p := d.dst.Port(); p != 80 && p != 8080 {
			continue
		}
		key := [2]netip.AddrPort{d.src, d.dst}
		c := cur[key]
		if d.flags&tcpSYN != 0 {
			if c != nil {
				br.finish(t, c)
				br.reused++
			}
			c = &rconn{src: d.src, dst: d.dst, base: d.seq + 1, syn: true, at: map[uint32]int{}, fin: -1}
			cur[key] = c
			continue
		}
		if len(d.payload) > 0 && c == nil {
			c = &rconn{src: d.src, dst: d.dst, base: d.seq, at: map[uint32]int{}, fin: -1}
			cur[key] = c
		}
		if c == nil {
			continue
		}
		rel := d.seq - c.base
		if d.flags&tcpFIN != 0 {
			c.fin = int64(rel)
		}
		if len(d.payload) == 0 {
			continue
		}
		if j, ok := c.at[rel]; ok {
			if !bytes.Equal(c.segs[j].data, d.payload) {
				t.Fatalf("frame %d: repeats sequence number %d of frame %d with other bytes", r.frame, d.seq, br.recs[c.segs[j].rec].frame)
			}
			br.copies++
			br.copyRecs[i] = true
			continue
		}
		if c.any && rel < c.maxRel {
			br.reordered++
		}
		c.any = true
		c.maxRel = max(c.maxRel, rel)
		c.at[rel] = len(c.segs)
		c.segs = append(c.segs, rseg{rel: rel, data: d.payload, rec: i})
	}
	for _, c := range cur {
		br.finish(t, c)
	}
	return br
}

// finish reassembles connection c and parses its requests.
func (br *busyReading) finish(t testing.TB, c *rconn) {
	t.Helper()
	br.conns++
	slices.SortFunc(c.segs, func(a, b rseg) int { return cmp.Compare(a.rel, b.rel) })
	var st []byte
	var own []int32
	pos := uint32(0)
	prefix := -1 // length of the stream before its first missing byte
	for _, s := range c.segs {
		if s.rel < pos {
			t.Fatalf("%v→%v: segment at %d overlaps the one before (ends at %d)", c.src, c.dst, s.rel, pos)
		}
		if s.rel > pos {
			br.holes = append(br.holes, busyGap{src: c.src, dst: c.dst, seq: c.base + pos, n: int(s.rel - pos)})
			if prefix < 0 {
				prefix = len(st)
			}
			// Keep offsets: the missing bytes as zeros owned by nobody.
			for ; pos < s.rel; pos++ {
				st = append(st, 0)
				own = append(own, -1)
			}
		}
		st = append(st, s.data...)
		for range s.data {
			own = append(own, int32(s.rec))
		}
		pos += uint32(len(s.data))
	}
	if c.fin > int64(pos) {
		br.holes = append(br.holes, busyGap{src: c.src, dst: c.dst, seq: c.base + pos, n: int(c.fin - int64(pos))})
		if prefix < 0 {
			prefix = len(st)
		}
	}
	if prefix < 0 {
		prefix = len(st)
	}
	br.own[c] = own
	br.parse(t, c, st[:prefix], own)
}

var fwdHeaderNum = map[string]int{"x-forwarded-for": 0, "forwarded": 1, "x-real-ip": 2, "true-client-ip": 3, "cf-connecting-ip": 4}

// parse reads requests from the start of st (the stream before its first
// missing byte) until it ends or a request is incomplete.
func (br *busyReading) parse(t testing.TB, c *rconn, st []byte, own []int32) {
	t.Helper()
	line := func(p int) (string, int, bool) {
		e := bytes.IndexByte(st[p:], '\n')
		if e < 0 {
			return "", 0, false
		}
		return strings.TrimSuffix(string(st[p:p+e]), "\r"), p + e + 1, true
	}
	// lastRec returns the record completing st[:b]: tshark, reassembling
	// in sequence order, dissects a request ending at b there.
	done, maxRec := 0, -1
	lastRec := func(b int) int {
		for ; done < b; done++ {
			maxRec = max(maxRec, int(own[done]))
		}
		return maxRec
	}
	pos := 0
	for pos < len(st) {
		rq := &rreq{conn: c, start: pos}
		br.reqs = append(br.reqs, rq)
		l, next, ok := line(pos)
		if !ok {
			return
		}
		f := strings.Split(l, " ")
		if len(f) != 3 || f[2] != "HTTP/1.1" {
			t.Fatalf("%v→%v at %d: not a request line: %q", c.src, c.dst, pos, l)
		}
		rq.method, rq.target = f[0], f[1]
		pos = next
		rq.lineEnd = pos
		clen, chunked := 0, false
		for {
			ls := pos
			l, next, ok := line(pos)
			if !ok {
				// The header block is cut: record its lines so far.
				if name, val, ok := strings.Cut(string(st[pos:]), ":"); ok {
					if h, ok := fwdHeaderNum[strings.ToLower(name)]; ok {
						rq.lines = append(rq.lines, rline{hdr: h, value: strings.Trim(val, " \t\r"), start: ls, end: len(st)})
					}
				}
				return
			}
			pos = next
			if l == "" {
				break
			}
			name, val, ok := strings.Cut(l, ":")
			if !ok {
				t.Fatalf("%v→%v at %d: not a header line: %q", c.src, c.dst, ls, l)
			}
			val = strings.Trim(val, " \t")
			if h, ok := fwdHeaderNum[strings.ToLower(name)]; ok {
				rq.lines = append(rq.lines, rline{hdr: h, value: val, start: ls, end: next})
			}
			switch strings.ToLower(name) {
			case "host":
				rq.host = val
			case "content-length":
				clen, _ = strconv.Atoi(val)
			case "transfer-encoding":
				chunked = strings.Contains(strings.ToLower(val), "chunked")
			}
		}
		rq.hdrEnd = pos
		rq.complete = true
		switch {
		case chunked:
			for {
				l, next, ok := line(pos)
				if !ok {
					return
				}
				n, err := strconv.ParseUint(l, 16, 32)
				if err != nil {
					t.Fatalf("%v→%v at %d: chunk size line %q", c.src, c.dst, pos, l)
				}
				pos = next
				if n == 0 {
					if pos+2 > len(st) {
						return
					}
					if string(st[pos:pos+2]) != "\r\n" {
						t.Fatalf("%v→%v at %d: trailer after the last chunk", c.src, c.dst, pos)
					}
					pos += 2
					break
				}
				if pos+int(n)+2 > len(st) {
					return
				}
				if string(st[pos+int(n):pos+int(n)+2]) != "\r\n" {
					t.Fatalf("%v→%v at %d: chunk data not followed by CRLF", c.src, c.dst, pos)
				}
				pos += int(n) + 2
			}
		default:
			if pos+clen > len(st) {
				return
			}
			pos += clen
		}
		rq.end = pos
		rq.bodyComplete = true
		rq.lastRec = lastRec(rq.end)
	}
}

// ---- element parsing, independent of format/xff -------------------------

// fwdNodes returns the for= node of each element of a Forwarded value ("" for
// an element without one), unquoted, obfuscated port dropped.
func fwdNodes(v string) []string {
	var out []string
	var els []string
	q, s := false, 0
	for i := 0; i < len(v); i++ {
		switch v[i] {
		case '"':
			q = !q
		case ',':
			if !q {
				els = append(els, v[s:i])
				s = i + 1
			}
		}
	}
	els = append(els, v[s:])
	for _, el := range els {
		node := ""
		for _, pair := range strings.Split(el, ";") {
			name, val, ok := strings.Cut(strings.TrimSpace(pair), "=")
			if ok && strings.EqualFold(name, "for") {
				node = strings.Trim(val, `"`)
				if i := strings.LastIndex(node, ":_"); i >= 0 {
					node = node[:i]
				}
				break
			}
		}
		out = append(out, node)
	}
	return out
}

// lineAddrs reads the addresses of one forwarding header value.
func lineAddrs(hdr int, v string) (addrs []netip.Addr, non int) {
	els := strings.Split(v, ",")
	if hdr == hForwarded {
		els = fwdNodes(v)
	}
	for _, e := range els {
		if a, ok := canon(e); ok {
			addrs = append(addrs, a)
		} else {
			non++
		}
	}
	return
}

// xffAddrs reads the same with package xff.
func xffAddrs(hdr int, v string) (addrs []netip.Addr, non int) {
	xff.Header(hdr).Elements([]byte(v), false, func(e []byte) {
		if a, ok := xff.ParseAddr(e); ok {
			addrs = append(addrs, a)
		} else {
			non++
		}
	})
	return
}

// hits builds the hits of the complete requests the way BusyTruth defines
// them, and the (offset, header) keys of the lines of incomplete ones.
func (br *busyReading) hits(t testing.TB) (hits []BusyHit, partial map[[2]int64]bool) {
	t.Helper()
	partial = map[[2]int64]bool{}
	type key struct {
		rec, hdr int
	}
	idx := map[key]int{}
	aff := map[key]bool{}
	last := map[key]*rreq{}
	for _, rq := range br.reqs {
		own := br.own[rq.conn]
		for _, ln := range rq.lines {
			rec := int(own[ln.start])
			k := key{rec, ln.hdr}
			if !rq.complete {
				aff[k] = true
				partial[[2]int64{br.recs[rec].off, int64(ln.hdr)}] = true
				continue
			}
			a, non := lineAddrs(ln.hdr, ln.value)
			if xa, xn := xffAddrs(ln.hdr, ln.value); !slices.Equal(a, xa) || non != xn {
				t.Errorf("%s: %q: reads as %v + %d non-addresses, format/xff reads %v + %d", headerNames[ln.hdr], ln.value, a, non, xa, xn)
			}
			i, ok := idx[k]
			if !ok {
				i = len(hits)
				idx[k] = i
				r, d := &br.recs[rec], &br.dec[rec]
				hits = append(hits, BusyHit{Offset: r.off, Header: headerNames[ln.hdr], Src: d.src, Dst: d.dst, TS: r.ts,
					Method: rq.method, Target: rq.target, Host: rq.host, List: rq.list(ln.hdr),
					Cont: int(own[rq.start]) != rec})
				last[k] = rq
			} else if last[k] != rq {
				hits[i].More = append(hits[i].More, BusyReq{Method: rq.method, Target: rq.target, Host: rq.host, List: rq.list(ln.hdr)})
				last[k] = rq
			}
			h := &hits[i]
			h.Raw = append(h.Raw, ln.value)
			for _, x := range a {
				if !slices.Contains(h.Addrs, x) {
					h.Addrs = append(h.Addrs, x)
				}
			}
			h.NonAddr += non
			if int(own[ln.end-1]) != rec {
				h.Split = true
			}
		}
	}
	out := hits[:0]
	for _, h := range hits {
		if len(h.Addrs) > 0 {
			out = append(out, h)
		}
	}
	slices.SortFunc(out, func(a, b BusyHit) int {
		return cmp.Or(cmp.Compare(a.Offset, b.Offset), cmp.Compare(headerNum(a.Header), headerNum(b.Header)))
	})
	for k := range aff {
		// A (record, header) with a line of an incomplete request is not
		// an exact hit, even with lines of complete requests.
		off := br.recs[k.rec].off
		out = slices.DeleteFunc(out, func(h BusyHit) bool { return h.Offset == off && headerNum(h.Header) == k.hdr })
	}
	return out, partial
}

func (rq *rreq) list(hdr int) string {
	var vs []string
	for _, ln := range rq.lines {
		if ln.hdr == hdr {
			vs = append(vs, ln.value)
		}
	}
	return strings.Join(vs, ", ")
}

func genBusy(t testing.TB, cfg BusyConfig) ([]byte, BusyTruth) {
	t.Helper()
	var buf bytes.Buffer
	tr, err := WriteBusy(&buf, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if tr.Bytes != int64(buf.Len()) {
		t.Fatalf("BusyTruth.Bytes %d, wrote %d", tr.Bytes, buf.Len())
	}
	return buf.Bytes(), tr
}

func hitString(h BusyHit) string {
	return fmt.Sprintf("%+v", h)
}

// checkBusy compares a capture with its truth through busyRead.
func checkBusy(t *testing.T, file []byte, tr BusyTruth) *busyReading {
	t.Helper()
	br := busyRead(t, file)
	if int64(len(br.recs)) != tr.Packets {
		t.Errorf("%d records, Packets %d", len(br.recs), tr.Packets)
	}
	hits, partial := br.hits(t)
	type hkey struct {
		off int64
		hdr string
	}
	truthAt := map[hkey]BusyHit{}
	for _, h := range tr.Hits {
		truthAt[hkey{h.Offset, h.Header}] = h
	}
	gapAt := map[hkey]BusyHit{}
	for _, h := range tr.GapHits {
		k := hkey{h.Offset, h.Header}
		gapAt[k] = h
		if _, ok := truthAt[k]; ok {
			t.Errorf("offset %d %s in Hits and GapHits", h.Offset, h.Header)
		}
	}
	bad := 0
	seen := map[hkey]bool{}
	for _, h := range hits {
		k := hkey{h.Offset, h.Header}
		seen[k] = true
		th, ok := truthAt[k]
		switch {
		case !ok:
			// A record that also starts a line of a cut request (maybe
			// with only part of its name captured) is a gap hit: the
			// lines of complete requests come first.
			if gh, inGap := gapAt[k]; inGap && len(h.Raw) < len(gh.Raw) && slices.Equal(h.Raw, gh.Raw[:len(h.Raw)]) {
				continue
			}
			t.Errorf("re-read hit not in the truth: %s", hitString(h))
			bad++
		case !reflect.DeepEqual(h, th):
			t.Errorf("hit differs:\nre-read %s\ntruth   %s", hitString(h), hitString(th))
			bad++
		}
		if bad >= 10 {
			t.Fatalf("too many differences")
		}
	}
	for _, h := range tr.Hits {
		if !seen[hkey{h.Offset, h.Header}] {
			t.Errorf("truth hit not re-read: %s", hitString(h))
			if bad++; bad >= 10 {
				t.Fatalf("too many differences")
			}
		}
	}
	// A line of a request cut by a missing byte never makes an exact hit
	// (it makes a gap hit if it has an address, which busyRead cannot
	// always tell from the part it sees).
	for k := range partial {
		if _, ok := truthAt[hkey{k[0], headerNames[k[1]]}]; ok {
			t.Errorf("offset %d %s: a line of a cut request, in Hits", k[0], headerNames[k[1]])
		}
	}
	// Requests and lines.
	var lines [numHeaders]int
	reqs := 0
	for _, rq := range br.reqs {
		if !rq.complete {
			continue
		}
		reqs++
		for _, ln := range rq.lines {
			lines[ln.hdr]++
		}
	}
	if reqs != tr.Requests || lines != tr.lines {
		t.Errorf("re-read %d requests with %v lines, truth %d with %v", reqs, lines, tr.Requests, tr.lines)
	}
	for h, n := range tr.lines {
		if tr.Lines[headerNames[h]] != n {
			t.Errorf("Lines[%s] %d, want %d", headerNames[h], tr.Lines[headerNames[h]], n)
		}
	}
	// Each hole is one or more adjacent missing segments.
	type fk struct{ src, dst netip.AddrPort }
	missing := map[fk]map[uint32]int{}
	for _, gs := range [][]busyGap{tr.gapSegs, tr.endSegs} {
		for _, g := range gs {
			m := missing[fk{g.src, g.dst}]
			if m == nil {
				m = map[uint32]int{}
				missing[fk{g.src, g.dst}] = m
			}
			m[g.seq] = g.n
		}
	}
	for _, h := range br.holes {
		m := missing[fk{h.src, h.dst}]
		for seq, end := h.seq, h.seq+uint32(h.n); seq != end; {
			n, ok := m[seq]
			if !ok {
				t.Errorf("hole %v→%v seq %d (%d bytes): no missing segment at %d", h.src, h.dst, h.seq, h.n, seq)
				break
			}
			seq += uint32(n)
		}
	}
	if len(br.holes) > tr.Gaps+len(tr.endSegs) || tr.Gaps != len(tr.gapSegs) {
		t.Errorf("%d holes, Gaps %d, %d gap segments", len(br.holes), tr.Gaps, len(tr.gapSegs))
	}
	if br.copies != tr.Retrans+tr.Dups || br.reordered != tr.Reordered || br.resets != tr.Resets || br.reused < tr.Reused {
		t.Errorf("re-read %d copies, %d reordered, %d resets, %d reused; truth %d+%d, %d, %d, %d",
			br.copies, br.reordered, br.resets, br.reused, tr.Retrans, tr.Dups, tr.Reordered, tr.Resets, tr.Reused)
	}
	return br
}

// ---- tests -------------------------------------------------------------

func TestBusyDeterministic(t *testing.T) {
	cfg := BusyConfig{Seed: 5, Conns: 400, TargetBytes: 2 << 20, RetransRate: 0.05, ReorderRate: 0.05, GapRate: 0.01, DupRate: 0.02}
	a, ta := genBusy(t, cfg)
	b, tb := genBusy(t, cfg)
	if sha(a) != sha(b) || !reflect.DeepEqual(ta, tb) {
		t.Errorf("two runs differ")
	}
	cfg.Seed++
	if c, _ := genBusy(t, cfg); sha(a) == sha(c) {
		t.Errorf("seeds %d and %d give the same bytes", cfg.Seed-1, cfg.Seed)
	}
	// The truth does not change what is written.
	cfg.Seed--
	cfg.NoTruth = true
	if d, td := genBusy(t, cfg); sha(a) != sha(d) || len(td.Hits) != 0 || td.Requests != ta.Requests || td.Gaps != ta.Gaps {
		t.Errorf("NoTruth changes the capture or the counts")
	}
}

func TestBusyConfigErrors(t *testing.T) {
	for _, cfg := range []BusyConfig{{Format: "pcapx"}, {Format: FormatPcapNGMulti}, {LinkType: LinkNull + 42},
		{Conns: maxBusyConns + 1}, {GapRate: 1.5}, {MSS: 100}, {CookieMax: 1 << 20}} {
		if _, err := WriteBusy(io.Discard, cfg); err == nil {
			t.Errorf("%+v: no error", cfg)
		}
	}
}

// busyConfigs are the captures TestBusySelfCheck re-reads: the default
// busy link with 5000 connections, one with every misbehaviour frequent,
// and other formats and link types.
var busyConfigs = []BusyConfig{
	{Seed: 1, TargetBytes: 8 << 20},
	{Seed: 2, Conns: 600, TargetBytes: 5 << 20, RetransRate: 0.08, DupRate: 0.04, ReorderRate: 0.05, GapRate: 0.01,
		PipelineRate: 0.4, BodyRate: 0.6, DecoyRate: 0.5, SplitRate: 0.5, Requests: 8},
	{Seed: 3, Format: FormatPcapNG, LinkType: LinkSLL2, Conns: 300, TargetBytes: 3 << 20, PreOpenRate: 0.5, IPv6Rate: 0.6, RSTRate: 0.5},
	{Seed: 4, Format: FormatPcapNs, LinkType: LinkRaw, Conns: 200, TargetBytes: 2 << 20, MSS: 536, CookieRate: 0.5},
	{Seed: 5, Format: FormatPcapBE, VLAN: true, Conns: 100, TargetBytes: 2 << 20, ReuseRate: 0.5, Requests: 20},
	{Seed: 6, LinkType: LinkSLL, Conns: 50, TargetBytes: 1 << 20, IPv6Rate: -1, FwdRate: 1, CookieRate: -1, GapRate: -1,
		ReorderRate: -1, RetransRate: -1, DupRate: -1, DecoyRate: -1, BodyRate: -1, PipelineRate: -1, PreOpenRate: -1},
}

// TestBusySelfCheck re-reads captures with busyRead, which reassembles and
// parses them on its own, and compares every hit, the request and line
// counts and the missing, copied and reordered segments with the truth.
func TestBusySelfCheck(t *testing.T) {
	count := map[string]int{}
	for i, cfg := range busyConfigs {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			file, tr := genBusy(t, cfg)
			br := checkBusy(t, file, tr)
			checkBusyFile(t, file, tr, br)
			t.Logf("%d MB, %d conns (%d open at most), %d requests (+%d gap-affected), %d hits (+%d), lines %v, %d gaps, %d retrans, %d dups, %d reordered, %d decoys",
				tr.Bytes>>20, tr.Conns, tr.MaxOpen, tr.Requests, tr.GapRequests, len(tr.Hits), len(tr.GapHits), tr.Lines,
				tr.Gaps, tr.Retrans, tr.Dups, tr.Reordered, tr.Decoys)
			if i == 0 {
				want := 5000
				if tr.MaxOpen != want || tr.Conns <= want {
					t.Errorf("MaxOpen %d, Conns %d: want %d open at once", tr.MaxOpen, tr.Conns, want)
				}
			}
			busyCoverage(count, tr, br)
		})
	}
	checkCoverage(t, count)
}

// checkBusyFile checks the records: time order, the flows, and that no hit
// holds a decoy address while decoy text is in the file.
func checkBusyFile(t *testing.T, file []byte, tr BusyTruth, br *busyReading) {
	t.Helper()
	var last time.Time
	for _, r := range br.recs {
		if r.ts.Before(last) {
			t.Fatalf("frame %d: time goes back", r.frame)
		}
		last = r.ts
	}
	for _, hs := range [][]BusyHit{tr.Hits, tr.GapHits} {
		for _, h := range hs {
			for _, a := range h.Addrs {
				if DecoyPrefix.Contains(a) || !a.IsValid() || a.Is4In6() {
					t.Errorf("offset %d: address %v", h.Offset, a)
				}
			}
			if p := h.Dst.Port(); p != 80 && p != 8080 || !h.Src.Addr().IsPrivate() {
				t.Errorf("offset %d: flow %v→%v", h.Offset, h.Src, h.Dst)
			}
		}
	}
	if tr.Decoys > 0 && !bytes.Contains(file, []byte(": 100.")) && !bytes.Contains(file, []byte("=100.")) {
		t.Errorf("%d decoys, no decoy address in the file", tr.Decoys)
	}
}

// busyCoverage counts, into count, the cases the busy mode promises, read
// from the capture where it can be.
func busyCoverage(count map[string]int, tr BusyTruth, br *busyReading) {
	for _, h := range tr.Hits {
		count["hit "+h.Header]++
		if h.Cont {
			count["hit in a continued header block"]++
		}
		if h.Split {
			count["hit with a line split across segments"]++
		}
		if len(h.More) > 0 {
			count["hit with lines of two pipelined requests"]++
		}
		if len(h.Raw) > 1 {
			count["hit with two lines of one header"]++
		}
		if strings.Count(h.List, ",") > strings.Count(strings.Join(h.Raw, ","), ",") {
			count["request list longer than its hit (lines in other segments)"]++
		}
		if h.Src.Addr().Is6() {
			count["IPv6 transport"]++
		}
		if h.NonAddr > 0 {
			count["non-address element"]++
		}
		for _, a := range h.Addrs {
			if a.Is6() {
				count["IPv6 element"]++
			}
		}
	}
	// Where forwarding lines sit, and where segment boundaries cut them,
	// from the capture.
	for _, rq := range br.reqs {
		if !rq.complete {
			continue
		}
		own := br.own[rq.conn]
		segs := 0 // segments of the header block before a position
		segAt := map[int]int{}
		for p := rq.start; p < rq.hdrEnd; p++ {
			if p > rq.start && own[p] != own[p-1] {
				segs++
				if p == rq.hdrEnd-1 {
					count["split between the CR and LF of the final empty line"]++
				}
			}
			segAt[p] = segs
		}
		if segs+1 >= 10 {
			count["header block of 10+ segments"]++
		}
		for _, ln := range rq.lines {
			if ln.start == rq.lineEnd {
				count["first line"]++
			}
			if ln.end == rq.hdrEnd-2 || ln.end == rq.hdrEnd-1 {
				count["last line"]++
			}
			if segAt[ln.start] >= 10 {
				count["line after 10 segments"]++
			}
			name := len(headerNames[ln.hdr])
			for p := ln.start + 1; p < ln.end; p++ {
				if own[p] == own[p-1] {
					continue
				}
				switch st := br.streamByte(rq.conn, p-1); {
				case p <= ln.start+name:
					count["split in the name"]++
				case p == ln.start+name+1:
					count["split right after the colon"]++
				case p == ln.end-1 && st == '\r':
					count["split between CR and LF"]++
				default:
					count["split in the value"]++
				}
			}
			if ln.start > rq.start && own[ln.start] != own[ln.start-1] {
				count["line starting a segment"]++
			}
		}
		if br.streamByte(rq.conn, rq.hdrEnd-2) != '\r' {
			count["LF line ends"]++
		}
	}
	for what, n := range map[string]int{"pre-open connections": tr.PreOpen, "reused 5-tuples": tr.Reused, "resets": tr.Resets,
		"gaps": tr.Gaps, "retransmissions": tr.Retrans, "duplicates": tr.Dups, "reordered": tr.Reordered, "decoys": tr.Decoys,
		"chunked bodies": tr.chunked, "pipelined batches": tr.piped, "decoy requests starting a segment": tr.fakeAt,
		"gap-affected requests": tr.GapRequests, "gap hits": len(tr.GapHits), "big cookies": tr.cookies} {
		count[what] += n
	}
	for k, n := range tr.splits {
		count[fmt.Sprintf("forced split kind %d", k)] += n
	}
	count["largest header block (segments)"] = max(count["largest header block (segments)"], tr.maxHdr)
	// Decoy text at the start of a segment of a request body, and look-alike names.
	for i, d := range br.dec {
		if p := d.dst.Port(); (p == 80 || p == 8080) && !br.copyRecs[i] {
			if bytes.HasPrefix(d.payload, []byte("GET / HTTP/1.1\r\nHost: decoy.example\r\nX-Forwarded-For: 100.")) {
				count["body segment starting with a decoy request"]++
			}
			for _, n := range []string{"\nX-Original-Forwarded-For: 100.", "\nX-Forwarded-Host: 100.", "\nX-Real-IPs: 100."} {
				if bytes.Contains(d.payload, []byte(n)) {
					count["look-alike header line"]++
				}
			}
		}
	}
}

// checkCoverage checks the counts of busyCoverage over the captures of
// TestBusySelfCheck.
func checkCoverage(t *testing.T, count map[string]int) {
	t.Helper()
	for _, c := range []struct {
		what string
		min  int
	}{
		{"hit X-Forwarded-For", 1000}, {"hit Forwarded", 100}, {"hit X-Real-IP", 100}, {"hit True-Client-IP", 30}, {"hit CF-Connecting-IP", 30},
		{"hit in a continued header block", 50}, {"hit with a line split across segments", 20}, {"hit with lines of two pipelined requests", 3},
		{"hit with two lines of one header", 20}, {"request list longer than its hit (lines in other segments)", 10},
		{"IPv6 transport", 100}, {"IPv6 element", 100}, {"non-address element", 30},
		{"first line", 50}, {"last line", 100}, {"line after 10 segments", 3}, {"header block of 10+ segments", 3},
		{"split in the name", 10}, {"split right after the colon", 10}, {"split in the value", 10}, {"split between CR and LF", 10},
		{"split between the CR and LF of the final empty line", 5}, {"line starting a segment", 10}, {"LF line ends", 10},
		{"pre-open connections", 10}, {"reused 5-tuples", 3}, {"resets", 10}, {"gaps", 10}, {"retransmissions", 10},
		{"duplicates", 10}, {"reordered", 10}, {"decoys", 100}, {"chunked bodies", 50}, {"pipelined batches", 20},
		{"decoy requests starting a segment", 10}, {"gap-affected requests", 10}, {"gap hits", 10}, {"big cookies", 50},
		{"body segment starting with a decoy request", 5}, {"look-alike header line", 20}, {"largest header block (segments)", 11},
	} {
		if count[c.what] < c.min {
			t.Errorf("%s: %d, want at least %d", c.what, count[c.what], c.min)
		}
	}
	for k := range numSplits {
		if n := count[fmt.Sprintf("forced split kind %d", k)]; n < 3 {
			t.Errorf("forced split kind %d: %d", k, n)
		}
	}
	t.Logf("coverage: %v", count)
}

// streamByte returns byte p of connection c's reassembled stream.
func (br *busyReading) streamByte(c *rconn, p int) byte {
	for _, s := range c.segs {
		if p >= int(s.rel) && p < int(s.rel)+len(s.data) {
			return s.data[p-int(s.rel)]
		}
	}
	return 0
}

// TestBusyAllocs checks that memory follows the connections, not the size.
func TestBusyAllocs(t *testing.T) {
	allocs := func(size int64) (float64, uint64) {
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		n := testing.AllocsPerRun(1, func() {
			if _, err := WriteBusy(io.Discard, BusyConfig{Seed: 1, Conns: 3000, TargetBytes: size, NoTruth: true}); err != nil {
				t.Fatal(err)
			}
		})
		runtime.ReadMemStats(&m1)
		return n, (m1.TotalAlloc - m0.TotalAlloc) / 2
	}
	small, smallB := allocs(32 << 20)
	big, bigB := allocs(160 << 20)
	t.Logf("32 MB: %v allocations, %d MB; 160 MB: %v allocations, %d MB", small, smallB>>20, big, bigB>>20)
	if big-small > 500 || bigB > smallB+smallB/4 {
		t.Errorf("128 MB more output took %v more allocations, %d more bytes", big-small, bigB-smallB)
	}
}

func BenchmarkWriteBusy(b *testing.B) {
	cfg := BusyConfig{Seed: 1, TargetBytes: 256 << 20, NoTruth: true}
	b.SetBytes(cfg.TargetBytes)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := WriteBusy(io.Discard, cfg); err != nil {
			b.Fatal(err)
		}
	}
}

// ---- tshark ----------------------------------------------------------------

// busyTsharkArgs are the options under which tshark reads a busy capture
// the way BusyTruth counts requests:
//
//   - tcp.desegment_tcp_streams:TRUE lets HTTP ask TCP for more segments,
//     and http.desegment_headers:TRUE makes it do so until the empty line
//     ending a header block: a block of up to 12 segments is dissected once,
//     whole, in the frame that completes it, wherever its lines are split.
//   - http.desegment_body:TRUE waits for the body too (Content-Length or
//     chunked), so that a body, which may hold decoy header lines or a whole
//     decoy request at the start of a segment, is never read as a request.
//     The price: a request whose body is not wholly captured is never shown
//     (BusyTruth.LinesBodyCut counts its lines).
//   - tcp.reassemble_out_of_order:TRUE (FALSE by default in 4.0) queues the
//     segments captured before their predecessor until the hole is filled;
//     without it tshark loses every request with a reordered segment. A
//     missing segment (a gap) is never filled, so tshark shows nothing of
//     its flow after it: the gap-affected requests, and the lines of
//     LinesBodyCut.
//   - tcp.analyze_sequence_numbers:TRUE (the default) makes tshark
//     recognise a frame whose bytes it has already seen (a retransmission,
//     flagged "[TCP Retransmission]" or "[TCP Spurious Retransmission]", or
//     a duplicate frame) and it does not hand those bytes to HTTP again: a
//     retransmitted or duplicated request is counted once, in the frame
//     where it was first completed, as the truth's first-copy rule says.
//     With FALSE, tshark dissects every whole request in a retransmitted or
//     duplicated segment that starts with a request line a second time
//     (TestBusyTsharkCopies checks it).
//
// tshark 4.0 needs three accommodations from the generator, each explained
// where it is made: no segment boundary inside a CRLF of chunked framing
// (busy.nocut), a pipelined chunked request after a multi-segment one
// starts its own segment (chunkAfterPDU), and no reordering that writes a
// segment where a chunked request starts before the segment ending the
// request before it (perturb).
var busyTsharkArgs = []string{
	"-o", "tcp.desegment_tcp_streams:TRUE",
	"-o", "http.desegment_headers:TRUE",
	"-o", "http.desegment_body:TRUE",
	"-o", "tcp.reassemble_out_of_order:TRUE",
	"-o", "tcp.analyze_sequence_numbers:TRUE",
}

// tsharkXFF runs tshark on path with extra options and returns, per frame
// holding requests, the X-Forwarded-For values it shows (one per line, of
// every request dissected in that frame), trimmed.
func tsharkXFF(t *testing.T, path string, opts ...string) map[int64][]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	args := append([]string{"-r", path}, opts...)
	args = append(args, "-Y", "http.request", "-T", "fields", "-e", "frame.number", "-e", "http.x_forwarded_for",
		"-E", "occurrence=a", "-E", "aggregator=|")
	cmd := exec.CommandContext(ctx, "tshark", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tshark: %v\n%s", err, stderr.String())
	}
	rows := map[int64][]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Split(l, "\t")
		if len(f) != 2 || f[1] == "" {
			continue
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			t.Fatalf("tshark line %q", l)
		}
		for _, v := range strings.Split(f[1], "|") {
			// tshark keeps trailing spaces and tabs, and escapes tabs.
			rows[n] = append(rows[n], strings.Trim(unescapeTshark(v), " \t"))
		}
	}
	return rows
}

func needTshark(t *testing.T) {
	if _, err := exec.LookPath("tshark"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("tshark not installed (CI=true)")
		}
		t.Skip("tshark not installed")
	}
}

// TestBusyTsharkCopies shows how tshark counts retransmitted and
// duplicated requests (see busyTsharkArgs) on a capture with many of them
// and no reordering or gap: with sequence analysis (the default) each
// request once, as the truth; without it, every whole request inside a
// copied segment that starts with a request line a second time.
// (Out-of-order reassembly needs the analysis, so reordering would blur
// the comparison.)
func TestBusyTsharkCopies(t *testing.T) {
	needTshark(t)
	cfg := BusyConfig{Seed: 13, Conns: 500, TargetBytes: 3 << 20, RetransRate: 0.15, DupRate: 0.1, ReorderRate: -1, GapRate: -1}
	file, tr := genBusy(t, cfg)
	path := filepath.Join(t.TempDir(), "copies.pcap")
	if err := os.WriteFile(path, file, 0o644); err != nil {
		t.Fatal(err)
	}
	lines := func(rows map[int64][]string) int {
		n := 0
		for _, vs := range rows {
			n += len(vs)
		}
		return n
	}
	got := lines(tsharkXFF(t, path, busyTsharkArgs...))
	want := tr.Lines["X-Forwarded-For"] - tr.LinesBodyCut["X-Forwarded-For"]
	copyLines := 0
	for _, c := range tr.copies {
		copyLines += c.fwd[hXFF]
	}
	noSeq := lines(tsharkXFF(t, path, append(slices.Clone(busyTsharkArgs), "-o", "tcp.analyze_sequence_numbers:FALSE")...))
	t.Logf("%d retransmissions, %d duplicates; their whole requests hold %d X-Forwarded-For lines; tshark shows %d lines (truth %d), %d without sequence analysis",
		tr.Retrans, tr.Dups, copyLines, got, want, noSeq)
	if got != want {
		t.Errorf("tshark shows %d X-Forwarded-For lines, truth %d", got, want)
	}
	if copyLines < 20 || noSeq != got+copyLines {
		t.Errorf("without sequence analysis tshark shows %d lines, want %d + %d", noSeq, got, copyLines)
	}
}

// TestBusyTshark compares tshark's reading of busy captures with the
// truth: the number of X-Forwarded-For lines in the requests it shows
// equals BusyTruth.Lines minus LinesBodyCut (see busyTsharkArgs), and frame
// by frame its values are those busyRead predicts (the lines of the
// requests completed in that frame). Decoys never show: they would be
// values busyRead does not predict.
func TestBusyTshark(t *testing.T) {
	needTshark(t)
	dir := t.TempDir()
	for i, cfg := range []BusyConfig{
		{Seed: 11, TargetBytes: 6 << 20},
		{Seed: 12, Conns: 800, TargetBytes: 5 << 20, RetransRate: 0.08, DupRate: 0.04, ReorderRate: 0.05, GapRate: 0.01,
			PipelineRate: 0.4, BodyRate: 0.6, DecoyRate: 0.5, SplitRate: 0.5},
	} {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			t.Parallel()
			file, tr := genBusy(t, cfg)
			path := filepath.Join(dir, fmt.Sprintf("busy%d.pcap", i))
			if err := os.WriteFile(path, file, 0o644); err != nil {
				t.Fatal(err)
			}
			rows := tsharkXFF(t, path, busyTsharkArgs...)
			got := 0
			for _, vs := range rows {
				got += len(vs)
			}
			want := tr.Lines["X-Forwarded-For"] - tr.LinesBodyCut["X-Forwarded-For"]
			t.Logf("tshark shows %d X-Forwarded-For lines; truth %d, %d of them in requests whose body is cut; %d gap-affected requests; %d retransmissions, %d duplicates, %d reordered, %d gaps",
				got, tr.Lines["X-Forwarded-For"], tr.LinesBodyCut["X-Forwarded-For"], tr.GapRequests, tr.Retrans, tr.Dups, tr.Reordered, tr.Gaps)
			if got != want {
				t.Errorf("tshark shows %d X-Forwarded-For lines in requests, truth %d", got, want)
			}

			br := busyRead(t, file)
			pred := map[int64][]string{}
			for _, rq := range br.reqs {
				if !rq.complete || !rq.bodyComplete {
					continue
				}
				fr := br.recs[rq.lastRec].frame
				for _, ln := range rq.lines {
					if ln.hdr == hXFF {
						pred[fr] = append(pred[fr], ln.value)
					}
				}
			}
			bad := 0
			for _, fr := range slices.Sorted(maps.Keys(rows)) {
				if !slices.Equal(rows[fr], pred[fr]) && bad < 10 {
					t.Errorf("frame %d: tshark shows %q, want %q", fr, rows[fr], pred[fr])
					bad++
				}
			}
			for fr, vs := range pred {
				if _, ok := rows[fr]; !ok && bad < 10 {
					t.Errorf("frame %d: tshark shows nothing, want %q", fr, vs)
					bad++
				}
			}
		})
	}
}
