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

// buildSideBySide builds each capture once per iteration, in turn, so
// that machine noise hits them alike, and reports each one's MB/s and its
// ratio to the last one, the reference.
func buildSideBySide(b *testing.B, names, paths []string) {
	took := make([]time.Duration, len(paths))
	size := make([]int64, len(paths))
	for i, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			b.Fatal(err)
		}
		size[i] = st.Size()
		buildOnce(b, p) // page-cache the file
	}
	for b.Loop() {
		for i, p := range paths {
			took[i] += buildOnce(b, p)
		}
	}
	mbps := func(i int) float64 { return float64(size[i]) * float64(b.N) / 1e6 / took[i].Seconds() }
	ref := len(paths) - 1
	for i, name := range names {
		b.ReportMetric(mbps(i), name+"-MB/s")
		if i != ref {
			b.ReportMetric(mbps(i)/mbps(ref), name+"/"+names[ref])
		}
	}
}

// BenchmarkZeroRegions builds 256 MiB of zeros after a pcap header, 1024
// records of 256 KiB of zeros, and, as the reference, a capture of
// real-looking traffic of the same size (capgen), side by side.
func BenchmarkZeroRegions(b *testing.B) {
	const size = 256 << 20
	zeros, zeroRecords := zeroCaptures(b, size)
	ref, _ := writeBulk(b, size, 0.02)
	ref.Close()
	buildSideBySide(b, []string{"zeros", "zero-records", "capgen"}, []string{zeros, zeroRecords, ref.Name()})
}

// BenchmarkPartialLines builds captures whose client segments all end in
// a header name prefix, in an open X-Forwarded-For value, hold thousands
// of partial names, or thousands of addresses in one line
// (capgen.WritePartialLines, 1000 connections interleaved), and, as the reference, a capgen capture of the same size,
// side by side.
func BenchmarkPartialLines(b *testing.B) {
	const size = 128 << 20
	kinds := []string{capgen.PartialName, capgen.PartialValue, capgen.ManyNames, capgen.ManyAddrs}
	var paths []string
	for _, k := range kinds {
		p := filepath.Join(b.TempDir(), k+".pcap")
		f, err := os.Create(p)
		if err != nil {
			b.Fatal(err)
		}
		if err := capgen.WritePartialLines(f, capgen.PartialConfig{Kind: k, Size: size}); err != nil {
			b.Fatal(err)
		}
		f.Close()
		paths = append(paths, p)
	}
	ref, _ := writeBulk(b, size, 0.02)
	ref.Close()
	buildSideBySide(b, append(kinds, "capgen"), append(paths, ref.Name()))
}
