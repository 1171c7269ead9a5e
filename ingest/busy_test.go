package ingest

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xffidx/xffidx/format"
	"github.com/xffidx/xffidx/format/capgen"
	"github.com/xffidx/xffidx/format/packet"
	"github.com/xffidx/xffidx/format/xff"
	"github.com/xffidx/xffidx/index"
)

// busyCapture writes a busy-link capture (capgen.WriteBusy) and its truth.
func busyCapture(t *testing.T, cfg capgen.BusyConfig) (string, capgen.BusyTruth) {
	t.Helper()
	path := filepath.Join(t.TempDir(), fmt.Sprintf("busy%d.pcap", cfg.Seed))
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := capgen.WriteBusy(f, cfg)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	return path, tr
}

type busyKey struct {
	off  int64
	h    xff.Header
	addr netip.Addr
}

// TestBusyLinkAgainstTruth: on busy-link captures (thousands of interleaved
// connections, header blocks over up to 12 segments, forwarding headers
// anywhere in them, pipelining, bodies with decoys, retransmissions,
// duplicates, reordering and gaps), every (record, header, address) the
// generator's truth holds is indexed and nothing else (but in requests a
// gap cuts, where a part may be), at every chunk size and worker count; a
// hit in a continuation segment carries its request's method, target, Host
// and whole list; gaps are counted.
func TestBusyLinkAgainstTruth(t *testing.T) {
	type run struct {
		chunk   int64
		workers int
	}
	for _, tc := range []struct {
		cfg  capgen.BusyConfig
		runs []run
	}{
		{capgen.BusyConfig{Seed: 1, TargetBytes: 40 << 20}, []run{{0, 1}, {1 << 20, 2}, {4 << 20, 4}, {256 << 10, 3}}},
		{capgen.BusyConfig{Seed: 2, TargetBytes: 3 << 20, Conns: 300}, []run{{97, 2}, {1000, 1}, {4096, 4}, {65536, 3}}},
		{capgen.BusyConfig{Seed: 3, TargetBytes: 8 << 20, Conns: 2000, Format: capgen.FormatPcapNG, VLAN: true, GapRate: 0.01, ReorderRate: 0.05}, []run{{0, 1}, {100 << 10, 2}}},
	} {
		path, tr := busyCapture(t, tc.cfg)
		want := map[busyKey]*capgen.BusyHit{}
		for i := range tr.Hits {
			h := &tr.Hits[i]
			hd, ok := xff.ParseHeader(h.Header)
			if !ok {
				t.Fatalf("truth header %q", h.Header)
			}
			for _, a := range h.Addrs {
				want[busyKey{h.Offset, hd, a}] = h
			}
		}
		gap := map[busyKey]bool{}
		for _, h := range tr.GapHits {
			hd, _ := xff.ParseHeader(h.Header)
			for _, a := range h.Addrs {
				gap[busyKey{h.Offset, hd, a}] = true
			}
		}
		afterGap := afterGapRecords(t, path, tr.GapSegs)
		for _, r := range tc.runs {
			name := fmt.Sprintf("seed %d (%d connections at most open, %d records), chunk %d, %d workers", tc.cfg.Seed, tr.MaxOpen, tr.Packets, r.chunk, r.workers)
			store := &index.Store{Dir: t.TempDir(), LockWait: time.Second}
			b := &Builder{Store: store, Opts: Options{Workers: r.workers, ChunkSize: r.chunk}}
			res := b.IndexFile(path)
			if res.Err != nil || !res.Committed {
				t.Fatalf("%s: %v", name, res.Err)
			}
			hits, _, err := store.Lookup([]netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}, xff.AllHeaders)
			if err != nil {
				t.Fatal(err)
			}
			found := map[busyKey]bool{}
			extra, wrongReq := 0, 0
			for _, h := range hits {
				k := busyKey{h.Offset, h.Header, h.Addr}
				found[k] = true
				w := want[k]
				if w == nil {
					if !gap[k] && !afterGap[h.Offset] {
						if extra++; extra <= 5 {
							t.Errorf("%s: indexed %v %v at %d, not in the truth", name, h.Header, h.Addr, h.Offset)
						}
					}
					continue
				}
				if msg := checkRequest(h, w); msg != "" {
					if wrongReq++; wrongReq <= 5 {
						t.Errorf("%s: %v %v at %d: %s", name, h.Header, h.Addr, h.Offset, msg)
					}
				}
			}
			missed := 0
			for k := range want {
				if !found[k] {
					if missed++; missed <= 5 {
						t.Errorf("%s: truth %v %v at %d (continuation %v, split %v) not indexed", name, k.h, k.addr, k.off, want[k].Cont, want[k].Split)
					}
				}
			}
			info := res.Info
			if tr.Gaps > 0 && info.Gaps == 0 {
				t.Errorf("%s: %d segments missing, no gap counted", name, tr.Gaps)
			}
			t.Logf("%s: %d hits of %d expected (+%d in gap-cut requests, %d records after a gap), missed %d, extra %d, request records wrong %d; lines %d (%d in continuation segments), gaps %d, retransmitted %d, reordered %d, evicted %d",
				name, len(hits), len(want), len(gap), len(afterGap), missed, extra, wrongReq, info.XFFLines+info.OtherLines, info.ContLines, info.Gaps, info.Dups, info.Early, info.Evicted)
		}
	}
}

// checkRequest compares the request a hit reports with the truth's.
func checkRequest(h index.Hit, w *capgen.BusyHit) string {
	if len(h.Requests) == 0 {
		if w.Cont || w.Split {
			return "a continuation or split line, but no request record"
		}
		return "" // the packet alone shows it: the query parses it
	}
	type req struct{ method, target, host, list string }
	truth := []req{{w.Method, w.Target, w.Host, w.List}}
	for _, m := range w.More {
		truth = append(truth, req{m.Method, m.Target, m.Host, m.List})
	}
	for _, r := range h.Requests {
		got := req{string(r.Method), string(r.Target), string(r.Host), string(r.Lists[h.Header])}
		if !strings.Contains(got.list, h.Addr.String()) && !r.Listed.Has(h.Header) {
			continue
		}
		for _, tr := range truth {
			if got == tr {
				if !r.Complete {
					return "request record not complete"
				}
				return ""
			}
		}
	}
	var got []string
	for _, r := range h.Requests {
		got = append(got, fmt.Sprintf("%s %s host %q list %q complete %v", r.Method, r.Target, r.Host, r.Lists[h.Header], r.Complete))
	}
	return fmt.Sprintf("request records %q, truth %+v", got, truth)
}

// afterGapRecords returns the records of client flows that come, in
// sequence, after a segment missing from the capture: what is found there
// is read across a gap (a body segment that starts like a request cannot
// be told from one), and the truth does not decide it.
func afterGapRecords(t *testing.T, path string, gaps []capgen.BusyGap) map[int64]bool {
	t.Helper()
	type flow struct{ src, dst netip.AddrPort }
	first := map[flow][]uint32{}
	for _, g := range gaps {
		first[flow{g.Src, g.Dst}] = append(first[flow{g.Src, g.Dst}], g.Seq)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	kind := format.Detect(b)
	w := format.Walker{Kind: kind}
	pos := 0
	if kind == format.KindPcap {
		if w.Sec, err = format.ParsePcapHeader(b); err != nil {
			t.Fatal(err)
		}
		pos = 24
	}
	out := map[int64]bool{}
	for pos < len(b) {
		rec, n, st := w.Next(b, 0, pos)
		if st != format.Packet && st != format.Header {
			break
		}
		pos += n
		if st != format.Packet {
			continue
		}
		seg, ok := packet.InnermostTCP(rec.LinkType, rec.Data)
		if !ok {
			continue
		}
		for _, g := range first[flow{netip.AddrPortFrom(seg.SrcIP, seg.SrcPort), netip.AddrPortFrom(seg.DstIP, seg.DstPort)}] {
			if int32(seg.Seq-g) > 0 {
				out[rec.Offset] = true
			}
		}
	}
	return out
}
