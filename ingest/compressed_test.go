package ingest

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/xffidx/xffidx/format"
	"github.com/xffidx/xffidx/format/compressed"
	"github.com/xffidx/xffidx/format/compressed/compresstest"
	"github.com/xffidx/xffidx/index"
)

// sameCapture clears what differs between a capture's catalog entry and
// that of its compressed copy: path and identity, container.
func sameCapture(f index.FileInfo) index.FileInfo {
	f.Size, f.DataSize = f.DataEnd(), 0
	f.Path, f.Container, f.ModTime, f.Dev, f.Inode, f.CTime = "", "", time.Time{}, 0, 0, time.Time{}
	return f
}

// TestCompressedEqualsUncompressed: every corpus capture and two generated
// ones (bulk and busy-link), compressed every way (zstd frames decoded one
// to three at once), index hit for hit, with
// request records, connection starts and totals, as the uncompressed file;
// and the restart points stored let a reader get any record back.
func TestCompressedEqualsUncompressed(t *testing.T) {
	dir := t.TempDir()
	plain := corpusFiles(t)
	for _, seed := range []int64{2, 3} {
		p := filepath.Join(dir, "gen"+string(rune('0'+seed))+".pcap")
		if err := os.WriteFile(p, genCapture(t, seed, 3<<20), 0o644); err != nil {
			t.Fatal(err)
		}
		plain = append(plain, p)
	}
	type result struct {
		hits []string
		info index.FileInfo
	}
	plainResult := map[string]result{}
	for _, p := range plain {
		hits, info := hitsOf(t, p, 0, 2)
		plainResult[p] = result{hits, info}
	}
	for _, v := range compresstest.Variants() {
		t.Run(v.Name, func(t *testing.T) {
			for _, p := range plain {
				data, err := os.ReadFile(p)
				if err != nil {
					t.Fatal(err)
				}
				want, wantInfo := plainResult[p].hits, plainResult[p].info
				z := filepath.Join(t.TempDir(), filepath.Base(p)+"."+v.Name)
				if err := os.WriteFile(z, v.Compress(t, data), 0o644); err != nil {
					t.Fatal(err)
				}
				got, gotInfo := hitsOf(t, z, 0, 2)
				if !slices.Equal(got, want) {
					t.Fatalf("%s: %d hits compressed, %d plain; first difference:\n%s", filepath.Base(p), len(got), len(want), firstDiff(got, want))
				}
				if v.Name == "zstd-frames" || v.Name == "zstd-seekable" {
					// Frames decoded one, two or three at once.
					for _, workers := range []int{1, 3} {
						if got, _ := hitsOf(t, z, 0, workers); !slices.Equal(got, want) {
							t.Fatalf("%s, %d workers: %d hits compressed, %d plain; first difference:\n%s", filepath.Base(p), workers, len(got), len(want), firstDiff(got, want))
						}
					}
				}
				if gotInfo.Container != v.Codec || gotInfo.DataSize != int64(len(data)) {
					t.Fatalf("%s: container %q, %d bytes uncompressed; want %q, %d", filepath.Base(p), gotInfo.Container, gotInfo.DataSize, v.Codec, len(data))
				}
				if a, b := sameCapture(gotInfo), sameCapture(wantInfo); !reflect.DeepEqual(a, b) {
					t.Fatalf("%s: catalog entry\n got %+v\nwant %+v", filepath.Base(p), a, b)
				}
			}
		})
	}
}

// buildOne indexes path into a new store and returns the result.
func buildOne(t *testing.T, path string) (FileResult, *index.Store) {
	t.Helper()
	store := &index.Store{Dir: t.TempDir(), LockWait: time.Second}
	var res []FileResult
	if _, err := (&Builder{Store: store, Opts: Options{Workers: 2}}).Build([]string{path}, func(r FileResult) { res = append(res, r) }); err != nil {
		t.Fatal(err)
	}
	if len(res) != 1 {
		t.Fatalf("%d results", len(res))
	}
	return res[0], store
}

// TestCompressedBadInput: a compressed capture cut short is indexed as far
// as it decodes, with a warning giving both offsets; a checksum mismatch
// fails the file and leaves the index without it; bytes after the last
// member are reported (an error unless they are zeros), everything before
// them indexed; compressed text is not a capture.
func TestCompressedBadInput(t *testing.T) {
	data := genCapture(t, 2, 2<<20)
	dir := t.TempDir()
	gz := compresstest.GzipMembers(data, 1<<20, nil)
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}

	cut := write("cut.pcap.gz", gz[:len(gz)*3/4])
	r, _ := buildOne(t, cut)
	if r.Err != nil || !r.Committed || r.Info.Packets == 0 {
		t.Fatalf("cut: err %v, committed %v, %d packets", r.Err, r.Committed, r.Info.Packets)
	}
	if !slices.ContainsFunc(r.Warnings, func(w string) bool {
		return strings.Contains(w, "cut short at compressed offset") && strings.Contains(w, "uncompressed offset")
	}) {
		t.Fatalf("cut: warnings %q", r.Warnings)
	}

	bad := bytes.Clone(gz)
	bad[len(bad)-8] ^= 1 // the last member's CRC-32
	r, store := buildOne(t, write("crc.pcap.gz", bad))
	if r.Committed || !errors.Is(r.Err, compressed.ErrChecksum) || !strings.Contains(r.Err.Error(), "crc.pcap.gz") {
		t.Fatalf("checksum: committed %v, err %v", r.Committed, r.Err)
	}
	if files, err := store.Catalog(); err == nil && len(files) > 0 {
		t.Fatalf("checksum: the index lists %d files", len(files))
	}

	r, _ = buildOne(t, write("garbage.pcap.gz", append(bytes.Clone(gz), "garbage"...)))
	if !r.Committed || r.Err == nil || !strings.Contains(r.Err.Error(), "7 bytes after the last gzip member") || r.Info.DataSize != int64(len(data)) {
		t.Fatalf("garbage: committed %v, err %v, %d bytes", r.Committed, r.Err, r.Info.DataSize)
	}
	r, _ = buildOne(t, write("zeros.pcap.gz", append(bytes.Clone(gz), make([]byte, 4096)...)))
	if !r.Committed || r.Err != nil || len(r.Warnings) != 1 {
		t.Fatalf("zeros: committed %v, err %v, warnings %q", r.Committed, r.Err, r.Warnings)
	}

	text := write("notes.txt.gz", compresstest.GzipMembers([]byte("not a capture at all\n"), 1<<20, nil))
	r, _ = buildOne(t, text)
	if r.Committed || !errors.Is(r.Err, format.ErrNotCapture) || !strings.Contains(r.Err.Error(), "gzip-compressed") {
		t.Fatalf("text: committed %v, err %v", r.Committed, r.Err)
	}
}

// TestSingleFrameNoted: a capture in one zstd frame has no restart point
// inside it, and the build says so once; in frames it does not.
func TestSingleFrameNoted(t *testing.T) {
	data := genCapture(t, 4, 5<<20)
	dir := t.TempDir()
	for _, v := range compresstest.Variants() {
		if v.Name != "zstd-frames" && v.Name != "lz4-go" {
			continue
		}
		p := filepath.Join(dir, v.Name)
		if err := os.WriteFile(p, v.Compress(t, data), 0o644); err != nil {
			t.Fatal(err)
		}
		r, _ := buildOne(t, p)
		noted := slices.ContainsFunc(r.Warnings, func(w string) bool { return strings.Contains(w, "no restart point inside it") })
		if r.Err != nil || noted != (v.Name == "lz4-go") {
			t.Fatalf("%s: err %v, warnings %q", v.Name, r.Err, r.Warnings)
		}
	}
}

// TestSeekSpacing: the spacing asked for sets how many restart points a
// deflate stream gets.
func TestSeekSpacing(t *testing.T) {
	data := genCapture(t, 2, 3<<20)
	p := filepath.Join(t.TempDir(), "c.pcap.gz")
	if err := os.WriteFile(p, compresstest.GzipMembers(data, len(data), nil), 0o644); err != nil {
		t.Fatal(err)
	}
	count := func(spacing int64) int {
		store := &index.Store{Dir: t.TempDir(), LockWait: time.Second}
		r := (&Builder{Store: store, Opts: Options{SeekSpacing: spacing}}).IndexFile(p)
		if r.Err != nil {
			t.Fatal(r.Err)
		}
		n, _, err := store.SeekPointCount(r.Info.ID)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	// One member: its start, then a point per spacing of output.
	if few, many := count(0), count(256<<10); few < 3 || few > 4 || many < 12 || many > 13 {
		t.Fatalf("%d points at 1 MiB, %d at 256 KiB, for %d bytes", few, many, len(data))
	}
}
