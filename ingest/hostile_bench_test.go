package ingest

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/xffidx/xffidx/format/capgen"
	"github.com/xffidx/xffidx/index"
)

// zeroCaptures writes, sparse, the byte patterns that a walk must cross as
// fast as real traffic: size bytes of zeros after a pcap header (a
// preallocated or sparse capture: to libpcap, records that captured
// nothing), and records of 256 KiB of zeros, valid but for their content.
func zeroCaptures(tb testing.TB, size int64) (zeros, zeroRecords string) {
	tb.Helper()
	dir := tb.TempDir()
	zeros = filepath.Join(dir, "zeros.pcap")
	if err := os.WriteFile(zeros, capgen.PcapHeader(262144, capgen.LinkEthernet, false), 0o644); err != nil {
		tb.Fatal(err)
	}
	if err := os.Truncate(zeros, 24+size); err != nil {
		tb.Fatal(err)
	}
	zeroRecords = filepath.Join(dir, "zero-records.pcap")
	f, err := os.Create(zeroRecords)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	f.Write(capgen.PcapHeader(262144, capgen.LinkEthernet, false))
	const capLen = 256 << 10
	var h [16]byte
	for i := range size / (16 + capLen) {
		binary.LittleEndian.PutUint32(h[0:], 1700000000+uint32(i))
		binary.LittleEndian.PutUint32(h[8:], capLen)
		binary.LittleEndian.PutUint32(h[12:], capLen)
		if _, err := f.WriteAt(h[:], 24+i*(16+capLen)); err != nil {
			tb.Fatal(err)
		}
	}
	if err := f.Truncate(24 + size/(16+capLen)*(16+capLen)); err != nil {
		tb.Fatal(err)
	}
	return zeros, zeroRecords
}

// buildOnce indexes path into a fresh index with the default options (one
// worker per core) and returns the time the build took.
func buildOnce(tb testing.TB, path string) time.Duration {
	tb.Helper()
	dir, err := os.MkdirTemp(tb.TempDir(), "ix")
	if err != nil {
		tb.Fatal(err)
	}
	defer os.RemoveAll(dir)
	b := &Builder{Store: &index.Store{Dir: dir, LockWait: time.Second}}
	start := time.Now()
	r := b.IndexFile(path)
	d := time.Since(start)
	if r.Err != nil || !r.Committed {
		tb.Fatalf("%s: %v", path, r.Err)
	}
	return d
}

// BenchmarkZeroRegions builds, side by side in each iteration, 256 MiB of
// zeros after a pcap header, 1024 records of 256 KiB of zeros, and a
// capture of real-looking traffic of the same size (capgen) as the
// reference, and reports each one's MB/s and its ratio to the reference.
func BenchmarkZeroRegions(b *testing.B) {
	const size = 256 << 20
	zeros, zeroRecords := zeroCaptures(b, size)
	ref, _ := writeBulk(b, size, 0.02)
	ref.Close()
	paths := []string{zeros, zeroRecords, ref.Name()}
	var took [3]time.Duration
	var bytes [3]int64
	for i, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			b.Fatal(err)
		}
		bytes[i] = st.Size()
		buildOnce(b, p) // page-cache the files
	}
	for b.Loop() {
		for i, p := range paths {
			took[i] += buildOnce(b, p)
		}
	}
	mbps := func(i int) float64 { return float64(bytes[i]) * float64(b.N) / 1e6 / took[i].Seconds() }
	b.ReportMetric(mbps(0), "zeros-MB/s")
	b.ReportMetric(mbps(1), "zero-records-MB/s")
	b.ReportMetric(mbps(2), "capgen-MB/s")
	b.ReportMetric(mbps(0)/mbps(2), "zeros/capgen")
	b.ReportMetric(mbps(1)/mbps(2), "zero-records/capgen")
}
