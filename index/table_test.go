package index

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/xffidx/xffidx/format/xff"
)

// TestTableBuilder writes hits in random order, with duplicates, through
// the in-memory path (one table and two tables) and the spilled-run path,
// and reads them back exactly.
func TestTableBuilder(t *testing.T) {
	for _, tc := range []struct {
		name  string
		hits  int
		spill int
	}{{"small", 500, 1 << 20}, {"two tables", 40000, 1 << 20}, {"spilled runs", 5000, 700}} {
		t.Run(tc.name, func(t *testing.T) {
			store := &Store{Dir: t.TempDir(), LockWait: time.Second}
			tb, err := store.NewTable(3)
			if err != nil {
				t.Fatal(err)
			}
			tb.spillEntries = tc.spill
			rng := rand.New(rand.NewPCG(uint64(tc.hits), 9))
			want := map[string]int{}
			for i := 0; i < tc.hits; i++ {
				var a netip.Addr
				if rng.IntN(3) == 0 {
					a = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(rng.IntN(50))})
				} else {
					a = netip.AddrFrom4([4]byte{203, 0, 113, byte(rng.IntN(200))})
				}
				off := int64(rng.IntN(tc.hits/4+1)) * 100
				pos := rng.IntN(4)
				k := fmt.Sprint(a, "@", off)
				if p, ok := want[k]; !ok || pos < p {
					want[k] = pos
				}
				if err := tb.AddHit(a, off, xff.XForwardedFor, pos, -1, false); err != nil {
					t.Fatal(err)
				}
			}
			tb.AddRaw(700, xff.XForwardedFor, []byte("198.51.100.1, 198.51.100.2"))
			info := pcapEntry(0, "/x.pcap")
			tables, err := tb.Finish(info)
			if err != nil {
				t.Fatal(err)
			}
			if err := store.Commit(tables); err != nil {
				t.Fatal(err)
			}
			tb.Discard()
			hits, files, err := store.Lookup([]netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}, xff.AllHeaders)
			if err != nil {
				t.Fatal(err)
			}
			if len(files) != 1 || files[0].ID != 3 {
				t.Fatalf("catalog %+v", files)
			}
			got := map[string]int{}
			for _, h := range hits {
				got[fmt.Sprint(h.Addr, "@", h.Offset)] = h.Pos
				if (h.Offset == 700) != (h.Raw != nil) {
					t.Errorf("hit at %d: raw %q", h.Offset, h.Raw)
				}
			}
			if len(got) != len(want) || len(hits) != len(want) {
				t.Errorf("%d hits (%d distinct), want %d", len(hits), len(got), len(want))
			}
			for k, p := range want {
				if gp, ok := got[k]; !ok || gp != p {
					t.Errorf("%s: pos %d %v, want %d", k, gp, ok, p)
				}
			}
			if tc.hits >= 1<<14 && len(tables) != 2 || len(tb.runs) > 0 && len(tables) != 1 {
				t.Errorf("%d tables, %d runs", len(tables), len(tb.runs))
			}
			if !slices.IsSortedFunc(hits, func(a, b Hit) int { return int(a.Offset - b.Offset) }) {
				t.Error("hits not in offset order")
			}
		})
	}
}
