package stream

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/xffidx/xffidx/format/capgen"
	"github.com/xffidx/xffidx/format/xff"
)

// TestListCapHolds: a request whose header block holds thousands of
// forwarding lines, over hundreds of segments (each cut inside a header
// name: capgen.PartialName), keeps each list within xff.MaxValue: a
// capped list takes no more separators either, so the request records
// written for each of its records stay small.
func TestListCapHolds(t *testing.T) {
	c := newCapture()
	cli := endpoint{netip.MustParseAddr("10.0.0.2"), 40000}
	srv := endpoint{netip.MustParseAddr("10.0.1.8"), 80}
	seq := uint32(1000)
	c.frame(1e18, cli, srv, seq, flagSYN, nil, 0)
	seq++
	for k := range 300 {
		p, _, err := capgen.PartialSegment(nil, capgen.PartialName, k, k)
		if err != nil {
			t.Fatal(err)
		}
		c.frame(1e18+int64(k), cli, srv, seq, flagACK|0x08, p, 0)
		seq += uint32(len(p))
	}
	out := sequential(c.records(t), Options{})
	if len(out.Requests) == 0 || out.Counts.XFFLines < 10000 {
		t.Fatalf("%d request records, %d XFF lines", len(out.Requests), out.Counts.XFFLines)
	}
	for _, r := range out.Requests {
		if l := len(r.Lists[xff.XForwardedFor]); l > xff.MaxValue || !r.Capped.Has(xff.XForwardedFor) {
			t.Fatalf("record %d: list of %d bytes (capped %v), want at most %d", r.Off, l, r.Capped.Has(xff.XForwardedFor), xff.MaxValue)
		}
	}
}

// TestManyAddressesInOneRecord: a record of thousands of addresses (past
// the few a record's addresses are searched linearly for) gives each
// address once per header, at the position of its first element, whatever
// the repeats and however they mix with another header.
func TestManyAddressesInOneRecord(t *testing.T) {
	var b strings.Builder
	b.WriteString("GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: ")
	const n = 1200 // 30 KB: one IPv4 packet
	addr := func(i int) string { return fmt.Sprintf("10.%d.%d.%d", i>>16, (i>>8)&255, i&255) }
	for i := range n {
		fmt.Fprintf(&b, "%s, %s, ", addr(i), addr(i/2))
	}
	b.WriteString("192.0.2.1\r\nX-Real-IP: 10.0.0.7\r\nX-Forwarded-For: 10.0.0.7, 192.0.2.2\r\n\r\n")
	c := newCapture()
	cli := endpoint{netip.MustParseAddr("10.0.0.2"), 40000}
	srv := endpoint{netip.MustParseAddr("10.0.1.8"), 80}
	c.frame(1e18, cli, srv, 1, flagACK|0x08, []byte(b.String()), 0)
	out := sequential(c.records(t), Options{})

	// What one hit per address and header means, computed plainly.
	type key struct {
		a netip.Addr
		h xff.Header
	}
	var want []string
	first := map[key]bool{}
	add := func(s string, h xff.Header, pos int) {
		k := key{netip.MustParseAddr(s), h}
		if !first[k] {
			first[k] = true
			want = append(want, fmt.Sprintf("%v %v %d", k.a, h, pos))
		}
	}
	pos := 0
	for i := range n {
		add(addr(i), xff.XForwardedFor, pos)
		add(addr(i/2), xff.XForwardedFor, pos+1)
		pos += 2
	}
	add("192.0.2.1", xff.XForwardedFor, pos)
	add("10.0.0.7", xff.XRealIP, 0)
	add("10.0.0.7", xff.XForwardedFor, pos+1)
	add("192.0.2.2", xff.XForwardedFor, pos+2)
	var got []string
	for _, h := range out.Hits {
		got = append(got, fmt.Sprintf("%v %v %d", h.Addr, h.Header, h.Pos))
	}
	if !slices.Equal(got, want) {
		t.Errorf("%d hits, want %d; first difference at %d", len(got), len(want), firstDifference(got, want))
	}
}

func firstDifference(a, b []string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
