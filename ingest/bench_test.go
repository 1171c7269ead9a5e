package ingest

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/xffidx/xffidx/format"
	"github.com/xffidx/xffidx/format/capgen"
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
	sc.walk(0, true, 24, size)
	return res
}

// TestScanLoopDoesNotAllocatePerPacket: with no XFF in the traffic, walking
// 4 MB or 32 MB allocates the same (nothing per packet); with XFF, the only
// allocations are the amortised growth of the hit list.
func TestScanLoopDoesNotAllocatePerPacket(t *testing.T) {
	allocs := func(size int64, rate float64) (float64, int64) {
		f, n := writeBulk(t, size, rate)
		defer f.Close()
		sc := newChunkScanner()
		var res *chunkResult
		a := testing.AllocsPerRun(3, func() { res = scanWhole(sc, f, n) })
		return a, res.packets
	}
	small, _ := allocs(4<<20, -1)
	large, packets := allocs(32<<20, -1)
	if large > small+2 {
		t.Errorf("no XFF: %v allocations for 4 MB, %v for 32 MB (%d packets)", small, large, packets)
	}
	withXFF, packets := allocs(32<<20, 0.02)
	if withXFF > 100 {
		t.Errorf("2%% XFF: %v allocations for %d packets", withXFF, packets)
	}
	t.Logf("allocations per pass: %v (4 MB, no XFF), %v (32 MB, no XFF), %v (32 MB, 2%% XFF, %d packets)", small, large, withXFF, packets)
}

// BenchmarkScan is the whole per-chunk pass on one core, page-cached:
// pread in pieces, record walk, header search, candidate decoding.
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
