package query_test

import (
	"cmp"
	"net/netip"
	"slices"
	"testing"

	"github.com/xffidx/xffidx/format/capgen"
	"github.com/xffidx/xffidx/query"
)

// TestListReadsEachPacketOnce: a search for a list of addresses reads each
// packet once, however many listed addresses it holds, and gives a row per
// address that matched; the list's order and repeats change nothing.
func TestListReadsEachPacketOnce(t *testing.T) {
	path, tr := genCapture(t, t.TempDir(), "list.pcap", capgen.Config{Seed: 21, Format: capgen.FormatPcap, LinkType: capgen.LinkEthernet, TargetBytes: 1 << 20, XFFRate: 0.3, Variants: true, CookieRate: 0.1})
	store := buildIndex(t, path)
	// Every address of the packets that list two or more.
	var list []netip.Prefix
	packets := map[int64]bool{}
	for _, h := range tr.Hits {
		if len(h.Addrs) < 2 || len(list) > 400 {
			continue
		}
		for _, a := range h.Addrs {
			list = append(list, netip.PrefixFrom(a, a.BitLen()))
		}
	}
	if len(list) < 20 {
		t.Fatalf("only %d addresses in packets with several", len(list))
	}
	// Reversed and repeated.
	for i := len(list) - 1; i >= 0; i -= 3 {
		list = append(list, list[i])
	}
	var c query.Counts
	res, err := query.Search(store, query.Options{Prefixes: list, Counts: &c})
	if err != nil {
		t.Fatal(err)
	}
	type rowKey struct {
		addr netip.Addr
		off  int64
	}
	rows := map[rowKey]bool{}
	several := 0
	for i, r := range res.Rows {
		packets[r.Offset] = true
		if k := (rowKey{r.XFFIP, r.Offset}); rows[k] {
			t.Errorf("row %d repeats (%s at %d)", i, r.XFFIP, r.Offset)
		} else {
			rows[k] = true
		}
		if i > 0 && res.Rows[i-1].Offset == r.Offset {
			several++
		}
	}
	if several == 0 {
		t.Fatal("no packet gave two rows: the test proves nothing")
	}
	if c.Records != int64(len(packets)) {
		t.Errorf("read %d packet records for %d packets (%d rows)", c.Records, len(packets), len(res.Rows))
	}
	if c.Index.Opens.Load() != 1 {
		t.Errorf("the index was opened %d times", c.Index.Opens.Load())
	}
	// The same rows as one search per address, in the same order.
	var union []query.Row
	seen := map[netip.Prefix]bool{}
	for _, p := range list {
		if seen[p] {
			continue
		}
		seen[p] = true
		r, err := query.Search(store, query.Options{Prefixes: []netip.Prefix{p}})
		if err != nil {
			t.Fatal(err)
		}
		union = append(union, r.Rows...)
	}
	slices.SortStableFunc(union, func(a, b query.Row) int {
		return cmp.Or(cmp.Compare(a.Offset, b.Offset), cmp.Compare(a.Header, b.Header), a.XFFIP.Compare(b.XFFIP))
	})
	if len(union) != len(res.Rows) {
		t.Fatalf("%d rows, the single searches %d", len(res.Rows), len(union))
	}
	for i := range union {
		u, r := union[i], res.Rows[i]
		if u.XFFIP != r.XFFIP || u.Offset != r.Offset || u.FiveTuple != r.FiveTuple || !u.TS.Equal(r.TS) || string(u.XFF) != string(r.XFF) || string(u.Path) != string(r.Path) {
			t.Fatalf("row %d: %s at %d, the single searches' %s at %d", i, r.XFFIP, r.Offset, u.XFFIP, u.Offset)
		}
	}
}
