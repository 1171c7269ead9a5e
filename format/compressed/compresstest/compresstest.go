// Package compresstest compresses test data every way xffidx reads it
// (the gzip, zstd and lz4 commands at several levels, several gzip members,
// BGZF-like members, several zstd frames, the zstd seekable format, lz4
// frames): the variants the tests of the packages that read compressed
// captures go through.
package compresstest

import (
	"bytes"
	"compress/gzip"
	"os"
	"os/exec"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
)

// Variant is one way of compressing.
type Variant struct {
	Name string
	// Codec names the container (compressed.Codec's String).
	Codec string
	// Cmd compresses stdin to stdout (nil: Fn does it in Go).
	Cmd []string
	Fn  func(tb testing.TB, d []byte) []byte
}

// Compress compresses d. A variant whose command is not installed skips
// the test, or fails it under CI=true (where .ci/run installs them).
func (v Variant) Compress(tb testing.TB, d []byte) []byte {
	tb.Helper()
	if v.Fn != nil {
		return v.Fn(tb, d)
	}
	if _, err := exec.LookPath(v.Cmd[0]); err != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("%s not installed", v.Cmd[0])
		}
		tb.Skipf("%s not installed", v.Cmd[0])
	}
	cmd := exec.Command(v.Cmd[0], v.Cmd[1:]...)
	cmd.Stdin = bytes.NewReader(d)
	z, err := cmd.Output()
	if err != nil {
		tb.Fatalf("%s: %v", v.Cmd[0], err)
	}
	return z
}

// GzipMembers writes d as gzip members of member bytes each, each with
// extra as its header's extra field.
func GzipMembers(d []byte, member int, extra []byte) []byte {
	var out bytes.Buffer
	for len(d) > 0 || out.Len() == 0 {
		n := min(member, len(d))
		w := gzip.NewWriter(&out)
		w.Header.Extra = extra
		w.Header.Name = "capture.pcap"
		w.Write(d[:n])
		w.Close()
		d = d[n:]
	}
	return out.Bytes()
}

// ZstdFrames writes d as zstd frames of frame bytes each, with checksums.
func ZstdFrames(tb testing.TB, d []byte, frame int) []byte {
	var out bytes.Buffer
	for len(d) > 0 {
		n := min(frame, len(d))
		w, err := zstd.NewWriter(&out, zstd.WithEncoderCRC(true))
		if err != nil {
			tb.Fatal(err)
		}
		w.Write(d[:n])
		w.Close()
		d = d[n:]
	}
	return out.Bytes()
}

// LZ4Frame writes d as one lz4 frame of 256 KiB blocks with a content
// checksum.
func LZ4Frame(d []byte) []byte {
	var out bytes.Buffer
	w := lz4.NewWriter(&out)
	w.Apply(lz4.ChecksumOption(true), lz4.BlockSizeOption(lz4.Block256Kb))
	w.Write(d)
	w.Close()
	return out.Bytes()
}

// Variants lists every way; each has a distinct Name.
func Variants() []Variant {
	return []Variant{
		{Name: "gzip", Codec: "gzip", Cmd: []string{"gzip", "-c"}},
		{Name: "gzip-1", Codec: "gzip", Cmd: []string{"gzip", "-1", "-c"}},
		{Name: "gzip-9", Codec: "gzip", Cmd: []string{"gzip", "-9", "-c"}},
		{Name: "gzip-members", Codec: "gzip", Fn: func(_ testing.TB, d []byte) []byte { return GzipMembers(d, 700<<10, nil) }},
		// BGZF: members of at most 64 KiB with a BC extra field.
		{Name: "bgzf-like", Codec: "gzip", Fn: func(_ testing.TB, d []byte) []byte {
			return GzipMembers(d, 65280, []byte{'B', 'C', 2, 0, 0, 0})
		}},
		{Name: "zstd", Codec: "zstd", Cmd: []string{"zstd", "-q", "-c"}},
		{Name: "zstd-T0", Codec: "zstd", Cmd: []string{"zstd", "-q", "-T0", "-c"}},
		{Name: "zstd-frames", Codec: "zstd", Fn: func(tb testing.TB, d []byte) []byte { return ZstdFrames(tb, d, 1<<20) }},
		// The seekable format: frames, then its seek table in a skippable
		// frame (magic 0x184D2A5E; here one listing no frame), which a
		// reader passes over.
		{Name: "zstd-seekable", Codec: "zstd", Fn: func(tb testing.TB, d []byte) []byte {
			z := ZstdFrames(tb, d, 256<<10)
			table := []byte{0x5e, 0x2a, 0x4d, 0x18, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0xb1, 0xea, 0x92, 0x8f}
			return append(z, table...)
		}},
		{Name: "lz4", Codec: "lz4", Cmd: []string{"lz4", "-q", "-c"}},
		{Name: "lz4-go", Codec: "lz4", Fn: func(_ testing.TB, d []byte) []byte { return LZ4Frame(d) }},
	}
}
