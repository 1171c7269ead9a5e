package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xffidx/xffidx/format/compressed/compresstest"
)

// TestCompressedCaptures: a directory of compressed captures, good and bad,
// as the nightly job meets it. The good ones are indexed and answer as the
// uncompressed capture does; a checksum mismatch and trailing garbage are
// errors naming the file (exit 2), a capture cut short a warning, a
// compressed log passed over in the directory; `files` names containers.
func TestCompressedCaptures(t *testing.T) {
	dir, ix, plainIx := t.TempDir(), t.TempDir(), t.TempDir()
	good := copyFile(t, corpus+"xff_erspan_gre_mixed.pcap", filepath.Join(t.TempDir(), "good.pcap"))
	gz := compresstest.GzipMembers(good, 100<<10, nil)
	write := func(name string, b []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("good.pcap.gz", gz)
	write("good.pcap.zst", compresstest.ZstdFrames(t, good, 64<<10))
	write("good.pcap.lz4", compresstest.LZ4Frame(good))
	bad := bytes.Clone(gz)
	bad[len(bad)-5] ^= 0x40 // the last member's length
	write("crc.pcap.gz", bad)
	write("cut.pcap.gz", gz[:len(gz)-3000])
	write("garbage.pcap.gz", append(bytes.Clone(gz), "trailing text"...))
	write("log.txt.gz", compresstest.GzipMembers([]byte("GET / HTTP/1.1\r\nX-Forwarded-For: 106.113.55.163\r\n"), 1<<20, nil))

	code, _, stderr := xffx(t, ix, "build", dir)
	if code != 2 {
		t.Errorf("build: exit %d, want 2\n%s", code, stderr)
	}
	for _, want := range []string{
		"crc.pcap.gz: gzip: checksum mismatch", "not indexed",
		"cut.pcap.gz: gzip: compressed data cut short at compressed offset",
		"garbage.pcap.gz: corrupt: 13 bytes after the last gzip member",
		"files: 5 new", "1 failed (1 with corrupt regions)",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	if strings.Contains(stderr, "log.txt.gz") {
		t.Errorf("the compressed log is reported:\n%s", stderr)
	}

	plainDir := t.TempDir()
	copyFile(t, corpus+"xff_erspan_gre_mixed.pcap", filepath.Join(plainDir, "good.pcap"))
	if code, _, stderr := xffx(t, plainIx, "build", plainDir); code != 0 {
		t.Fatalf("plain build: exit %d: %s", code, stderr)
	}
	_, want, _ := xffx(t, plainIx, "query", "--ip", "106.113.55.163", "--format", "json")
	_, got, _ := xffx(t, ix, "query", "--ip", "106.113.55.163", "--format", "json", "--file", "good.*")
	per := map[string][]jsonHit{}
	for _, h := range parseHits(t, got) {
		per[filepath.Base(h.File)] = append(per[filepath.Base(h.File)], h)
	}
	wantHits := parseHits(t, want)
	for _, name := range []string{"good.pcap.gz", "good.pcap.zst", "good.pcap.lz4"} {
		hits := per[name]
		if len(hits) != len(wantHits) {
			t.Fatalf("%s: %d hits, the uncompressed capture %d", name, len(hits), len(wantHits))
		}
		for i := range hits {
			hits[i].File = wantHits[i].File
			if hits[i] != wantHits[i] {
				t.Errorf("%s: hit %+v, uncompressed %+v", name, hits[i], wantHits[i])
			}
		}
	}

	_, out, _ := xffx(t, ix, "files", "--format", "json")
	containers := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var row struct {
			Path, Container string
			DataSize        int64 `json:"data_size"`
		}
		if err := json.Unmarshal([]byte(line), &row); err != nil {
			t.Fatal(err)
		}
		containers[filepath.Base(row.Path)] = row.Container
		if strings.HasPrefix(filepath.Base(row.Path), "good.") && row.DataSize != int64(len(good)) {
			t.Errorf("%s: data_size %d, want %d", row.Path, row.DataSize, len(good))
		}
	}
	if containers["good.pcap.gz"] != "gzip" || containers["good.pcap.zst"] != "zstd" || containers["good.pcap.lz4"] != "lz4" || containers["crc.pcap.gz"] != "" {
		t.Errorf("files: containers %v", containers)
	}
}
