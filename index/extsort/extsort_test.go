package extsort

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"os"
	"slices"
	"testing"
)

// byKey orders records by their first 4 bytes only: the rest tells equal
// keys apart, to check that the sort is stable.
func byKey(a, b []byte) int { return bytes.Compare(a[:4], b[:4]) }

func records(r *rand.Rand, n, keys int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		rec := binary.BigEndian.AppendUint32(nil, uint32(r.IntN(keys)))
		rec = binary.BigEndian.AppendUint32(rec, uint32(i)) // insertion order
		rec = append(rec, bytes.Repeat([]byte{byte(i)}, r.IntN(40))...)
		out[i] = rec
	}
	return out
}

// TestSortEqualsStableSort: at every budget, from all in memory to a
// spill every few records (thousands of runs, merged level by level), the
// output is the stable sort of the input, nothing is left in the
// temporary directory, and the runs open at once stay few.
func TestSortEqualsStableSort(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, c := range []struct{ n, keys, budget int }{
		{0, 1, 0}, {1, 1, 0}, {5000, 50, 0}, {5000, 50, 4096}, {20000, 1000, 512}, {20000, 3, 1 << 14}, {3000, 1 << 30, 100},
	} {
		in := records(r, c.n, c.keys)
		dir := t.TempDir()
		s := New(byKey, c.budget, dir)
		maxRuns := 0
		for _, rec := range in {
			if err := s.Add(rec); err != nil {
				t.Fatal(err)
			}
			maxRuns = max(maxRuns, len(s.runs))
		}
		if ents, _ := os.ReadDir(dir); len(ents) > 0 {
			t.Errorf("%+v: %d files left in the temporary directory", c, len(ents))
		}
		want := slices.Clone(in)
		slices.SortStableFunc(want, byKey)
		var got [][]byte
		if err := s.Each(func(rec []byte) error { got = append(got, bytes.Clone(rec)); return nil }); err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Fatalf("%+v: %d records out, %d in", c, len(got), len(want))
		}
		for i := range got {
			if !bytes.Equal(got[i], want[i]) {
				t.Fatalf("%+v: record %d is %x, want %x", c, i, got[i], want[i])
			}
		}
		if c.budget > 0 && c.budget < 1<<14 && s.Spills() == 0 {
			t.Errorf("%+v: no spill", c)
		}
		// Levels of FanIn: fewer than FanIn runs per level.
		if maxRuns > 3*(FanIn-1)+1 {
			t.Errorf("%+v: %d runs open at once after %d spills", c, maxRuns, s.Spills())
		}
		t.Logf("%+v: %d spills, at most %d runs open", c, s.Spills(), maxRuns)
	}
}

func TestEachStops(t *testing.T) {
	s := New(byKey, 64, t.TempDir())
	for _, rec := range records(rand.New(rand.NewPCG(3, 4)), 100, 10) {
		s.Add(rec)
	}
	stop := errors.New("stop")
	n := 0
	if err := s.Each(func([]byte) error { n++; return stop }); err != stop || n != 1 {
		t.Errorf("Each: %v after %d records", err, n)
	}
	if err := s.Add([]byte("late")); err == nil {
		t.Error("Add after Each accepted")
	}
}
