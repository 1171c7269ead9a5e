package format

import (
	"bytes"
	"testing"

	"github.com/xffidx/xffidx/format/capgen"
)

// BenchmarkWalkPcap measures walking the records of a page-cached capture:
// the build's per-record cost without the header search.
func BenchmarkWalkPcap(b *testing.B) {
	var buf bytes.Buffer
	if _, err := capgen.Write(&buf, capgen.Config{Seed: 1, Format: capgen.FormatPcap, LinkType: capgen.LinkEthernet, TargetBytes: 64 << 20, NoTruth: true}); err != nil {
		b.Fatal(err)
	}
	data := buf.Bytes()
	sec, err := ParsePcapHeader(data)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		w := Walker{Kind: KindPcap, Sec: sec}
		for pos := pcapHeaderLen; pos < len(data); {
			_, n, st := w.Next(data, 0, pos)
			if st != Packet {
				b.Fatalf("status %d at %d", st, pos)
			}
			pos += n
		}
	}
}

// BenchmarkSync measures a resync from an arbitrary offset.
func BenchmarkSync(b *testing.B) {
	var buf bytes.Buffer
	capgen.Write(&buf, capgen.Config{Seed: 2, Format: capgen.FormatPcap, LinkType: capgen.LinkEthernet, TargetBytes: 4 << 20, NoTruth: true})
	data := buf.Bytes()
	sec, _ := ParsePcapHeader(data)
	w := Walker{Kind: KindPcap, Sec: sec}
	b.ReportAllocs()
	from := 1000
	for b.Loop() {
		if _, ok := w.Sync(data, 0, from, true); !ok {
			b.Fatal("no sync")
		}
		from = (from*7 + 13) % (len(data) / 2)
	}
}
