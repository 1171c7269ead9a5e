package query_test

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/xffidx/xffidx/format/xff"
	"github.com/xffidx/xffidx/index"
	"github.com/xffidx/xffidx/query"
)

// planted is one address a crafted request carries: in header h, at
// position pos of that header's list, in frame (1-based) of the capture.
type planted struct {
	addr  string
	h     xff.Header
	pos   int
	frame int
}

// headersCapture writes requests carrying every forwarding header, in the
// spellings RFC 7239 and proxies use, with a header name and a value split
// across segments, decoys in a response and a request body, and the same
// address in two headers of one request. It returns the capture and what an
// exact indexer must find in it.
func headersCapture(t *testing.T) (string, []planted) {
	proxy4, proxy6 := netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("fd00::2")
	backend4 := netip.AddrPortFrom(netip.MustParseAddr("10.0.1.5"), 8080)
	backend6 := netip.AddrPortFrom(netip.MustParseAddr("fd00::1:5"), 80)
	from4 := func(port uint16) netip.AddrPort { return netip.AddrPortFrom(proxy4, port) }
	req := func(path, rest string) string { return "GET " + path + " HTTP/1.1\r\nHost: backend\r\n" + rest }
	d1 := req("/d", "Accept: */*\r\nForwar")
	d2 := "ded: for=203.0.113.77\r\nX-Real-IP: 203.0.113."
	body := "x\r\nX-Real-IP: 6.6.6.8\r\n"
	segs := []seg{
		{from4(41001), backend4, 100, req("/a", "Forwarded: for=192.0.2.60;proto=http;by=203.0.113.43, for=\"[2001:db8:cafe::17]:4711\"\r\n"+
			"X-Forwarded-For: 192.0.2.60, 10.0.0.1\r\nX-Real-IP: 192.0.2.60\r\n\r\n"), 0},
		{netip.AddrPortFrom(proxy6, 41002), backend6, 100, req("/b", "True-Client-IP: 198.51.100.7\r\nCF-Connecting-IP: 2001:db8::42\r\n\r\n"), 0},
		{from4(41003), backend4, 100, req("/c", "Forwarded: for=unknown, for=\"_hidden\", for=\"198.51.100.9:_p\"\r\nforwarded: For=198.51.100.10\r\n\r\n"), 0},
		{from4(41004), backend4, 100, d1, 0},
		{from4(41004), backend4, 100 + uint32(len(d1)), d2, 0},
		{from4(41004), backend4, 100 + uint32(len(d1)+len(d2)), "88\r\n\r\n", 0},
		{backend4, from4(41001), 900, "HTTP/1.1 200 OK\r\nX-Real-IP: 6.6.6.6\r\nContent-Length: 24\r\n\r\nForwarded: for=6.6.6.7\r\n", 0},
		{from4(41005), backend4, 100, fmt.Sprintf("POST /e HTTP/1.1\r\nHost: backend\r\nContent-Length: %d\r\n\r\n%s", len(body), body) +
			req("/f", "CF-Connecting-IP: 198.51.100.20\r\n\r\n"), 0},
		{from4(41006), backend4, 100, req("/g", "X-Forwarded-For: 203.0.113.99\r\nForwarded: for=203.0.113.99\r\n\r\n"), 0},
	}
	path := filepath.Join(t.TempDir(), "headers.pcap")
	writeSegments(t, path, segs)
	return path, []planted{
		{"192.0.2.60", xff.Forwarded, 0, 1}, {"2001:db8:cafe::17", xff.Forwarded, 1, 1},
		{"192.0.2.60", xff.XForwardedFor, 0, 1}, {"10.0.0.1", xff.XForwardedFor, 1, 1},
		{"192.0.2.60", xff.XRealIP, 0, 1},
		{"198.51.100.7", xff.TrueClientIP, 0, 2}, {"2001:db8::42", xff.CFConnectingIP, 0, 2},
		{"198.51.100.9", xff.Forwarded, 2, 3}, {"198.51.100.10", xff.Forwarded, 3, 3},
		{"203.0.113.77", xff.Forwarded, 0, 4}, // the name split across frames 4 and 5
		{"203.0.113.88", xff.XRealIP, 0, 5},   // the value split across frames 5 and 6
		{"198.51.100.20", xff.CFConnectingIP, 0, 8},
		{"203.0.113.99", xff.XForwardedFor, 0, 9}, {"203.0.113.99", xff.Forwarded, 0, 9},
	}
}

// TestOtherHeaders: every address of every forwarding header is indexed
// under its header, in the packet where its line starts, at its position in
// that header's list; decoys are not. Each row's 5-tuple and header value
// are tshark's for that frame (its http.request.line fields, one packet at a
// time). A search of X-Forwarded-For (the default) or of one header finds
// that header's rows only, and --client-only applies to the hit's header.
func TestOtherHeaders(t *testing.T) {
	path, want := headersCapture(t)
	store := buildIndex(t, path)
	frames := map[int64]int{}
	for i, off := range frameOffsets(t, path) {
		frames[off] = i + 1
	}
	all := prefixes("0.0.0.0/0", "::/0")
	key := func(addr string, h xff.Header, frame int) string {
		return fmt.Sprintf("%s %v frame %d", addr, h, frame)
	}

	res := search(t, store, query.Options{Prefixes: all, Headers: xff.AllHeaders})
	var got, exp []string
	for _, r := range res.Rows {
		got = append(got, key(r.XFFIP.String(), r.Header, frames[r.Offset]))
	}
	for _, p := range want {
		exp = append(exp, key(p.addr, p.h, p.frame))
	}
	slices.Sort(got)
	slices.Sort(exp)
	if !slices.Equal(got, exp) {
		t.Errorf("rows:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(exp, "\n  "))
	}

	// Positions, from the index.
	hits, _, err := store.Lookup(all, xff.AllHeaders)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range want {
		ok := slices.ContainsFunc(hits, func(h index.Hit) bool {
			return h.Addr.String() == p.addr && h.Header == p.h && frames[h.Offset] == p.frame && h.Pos == p.pos
		})
		if !ok {
			t.Errorf("%s: no hit at position %d", key(p.addr, p.h, p.frame), p.pos)
		}
	}

	// Against tshark: per frame it dissects as a request, its header lines.
	needTshark(t)
	ts := tsharkFields(t, path, "http.request", "ip.src", "ipv6.src", "tcp.srcport", "ip.dst", "ipv6.dst", "tcp.dstport", "http.request.line")
	checked := 0
	for _, r := range res.Rows {
		n := frames[r.Offset]
		f, ok := ts[n]
		if !ok {
			if n == 4 || n == 5 {
				// A header block that goes on in the next segment, and
				// its continuation: no request for tshark packet by packet.
				continue
			}
			t.Errorf("frame %d: not a request for tshark", n)
			continue
		}
		src, dst := f[0]+f[1], f[3]+f[4]
		if src != r.SrcIP.String() || dst != r.DstIP.String() || f[2] != fmt.Sprint(r.SrcPort) || f[5] != fmt.Sprint(r.DstPort) {
			t.Errorf("frame %d: 5-tuple %s:%d -> %s:%d, tshark %s:%s -> %s:%s", n, r.SrcIP, r.SrcPort, r.DstIP, r.DstPort, src, f[2], dst, f[5])
		}
		var values []string
		for _, line := range strings.Split(f[6], "|") {
			name, value, _ := strings.Cut(strings.TrimSuffix(line, `\r\n`), ":")
			if h, ok := xff.ParseHeader(name); ok && h == r.Header {
				values = append(values, strings.TrimSpace(value))
			}
		}
		// Pipelined requests: tshark lists the lines of all of them.
		if v := strings.Join(values, ", "); v != string(r.XFF) {
			t.Errorf("frame %d %v: value %q, tshark's lines %q", n, r.Header, r.XFF, v)
		}
		checked++
	}
	if checked < 10 {
		t.Errorf("only %d rows checked against tshark", checked)
	}
	// tshark sees no forwarding header in a frame without rows but frame 5
	// (the rest of a split line) and the response and body decoys.
	for n, f := range ts {
		has := false
		for _, line := range strings.Split(f[6], "|") {
			name, _, _ := strings.Cut(line, ":")
			if _, ok := xff.ParseHeader(name); ok {
				has = true
			}
		}
		if has && !slices.ContainsFunc(want, func(p planted) bool { return p.frame == n }) {
			t.Errorf("frame %d: tshark shows a forwarding header, xffidx indexed none", n)
		}
	}

	// The default searches X-Forwarded-For alone; --header one header.
	for _, c := range []struct {
		set  xff.HeaderSet
		name string
	}{{0, "default"}, {xff.SetOf(xff.Forwarded), "Forwarded"}, {xff.SetOf(xff.XRealIP, xff.CFConnectingIP), "X-Real-IP+CF-Connecting-IP"}} {
		rows := search(t, store, query.Options{Prefixes: all, Headers: c.set}).Rows
		set := c.set
		if set == 0 {
			set = xff.SetOf(xff.XForwardedFor)
		}
		n := 0
		for _, p := range want {
			if set.Has(p.h) {
				n++
			}
		}
		if len(rows) != n || slices.ContainsFunc(rows, func(r query.Row) bool { return !set.Has(r.Header) }) {
			t.Errorf("%s: %d rows, want %d of its headers", c.name, len(rows), n)
		}
	}

	// --client-only reads the hit's header: the right-most Forwarded for=
	// of /a is 2001:db8:cafe::17; 192.0.2.60 is the client in X-Real-IP
	// and X-Forwarded-For (10.0.0.1 trusted), not in Forwarded.
	for _, c := range []struct {
		addr    string
		set     xff.HeaderSet
		trusted []netip.Prefix
		rows    int
	}{
		{"2001:db8:cafe::17", xff.SetOf(xff.Forwarded), nil, 1},
		{"192.0.2.60", xff.SetOf(xff.Forwarded), nil, 0},
		{"192.0.2.60", xff.SetOf(xff.XRealIP), nil, 1},
		{"192.0.2.60", xff.SetOf(xff.XForwardedFor), prefixes("10.0.0.0/8"), 1},
		{"192.0.2.60", xff.AllHeaders, prefixes("10.0.0.0/8"), 2},
		{"198.51.100.10", xff.SetOf(xff.Forwarded), nil, 1},
		{"198.51.100.9", xff.SetOf(xff.Forwarded), nil, 0},
	} {
		rows := search(t, store, query.Options{Prefixes: prefixes(c.addr), Headers: c.set, ClientOnly: true, Trusted: c.trusted}).Rows
		if len(rows) != c.rows {
			t.Errorf("--client-only %s in %b: %d rows, want %d", c.addr, c.set, len(rows), c.rows)
		}
	}
}

// TestOtherHeadersCorpus: on every public corpus capture, the addresses in
// the other forwarding headers of each request tshark dissects (packet by
// packet) are exactly the rows of a search of those headers.
func TestOtherHeadersCorpus(t *testing.T) {
	needTshark(t)
	dir := corpusDir(t)
	captures, _ := filepath.Glob(filepath.Join(dir, "*.pcap*"))
	others := xff.AllHeaders &^ xff.SetOf(xff.XForwardedFor)
	total := 0
	for _, path := range captures {
		frames := map[int64]int{}
		for i, off := range frameOffsets(t, path) {
			frames[off] = i + 1
		}
		var want []string
		for n, f := range tsharkFields(t, path, "http.request", "http.request.line") {
			for _, line := range strings.Split(f[0], "|") {
				name, value, _ := strings.Cut(strings.TrimSuffix(line, `\r\n`), ":")
				h, ok := xff.ParseHeader(name)
				if !ok || !others.Has(h) {
					continue
				}
				seen := map[string]bool{}
				h.Elements([]byte(strings.TrimSpace(value)), false, func(e []byte) {
					if a, ok := xff.ParseAddr(e); ok && !seen[a.String()] {
						seen[a.String()] = true
						want = append(want, fmt.Sprintf("%s %v frame %d", a, h, n))
					}
				})
			}
		}
		store := buildIndex(t, path)
		var got []string
		for _, r := range search(t, store, query.Options{Prefixes: prefixes("0.0.0.0/0", "::/0"), Headers: others}).Rows {
			got = append(got, fmt.Sprintf("%s %v frame %d", r.XFFIP, r.Header, frames[r.Offset]))
		}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s:\n  got  %q\n  want %q", filepath.Base(path), got, want)
		}
		total += len(got)
	}
	if total == 0 {
		t.Error("no other forwarding header in the corpus: the test tests nothing")
	}
	t.Logf("%d rows of other headers in %d captures", total, len(captures))
}

// TestHeaderEdgeCases: a header name split in the second of two pipelined
// requests starts that request's list; an obs-fold line continues the
// value it folds (Forwarded elements and positions run across it); a value
// joined across segments past the index's cap on values loses its last
// element rather than indexing a prefix of it as an address.
func TestHeaderEdgeCases(t *testing.T) {
	proxy := netip.MustParseAddr("10.0.0.2")
	backend := netip.AddrPortFrom(netip.MustParseAddr("10.0.1.5"), 8080)
	from := func(port uint16) netip.AddrPort { return netip.AddrPortFrom(proxy, port) }
	req := func(path, rest string) string { return "GET " + path + " HTTP/1.1\r\nHost: backend\r\n" + rest }
	p1 := req("/p1", "X-Real-IP: 192.0.2.1\r\n\r\n") + req("/p2", "Accept: x\r\nX-Real-")
	// Longer than what a carried line keeps (xff.MaxValue + 64 bytes):
	// shorter, the line is joined whole and its last address found.
	long := req("/long", "X-Real-IP: "+strings.Repeat("a", 4081)+", "+strings.Repeat("b", 100)+", 198.51.1")
	segs := []seg{
		{from(42001), backend, 100, p1, 0},
		{from(42001), backend, 100 + uint32(len(p1)), "IP: 192.0.2.2\r\n\r\n", 0},
		{from(42002), backend, 100, req("/fold", "Forwarded: for=192.0.2.3;\r\n proto=http, for=192.0.2.4\r\nX-Forwarded-For: 192.0.2.5,\r\n\t192.0.2.6\r\n\r\n"), 0},
		{from(42003), backend, 100, long, 0},
		{from(42003), backend, 100 + uint32(len(long)), "00.123\r\n\r\n", 0},
	}
	path := filepath.Join(t.TempDir(), "edge.pcap")
	writeSegments(t, path, segs)
	store := buildIndex(t, path)
	frames := map[int64]int{}
	for i, off := range frameOffsets(t, path) {
		frames[off] = i + 1
	}
	hits, files, err := store.Lookup(prefixes("0.0.0.0/0", "::/0"), xff.AllHeaders)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, h := range hits {
		got = append(got, fmt.Sprintf("%s %v frame %d pos %d", h.Addr, h.Header, frames[h.Offset], h.Pos))
	}
	want := []string{
		"192.0.2.1 X-Real-IP frame 1 pos 0",
		"192.0.2.2 X-Real-IP frame 1 pos 0",
		"192.0.2.3 Forwarded frame 3 pos 0",
		"192.0.2.4 Forwarded frame 3 pos 1",
		"192.0.2.5 X-Forwarded-For frame 3 pos 0",
		"192.0.2.6 X-Forwarded-For frame 3 pos 1",
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("hits:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	if len(files) != 1 || files[0].NonAddresses != 1 {
		t.Errorf("non-address elements: %+v, want 1 (the long junk)", files)
	}
	// The query puts 192.0.2.2 in the request whose list holds it.
	rows := search(t, store, query.Options{Prefixes: prefixes("192.0.2.2"), Headers: xff.AllHeaders}).Rows
	if len(rows) != 1 || string(rows[0].Path) != "/p2" {
		t.Errorf("192.0.2.2: rows %+v, want one in /p2", rows)
	}
}

// TestFewerHeadersNoted: a capture whose catalog entry says it was indexed
// for X-Forwarded-For alone (by an older xffidx) is listed by a search of
// other headers, and not by the default search.
func TestFewerHeadersNoted(t *testing.T) {
	path, _ := headersCapture(t)
	store := buildIndex(t, path)
	files, err := store.Catalog()
	if err != nil || len(files) != 1 {
		t.Fatal(files, err)
	}
	all := prefixes("0.0.0.0/0", "::/0")
	if res := search(t, store, query.Options{Prefixes: all, Headers: xff.AllHeaders}); len(res.FewerHeaders) != 0 {
		t.Errorf("a current index notes %q", res.FewerHeaders)
	}
	files[0].Headers = 0
	if err := store.Update(files[0]); err != nil {
		t.Fatal(err)
	}
	if res := search(t, store, query.Options{Prefixes: all}); len(res.FewerHeaders) != 0 {
		t.Errorf("the default search notes %q", res.FewerHeaders)
	}
	res := search(t, store, query.Options{Prefixes: all, Headers: xff.SetOf(xff.XRealIP)})
	if !slices.Equal(res.FewerHeaders, []string{path}) {
		t.Errorf("--header X-Real-IP notes %q, want %s", res.FewerHeaders, path)
	}
	top, err := query.Top(store, query.TopOptions{N: 3, Headers: xff.AllHeaders})
	if err != nil || !slices.Equal(top.FewerHeaders, []string{path}) {
		t.Errorf("top --header all notes %q (%v)", top.FewerHeaders, err)
	}
}
