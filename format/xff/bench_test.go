package xff

import (
	"math/rand/v2"
	"testing"
)

// BenchmarkIndexNameBinary is the build's per-packet filter over packets of
// random (compressed, encrypted) payload, the bulk of real captures.
func BenchmarkIndexNameBinary(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 1))
	pkt := make([]byte, 1514)
	for i := range pkt {
		pkt[i] = byte(rng.Uint32())
	}
	b.SetBytes(int64(len(pkt)))
	b.ReportAllocs()
	for b.Loop() {
		if IndexName(pkt) >= 0 {
			b.Fatal("found")
		}
	}
}

// BenchmarkIndexNameText: a text payload full of '-' (HTML, headers).
func BenchmarkIndexNameText(b *testing.B) {
	pkt := []byte("HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nX-Content-Type-Options: nosniff\r\nCache-Control: max-age=0\r\n\r\n<html><head><meta http-equiv=\"X-UA-Compatible\" content=\"IE=edge\"><link rel=\"stylesheet\" href=\"/a-b-c.css\"></head><body class=\"page-main has-side-bar\">")
	for len(pkt) < 1400 {
		pkt = append(pkt, "<div class=\"x-y-z item-list-entry\">---</div>"...)
	}
	b.SetBytes(int64(len(pkt)))
	b.ReportAllocs()
	for b.Loop() {
		if IndexName(pkt) >= 0 {
			b.Fatal("found")
		}
	}
}

// BenchmarkScanRequest parses a typical proxied request and its elements.
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
