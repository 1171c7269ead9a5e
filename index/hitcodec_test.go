package index

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"
)

// TestHitCodecRoundTrip: entries written to a run file read back equal, a
// clean end is io.EOF, and a file cut inside an entry is an error, not a
// short entry.
func TestHitCodecRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	want := make([]hitEntry, 3000) // several times the read buffer
	for i := range want {
		for j := range want[i].w {
			want[i].w[j] = rng.Uint64()
		}
		want[i].pos, want[i].conn = rng.Uint32(), rng.Uint32()
	}
	var file bytes.Buffer
	w := bufio.NewWriterSize(&file, 1<<10)
	for _, e := range want {
		hitCodec.write(w, e)
	}
	w.Flush()
	if file.Len() != len(want)*hitEntrySize {
		t.Fatalf("wrote %d bytes for %d entries", file.Len(), len(want))
	}
	for _, cut := range []int{0, 1, hitEntrySize - 1} {
		data := file.Bytes()[:file.Len()-cut]
		r := bufio.NewReaderSize(bytes.NewReader(data), runReadBuffer)
		var got []hitEntry
		var err error
		for {
			var e hitEntry
			if e, err = hitCodec.read(r); err != nil {
				break
			}
			got = append(got, e)
		}
		switch {
		case cut == 0 && err != io.EOF:
			t.Fatalf("whole file: ended with %v, want io.EOF", err)
		case cut > 0 && (err == nil || err == io.EOF):
			t.Fatalf("cut %d bytes short: ended with %v, want an error", cut, err)
		}
		n := len(want)
		if cut > 0 {
			n--
		}
		if len(got) != n {
			t.Fatalf("cut %d: read %d entries, want %d", cut, len(got), n)
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("cut %d: entry %d reads back as %+v, want %+v", cut, i, got[i], want[i])
			}
		}
	}
}

// TestSplitHitsKeepsKeysTogether: the two parts Finish writes at once hold
// every entry once, all of the first part's keys before the second's, and
// the entries of one key (many, around the cut) in one part.
func TestSplitHitsKeepsKeysTogether(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	entry := func() hitEntry {
		// Few distinct keys: long runs of equal keys, across every cut.
		return hitEntry{w: [4]uint64{uint64(rng.IntN(3)), uint64(rng.IntN(40))}, pos: rng.Uint32(), conn: rng.Uint32()}
	}
	dir := t.TempDir()
	var runs []run
	var all []hitEntry
	for i := range 7 {
		es := make([]hitEntry, 1000+rng.IntN(3000))
		for j := range es {
			es[j] = entry()
		}
		slices.SortFunc(es, compareEntries)
		all = append(all, es...)
		r, err := writeRun(hitCodec, filepath.Join(dir, fmt.Sprint("run", i)), func(emit func(hitEntry) error) error {
			for _, e := range es {
				emit(e)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		runs = append(runs, r)
	}
	mem := make([]hitEntry, 500)
	for j := range mem {
		mem[j] = entry()
	}
	slices.SortFunc(mem, compareEntries)
	all = append(all, mem...)

	parts, err := splitHits(runs, mem)
	if err != nil {
		t.Fatal(err)
	}
	var got [2][]hitEntry
	for i, p := range parts {
		if err := mergeFiles(hitCodec, p.runs, p.mem, func(e hitEntry) error {
			got[i] = append(got[i], e)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if !slices.IsSortedFunc(got[i], compareEntries) {
			t.Errorf("part %d is not sorted", i)
		}
	}
	if len(got[0]) == 0 || len(got[1]) == 0 {
		t.Fatalf("parts of %d and %d entries: the cut is at an end", len(got[0]), len(got[1]))
	}
	if last, first := got[0][len(got[0])-1], got[1][0]; compareKeys(last, first) >= 0 {
		t.Errorf("the first part ends with key %v, the second begins with %v", last.w, first.w)
	}
	slices.SortFunc(all, compareEntries)
	if union := append(got[0], got[1]...); !slices.Equal(union, all) {
		t.Errorf("the parts hold %d entries, not the %d given (or other ones)", len(union), len(all))
	}
}
