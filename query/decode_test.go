package query_test

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/xffidx/xffidx/query"
)

// decCorpusDir holds real captures with tshark's answers; see its README.md.
const decCorpusDir = "/work/shared/corpus"

type decRecord struct {
	linkType uint32
	data     []byte
}

// decReadCapture reads a pcap or pcapng file, choosing by magic number (one
// corpus file named .pcapng is a big-endian classic pcap).
func decReadCapture(t *testing.T, path string) []decRecord {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) < 24 {
		t.Fatalf("%s: too short", path)
	}
	var recs []decRecord
	if binary.LittleEndian.Uint32(raw) == 0x0A0D0D0A {
		r, err := pcapgo.NewNgReader(bytes.NewReader(raw), pcapgo.NgReaderOptions{WantMixedLinkType: true})
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		for {
			data, ci, err := r.ReadPacketData()
			if errors.Is(err, io.EOF) {
				return recs
			}
			if err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			lt, _ := ci.AncillaryData[0].(layers.LinkType) // uint8: fine for this corpus
			recs = append(recs, decRecord{uint32(lt), data})
		}
	}
	r, err := pcapgo.NewReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	// pcapgo truncates the header's link type to a uint8 (SLL2 276 -> 20).
	var order binary.ByteOrder = binary.LittleEndian
	if m := binary.BigEndian.Uint32(raw); m == 0xA1B2C3D4 || m == 0xA1B23C4D {
		order = binary.BigEndian
	}
	linkType := order.Uint32(raw[20:24]) & 0xFFFF
	for {
		data, _, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			return recs
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		recs = append(recs, decRecord{linkType, data})
	}
}

// decLast returns the innermost of tshark's "outer|inner" occurrences.
func decLast(cell string) string {
	return cell[strings.LastIndex(cell, "|")+1:]
}

// TestDecodeFrameExpectedAlt checks DecodeFrame on every frame tshark found
// an XFF header in (expected-alt/, which also has the out-of-order frames).
func TestDecodeFrameExpectedAlt(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(decCorpusDir, "xff_*.pcap"))
	if len(files) == 0 {
		t.Skipf("corpus not available at %s", decCorpusDir)
	}
	checked := 0
	for _, path := range files {
		name := strings.TrimSuffix(filepath.Base(path), ".pcap")
		recs := decReadCapture(t, path)
		f, err := os.Open(filepath.Join(decCorpusDir, "expected-alt", name+".tsv"))
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Scan() // header: frame.number frame.time_epoch ip.src ipv6.src tcp.srcport ip.dst ipv6.dst tcp.dstport http.x_forwarded_for
		for sc.Scan() {
			c := strings.Split(sc.Text(), "\t")
			if len(c) < 9 {
				t.Fatalf("%s: short row %q", name, sc.Text())
			}
			n, err := strconv.Atoi(c[0])
			if err != nil || n < 1 || n > len(recs) {
				t.Fatalf("%s: bad frame number %q", name, c[0])
			}
			if c[2] != "" && c[3] != "" {
				t.Fatalf("%s frame %d: IPv4 and IPv6 layers; innermost is ambiguous", name, n)
			}
			srcCol, dstCol := c[2], c[5]
			if srcCol == "" {
				srcCol, dstCol = c[3], c[6]
			}
			sp, err1 := strconv.ParseUint(decLast(c[4]), 10, 16)
			dp, err2 := strconv.ParseUint(decLast(c[7]), 10, 16)
			if err1 != nil || err2 != nil {
				t.Fatalf("%s frame %d: bad ports %q %q", name, n, c[4], c[7])
			}
			want := query.FiveTuple{
				SrcIP:   netip.MustParseAddr(decLast(srcCol)),
				DstIP:   netip.MustParseAddr(decLast(dstCol)),
				SrcPort: uint16(sp),
				DstPort: uint16(dp),
				Proto:   "tcp",
			}
			rec := recs[n-1]
			got, payload, err := query.DecodeFrame(rec.linkType, rec.data)
			if err != nil {
				t.Errorf("%s frame %d: %v", name, n, err)
				continue
			}
			if got != want {
				t.Errorf("%s frame %d: got %+v, want %+v", name, n, got, want)
			}
			if !bytes.Contains(bytes.ToLower(payload), []byte("x-forwarded-for")) {
				t.Errorf("%s frame %d: payload lacks the XFF header", name, n)
			}
			checked++
		}
		if err := sc.Err(); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	if checked != 27 {
		t.Errorf("checked %d XFF frames, corpus README promises 27", checked)
	}
}

// TestDecodeFrameErrors covers inputs that must come back as errors, not
// panics or bogus tuples.
func TestDecodeFrameErrors(t *testing.T) {
	cases := []struct {
		name     string
		linkType uint32
		frame    []byte
		wantErr  string
	}{
		{"empty ethernet", 1, nil, "no TCP layer"},
		{"short sll2", 276, make([]byte, 19), "truncated SLL2 header"},
		{"empty raw", 101, nil, "truncated raw IP"},
		{"raw version 5", 101, []byte{0x50, 0, 0, 0}, "IP version 5"},
		{"link type beyond uint8", 300, make([]byte, 64), "unsupported link type 300"},
		// A GRE header cut after its flags: gopacket v1.1.19 indexes past the
		// end here and relies on its own recover.
		{"cut gre", 101, []byte{
			0x45, 0, 0, 22, 0, 0, 0, 0, 64, 47, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
			0xB0, 0,
		}, "no TCP layer"},
		// ERSPAN III announced but its 12-byte header is cut.
		{"cut erspan3", 101, []byte{
			0x45, 0, 0, 30, 0, 0, 0, 0, 64, 47, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
			0, 0, 0x22, 0xEB, 1, 2, 3, 4, 5, 6,
		}, "truncated ERSPAN III header"},
		// TCP data offset 15 (60 bytes) in a 20-byte header.
		{"cut tcp options", 101, []byte{
			0x45, 0, 0, 40, 0, 0, 0, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
			0, 80, 0, 81, 0, 0, 0, 1, 0, 0, 0, 0, 0xF0, 0x18, 0, 1, 0, 0, 0, 0,
		}, "truncated TCP header"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ft, payload, err := query.DecodeFrame(c.linkType, c.frame)
			if err == nil {
				t.Fatalf("got %+v (%d-byte payload), want error %q", ft, len(payload), c.wantErr)
			}
			if !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("error %q, want it to mention %q", err, c.wantErr)
			}
			if ft != (query.FiveTuple{}) || payload != nil {
				t.Errorf("error with non-zero results %+v %v", ft, payload)
			}
		})
	}
}
