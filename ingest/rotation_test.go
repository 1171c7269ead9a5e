package ingest

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/xffidx/xffidx/format/capgen"
	"github.com/xffidx/xffidx/format/xff"
	"github.com/xffidx/xffidx/index"
)

type hitAt struct {
	addr netip.Addr
	h    xff.Header
	off  int64
}

// hitSet returns the hits of the file at path in store.
func hitSet(t *testing.T, store *index.Store, path string) map[hitAt]bool {
	t.Helper()
	hits, _, err := store.Lookup([]netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}, xff.AllHeaders)
	if err != nil {
		t.Fatal(err)
	}
	out := map[hitAt]bool{}
	for _, h := range hits {
		if h.File.Path == path {
			out[hitAt{h.Addr, h.Header, h.Offset}] = true
		}
	}
	return out
}

// TestRotationContinues: a capture cut in two at a record boundary, as
// tcpdump -G or -C rotates: indexed in one build, the second file takes up
// the connections the first left open (header blocks begun in the first
// file, their requests' method, host and path), and finds every hit the
// whole capture has in its part; indexed alone it misses those.
func TestRotationContinues(t *testing.T) {
	var whole []byte
	{
		path, _ := busyCapture(t, capgen.BusyConfig{Seed: 21, TargetBytes: 6 << 20, Conns: 1500, GapRate: -1})
		var err error
		if whole, err = os.ReadFile(path); err != nil {
			t.Fatal(err)
		}
	}
	// Cut at the first record boundary past the middle.
	split := recordBoundary(t, whole, len(whole)/2)
	dir := t.TempDir()
	wholePath := filepath.Join(dir, "whole", "cap.pcap")
	a, b := filepath.Join(dir, "rot", "cap-0001.pcap"), filepath.Join(dir, "rot", "cap-0002.pcap")
	alone := filepath.Join(dir, "alone", "cap-0002.pcap")
	for p, data := range map[string][]byte{
		wholePath: whole,
		a:         whole[:split],
		b:         append(append([]byte{}, whole[:24]...), whole[split:]...),
		alone:     append(append([]byte{}, whole[:24]...), whole[split:]...),
	} {
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	build := func(paths ...string) *index.Store {
		store := &index.Store{Dir: t.TempDir(), LockWait: time.Second}
		var failed []string
		if _, err := (&Builder{Store: store, Opts: Options{Workers: 2, ChunkSize: 256 << 10}}).Build(paths, func(r FileResult) {
			if r.Err != nil {
				failed = append(failed, r.Err.Error())
			}
		}); err != nil || len(failed) > 0 {
			t.Fatal(err, failed)
		}
		return store
	}
	wholeHits := hitSet(t, build(wholePath), wholePath)
	rot := build(filepath.Join(dir, "rot"))
	bHits := hitSet(t, rot, b)
	aloneHits := hitSet(t, build(alone), alone)

	shift := int64(split - 24)
	want, missed, missedAlone := 0, 0, 0
	for k := range wholeHits {
		if k.off < int64(split) {
			continue
		}
		want++
		kb := hitAt{k.addr, k.h, k.off - shift}
		if !bHits[kb] {
			if missed++; missed <= 5 {
				t.Errorf("whole capture's %v %v at %d: not found at %d in the second file", k.h, k.addr, k.off, kb.off)
			}
		}
		if !aloneHits[kb] {
			missedAlone++
		}
	}
	// What the second file finds beyond the whole capture's hits in its
	// part: lines begun in the first file, recorded at the second file's
	// first record that carries them.
	carried := 0
	for k := range bHits {
		if !wholeHits[hitAt{k.addr, k.h, k.off + shift}] {
			carried++
		}
	}
	// Requests begun in the first file keep their request line.
	all, _, err := rot.Lookup([]netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}, xff.AllHeaders)
	if err != nil {
		t.Fatal(err)
	}
	recorded := 0
	for _, h := range all {
		for _, r := range h.Requests {
			if h.File.Path == b {
				recorded++
			}
			if len(r.Method) == 0 || len(r.Target) == 0 {
				t.Errorf("%s at %d: request record without its request line: %+v", h.File.Path, h.Offset, r)
			}
		}
	}
	if recorded == 0 {
		t.Error("no request records in the second file")
	}
	files, err := rot.Catalog()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if f.Path == b && f.ContinuesFrom != a {
			t.Errorf("%s continues from %q, want %s", b, f.ContinuesFrom, a)
		}
	}
	if missedAlone == 0 {
		t.Errorf("the second file alone finds all %d hits: the cut does not fall inside open header blocks", want)
	}
	t.Logf("second file: %d of the whole capture's %d hits there found (alone: %d), %d more from lines begun in the first file", want-missed, want, want-missedAlone, carried)
}
