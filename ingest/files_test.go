package ingest

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xffidx/xffidx/format"
	"github.com/xffidx/xffidx/format/capgen"
	"github.com/xffidx/xffidx/format/compressed/compresstest"
	"github.com/xffidx/xffidx/index"
)

// rotationPair cuts a busy-link capture in two at the first record boundary
// past the middle, as tcpdump -G rotates: the second file goes on with
// connections the first left open.
func rotationPair(t *testing.T, seed int64) (a, b []byte) {
	t.Helper()
	path, _ := busyCapture(t, capgen.BusyConfig{Seed: seed, TargetBytes: 4 << 20, Conns: 1500, GapRate: -1})
	whole, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	split := recordBoundary(t, whole, len(whole)/2)
	return whole[:split], append(slices.Clone(whole[:24]), whole[split:]...)
}

// recordBoundary is the offset of the first record of a pcap capture that
// starts at or past at.
func recordBoundary(t *testing.T, pcap []byte, at int) int {
	t.Helper()
	sec, err := format.ParsePcapHeader(pcap)
	if err != nil {
		t.Fatal(err)
	}
	w := format.Walker{Kind: format.KindPcap, Sec: sec}
	pos := 24
	for pos < at {
		_, n, st := w.Next(pcap, 0, pos)
		if st != format.Packet {
			t.Fatalf("record at %d: %d", pos, st)
		}
		pos += n
	}
	return pos
}

// TestFilesAtOnceEqualOneByOne: a build that walks several compressed
// captures at once (gzip, multi-member gzip, zstd frames, lz4, an
// uncompressed one among them, a path named twice, two rotation chains
// whose second file continues the connections of the first, and a cut,
// a damaged and a trailing-garbage file) gives the index, the catalog, the
// file ids and the reports (errors and warnings) of a build that indexes
// them one after the other.
func TestFilesAtOnceEqualOneByOne(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	variants := map[string]compresstest.Variant{}
	for _, v := range compresstest.Variants() {
		variants[v.Name] = v
	}
	gz, zst, lz4 := variants["gzip"], variants["zstd-frames"], variants["lz4-go"]
	for _, v := range []compresstest.Variant{gz, zst, lz4} {
		if v.Name == "" {
			t.Fatal("a variant is missing")
		}
	}
	a, b := rotationPair(t, 21)
	c, d := rotationPair(t, 23)
	paths := []string{
		write("rot/cap-0001.pcap.gz", gz.Compress(t, a)),
		write("rot/cap-0002.pcap.gz", gz.Compress(t, b)),
		write("one/gen2.pcap.zst", zst.Compress(t, genCapture(t, 2, 3<<20))),
		write("two/gen3.pcap", genCapture(t, 3, 2<<20)),
		write("two/gen4.pcap.gz", compresstest.GzipMembers(genCapture(t, 4, 2<<20), 300<<10, nil)),
		write("three/gen5.pcap.lz4", lz4.Compress(t, genCapture(t, 5, 2<<20))),
		write("zrot/cap-0001.pcap.zst", zst.Compress(t, c)),
		write("zrot/cap-0002.pcap.zst", zst.Compress(t, d)),
	}
	// Bad ones among them: cut short (indexed as far as it decodes, with
	// a warning), a damaged frame (fails, nothing committed), garbage after
	// the last member (an error, everything before it indexed).
	bulk := genCapture(t, 6, 2<<20)
	gzBulk := compresstest.GzipMembers(bulk, 1<<20, nil)
	zstBad := zst.Compress(t, bulk)
	zstBad[len(zstBad)/2] ^= 0x55
	paths = append(paths,
		write("bad/cut.pcap.gz", gzBulk[:len(gzBulk)*3/4]),
		write("bad/frame.pcap.zst", zstBad),
		write("bad/garbage.pcap.gz", append(slices.Clone(gzBulk), "garbage"...)),
	)
	paths = append(paths, paths[2]) // named twice: the second time unchanged
	build := func(workers int) (*index.Store, []string) {
		store := &index.Store{Dir: t.TempDir(), LockWait: time.Second}
		var reports []string
		if _, err := (&Builder{Store: store, Opts: Options{Workers: workers, ChunkSize: 512 << 10}}).Build(paths, func(r FileResult) {
			reports = append(reports, fmt.Sprintf("%s %s %s %v %q", filepath.Base(r.Path), r.Action, r.Info.ContinuesFrom, r.Err, r.Warnings))
		}); err != nil {
			t.Fatal(err)
		}
		return store, reports
	}
	oneStore, oneReports := build(1)
	for range 2 {
		store, reports := build(2)
		if !slices.Equal(reports, oneReports) {
			t.Fatalf("reports at once %q, one by one %q", reports, oneReports)
		}
		got, want := answers(t, store), answers(t, oneStore)
		if !slices.Equal(got, want) {
			t.Fatalf("%d answers at once, %d one by one; first difference:\n%s", len(got), len(want), firstDiff(got, want))
		}
		ids := func(s *index.Store) map[string]uint32 {
			files, err := s.Catalog()
			if err != nil {
				t.Fatal(err)
			}
			m := map[string]uint32{}
			for _, f := range files {
				m[f.Path] = f.ID
			}
			return m
		}
		if g, w := ids(store), ids(oneStore); !equalMaps(g, w) {
			t.Fatalf("file ids at once %v, one by one %v", g, w)
		}
	}
	for _, want := range []string{"cap-0002.pcap.gz new " + paths[0] + " <nil>", "cap-0002.pcap.zst new " + paths[6] + " <nil>", "cut.pcap.gz new  <nil>", "frame.pcap.zst failed", "garbage.pcap.gz new  " + paths[10] + ": corrupt"} {
		if !slices.ContainsFunc(oneReports, func(r string) bool { return strings.HasPrefix(r, want) }) {
			t.Fatalf("reports %q: none begins %q", oneReports, want)
		}
	}
	for _, r := range oneReports {
		if strings.Contains(r, "cut.pcap.gz") && !strings.Contains(r, "cut short") {
			t.Fatalf("%s: no warning", r)
		}
	}
}

func equalMaps[K comparable, V comparable](a, b map[K]V) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestCompressedProgress: a compressed capture's progress is in compressed
// bytes, as the build's total: it goes up as the file is read, several
// times for a file of many MiB, and ends at the total, the files'
// compressed sizes.
func TestCompressedProgress(t *testing.T) {
	dir := t.TempDir()
	var paths []string
	var total int64
	for i, seed := range []int64{2, 4} {
		data := genCapture(t, seed, 12<<20)
		z := compresstest.GzipMembers(data, len(data), nil) // one member
		if i == 1 {
			z = compresstest.ZstdFrames(t, data, 1<<20)
		}
		p := filepath.Join(dir, fmt.Sprintf("c%d.pcap.z", i))
		if err := os.WriteFile(p, z, 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
		total += int64(len(z))
	}
	for _, workers := range []int{1, 2} {
		var seen []Progress
		var mu sync.Mutex
		store := &index.Store{Dir: t.TempDir(), LockWait: time.Second}
		if _, err := (&Builder{Store: store, Opts: Options{Workers: workers, Progress: func(p Progress) {
			mu.Lock()
			seen = append(seen, p)
			mu.Unlock()
		}}}).Build(paths, nil); err != nil {
			t.Fatal(err)
		}
		last := seen[len(seen)-1]
		if last.TotalSize != total || last.TotalDone != total {
			t.Fatalf("workers %d: progress ends at %d of %d; want %d of %d", workers, last.TotalDone, last.TotalSize, total, total)
		}
		for i, p := range seen {
			if p.FileDone > p.FileBytes || i > 0 && p.TotalDone < seen[i-1].TotalDone {
				t.Fatalf("workers %d: progress %+v after %+v", workers, p, seen[max(0, i-1)])
			}
		}
		if len(seen) < 4 {
			t.Fatalf("workers %d: progress reported %d times", workers, len(seen))
		}
	}
}

// TestGrownFramesEqualFresh: a zstd capture that grows by whole frames (a
// hook appending each piece as it is compressed) is taken up at its last
// restart point with its frames decoded several at once, and its index
// equals a fresh build of the whole file.
func TestGrownFramesEqualFresh(t *testing.T) {
	data := genCapture(t, 3, 4<<20)
	half := len(data) / 2 // not a record boundary: the last record is cut
	path := filepath.Join(t.TempDir(), "grow.pcap.zst")
	if err := os.WriteFile(path, compresstest.ZstdFrames(t, data[:half], 256<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	inc := &index.Store{Dir: t.TempDir(), LockWait: time.Second}
	var actions []Action
	build := func(store *index.Store, workers int) {
		if _, err := (&Builder{Store: store, Opts: Options{Workers: workers}}).Build([]string{path}, func(r FileResult) {
			if r.Err != nil {
				t.Fatal(r.Err)
			}
			actions = append(actions, r.Action)
		}); err != nil {
			t.Fatal(err)
		}
	}
	build(inc, 2)
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(compresstest.ZstdFrames(t, data[half:], 256<<10)); err != nil {
		t.Fatal(err)
	}
	f.Close()
	build(inc, 2)
	fresh := &index.Store{Dir: t.TempDir(), LockWait: time.Second}
	build(fresh, 1)
	if !slices.Equal(actions, []Action{ActionNew, ActionGrown, ActionNew}) {
		t.Fatalf("actions %v", actions)
	}
	got, want := answers(t, inc), answers(t, fresh)
	if !slices.Equal(got, want) {
		t.Fatalf("%d answers grown, %d fresh; first difference:\n%s", len(got), len(want), firstDiff(got, want))
	}
}

// TestFilesAtOnceOnAFilledIndex: captures already indexed, then changed,
// grown, renamed, compressed by logrotate (renamed, compressed, original
// deleted), left as they were, named twice, beside new ones; built again
// with captures walked at once, the reports, answers and file ids are
// those of the same build one capture after the other, in two builds in a
// row. (The decisions of a capture with a catalog entry once read entries
// that the commits of the captures walked beside it were moving.)
func TestFilesAtOnceOnAFilledIndex(t *testing.T) {
	var gz compresstest.Variant
	for _, v := range compresstest.Variants() {
		if v.Name == "gzip" {
			gz = v
		}
	}
	run := func(workers int) ([]string, []string, map[string]uint32) {
		dir := t.TempDir()
		write := func(name string, data []byte) string {
			p := filepath.Join(dir, name)
			if err := os.WriteFile(p, data, 0o644); err != nil {
				t.Fatal(err)
			}
			return p
		}
		grown := genCapture(t, 40, 2<<20)
		var paths []string
		for i := range 4 {
			paths = append(paths, write(fmt.Sprintf("c%d.pcap.gz", i), gz.Compress(t, genCapture(t, int64(10+i), 1<<20))))
		}
		paths = append(paths,
			write("grown.pcap", grown[:1<<20]),
			write("same.pcap.gz", gz.Compress(t, genCapture(t, 41, 1<<20))),
			write("moved.pcap", genCapture(t, 42, 1<<20)),
			write("rotated.pcap", genCapture(t, 43, 1<<20)),
		)
		store := &index.Store{Dir: t.TempDir(), LockWait: time.Second}
		if _, err := (&Builder{Store: store, Opts: Options{Workers: 1}}).Build(paths, nil); err != nil {
			t.Fatal(err)
		}
		// Changed (the four .gz), grown, renamed, compressed by
		// logrotate, unchanged; new ones; one named twice.
		for i, p := range paths[:4] {
			write(filepath.Base(p), gz.Compress(t, genCapture(t, int64(50+i), int64(1<<20+i*1000))))
		}
		write("grown.pcap", grown)
		if err := os.Rename(paths[6], filepath.Join(dir, "moved-here.pcap")); err != nil {
			t.Fatal(err)
		}
		rot, err := os.ReadFile(paths[7])
		if err != nil {
			t.Fatal(err)
		}
		write("rotated.pcap.1.gz", gz.Compress(t, rot))
		os.Remove(paths[7])
		again := []string{
			paths[0], paths[1], filepath.Join(dir, "rotated.pcap.1.gz"), paths[2], paths[4],
			write("new0.pcap.gz", gz.Compress(t, genCapture(t, 60, 1<<20))),
			paths[3], paths[5], filepath.Join(dir, "moved-here.pcap"),
			write("new1.pcap.gz", gz.Compress(t, genCapture(t, 61, 1<<20))),
			paths[0],
		}
		var reports []string
		for range 2 {
			if _, err := (&Builder{Store: store, Opts: Options{Workers: workers}}).Build(again, func(r FileResult) {
				reports = append(reports, fmt.Sprintf("%s %s %d %s %v", filepath.Base(r.Path), r.Action, r.Info.ID, filepath.Base(r.Renamed), r.Err))
			}); err != nil {
				t.Fatal(err)
			}
		}
		files, err := store.Catalog()
		if err != nil {
			t.Fatal(err)
		}
		ids := map[string]uint32{}
		for _, f := range files {
			ids[filepath.Base(f.Path)] = f.ID
		}
		var got []string
		for _, a := range answers(t, store) {
			got = append(got, strings.ReplaceAll(a, dir, "DIR"))
		}
		return reports, got, ids
	}
	oneReports, oneAnswers, oneIDs := run(1)
	for _, want := range []string{"c0.pcap.gz changed", "grown.pcap grown", "moved-here.pcap renamed", "rotated.pcap.1.gz renamed", "same.pcap.gz unchanged", "new1.pcap.gz new"} {
		if !slices.ContainsFunc(oneReports, func(r string) bool { return strings.HasPrefix(r, want) }) {
			t.Fatalf("reports %q: none begins %q", oneReports, want)
		}
	}
	for range 2 {
		reports, got, ids := run(2)
		if !slices.Equal(reports, oneReports) {
			t.Fatalf("reports at once %q, one by one %q", reports, oneReports)
		}
		if !slices.Equal(got, oneAnswers) {
			t.Fatalf("%d answers at once, %d one by one; first difference:\n%s", len(got), len(oneAnswers), firstDiff(got, oneAnswers))
		}
		if !equalMaps(ids, oneIDs) {
			t.Fatalf("file ids at once %v, one by one %v", ids, oneIDs)
		}
	}
}

// TestFilesAtOnceChangedPredecessor: a capture of a rotation whose
// predecessor's path now holds another capture (rewritten, starting after
// it) is not continued from the predecessor's old entry, walked beside it
// or not.
func TestFilesAtOnceChangedPredecessor(t *testing.T) {
	var gz compresstest.Variant
	for _, v := range compresstest.Variants() {
		if v.Name == "gzip" {
			gz = v
		}
	}
	a, b := rotationPair(t, 31)
	// later: b from three quarters of its records on.
	later := append(slices.Clone(b[:24]), b[recordBoundary(t, b, len(b)*3/4):]...)
	// and more behind it, so that its walk lasts while the next
	// capture's starts.
	later = append(later, genCapture(t, 77, 24<<20)[24:]...)
	run := func(workers int) ([]string, []string) {
		dir := t.TempDir()
		first, second := filepath.Join(dir, "cap-0001.pcap.gz"), filepath.Join(dir, "cap-0002.pcap.gz")
		if err := os.WriteFile(first, gz.Compress(t, a), 0o644); err != nil {
			t.Fatal(err)
		}
		store := &index.Store{Dir: t.TempDir(), LockWait: time.Second}
		if _, err := (&Builder{Store: store, Opts: Options{Workers: 1}}).Build([]string{first}, nil); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(first, gz.Compress(t, later), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(second, gz.Compress(t, b), 0o644); err != nil {
			t.Fatal(err)
		}
		var reports []string
		if _, err := (&Builder{Store: store, Opts: Options{Workers: workers}}).Build([]string{first, second}, func(r FileResult) {
			reports = append(reports, fmt.Sprintf("%s %s %d %q %v", filepath.Base(r.Path), r.Action, r.Info.ID, filepath.Base(r.Info.ContinuesFrom), r.Err))
		}); err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, s := range answers(t, store) {
			got = append(got, strings.ReplaceAll(s, dir, "DIR"))
		}
		return reports, got
	}
	oneReports, oneAnswers := run(1)
	for range 3 {
		reports, got := run(2)
		if !slices.Equal(reports, oneReports) {
			t.Fatalf("reports at once %q, one by one %q", reports, oneReports)
		}
		if !slices.Equal(got, oneAnswers) {
			t.Fatalf("%d answers at once, %d one by one; first difference:\n%s", len(got), len(oneAnswers), firstDiff(got, oneAnswers))
		}
	}
	t.Logf("reports %q", oneReports)
}
