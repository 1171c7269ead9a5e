package stream

import (
	"net/netip"
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
