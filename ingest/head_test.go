package ingest

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/xffidx/xffidx/format/capgen"
)

// withBigSectionHeader rewrites a little-endian pcapng file with its first
// Section Header Block carrying a comment of n bytes, and returns the new
// file and how much later the rest of it begins.
func withBigSectionHeader(t *testing.T, path string, n int) (string, int64) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	if le.Uint32(data) != 0x0A0D0D0A || le.Uint32(data[8:]) != 0x1A2B3C4D {
		t.Fatal("not a little-endian pcapng file")
	}
	total := int(le.Uint32(data[4:]))
	// The block: its fixed part (28 bytes), comment options, the original
	// options (ending with opt_endofopt, if any), the trailing length.
	comment := strings.Repeat("c", n)
	var opts []byte
	for len(comment) > 0 { // an option holds at most 65,535 bytes
		part := comment[:min(len(comment), 60000)]
		comment = comment[len(part):]
		opts = le.AppendUint16(opts, 1)
		opts = le.AppendUint16(opts, uint16(len(part)))
		opts = append(opts, part...)
		for len(opts)%4 != 0 {
			opts = append(opts, 0)
		}
	}
	shb := append(data[:28:28], opts...)
	shb = append(shb, data[28:total-4]...)
	shb = le.AppendUint32(shb, 0)
	le.PutUint32(shb[4:], uint32(len(shb)))
	le.PutUint32(shb[len(shb)-4:], uint32(len(shb)))
	out := filepath.Join(t.TempDir(), "big-shb.pcapng")
	if err := os.WriteFile(out, append(shb, data[total:]...), 0o644); err != nil {
		t.Fatal(err)
	}
	return out, int64(len(shb) - total)
}

// TestHeaderBlocksLargerThanTheFirstRead: the build reads a file's head in
// 64 KiB first; leading header blocks that do not fit (a section header
// with a long comment) are read again whole, and the file is indexed as if
// they were small.
func TestHeaderBlocksLargerThanTheFirstRead(t *testing.T) {
	path, _ := busyCapture(t, capgen.BusyConfig{Seed: 21, TargetBytes: 1 << 20, Conns: 50, Format: capgen.FormatPcapNG})
	_, want := hitsOf(t, path, 0, 2)
	for _, n := range []int{1000, 100 << 10, 900 << 10} { // blocks are at most 1 MiB
		big, shift := withBigSectionHeader(t, path, n)
		_, got := hitsOf(t, big, 0, 2)
		if got.Hits != want.Hits || got.Addresses != want.Addresses || got.Packets != want.Packets || got.XFFLines != want.XFFLines {
			t.Errorf("comment of %d bytes: %d hits, %d addresses, %d packets; without it %d, %d, %d", n, got.Hits, got.Addresses, got.Packets, want.Hits, want.Addresses, want.Packets)
		}
		if got.FingerprintFrom != want.FingerprintFrom+shift || !reflect.DeepEqual(got.LinkTypes, want.LinkTypes) {
			t.Errorf("comment of %d bytes: header end %d, link types %v; want %d, %v", n, got.FingerprintFrom, got.LinkTypes, want.FingerprintFrom+shift, want.LinkTypes)
		}
	}
}
