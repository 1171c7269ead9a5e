package ingest

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/xffidx/xffidx/format"
	"github.com/xffidx/xffidx/format/capgen"
	"github.com/xffidx/xffidx/format/stream"
)

func writeBulk(tb testing.TB, size int64, rate float64) (*os.File, int64) {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "bulk.pcap")
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := capgen.Write(f, capgen.Config{Seed: 3, Format: capgen.FormatPcap, LinkType: capgen.LinkEthernet, TargetBytes: size, XFFRate: rate, NoTruth: true}); err != nil {
		tb.Fatal(err)
	}
	st, _ := f.Stat()
	return f, st.Size()
}

// scanWhole walks a whole pcap file as one chunk with a reused scanner.
func scanWhole(sc *chunkScanner, f *os.File, size int64) *chunkResult {
	head := make([]byte, 24)
	f.ReadAt(head, 0)
	sec, _ := format.ParsePcapHeader(head)
	res := &chunkResult{}
	sc.start(f, 24, size, size)
	sc.w, sc.res = format.Walker{Kind: format.KindPcap, Sec: sec}, res
	if sc.tr == nil {
		sc.tr = stream.New(stream.Options{Log: true})
	}
	sc.walk(0, true, 24, size)
	res.chunk = sc.tr.TakeChunk(nil)
	return res
}

// TestScanLoopDoesNotAllocatePerPacket: the walk allocates per connection
// (its state, grown once) and never per packet: at most a few allocations
// for each connection, whether or not the traffic carries XFF.
func TestScanLoopDoesNotAllocatePerPacket(t *testing.T) {
	for _, rate := range []float64{-1, 0.02} {
		f, n := writeBulk(t, 32<<20, rate)
		sc := newChunkScanner()
		var res *chunkResult
		a := testing.AllocsPerRun(3, func() { res = scanWhole(sc, f, n) })
		f.Close()
		conns := res.chunk.Connections()
		if a > float64(12*conns+100) || a > float64(res.packets)/4 {
			t.Errorf("XFF rate %v: %v allocations for %d packets of %d connections", rate, a, res.packets, conns)
		}
		t.Logf("XFF rate %v: %v allocations per pass, %d packets, %d connections", rate, a, res.packets, conns)
	}
}

// BenchmarkScan is the whole per-chunk pass on one core, page-cached:
// pread in pieces, record walk, connection tracking.
func BenchmarkScan(b *testing.B) {
	f, n := writeBulk(b, 256<<20, 0.02)
	defer f.Close()
	sc := newChunkScanner()
	b.SetBytes(n)
	b.ReportAllocs()
	for b.Loop() {
		scanWhole(sc, f, n)
	}
}

// BenchmarkPread is the reference for BenchmarkScan: reading the same file
// in the same pieces into a cache-sized buffer, and nothing else.
func BenchmarkPread(b *testing.B) {
	f, n := writeBulk(b, 256<<20, 0.02)
	defer f.Close()
	buf := make([]byte, pieceSize)
	b.SetBytes(n)
	for b.Loop() {
		for off := int64(0); off < n; off += pieceSize {
			f.ReadAt(buf, off)
		}
	}
}
