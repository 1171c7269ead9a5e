package xff

import (
	"testing"
	"time"

	"github.com/xffidx/xffidx/format/capgen"
)

// BenchmarkScanRequest: one request header block scanned and its elements
// parsed, as the query does for a hit packet.
func BenchmarkScanRequest(b *testing.B) {
	payload := []byte("GET /api/v1/items?id=42 HTTP/1.1\r\nHost: backend.internal:8080\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\nAccept: */*\r\nX-Forwarded-For: 203.0.113.7, 2001:db8::1, 10.0.0.2\r\nX-Forwarded-Proto: https\r\nX-Real-IP: 203.0.113.7\r\n\r\n")
	var lines []Line
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	for b.Loop() {
		res := ScanRequests(payload, lines[:0])
		lines = res.Lines
		for _, l := range lines {
			Elements(l.Value, false, func(e []byte) { ParseAddr(e) })
		}
	}
}

// BenchmarkScanHostile scans, as the query does for a packet alone, client
// segments built to be costly (capgen.PartialSegment: a segment that ends
// in a header name prefix, one that ends in an open value, one of
// thousands of names cut short or look-alikes, one of 5000 addresses) and,
// as the reference, a segment of ordinary request header blocks, side by
// side, and reports each one's MB/s and its ratio to the reference.
func BenchmarkScanHostile(b *testing.B) {
	normal := []byte("GET /api/v1/items?id=42 HTTP/1.1\r\nHost: backend.internal:8080\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\nAccept: */*\r\nX-Forwarded-For: 203.0.113.7, 2001:db8::1, 10.0.0.2\r\nX-Forwarded-Proto: https\r\nX-Real-IP: 203.0.113.7\r\n\r\n")
	names := []string{capgen.PartialName, capgen.PartialValue, capgen.ManyNames, capgen.ManyAddrs, "normal"}
	payloads := make([][]byte, len(names))
	for i, k := range names[:len(names)-1] {
		// The first segment of a connection, and one that continues it.
		for seg := range 2 {
			p, _, err := capgen.PartialSegment(nil, k, seg, seg)
			if err != nil {
				b.Fatal(err)
			}
			payloads[i] = append(payloads[i], p...)
			if seg == 0 && k != capgen.ManyAddrs && k != capgen.ManyNames {
				break // one segment: continuing it is the tracker's job
			}
		}
	}
	for len(payloads[len(names)-1]) < 1400 {
		payloads[len(names)-1] = append(payloads[len(names)-1], normal...)
	}
	var res Result
	took := make([]time.Duration, len(names))
	for b.Loop() {
		for i, p := range payloads {
			start := time.Now()
			for range 100 {
				Scan(&res, p, false)
				for _, l := range res.Lines {
					l.Header.Elements(l.Value, l.Cut, func(e []byte) { ParseAddr(e) })
				}
			}
			took[i] += time.Since(start)
		}
	}
	mbps := func(i int) float64 {
		return float64(len(payloads[i])) * 100 * float64(b.N) / 1e6 / took[i].Seconds()
	}
	ref := len(names) - 1
	for i, n := range names {
		b.ReportMetric(mbps(i), n+"-MB/s")
		if i != ref {
			b.ReportMetric(mbps(i)/mbps(ref), n+"/normal")
		}
	}
}
