package query_test

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/xffidx/xffidx/format/capgen"
	"github.com/xffidx/xffidx/index"
	"github.com/xffidx/xffidx/query"
)

// truthTop ranks the truth's addresses as top must: hits (packets), flows
// (distinct 5-tuples), first and last timestamp, over the hits keep accepts.
func truthTop(paths []string, truths []capgen.Truth, keep func(file int, h capgen.Hit) bool) []query.TopRow {
	type agg struct {
		pkts  map[string]bool
		flows map[[2]netip.AddrPort]bool
		row   query.TopRow
	}
	by := map[netip.Addr]*agg{}
	for i, tr := range truths {
		for _, h := range tr.Hits {
			if !keep(i, h) {
				continue
			}
			for _, a := range h.Addrs {
				g := by[a]
				if g == nil {
					g = &agg{pkts: map[string]bool{}, flows: map[[2]netip.AddrPort]bool{}, row: query.TopRow{Addr: a}}
					by[a] = g
				}
				g.pkts[fmt.Sprint(paths[i], h.Offset)] = true
				g.flows[[2]netip.AddrPort{h.Src, h.Dst}] = true
				if !h.TS.IsZero() {
					if g.row.First.IsZero() || h.TS.Before(g.row.First) {
						g.row.First = h.TS
					}
					if h.TS.After(g.row.Last) {
						g.row.Last = h.TS
					}
				}
			}
		}
	}
	var rows []query.TopRow
	for _, g := range by {
		g.row.Hits, g.row.Flows = len(g.pkts), len(g.flows)
		rows = append(rows, g.row)
	}
	slices.SortFunc(rows, func(a, b query.TopRow) int { return cmp.Or(cmp.Compare(b.Hits, a.Hits), a.Addr.Compare(b.Addr)) })
	return rows
}

func sameTop(t *testing.T, what string, got, want []query.TopRow) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d rows, want %d", what, len(got), len(want))
	}
	for i := range min(len(got), len(want)) {
		g, w := got[i], want[i]
		if g.Addr != w.Addr || g.Hits != w.Hits || g.Flows != w.Flows || !g.First.Equal(w.First) || !g.Last.Equal(w.Last) {
			t.Errorf("%s: #%d: %s hits %d flows %d %v..%v; truth %s %d %d %v..%v", what, i+1,
				g.Addr, g.Hits, g.Flows, g.First, g.Last, w.Addr, w.Hits, w.Flows, w.First, w.Last)
		}
	}
}

func top(t *testing.T, store *index.Store, opt query.TopOptions) []query.TopRow {
	t.Helper()
	res, err := query.Top(store, opt)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Problems) > 0 {
		t.Fatalf("problems: %v", res.Problems)
	}
	return res.Rows
}

// TestTopAgainstTruth: top on generated captures equals counting the
// truth: the N most frequent addresses (ties by address), with their
// packets, distinct 5-tuples and first and last timestamps.
func TestTopAgainstTruth(t *testing.T) {
	store, paths, truths := capgenPair(t)
	want := truthTop(paths, truths, func(int, capgen.Hit) bool { return true })
	if len(want) < 50 || want[0].Hits < 2*want[20].Hits {
		t.Fatalf("truth: %d addresses; the generator's skew is missing", len(want))
	}
	for _, n := range []int{1, 5, 20, len(want) + 10} {
		sameTop(t, fmt.Sprint("N=", n), top(t, store, query.TopOptions{N: n}), want[:min(n, len(want))])
	}
	// One capture only.
	one := truthTop(paths, truths, func(i int, _ capgen.Hit) bool { return i == 1 })
	sameTop(t, "--file beta*", top(t, store, query.TopOptions{N: 20, Files: []string{"beta*"}}), one[:20])
	if _, err := query.Top(store, query.TopOptions{N: 0}); err == nil {
		t.Error("N=0 accepted")
	}
}

// TestTopWindow: with a time window the ranking is exact for the window,
// whether a capture lies wholly inside it (counted from the index), wholly
// outside, or across an edge (its hits' timestamps read).
func TestTopWindow(t *testing.T) {
	dir := t.TempDir()
	// Generated captures all start at 2026-01-01T00:00:00; their sizes set
	// where they end.
	p1, t1 := genCapture(t, dir, "short.pcap", capgen.Config{Seed: 31, Variants: true, TargetBytes: 1 << 20,
		Format: capgen.FormatPcap, LinkType: capgen.LinkEthernet, IPv6Transport: true})
	p2, t2 := genCapture(t, dir, "long.pcapng", capgen.Config{Seed: 32, Variants: true, TargetBytes: 3 << 20,
		Format: capgen.FormatPcapNGMulti, Tunnels: true})
	store := buildIndex(t, p1, p2)
	paths, truths := []string{p1, p2}, []capgen.Truth{t1, t2}
	spans := [2]index.FileInfo{catalogEntry(t, store, p1), catalogEntry(t, store, p2)}
	if !spans[0].LastTS.Before(spans[1].LastTS) {
		t.Fatalf("spans %v..%v and %v..%v: the short capture should end first", spans[0].FirstTS, spans[0].LastTS, spans[1].FirstTS, spans[1].LastTS)
	}
	start := spans[0].FirstTS
	if spans[1].FirstTS.Before(start) {
		start = spans[1].FirstTS
	}
	mid := spans[1].FirstTS.Add(spans[1].LastTS.Sub(spans[1].FirstTS) / 2)
	for _, w := range []struct {
		name     string
		from, to time.Time
	}{
		{"short inside, long across", start, spans[0].LastTS},
		{"short outside, long across", spans[0].LastTS.Add(time.Nanosecond), time.Time{}},
		{"both across", time.Time{}, mid},
		{"from the middle", mid, time.Time{}},
		{"an instant", mid, mid},
	} {
		t.Run(w.name, func(t *testing.T) {
			keep := func(i int, h capgen.Hit) bool {
				if h.TS.IsZero() { // no timestamp: in when the capture's span overlaps
					return (w.from.IsZero() || !spans[i].LastTS.Before(w.from)) && (w.to.IsZero() || !spans[i].FirstTS.After(w.to))
				}
				return (w.from.IsZero() || !h.TS.Before(w.from)) && (w.to.IsZero() || !h.TS.After(w.to))
			}
			want := truthTop(paths, truths, keep)
			for _, n := range []int{3, 25} {
				sameTop(t, fmt.Sprint("N=", n), top(t, store, query.TopOptions{N: n, From: w.from, To: w.to}), want[:min(n, len(want))])
				// Counted in many small batches.
				sameTop(t, fmt.Sprint("N=", n, " small batches"), top(t, store, query.TopOptions{N: n, From: w.from, To: w.to, BatchAddrs: 3, BatchHits: 20}), want[:min(n, len(want))])
			}
		})
	}
}
