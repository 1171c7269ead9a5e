package ingest

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/xffidx/xffidx/format/capgen"
	"github.com/xffidx/xffidx/format/xff"
	"github.com/xffidx/xffidx/index"
)

func corpusFiles(t *testing.T) []string {
	files, _ := filepath.Glob("../testdata/corpus/*.pcap*")
	if len(files) == 0 {
		t.Skip("no corpus")
	}
	for i := range files {
		files[i], _ = filepath.Abs(files[i])
	}
	return files
}

// hitsOf indexes path with the given chunk size and returns every hit key
// with the file's totals.
func hitsOf(t *testing.T, path string, chunk int64, workers int) ([]string, index.FileInfo) {
	t.Helper()
	store := &index.Store{Dir: t.TempDir(), LockWait: time.Second}
	b := &Builder{Store: store, Opts: Options{Workers: workers, ChunkSize: chunk}}
	r := b.IndexFile(path)
	if r.Err != nil || !r.Committed {
		t.Fatalf("%s chunk %d: %v", path, chunk, r.Err)
	}
	hits, _, err := store.Lookup([]netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}, xff.AllHeaders)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, h := range hits {
		k := h.Addr.String() + "@" + string(rune(h.Pos+'0')) + "@" + time.Duration(h.Offset).String() + "@" + string(h.Raw) + fmt.Sprintf("@conn %d %v", h.ConnStart, h.ConnSYN)
		for _, r := range h.Requests {
			k += fmt.Sprintf("@%+v", r)
		}
		keys = append(keys, k)
	}
	slices.Sort(keys)
	info := r.Info
	info.IndexedAt, info.ID = time.Time{}, 0
	return keys, info
}

// TestChunkingDoesNotChangeResults: however a file is cut into chunks, and
// however many workers walk them, the index is the same as one sequential
// walk: hits, positions, request records and totals. Tiny chunks force
// resyncs inside records and the joining of connection state (header
// blocks begun in one chunk and going on in later ones) at every record;
// the busy-link captures have thousands of connections open across every
// chunk boundary.
func TestChunkingDoesNotChangeResults(t *testing.T) {
	files := corpusFiles(t)
	for _, cfg := range []capgen.BusyConfig{
		{Seed: 11, TargetBytes: 2 << 20, Conns: 400},
		{Seed: 12, TargetBytes: 3 << 20, Conns: 1000, Format: capgen.FormatPcapNG, GapRate: 0.01, ReorderRate: 0.05, DupRate: 0.02},
	} {
		path, _ := busyCapture(t, cfg)
		files = append(files, path)
	}
	for _, f := range files {
		st, _ := os.Stat(f)
		want, wantInfo := hitsOf(t, f, st.Size()+1, 1)
		for _, chunk := range []int64{97, 1000, 4096, 65536} {
			if chunk*2000 < st.Size() {
				continue // keep the test quick on the larger files
			}
			got, info := hitsOf(t, f, chunk, 3)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("%s chunk %d: hits differ:\n got %q\nwant %q", filepath.Base(f), chunk, got, want)
			}
			if !reflect.DeepEqual(info, wantInfo) {
				t.Errorf("%s chunk %d: totals differ:\n got %+v\nwant %+v", filepath.Base(f), chunk, info, wantInfo)
			}
		}
	}
}
