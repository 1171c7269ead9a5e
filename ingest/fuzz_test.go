package ingest

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/xffidx/xffidx/format"
	"github.com/xffidx/xffidx/format/capgen"
	"github.com/xffidx/xffidx/format/stream"
)

// FuzzChunkScan runs the build's per-chunk walk, with its connection
// tracking (packet decoding, reassembly, request parsing), over hostile
// capture bytes: it must never panic, and every hit and request record must
// point at a record inside the file.
func FuzzChunkScan(f *testing.F) {
	for _, cfg := range []capgen.Config{
		{Seed: 1, Format: capgen.FormatPcap, LinkType: capgen.LinkEthernet, Variants: true, Tunnels: true, TargetBytes: 1},
		{Seed: 2, Format: capgen.FormatPcapNGMulti, Variants: true, SnapLen: 256, TargetBytes: 1},
	} {
		var buf bytes.Buffer
		capgen.Write(&buf, cfg)
		b := buf.Bytes()
		f.Add(b[:min(len(b), 6<<10)], uint16(100))
	}
	if b, err := os.ReadFile("../testdata/corpus/xff_erspan_gre_mixed.pcap"); err == nil {
		f.Add(b[:6<<10], uint16(3000))
	}
	f.Fuzz(func(t *testing.T, data []byte, from uint16) {
		kind := format.Detect(data)
		if kind == format.KindUnknown {
			return
		}
		path := filepath.Join(t.TempDir(), "f")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		file, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer file.Close()
		w := format.Walker{Kind: kind}
		start := int64(0)
		if kind == format.KindPcap {
			if w.Sec, err = format.ParsePcapHeader(data); err != nil {
				return
			}
			start = 24
		}
		size := int64(len(data))
		for _, trusted := range []bool{true, false} {
			sc := newChunkScanner()
			sc.tr = stream.New(stream.Options{})
			res := &chunkResult{}
			from := start
			if !trusted {
				from = min(size, start+int64(from))
			}
			sc.start(file, from, size, size)
			sc.w, sc.res = cloneWalker(w), res
			sc.walk(0, trusted, from, size)
			sc.tr.Finish()
			out := sc.tr.Drain()
			for _, h := range out.Hits {
				if h.Off < start || h.Off >= size {
					t.Fatalf("hit at %d outside the file's records [%d, %d)", h.Off, start, size)
				}
			}
			for _, r := range out.Requests {
				if r.Off < start || r.Off >= size {
					t.Fatalf("request record at %d outside the file's records [%d, %d)", r.Off, start, size)
				}
			}
			if res.covered > size {
				t.Fatalf("covered %d bytes of %d", res.covered, size)
			}
		}
	})
}
