package stream

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/xffidx/xffidx/format"
	"github.com/xffidx/xffidx/format/xff"
)

// gen makes random proxy-to-backend traffic: many connections interleaved,
// keep-alive requests whose header blocks span many segments, forwarding
// headers anywhere in them, bodies (Content-Length and chunked) with
// header-like text, responses with decoys, and, if asked, duplicated,
// reordered and late retransmitted segments.
type gen struct {
	r       *rand.Rand
	conns   int
	misbeh  bool // duplicates, reordering, late retransmissions
	lfOnly  bool // some LF-only line ends
	bigBody bool
}

type genEvent struct {
	c       int // connection
	fromCli bool
	seq     uint32
	flags   byte
	data    []byte
}

type genConn struct {
	cli, srv endpoint
	events   []genEvent
}

func (g *gen) addr(v6 bool) string {
	if v6 {
		return fmt.Sprintf("2001:db8::%x", g.r.IntN(0xffff)+1)
	}
	return fmt.Sprintf("203.0.113.%d", g.r.IntN(254)+1)
}

func (g *gen) forwardingLine() string {
	switch g.r.IntN(6) {
	case 0:
		return fmt.Sprintf("X-Real-IP: %s", g.addr(false))
	case 1:
		return fmt.Sprintf("Forwarded: for=%s;proto=http, for=\"[%s]:4711\"", g.addr(false), g.addr(true))
	case 2:
		return fmt.Sprintf("x-forwarded-for: %s, unknown, %s:8080", g.addr(false), g.addr(false))
	default:
		n := g.r.IntN(4) + 1
		var els []string
		for range n {
			els = append(els, g.addr(g.r.IntN(4) == 0))
		}
		return "X-Forwarded-For: " + strings.Join(els, ", ")
	}
}

func (g *gen) text(n int) string {
	var b strings.Builder
	for b.Len() < n {
		switch g.r.IntN(8) {
		case 0:
			b.WriteString("\r\nX-Forwarded-For: 198.51.100.7\r\n")
		case 1:
			b.WriteString("GET /fake HTTP/1.1\r\nX-Forwarded-For: 198.51.100.8\r\n\r\n")
		default:
			b.WriteString("lorem ipsum ")
		}
	}
	return b.String()[:n]
}

// request renders one request.
func (g *gen) request() []byte {
	eol := "\r\n"
	if g.lfOnly && g.r.IntN(10) == 0 {
		eol = "\n"
	}
	var lines []string
	method := "GET"
	var body string
	chunked := false
	switch g.r.IntN(4) {
	case 0:
		method = "POST"
		n := g.r.IntN(3000)
		if g.bigBody {
			n = g.r.IntN(30000)
		}
		body = g.text(n)
	case 1:
		method = "POST"
		chunked = true
		body = g.text(g.r.IntN(4000))
	}
	lines = append(lines, fmt.Sprintf("Host: backend%d.example", g.r.IntN(9)))
	lines = append(lines, "User-Agent: test/1.0", "Accept: */*")
	if g.r.IntN(3) == 0 {
		lines = append(lines, "Cookie: session="+strings.Repeat("c", g.r.IntN(16000)+1000))
	}
	if g.r.IntN(8) == 0 {
		lines = append(lines, "X-Original-Forwarded-For: 198.51.100.3", "X-Real-IPs: 198.51.100.4")
	}
	for range g.r.IntN(3) + 1 {
		at := g.r.IntN(len(lines) + 1)
		lines = slices.Insert(lines, at, g.forwardingLine())
	}
	if g.r.IntN(2) == 0 {
		// As haproxy and nginx do: appended at the end of the block.
		lines = append(lines, g.forwardingLine())
	}
	if chunked {
		lines = append(lines, "Transfer-Encoding: chunked")
	} else if body != "" {
		lines = append(lines, fmt.Sprintf("Content-Length: %d", len(body)))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s /path/%d?q=%d HTTP/1.1%s", method, g.r.IntN(100), g.r.IntN(1000), eol)
	for _, l := range lines {
		b.WriteString(l + eol)
	}
	b.WriteString(eol)
	if chunked {
		rest := body
		for len(rest) > 0 {
			n := min(len(rest), g.r.IntN(900)+1)
			fmt.Fprintf(&b, "%x\r\n%s\r\n", n, rest[:n])
			rest = rest[n:]
		}
		b.WriteString("0\r\n\r\n")
	} else {
		b.WriteString(body)
	}
	return []byte(b.String())
}

func (g *gen) response() []byte {
	body := g.text(g.r.IntN(5000))
	return []byte(fmt.Sprintf("HTTP/1.1 200 OK\r\nX-Forwarded-For: 198.51.100.9\r\nContent-Length: %d\r\n\r\n%s", len(body), body))
}

// segments cuts b into MSS-sized segments, with some small ones.
func (g *gen) segments(b []byte) [][]byte {
	var out [][]byte
	for len(b) > 0 {
		n := 1448
		if g.r.IntN(4) == 0 {
			n = g.r.IntN(1448) + 1
		}
		n = min(n, len(b))
		out = append(out, b[:n])
		b = b[n:]
	}
	return out
}

// build writes the capture.
func (g *gen) build() *capture {
	cs := make([]*genConn, g.conns)
	for i := range cs {
		c := &genConn{
			cli: endpoint{netip.MustParseAddr(fmt.Sprintf("10.0.%d.%d", i/250, i%250+1)), uint16(20000 + i)},
			srv: endpoint{netip.MustParseAddr(fmt.Sprintf("10.1.0.%d", i%7+1)), 80},
		}
		if i%5 == 0 {
			c.cli.ip = netip.MustParseAddr(fmt.Sprintf("fd00::%x", i+1))
			c.srv.ip = netip.MustParseAddr(fmt.Sprintf("fd00:1::%x", i%7+1))
		}
		cseq, sseq := g.r.Uint32(), g.r.Uint32()
		c.events = append(c.events, genEvent{c: i, fromCli: true, seq: cseq, flags: flagSYN})
		c.events = append(c.events, genEvent{c: i, seq: sseq, flags: flagSYN | flagACK})
		cseq++
		sseq++
		for range g.r.IntN(5) + 1 {
			var reqs []byte
			for range 1 + g.r.IntN(3)/2 { // sometimes two pipelined
				reqs = append(reqs, g.request()...)
			}
			for _, s := range g.segments(reqs) {
				c.events = append(c.events, genEvent{c: i, fromCli: true, seq: cseq, flags: flagACK | 0x08, data: s})
				cseq += uint32(len(s))
			}
			for _, s := range g.segments(g.response()) {
				c.events = append(c.events, genEvent{c: i, seq: sseq, flags: flagACK, data: s})
				sseq += uint32(len(s))
			}
		}
		c.events = append(c.events, genEvent{c: i, fromCli: true, seq: cseq, flags: flagFIN | flagACK})
		cs[i] = c
	}
	if g.misbeh {
		for _, c := range cs {
			var ev []genEvent
			for j := 0; j < len(c.events); j++ {
				e := c.events[j]
				switch {
				case e.fromCli && len(e.data) > 0 && g.r.IntN(30) == 0 && j+1 < len(c.events) && c.events[j+1].fromCli && len(c.events[j+1].data) > 0:
					// Reordered: the next segment first.
					ev = append(ev, c.events[j+1], e)
					j++
				case e.fromCli && len(e.data) > 0 && g.r.IntN(40) == 0:
					ev = append(ev, e, e) // duplicated
				default:
					ev = append(ev, e)
				}
				if e.fromCli && len(e.data) > 0 && g.r.IntN(60) == 0 {
					// A late retransmission, some segments on.
					at := min(len(c.events), j+2+g.r.IntN(10))
					c.events = slices.Insert(c.events, at, e)
				}
			}
			c.events = ev
		}
	}
	capt := newCapture()
	ts := int64(1767225600e9)
	active := slices.Clone(cs)
	for len(active) > 0 {
		i := g.r.IntN(len(active))
		c := active[i]
		e := c.events[0]
		c.events = c.events[1:]
		if len(c.events) == 0 {
			active = slices.Delete(active, i, i+1)
		}
		src, dst := c.srv, c.cli
		if e.fromCli {
			src, dst = c.cli, c.srv
		}
		capt.frame(ts, src, dst, e.seq, e.flags, e.data, 0)
		ts += 10e3
	}
	return capt
}

// reference finds the hits a reassembly of each client stream shows: the
// bytes in sequence order (the first record in file order that carried a
// byte holds it), scanned whole by package xff.
func reference(t testing.TB, recs []format.Record) []Hit {
	type flow struct {
		isn     uint32
		bytes   map[uint32]byte
		rec     map[uint32]int64
		maxRel  uint32
		hasData bool
	}
	flows := map[string]*flow{}
	var order []string
	for i := range recs {
		rec := &recs[i]
		seg, ok := packetSegment(rec)
		if !ok {
			continue
		}
		k := fmt.Sprintf("%v:%d>%v:%d", seg.SrcIP, seg.SrcPort, seg.DstIP, seg.DstPort)
		f := flows[k]
		if seg.Flags&(flagSYN|flagACK) == flagSYN {
			f = &flow{isn: seg.Seq + 1, bytes: map[uint32]byte{}, rec: map[uint32]int64{}}
			flows[k] = f
			order = append(order, k)
			continue
		}
		if f == nil {
			continue
		}
		for j, b := range seg.Payload {
			rel := seg.Seq + uint32(j) - f.isn
			if _, seen := f.bytes[rel]; !seen {
				f.bytes[rel], f.rec[rel] = b, rec.Offset
				f.maxRel = max(f.maxRel, rel+1)
				f.hasData = true
			}
		}
	}
	var out []Hit
	for _, k := range order {
		f := flows[k]
		if !f.hasData {
			continue
		}
		stream := make([]byte, f.maxRel)
		for rel := range f.maxRel {
			b, ok := f.bytes[rel]
			if !ok {
				t.Fatalf("%s: hole at %d", k, rel)
			}
			stream[rel] = b
		}
		if !xff.StartsRequest(stream) {
			continue // a server's side
		}
		var res xff.Result
		xff.Scan(&res, stream, false)
		seen := map[string]bool{}
		var pos [xff.NumHeaders]int
		request := -1
		for i := 0; i < len(res.Lines); i++ {
			l := res.Lines[i]
			if l.Fold {
				continue
			}
			if l.Request != request {
				request, pos = l.Request, [xff.NumHeaders]int{}
			}
			value := l.Value
			for i+1 < len(res.Lines) && res.Lines[i+1].Fold {
				i++
				value = append(append(bytes.Clone(value), ' '), res.Lines[i].Value...)
			}
			off := f.rec[uint32(l.Start)]
			h := l.Header
			h.Elements(value, l.Cut, func(e []byte) {
				if a, ok := xff.ParseAddr(e); ok {
					key := fmt.Sprintf("%d %v %v", off, h, a)
					if !seen[key] {
						seen[key] = true
						out = append(out, Hit{Off: off, Addr: a, Header: h, Pos: pos[h]})
					}
				}
				pos[h]++
			})
		}
	}
	return out
}

func TestRandomTrafficAgainstReference(t *testing.T) {
	for seed := range uint64(12) {
		g := &gen{r: rand.New(rand.NewPCG(seed, 7)), conns: 20 + int(seed)*15, misbeh: seed%2 == 1, lfOnly: seed%3 == 0, bigBody: seed%4 == 3}
		c := g.build()
		recs := c.records(t)
		want := reference(t, recs)
		got := canon(sequential(recs, Options{}))
		onlyRef, onlyGot := diffHits(want, got.Hits)
		if len(onlyRef) > 0 || len(onlyGot) > 0 {
			t.Errorf("seed %d: %d hits expected, %d found; missed %d, extra %d", seed, len(want), len(got.Hits), len(onlyRef), len(onlyGot))
			for _, s := range onlyRef[:min(5, len(onlyRef))] {
				t.Logf("  missed %s", s)
			}
			for _, s := range onlyGot[:min(5, len(onlyGot))] {
				t.Logf("  extra  %s", s)
			}
		}
		if got.Counts.Gaps != 0 || got.Counts.Evicted != 0 {
			t.Errorf("seed %d: counts %+v", seed, got.Counts)
		}
		t.Logf("seed %d: %d records, %d hits, counts %+v", seed, len(recs), len(got.Hits), got.Counts)
	}
}

// TestChunkingEqualsSequential: any cut of the records into chunks, walked
// by logging trackers and joined, gives exactly the sequential walk's
// output: hits, request records and counts.
func TestChunkingEqualsSequential(t *testing.T) {
	for seed := range uint64(8) {
		g := &gen{r: rand.New(rand.NewPCG(seed, 11)), conns: 15 + int(seed)*10, misbeh: seed%2 == 0, bigBody: seed%3 == 1}
		c := g.build()
		recs := c.records(t)
		want := canon(sequential(recs, Options{}))
		r := rand.New(rand.NewPCG(seed, 99))
		for _, every := range []int{1, 2, 3, 7, 50, 400, 0} {
			var cuts []int
			for i := 1; i < len(recs); {
				step := every
				if step == 0 {
					step = 1 + r.IntN(200)
				}
				i += step
				if i < len(recs) {
					cuts = append(cuts, i)
				}
			}
			got, reruns := chunked(t, c, recs, cuts, Options{})
			got = canon(got)
			name := fmt.Sprintf("seed %d, chunks of %d records", seed, every)
			compareOutputs(t, name, want, got)
			t.Logf("%s: %d chunks, %d walked again", name, len(cuts)+1, reruns)
		}
	}
}

func compareOutputs(t *testing.T, name string, want, got Output) {
	t.Helper()
	var ws, gs []string
	for _, h := range want.Hits {
		ws = append(ws, hitStringStart(h))
	}
	for _, h := range got.Hits {
		gs = append(gs, hitStringStart(h))
	}
	slices.Sort(ws)
	slices.Sort(gs)
	if !slices.Equal(slices.Compact(ws), slices.Compact(gs)) {
		for i := range min(len(ws), len(gs)) {
			if ws[i] != gs[i] {
				t.Errorf("%s: hits (with connection starts) differ: sequential %s, chunked %s", name, ws[i], gs[i])
				break
			}
		}
	}
	onlyWant, onlyGot := diffHits(want.Hits, got.Hits)
	if len(onlyWant) > 0 || len(onlyGot) > 0 {
		t.Errorf("%s: hits differ: %d only sequential, %d only chunked", name, len(onlyWant), len(onlyGot))
		for _, s := range onlyWant[:min(5, len(onlyWant))] {
			t.Logf("  only sequential: %s", s)
		}
		for _, s := range onlyGot[:min(5, len(onlyGot))] {
			t.Logf("  only chunked:    %s", s)
		}
	}
	ws, gs = nil, nil
	for _, r := range want.Requests {
		ws = append(ws, reqString(r))
	}
	for _, r := range got.Requests {
		gs = append(gs, reqString(r))
	}
	if !slices.Equal(ws, gs) {
		t.Errorf("%s: request records differ: %d vs %d", name, len(ws), len(gs))
		for i := range min(len(ws), len(gs)) {
			if ws[i] != gs[i] {
				t.Logf("  sequential: %s\n  chunked:    %s", ws[i], gs[i])
				break
			}
		}
	}
	if want.Counts != got.Counts {
		t.Errorf("%s: counts differ:\n  sequential %+v\n  chunked    %+v", name, want.Counts, got.Counts)
	}
}

// FuzzTracker drives a few connections with segments made from the fuzzer's
// bytes (sequence numbers going back and forth, any flags, any payload):
// the tracker must not panic, and chunked walks must equal the sequential
// one.
func FuzzTracker(f *testing.F) {
	f.Add([]byte("\x00\x02\x00\x00GET / HTTP/1.1\r\nX-Forwarded-For: 192.0.2.1\r\n\r\n\x01\x18\x10\x00HTTP/1.1 200 OK\r\n\r\n"), uint8(3))
	f.Add([]byte("\x00\x18\x00\x00POST / HTTP/1.1\r\nContent-Length: 4\r\n\r\nab\x00\x18\x02\x00cdGET /x HTTP/1.1\r\nX-Real-IP: 2001:db8::1\r\n\r\n"), uint8(1))
	f.Fuzz(func(t *testing.T, data []byte, every uint8) {
		c := newCapture()
		seqs := [4]uint32{1000, 5000, 9000, 13000}
		ts := int64(1e18)
		for len(data) >= 4 {
			conn, flags, back, n := int(data[0]%4), data[1], data[2], int(data[3])
			data = data[4:]
			n = min(n, len(data))
			payload := data[:n]
			data = data[n:]
			src := endpoint{ipA, uint16(40000 + conn/2)}
			dst := endpoint{ipB, 80}
			if conn%2 == 1 {
				src, dst = dst, src
			}
			seq := seqs[conn] - uint32(back)
			c.frame(ts, src, dst, seq, flags, payload, 0)
			seqs[conn] = seq + uint32(len(payload))
			ts += int64(back) * 1e8
		}
		recs := c.records(t)
		want := canon(sequential(recs, Options{}))
		var cuts []int
		step := int(every%7) + 1
		for i := step; i < len(recs); i += step {
			cuts = append(cuts, i)
		}
		got, _ := chunked(t, c, recs, cuts, Options{})
		compareOutputs(t, "fuzz", want, canon(got))
	})
}

// TestSegmentBoundaries: the cases the look-back window missed, one by one:
// a block whose final CR ends a segment (its LF in the next), a request that
// starts in the middle of a segment right behind the previous request's
// body, a header block over twelve segments far apart, a value split
// between its CR and LF, and a name split in two.
func TestSegmentBoundaries(t *testing.T) {
	cli := endpoint{ipA, 40000}
	srv := endpoint{ipB, 80}
	type step struct {
		data string
		gap  int // other records written before this one
	}
	cookie := strings.Repeat("k", 1400)
	cases := []struct {
		name  string
		steps []step
		want  []string // "header addr" of the hits, in order
	}{
		{"CR cut from its LF", []step{{"GET /a HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 192.0.2.1\r\n\r", 0}, {"\nGET /b HTTP/1.1\r\nX-Real-IP: 192.0.2.2\r\n\r\n", 3}},
			[]string{"X-Forwarded-For 192.0.2.1", "X-Real-IP 192.0.2.2"}},
		{"request behind a body", []step{{"POST /a HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123", 0}, {"456789GET /b HTTP/1.1\r\nX-Forwarded-For: 192.0.2.3\r\n\r\n", 5}},
			[]string{"X-Forwarded-For 192.0.2.3"}},
		{"twelve segments far apart", func() []step {
			s := []step{{"GET /c HTTP/1.1\r\nHost: h\r\nCookie: " + cookie, 0}}
			for range 10 {
				s = append(s, step{cookie, 500})
			}
			return append(s, step{"\r\nX-Forwarded-For: 192.0.2.4\r\n\r\n", 2000})
		}(), []string{"X-Forwarded-For 192.0.2.4"}},
		{"value split at its line end", []step{{"GET /d HTTP/1.1\r\nX-Forwarded-For: 192.0.2.5, 192.0.2.6\r", 0}, {"\n\r\n", 10}},
			[]string{"X-Forwarded-For 192.0.2.5", "X-Forwarded-For 192.0.2.6"}},
		{"name split", []step{{"GET /e HTTP/1.1\r\nX-Forwar", 0}, {"ded-For: 192.0.2.7\r\n\r\n", 10}},
			[]string{"X-Forwarded-For 192.0.2.7"}},
	}
	for _, tc := range cases {
		c := newCapture()
		seq := uint32(7000)
		c.frame(1, cli, srv, seq-1, flagSYN, nil, 0)
		other := endpoint{ipA, 41000}
		ts := int64(2)
		for _, st := range tc.steps {
			for range st.gap {
				c.frame(ts, other, srv, 1, flagACK, []byte("x"), 0)
				ts++
			}
			c.frame(ts, cli, srv, seq, flagACK, []byte(st.data), 0)
			seq += uint32(len(st.data))
			ts++
		}
		recs := c.records(t)
		out := sequential(recs, Options{})
		var got []string
		for _, h := range out.Hits {
			got = append(got, fmt.Sprintf("%v %v", h.Header, h.Addr))
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: hits %q, want %q", tc.name, got, tc.want)
		}
		for _, r := range out.Requests {
			if len(r.Method) == 0 || !r.Complete {
				t.Errorf("%s: request record %s", tc.name, reqString(r))
			}
		}
	}
}
