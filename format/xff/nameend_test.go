package xff

import (
	"bytes"
	"math/rand/v2"
	"strings"
	"testing"
)

func TestIndexNameEnd(t *testing.T) {
	const req = "GET / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n"
	tests := []struct {
		in   string
		want int // index of the colon, or -1
	}{
		{"", -1},
		{"r", -1},
		{"-ip:", -1},
		{"ed:", -1},
		{"-for", -1},
		{"--ip:", 4},
		{"-for:", 4},
		{"xed:", -1},
		{"xxed:", 4},
		{"xxED:", 4},
		{"-xxR:", 4},
		{"x-xP:", 4},
		{"-for:-", 4},
		{"-for;", -1},
		{"-fo:r", -1},
		{"-forr:", -1},
		{"-fop:", -1},
		{"--ir:", 4},
		{"x-xr:", -1},
		{"-xxp:", -1},
		{"xe-d:", -1},
		{"xxee:", -1},
		{"\x0dxxr:", -1},
		{"x\x0dxp:", -1},
		{"xxEd:", 4},
		{"xx\x45d:", 4},
		{"xx\xc5d:", -1},
		{"-xx\xd2:", -1},
		{"-xx\xf2:", -1},

		{req + "X-Forwarded-For: 1.2.3.4\r\n", len(req) + 15},
		{req + "x-forwarded-for: 1.2.3.4\r\n", len(req) + 15},
		{req + "X-FORWARDED-FOR: 1.2.3.4\r\n", len(req) + 15},
		{req + "x-FoRwArDeD-fOr: 1.2.3.4\r\n", len(req) + 15},
		{req + "Forwarded: for=1.2.3.4\r\n", len(req) + 9},
		{req + "forwarded: for=1.2.3.4\r\n", len(req) + 9},
		{req + "FORWARDED: for=1.2.3.4\r\n", len(req) + 9},
		{req + "fOrWaRdEd: for=1.2.3.4\r\n", len(req) + 9},
		{req + "X-Real-IP: 1.2.3.4\r\n", len(req) + 9},
		{req + "x-real-ip: 1.2.3.4\r\n", len(req) + 9},
		{req + "X-REAL-IP: 1.2.3.4\r\n", len(req) + 9},
		{req + "x-Real-Ip: 1.2.3.4\r\n", len(req) + 9},
		{req + "True-Client-IP: 1.2.3.4\r\n", len(req) + 14},
		{req + "true-client-ip: 1.2.3.4\r\n", len(req) + 14},
		{req + "TRUE-CLIENT-IP: 1.2.3.4\r\n", len(req) + 14},
		{req + "tRUE-cLIENT-iP: 1.2.3.4\r\n", len(req) + 14},
		{req + "CF-Connecting-IP: 1.2.3.4\r\n", len(req) + 16},
		{req + "cf-connecting-ip: 1.2.3.4\r\n", len(req) + 16},
		{req + "CF-CONNECTING-IP: 1.2.3.4\r\n", len(req) + 16},
		{req + "Cf-cOnNeCtInG-iP: 1.2.3.4\r\n", len(req) + 16},
		// Names without the endings, inside a long enough text to take the
		// vector path.
		{req + "Content-Type: text/plain\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: a\r\nUser-Agent: b\r\n\r\n", -1},
		{req + "Via: 1.1 proxy\r\nX-Forwarded For: 1.2.3.4\r\nReal-IP : 1.2.3.4\r\n\r\n", -1},
		{`{"id": 1, "name": "a-b", "url": "http://x-y.example/", "ip": "10.0.0.1", "for": 1}`, -1},
		{"color: red; margin-top: 0; font-family: x; border-top: 1px; padding:0", -1},
		// A prefilter: other names with the same ending are found too.
		{req + "Last-Modified: Tue, 01 Jan 2030 00:00:00 GMT\r\n", len(req) + 13},
		{req + "Content-Type: a\r\nX-Original-Forwarded-For: 1.2.3.4\r\n", len(req) + 17 + 24},
		{req + "Content-Type: a\r\nX-Client-IP: 1.2.3.4\r\n", len(req) + 17 + 11},
		{"margin-left: 0; transform-origin: 0; padding-for: 1", 48},
		// The first of several.
		{"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx-ip: forwarded: x-real-ip: x-forwarded-for:", 36},
	}
	for _, tt := range tests {
		want := tt.want
		if want >= 0 {
			if tt.in[want] != ':' {
				t.Fatalf("%q: bad test, byte %d is %q", tt.in, want, tt.in[want])
			}
			want -= nameEndSpan - 1
		}
		b := []byte(tt.in)
		if got := indexNameEndGeneric(b); got != want {
			t.Errorf("indexNameEndGeneric(%q) = %d, want %d", tt.in, got, want)
		}
		if got := indexNameEnd(b); got != want {
			t.Errorf("indexNameEnd(%q) = %d, want %d", tt.in, got, want)
		}
		// The same at the very start and at the very end of a long input
		// of filler, where the vector paths see it.
		for _, n := range []int{1, 27, 31, 32, 33, 59, 63, 64, 65, 100, 127, 128, 129, 300} {
			fill := strings.Repeat("a", n)
			if tt.want >= 0 {
				end := tt.want + 1
				in := []byte(fill + tt.in[:end])
				if got := indexNameEnd(in); got != n+want {
					t.Errorf("indexNameEnd(%q) = %d, want %d", in, got, n+want)
				}
				in = []byte(tt.in[:end] + fill)
				if got := indexNameEnd(in); got != want {
					t.Errorf("indexNameEnd(%q) = %d, want %d", in, got, want)
				}
			} else {
				// The filler may complete a short ending ("a" + "ed:").
				in := []byte(fill + tt.in + fill)
				if got, want := indexNameEnd(in), indexNameEndGeneric(in); got != want {
					t.Errorf("indexNameEnd(%q) = %d, want %d", in, got, want)
				}
			}
		}
	}
}

// TestIndexNameEndShort tries every input of up to 6 bytes over an alphabet
// that can spell all the endings.
func TestIndexNameEndShort(t *testing.T) {
	const alphabet = "-:rRpPeEdDx"
	var b []byte
	var try func()
	try = func() {
		if got, want := indexNameEnd(b), indexNameEndGeneric(b); got != want {
			t.Fatalf("indexNameEnd(%q) = %d, want %d", b, got, want)
		}
		if len(b) == 6 {
			return
		}
		for i := range len(alphabet) {
			b = append(b, alphabet[i])
			try()
			b = b[:len(b)-1]
		}
	}
	try()
}

// plantNameEnds fills b with random bytes and then, at a density of about
// one in density bytes, with the bytes the endings are made of, so that
// matches (and near misses) occur at every alignment.
func plantNameEnds(rng *rand.Rand, b []byte, density int) {
	const planted = "-:rRpPeEdD"
	for i := range b {
		if rng.IntN(density) == 0 {
			b[i] = planted[rng.IntN(len(planted))]
		} else {
			b[i] = byte(rng.Uint32())
		}
	}
	// A full ending somewhere, sometimes at the last position.
	if len(b) >= nameEndSpan && rng.IntN(2) == 0 {
		endings := []string{"-for:", "-xxr:", "x-ip:", "x-xP:", "xxed:", "xxED:"}
		e := endings[rng.IntN(len(endings))]
		at := len(b) - nameEndSpan
		if rng.IntN(2) == 0 {
			at = rng.IntN(len(b) - nameEndSpan + 1)
		}
		copy(b[at:], e)
	}
}

func TestIndexNameEndAgainstGeneric(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	check := func(b []byte) {
		t.Helper()
		if got, want := indexNameEnd(b), indexNameEndGeneric(b); got != want {
			t.Fatalf("indexNameEnd(%q) = %d, want %d", b, got, want)
		}
	}
	lengths := []int{}
	for n := 0; n <= 300; n++ {
		lengths = append(lengths, n)
	}
	lengths = append(lengths, 511, 512, 513, 1500, 1514, 4095, 4096, 4097, 5000)
	for _, n := range lengths {
		b := make([]byte, n)
		for _, density := range []int{2, 4, 16} {
			for range 40 {
				plantNameEnds(rng, b, density)
				check(b)
			}
		}
		// One ending at every position of a buffer that has none
		// elsewhere, and a lone near miss before it.
		for at := 0; at+nameEndSpan <= n && n <= 300; at++ {
			for i := range b {
				b[i] = 'a'
			}
			if at > 2 {
				copy(b[at-3:], "-x:")
			}
			copy(b[at:], []string{"-for:", "x-ip:", "xxed:"}[at%3])
			check(b)
		}
	}
	// Every alignment of the start of the slice.
	buf := make([]byte, 64+400)
	for range 200 {
		plantNameEnds(rng, buf, 8)
		for off := range 64 {
			for _, n := range []int{0, 4, 5, 31, 36, 37, 67, 68, 69, 100, 400} {
				check(buf[off : off+n])
			}
		}
	}
}

// TestIndexNameEndNoOverread ends the input just before the colon that would
// complete a match: a read past len(b) finds it.
func TestIndexNameEndNoOverread(t *testing.T) {
	for n := 0; n < 200; n++ {
		for _, tail := range []string{"-for", "x-ip", "xxed", "-xxr", "xed", "ed", "d", "-fo"} {
			if len(tail) > n {
				continue
			}
			buf := []byte(strings.Repeat("a", n-len(tail)) + tail + ":-for:" + strings.Repeat("-", 64))
			b := buf[:n]
			if got := indexNameEnd(b); got != -1 {
				t.Fatalf("indexNameEnd(%q) = %d, want -1", b, got)
			}
		}
	}
}

func FuzzIndexNameEnd(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\nX-Forwarded-For: 1.2.3.4\r\n"))
	f.Add([]byte("--ip:"))
	f.Add([]byte(strings.Repeat("x", 60) + "ed:"))
	f.Add(bytes.Repeat([]byte("-:rRpPeEdD"), 20))
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := indexNameEnd(b), indexNameEndGeneric(b); got != want {
			t.Fatalf("indexNameEnd(%q) = %d, want %d", b, got, want)
		}
	})
}

// benchBinary is a packet of random (compressed, encrypted) payload, the
// bulk of real captures; it holds no name ending.
func benchBinary(b *testing.B) []byte {
	rng := rand.New(rand.NewPCG(1, 1))
	pkt := make([]byte, 1514)
	for i := range pkt {
		pkt[i] = byte(rng.Uint32())
	}
	if i := indexNameEndGeneric(pkt); i >= 0 {
		b.Fatalf("binary payload has a name ending at %d", i)
	}
	return pkt
}

// benchText is a response carrying HTML, CSS and JSON, full of '-' and ':';
// it holds no name ending.
func benchText(b *testing.B) []byte {
	pkt := []byte("HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nCache-Control: max-age=0\r\nX-Frame-Options: deny\r\n\r\n")
	pkt = append(pkt, "<html><head><style>body { color: red; margin-top: 0; font-family: x; } .a-b { border: 1px; line-height: 1.5; }</style></head>"...)
	for len(pkt) < 1400 {
		pkt = append(pkt, `<div class="item" data-id="7" style="color: red; margin-top: 0; font-family: x;">{"id": 1, "name": "a-b", "tags": ["c", "d"], "url": "http://a.example/x"}</div>`...)
	}
	if i := indexNameEndGeneric(pkt); i >= 0 {
		b.Fatalf("text payload has a name ending at %d: %q", i, pkt[i:i+nameEndSpan])
	}
	return pkt
}

func benchIndex(b *testing.B, pkt []byte, index func([]byte) int) {
	b.SetBytes(int64(len(pkt)))
	b.ReportAllocs()
	for b.Loop() {
		if index(pkt) >= 0 {
			b.Fatal("found")
		}
	}
}

func BenchmarkIndexNameEndBinary(b *testing.B) { benchIndex(b, benchBinary(b), indexNameEnd) }
func BenchmarkIndexNameEndText(b *testing.B)   { benchIndex(b, benchText(b), indexNameEnd) }
