package index

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/objstorage/objstorageprovider"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/xffidx/xffidx/format/xff"
)

var everyAddr = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}

// buildTestIndex writes an index of three files with hits, request records
// for every hit packet, raw values and connection states, compacted into
// one run of tables, and returns its store.
func buildTestIndex(t *testing.T, dir string) *Store {
	t.Helper()
	s := &Store{Dir: dir, LockWait: time.Second}
	rng := rand.New(rand.NewPCG(7, 7))
	for fid := uint32(1); fid <= 3; fid++ {
		tb, err := s.NewTable(fid)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 1500 {
			off := int64(24 + i*90)
			a := netip.AddrFrom4([4]byte{198, 51, byte(rng.IntN(4)), byte(rng.IntN(250))})
			if i%4 == 0 {
				a = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 14: byte(i), 15: byte(fid)})
			}
			if err := tb.AddHit(a, off, xff.Header(i%3), i%2, off-int64(i%5)*90, i%2 == 0); err != nil {
				t.Fatal(err)
			}
			r := &Request{Seq: uint32(i), Method: []byte("GET"), Target: fmt.Appendf(nil, "/path/%d/%d?q=%x", fid, i, rng.Uint64()),
				Host: []byte("backend.example"), Complete: true, Listed: xff.SetOf(xff.Header(i % 3))}
			r.Lists[i%3] = []byte(a.String() + ", 10.0.0.1")
			if err := tb.AddRequest(off, r); err != nil {
				t.Fatal(err)
			}
			if i%50 == 0 {
				tb.AddRaw(off, xff.Header(i%3), []byte(a.String()))
			}
		}
		tb.SetState(fmt.Appendf(nil, "state of %d", fid))
		info := pcapEntry(fid, fmt.Sprintf("/captures/c%d.pcap", fid))
		info.Headers, info.Tracking = xff.AllHeaders, TrackingVersion
		tables, err := tb.Finish(info)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Commit(tables); err != nil {
			t.Fatal(err)
		}
		tb.Discard()
	}
	if err := s.Compact(); err != nil {
		t.Fatal(err)
	}
	return s
}

// readAll reads everything a command can read from the index, as text, with
// the first error met.
func readAll(s *Store) (string, error) {
	var b strings.Builder
	files, err := s.Catalog()
	if err != nil {
		return "", err
	}
	fmt.Fprintf(&b, "catalog %d\n", len(files))
	hits, _, err := s.Lookup(everyAddr, xff.AllHeaders)
	if err != nil {
		return "", err
	}
	for _, h := range hits {
		fmt.Fprintf(&b, "%s %d %d %d %d %q", h.Addr, h.File.ID, h.Offset, h.Header, h.Pos, h.Raw)
		for _, r := range h.Requests {
			fmt.Fprintf(&b, " [%d %s %s %s]", r.Seq, r.Method, r.Target, r.Lists[h.Header])
		}
		b.WriteString("\n")
	}
	err = s.ScanHits(xff.AllHeaders, func(a netip.Addr, f *FileInfo, off int64) error {
		fmt.Fprintf(&b, "scan %s %d %d\n", a, f.ID, off)
		return nil
	})
	if err != nil {
		return "", err
	}
	for fid := uint32(1); fid <= 3; fid++ {
		st, err := s.State(fid)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "state %q\n", st)
	}
	return b.String(), nil
}

func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o700)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// blockOffsets lists where the blocks of an SSTable start, with their
// lengths: data, index, meta blocks and the footer.
func blockOffsets(t *testing.T, path string) [][2]int64 {
	t.Helper()
	f, err := vfs.Default.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	readable, err := objstorageprovider.NewFileReadable(f, vfs.Default, objstorageprovider.NewReadaheadConfig(), path)
	if err != nil {
		t.Fatal(err)
	}
	r, err := sstable.NewReader(context.Background(), readable, sstable.ReaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	l, err := r.Layout()
	if err != nil {
		t.Fatal(err)
	}
	var out [][2]int64
	for _, h := range l.Data {
		out = append(out, [2]int64{int64(h.Offset), int64(h.Length)})
	}
	for _, h := range l.Index {
		out = append(out, [2]int64{int64(h.Offset), int64(h.Length)})
	}
	for _, h := range []struct{ Offset, Length uint64 }{{l.TopIndex.Offset, l.TopIndex.Length}, {l.Properties.Offset, l.Properties.Length}, {l.MetaIndex.Offset, l.MetaIndex.Length}, {l.Footer.Offset, l.Footer.Length}} {
		if h.Length > 0 {
			out = append(out, [2]int64{int64(h.Offset), int64(h.Length)})
		}
	}
	return out
}

// TestDamagedTables changes 8 bytes in the middle of each block of the
// index's tables in turn (data blocks of every key table, index blocks, the
// properties, the footer). Every read must then either give exactly the
// undamaged index's answer or fail with ErrCorrupt naming the index
// directory and the way out; it must never panic, and never give a partial
// answer without an error (as a seek that clears an iterator's error would).
func TestDamagedTables(t *testing.T) {
	clean := buildTestIndex(t, t.TempDir())
	want, err := readAll(clean)
	if err != nil {
		t.Fatal(err)
	}
	ssts, _ := filepath.Glob(filepath.Join(clean.dbDir(), "*.sst"))
	if len(ssts) == 0 {
		t.Fatal("no tables")
	}
	blocks, corrupt := 0, 0
	for _, sst := range ssts {
		for _, blk := range blockOffsets(t, sst) {
			blocks++
			dir := t.TempDir()
			copyTree(t, clean.Dir, dir)
			path := filepath.Join(dir, "db", filepath.Base(sst))
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			at := blk[0] + max(blk[1]/2-4, 0)
			for i := range int64(8) {
				b[at+i] ^= 0x5a
			}
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
			s := &Store{Dir: dir, LockWait: time.Second}
			got, err := readAll(s)
			switch {
			case err == nil && got != want:
				t.Errorf("%s block at %d: a different answer without an error", filepath.Base(sst), blk[0])
			case err != nil && !errors.Is(err, ErrCorrupt):
				t.Errorf("%s block at %d: %v, not ErrCorrupt", filepath.Base(sst), blk[0], err)
			case err != nil:
				corrupt++
				if msg := err.Error(); !strings.Contains(msg, "index "+dir+" is corrupt (") || !strings.Contains(msg, "xffidx build --rebuild") || strings.Contains(msg, "\n") {
					t.Errorf("message: %q", msg)
				}
			}
		}
	}
	t.Logf("%d blocks damaged in turn, %d reported corrupt", blocks, corrupt)
	if blocks < 10 || corrupt < blocks/2 {
		t.Errorf("%d blocks, %d reported: the test did not test much", blocks, corrupt)
	}
}
