package query_test

import (
	"bytes"
	"cmp"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/xffidx/xffidx/query"
)

// referenceFlows groups rows by connection the way Flows did when it held
// everything in maps: the reference for the aggregation in bounded memory.
func referenceFlows(rows []query.Row) []query.Flow {
	type key struct {
		lo, hi netip.AddrPort
		proto  string
	}
	keyOf := func(ft query.FiveTuple) key {
		a, b := netip.AddrPortFrom(ft.SrcIP, ft.SrcPort), netip.AddrPortFrom(ft.DstIP, ft.DstPort)
		if b.Compare(a) < 0 {
			a, b = b, a
		}
		return key{a, b, ft.Proto}
	}
	type pkt struct {
		file string
		off  int64
	}
	idx := map[key]int{}
	var flows []query.Flow
	seen := map[pkt]bool{}
	files := map[key]map[string]bool{}
	addrs := map[key]map[netip.Addr]bool{}
	for _, r := range rows {
		k := keyOf(r.FiveTuple)
		i, ok := idx[k]
		if !ok {
			i = len(flows)
			idx[k] = i
			flows = append(flows, query.Flow{FiveTuple: r.FiveTuple})
			files[k], addrs[k] = map[string]bool{}, map[netip.Addr]bool{}
		}
		f := &flows[i]
		addrs[k][r.XFFIP] = true
		if seen[pkt{r.File, r.Offset}] {
			continue
		}
		seen[pkt{r.File, r.Offset}] = true
		f.Hits++
		files[k][r.File] = true
		if r.TS.IsZero() {
			continue
		}
		if f.First.IsZero() || r.TS.Before(f.First) {
			f.First, f.FirstDigit = r.TS, r.TSDigit
			f.FiveTuple = r.FiveTuple
		}
		if f.Last.IsZero() || r.TS.After(f.Last) {
			f.Last, f.LastDigit = r.TS, r.TSDigit
		}
	}
	for i := range flows {
		k := keyOf(flows[i].FiveTuple)
		for p := range files[k] {
			flows[i].Files = append(flows[i].Files, p)
		}
		slices.Sort(flows[i].Files)
		for a := range addrs[k] {
			flows[i].XFFIPs = append(flows[i].XFFIPs, a)
		}
		slices.SortFunc(flows[i].XFFIPs, netip.Addr.Compare)
	}
	slices.SortFunc(flows, func(a, b query.Flow) int {
		if a.First.IsZero() != b.First.IsZero() {
			if a.First.IsZero() {
				return 1
			}
			return -1
		}
		return cmp.Or(a.First.Compare(b.First),
			a.SrcIP.Compare(b.SrcIP), cmp.Compare(a.SrcPort, b.SrcPort),
			a.DstIP.Compare(b.DstIP), cmp.Compare(a.DstPort, b.DstPort),
			strings.Compare(a.Proto, b.Proto))
	})
	return flows
}

// smallSort is a sort memory small enough that every sort of these tests
// spills runs to temporary files.
const smallSort = 512

// TestAggregationsSpill: with a sort memory far below what the rows, the
// flows, the top candidates or the packets of --write take, a search, its
// flows, top and --write spill sorted runs to temporary files and give
// exactly what they give in memory (and flows what maps gave).
func TestAggregationsSpill(t *testing.T) {
	store, _, _ := capgenPair(t)
	all := query.Options{Prefixes: prefixes("0.0.0.0/0", "::/0"), Headers: 0}
	ref := search(t, store, all)
	if len(ref.Rows) < 200 {
		t.Fatalf("only %d rows", len(ref.Rows))
	}
	small := all
	small.SortMem = smallSort

	var rows []query.Row
	sum, err := query.SearchEach(store, small, func(r query.Row) error { rows = append(rows, r); return nil })
	if err != nil || sum.Spills == 0 || sum.Matched != len(rows) {
		t.Fatalf("search: %v, %d spills, %d matched, %d rows", err, sum.Spills, sum.Matched, len(rows))
	}
	if !reflect.DeepEqual(rows, ref.Rows) {
		t.Errorf("search: %d rows spilling, %d in memory, not the same", len(rows), len(ref.Rows))
	}

	want := referenceFlows(ref.Rows)
	if got := query.Flows(ref.Rows); !reflect.DeepEqual(got, want) {
		t.Errorf("Flows: %d flows, want %d", len(got), len(want))
	}
	var flows []query.Flow
	sum, err = query.SearchFlows(store, small, func(f query.Flow) error { flows = append(flows, f); return nil })
	if err != nil || sum.Spills == 0 {
		t.Fatalf("flows: %v, %d spills", err, sum.Spills)
	}
	if !reflect.DeepEqual(flows, want) {
		t.Errorf("flows spilling: %d flows, want %d", len(flows), len(want))
		for i := range min(len(flows), len(want)) {
			if !reflect.DeepEqual(flows[i], want[i]) {
				t.Fatalf("flow %d: %+v, want %+v", i, flows[i], want[i])
			}
		}
	}

	for _, n := range []int{1, 3, 50} {
		opt := query.TopOptions{N: n}
		ref, err := query.Top(store, opt)
		if err != nil {
			t.Fatal(err)
		}
		opt.SortMem = smallSort
		got, err := query.Top(store, opt)
		if err != nil {
			t.Fatal(err)
		}
		if got.Spills == 0 || !reflect.DeepEqual(got.Rows, ref.Rows) {
			t.Errorf("top %d: %d spills; %v, want %v", n, got.Spills, got.Rows, ref.Rows)
		}
	}

	dir := t.TempDir()
	some := query.Options{Prefixes: prefixes("203.0.113.0/24", "2001:db8::/32")}
	_, st, err := query.SearchExport(store, some, filepath.Join(dir, "ref.pcapng"), false)
	if err != nil || st.Packets == 0 {
		t.Fatalf("export: %v, %+v", err, st)
	}
	some.SortMem = smallSort
	sum, st2, err := query.SearchExport(store, some, filepath.Join(dir, "small.pcapng"), false)
	if err != nil || sum.Spills == 0 || st2 != st {
		t.Fatalf("export spilling: %v, %d spills, %+v, want %+v", err, sum.Spills, st2, st)
	}
	a, _ := os.ReadFile(filepath.Join(dir, "ref.pcapng"))
	b, _ := os.ReadFile(filepath.Join(dir, "small.pcapng"))
	if !bytes.Equal(a, b) {
		t.Errorf("export spilling: %d bytes, %d in memory, not the same", len(b), len(a))
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 2 {
		t.Errorf("%d files in the output directory, want the 2 outputs", len(ents))
	}
	t.Logf("%d rows, %d flows, %d packets exported in %d conversations", len(rows), len(flows), st.Packets, st.Conversations)
}
