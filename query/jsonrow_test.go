package query

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/xffidx/xffidx/format/xff"
)

// referenceJSONRow is how RowWriter encoded a row with encoding/json.
func referenceJSONRow(r Row, header, sensor string) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.Encode(jsonRow{
		XFFIP: r.XFFIP.String(), XFF: Sanitize(r.XFF, uncapped), File: Sanitize([]byte(r.File), uncapped), Offset: r.Offset,
		TS: FormatTS(r.TS, r.TSDigit), SrcIP: r.SrcIP.String(), SrcPort: r.SrcPort,
		DstIP: r.DstIP.String(), DstPort: r.DstPort, Proto: r.Proto,
		Method: Sanitize(r.Method, uncapped), Host: Sanitize(r.Host, uncapped), Path: Sanitize(r.Path, uncapped),
		Header: header, Sensor: Sanitize([]byte(sensor), uncapped),
	})
	return buf.Bytes()
}

// TestJSONRowEqualsEncodingJSON: the appended NDJSON line is byte for byte
// encoding/json's, on hostile text (controls, quotes, backslashes, HTML
// characters, bidi and line separators, bytes that are not UTF-8), every
// timestamp precision, IPv4, IPv6 and zero addresses, with and without
// header and sensor.
func TestJSONRowEqualsEncodingJSON(t *testing.T) {
	pieces := []string{"203.0.113.7", ", ", `"`, `\`, "\x00", "\n", "\t", "\x1b[31m", "\x7f", "<a href='x'>&amp;", "\u2028", "\u2029", "\u202e", "é", "日本", "\xff", "\xe2\x80", "=HYPERLINK(", "/path/to file.pcap"}
	text := func(rng *rand.Rand) []byte {
		var b []byte
		for range rng.IntN(6) {
			b = append(b, pieces[rng.IntN(len(pieces))]...)
		}
		return b
	}
	addrs := []netip.Addr{{}, netip.MustParseAddr("203.0.113.7"), netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("::ffff:192.0.2.1")}
	rng := rand.New(rand.NewPCG(3, 4))
	var j jsonWriter
	for i := range 5000 {
		r := Row{
			XFFIP: addrs[rng.IntN(len(addrs))], XFF: text(rng), File: string(text(rng)), Offset: rng.Int64N(1 << 40),
			TSDigit:   rng.IntN(11),
			FiveTuple: FiveTuple{SrcIP: addrs[rng.IntN(len(addrs))], SrcPort: uint16(rng.IntN(65536)), DstIP: addrs[rng.IntN(len(addrs))], DstPort: uint16(rng.IntN(65536)), Proto: []string{"tcp", ""}[rng.IntN(2)]},
			Request:   Request{Method: text(rng), Host: text(rng), Path: text(rng)},
		}
		if rng.IntN(5) > 0 {
			r.TS = time.Unix(rng.Int64N(4e9), rng.Int64N(1e9)).In(time.FixedZone("x", 3600))
		}
		header, sensor := "", ""
		if i%3 == 0 {
			header = xff.Header(rng.IntN(int(xff.NumHeaders))).String()
		}
		if i%4 == 0 {
			sensor = string(text(rng))
		}
		got, want := j.row(&r, header, sensor), referenceJSONRow(r, header, sensor)
		if !bytes.Equal(got, want) {
			t.Fatalf("row %d:\n got %s\nwant %s", i, got, want)
		}
	}
}
