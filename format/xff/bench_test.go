package xff

import "testing"

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
