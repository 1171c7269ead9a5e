package index

import (
	"bufio"
	"bytes"
	"io"
	"math/rand/v2"
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
