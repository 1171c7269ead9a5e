package query

import (
	"bytes"
	"fmt"
	"net/netip"
	"testing"

	"github.com/xffidx/xffidx/format"
	"github.com/xffidx/xffidx/format/capgen"
	"github.com/xffidx/xffidx/format/xff"
)

// TestParseRequestsMatchesScanner: the query's request parser finds the
// same XFF lines, numbered into the same requests, and the same open/cut
// state as format/xff's scanner, on every TCP payload of synthetic captures
// with every variant (pipelining, bodies, splits, decoys), from a request
// start and as a header continuation.
func TestParseRequestsMatchesScanner(t *testing.T) {
	compared := 0
	for _, cfg := range []capgen.Config{
		{Seed: 61, Variants: true, TargetBytes: 1 << 20, Format: capgen.FormatPcap, LinkType: capgen.LinkEthernet},
		{Seed: 62, Variants: true, TargetBytes: 1 << 20, Format: capgen.FormatPcap, LinkType: capgen.LinkEthernet, SnapLen: 200},
	} {
		var buf bytes.Buffer
		if _, err := capgen.Write(&buf, cfg); err != nil {
			t.Fatal(err)
		}
		data := buf.Bytes()
		w := format.Walker{Kind: format.KindPcap}
		var err error
		if w.Sec, err = format.ParsePcapHeader(data); err != nil {
			t.Fatal(err)
		}
		for pos := 24; pos < len(data); {
			rec, n, st := w.Next(data, 0, pos)
			if st != format.Packet {
				break
			}
			pos += n
			_, payload, err := DecodeFrame(rec.LinkType, rec.Data)
			if err != nil || len(payload) == 0 {
				continue
			}
			for _, cont := range []bool{false, true} {
				reqs, malformed, want, got, exp := againstScanner(payload, cont)
				open, lastCut := false, false
				var tail []byte
				if len(reqs) > 0 {
					last := reqs[len(reqs)-1]
					open, lastCut, tail = last.Open, last.LastCut, last.Tail
				}
				if fmt.Sprint(got) != fmt.Sprint(exp) || open != want.Open || lastCut != want.LastCut ||
					!bytes.Equal(tail, want.Tail) || malformed != want.Malformed || (len(reqs) > 0) != want.Request {
					t.Fatalf("offset %d (continuation %v): parser %v open %v cut %v tail %q malformed %v; scanner %v open %v cut %v tail %q malformed %v request %v",
						rec.Offset, cont, got, open, lastCut, tail, malformed, exp, want.Open, want.LastCut, want.Tail, want.Malformed, want.Request)
				}
				if len(exp) > 0 {
					compared++
				}
			}
		}
	}
	if compared < 100 {
		t.Errorf("only %d payloads with XFF lines compared", compared)
	}
}

// FuzzParseRequests: on any payload the query's parser agrees with
// format/xff's scanner on the XFF lines and their requests, and
// parsePacket never panics, whatever the stored raw value.
func FuzzParseRequests(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n"), []byte(nil))
	f.Add([]byte("POST /x HTTP/1.1\r\nContent-Length: 3\r\nX-Forwarded-For: 1.2.3.4,\r\n\r\nabcGET /y HTTP/1.0\r\nX-Forwarded-For: 5.6.7.8\r\n\r\n"), []byte("1.2.3.4,, 5.6.7.8"))
	f.Add([]byte("X-Forwarded-For: 2001:db8::1\r\n\r\n"), []byte("2001:db8::1"))
	f.Add([]byte("GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\nX-Forwar"), []byte("9.9.9.9"))
	f.Fuzz(func(t *testing.T, payload, raw []byte) {
		for _, cont := range []bool{false, true} {
			_, malformed, want, got, exp := againstScanner(payload, cont)
			if fmt.Sprint(got) != fmt.Sprint(exp) || malformed != want.Malformed {
				t.Fatalf("continuation %v: parser %v malformed %v; scanner %v malformed %v", cont, got, malformed, exp, want.Malformed)
			}
		}
		pi := parsePacket(payload, raw, xff.XForwardedFor)
		for i := range pi.reqs {
			pi.reqs[i].holds(netip.MustParseAddr("1.2.3.4"))
		}
	})
}

// againstScanner runs the query's request parser, for each header, and
// format/xff's scanner on one payload and lists both results' lines as
// "header:request:value:cut", header by header.
func againstScanner(payload []byte, cont bool) (reqs []httpRequest, malformed bool, want xff.Result, got, exp []string) {
	if cont {
		want = xff.ScanHeaders(payload, nil)
	} else {
		want = xff.ScanRequests(payload, nil)
	}
	for h := range xff.NumHeaders {
		hreqs, hmalformed := parseRequests(payload, cont, h)
		if h == xff.XForwardedFor {
			reqs, malformed = hreqs, hmalformed
		}
		for i, r := range hreqs {
			if r.Header != h {
				got = append(got, fmt.Sprintf("request %d labelled %v", i, r.Header))
			}
			for _, l := range r.Lines {
				got = append(got, fmt.Sprintf("%v:%d:%q:%v", h, i, l.Value, l.Cut))
			}
		}
		for _, l := range want.Lines {
			if l.Header == h {
				exp = append(exp, fmt.Sprintf("%v:%d:%q:%v", h, l.Request, l.Value, l.Cut))
			}
		}
	}
	return reqs, malformed, want, got, exp
}
