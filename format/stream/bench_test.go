package stream

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/xffidx/xffidx/format"
)

// BenchmarkRequests: one keep-alive connection sending small requests, each
// in one segment, as bulk proxy traffic does; per request.
func BenchmarkRequests(b *testing.B) {
	for _, withXFF := range []bool{false, true} {
		name := "plain"
		req := "GET /api/v1/items HTTP/1.1\r\nHost: 10.0.1.8\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\nX-Forwarded-Proto: https\r\nConnection: keep-alive\r\n\r\n"
		if withXFF {
			name = "xff"
			req = "GET /api/v1/items HTTP/1.1\r\nHost: 10.0.1.8\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\nX-Forwarded-For: 192.0.2.194\r\nX-Forwarded-Proto: https\r\nConnection: keep-alive\r\n\r\n"
		}
		b.Run(name, func(b *testing.B) {
			c := newCapture()
			cli := endpoint{netip.MustParseAddr("10.0.0.2"), 40000}
			srv := endpoint{netip.MustParseAddr("10.0.1.8"), 80}
			seq := uint32(1000)
			c.frame(1e18, cli, srv, seq, flagSYN, nil, 0)
			seq++
			const n = 1000
			for i := range n {
				c.frame(1e18+int64(i), cli, srv, seq, flagACK|0x08, []byte(req), 0)
				seq += uint32(len(req))
			}
			recs := c.records(b)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				t := New(Options{})
				for i := range recs {
					t.Record(&recs[i], recs[i].Offset+int64(recs[i].DataOff))
				}
				t.Drain()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/request")
		})
	}
}

var _ format.Record

// BenchmarkServerSide: the server's side of a followed connection, the
// bulk of the packets: per packet.
func BenchmarkServerSide(b *testing.B) {
	c := newCapture()
	cli := endpoint{netip.MustParseAddr("10.0.0.2"), 40000}
	srv := endpoint{netip.MustParseAddr("10.0.1.8"), 80}
	c.frame(1e18, cli, srv, 1000, flagSYN, nil, 0)
	c.frame(1e18, srv, cli, 5000, flagACK, make([]byte, 1448), 0)
	recs := c.records(b)
	t := New(Options{})
	t.Record(&recs[0], recs[0].Offset+int64(recs[0].DataOff))
	r := &recs[1]
	pos := r.Offset + int64(r.DataOff)
	for b.Loop() {
		t.Record(r, pos)
	}
}

// BenchmarkAddressesPerRecord: one record whose X-Forwarded-For line lists
// n distinct addresses, each twice; per address. The cost per address
// must not grow with n (one hit per address and record is decided in
// constant time).
func BenchmarkAddressesPerRecord(b *testing.B) {
	for _, n := range []int{10, 100, 1000, 2500} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			var sb strings.Builder
			sb.WriteString("GET / HTTP/1.1\r\nX-Forwarded-For: ")
			for i := range n {
				fmt.Fprintf(&sb, "10.0.%d.%d, 10.0.%d.%d, ", i>>8, i&255, i>>8, i&255)
			}
			sb.WriteString("192.0.2.1\r\n\r\n")
			c := newCapture()
			cli := endpoint{netip.MustParseAddr("10.0.0.2"), 40000}
			srv := endpoint{netip.MustParseAddr("10.0.1.8"), 80}
			seq := uint32(1000)
			c.frame(1e18, cli, srv, seq, flagSYN, nil, 0)
			seq++
			for i := range 20 {
				c.frame(1e18+int64(i), cli, srv, seq, flagACK|0x08, []byte(sb.String()), 0)
				seq += uint32(sb.Len())
			}
			recs := c.records(b)
			t := New(Options{})
			b.ReportAllocs()
			for b.Loop() {
				for i := range recs {
					t.Record(&recs[i], recs[i].Offset+int64(recs[i].DataOff))
				}
				t.Drain()
				// The connection goes on: the next loop's segments are
				// retransmissions unless it starts again.
				t = New(Options{})
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*20*2*n), "ns/address")
		})
	}
}
