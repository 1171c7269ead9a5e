package query_test

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/xffidx/xffidx/format/capgen"
	"github.com/xffidx/xffidx/format/xff"
	"github.com/xffidx/xffidx/index"
	"github.com/xffidx/xffidx/ingest"
	"github.com/xffidx/xffidx/query"
)

// generated is one synthetic capture with its ground truth.
type generated struct {
	name  string
	path  string
	cfg   capgen.Config
	truth capgen.Truth
}

func generateMatrix(t *testing.T, dir string, seed int64) []generated {
	t.Helper()
	cfgs := []capgen.Config{
		{Format: capgen.FormatPcap, LinkType: capgen.LinkEthernet, Tunnels: true, IPv6Transport: true},
		{Format: capgen.FormatPcapNs, LinkType: capgen.LinkSLL2},
		{Format: capgen.FormatPcapBE, LinkType: capgen.LinkSLL, IPv6Transport: true},
		{Format: capgen.FormatPcap, LinkType: capgen.LinkNull, IPv6Transport: true},
		{Format: capgen.FormatPcap, LinkType: capgen.LinkEthernet, VLAN: true, QinQ: true, Tunnels: true},
		{Format: capgen.FormatPcapNG, LinkType: capgen.LinkRaw, Tunnels: true},
		{Format: capgen.FormatPcapNGMulti, Tunnels: true, IPv6Transport: true},
		{Format: capgen.FormatPcap, LinkType: capgen.LinkEthernet, SnapLen: 200},
		{Format: capgen.FormatPcapNGMulti, SnapLen: 256},
		{Format: capgen.FormatPcapNs, LinkType: capgen.LinkEthernet, TruncateLast: true},
	}
	var out []generated
	for i, cfg := range cfgs {
		cfg.Seed = seed + int64(i)
		cfg.Variants = true
		cfg.TargetBytes = 1 << 20
		g := generated{name: fmt.Sprintf("seed%d-%s-link%d-snap%d", cfg.Seed, cfg.Format, cfg.LinkType, cfg.SnapLen), cfg: cfg}
		g.path = filepath.Join(dir, g.name+".cap")
		var buf bytes.Buffer
		tr, err := capgen.Write(&buf, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(g.path, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		g.truth = tr
		out = append(out, g)
	}
	return out
}

var everything = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}

// TestGeneratedAgainstTruth indexes synthetic captures with every XFF
// variant, decoy, split and cut, in every format and link type, and checks
// the index holds exactly the generator's ground truth, and that each hit
// reads back with the right 5-tuple, timestamp and raw value.
func TestGeneratedAgainstTruth(t *testing.T) {
	dir := t.TempDir()
	var gens []generated
	for _, seed := range []int64{7000, 8000, 9000} {
		gens = append(gens, generateMatrix(t, dir, seed)...)
	}
	for _, g := range gens {
		t.Run(g.name, func(t *testing.T) {
			store := &index.Store{Dir: t.TempDir(), LockWait: time.Second}
			b := &ingest.Builder{Store: store, Opts: ingest.Options{Workers: 2, ChunkSize: 64 << 10}}
			r := b.IndexFile(g.path)
			if r.Err != nil || !r.Committed {
				t.Fatalf("build: %v", r.Err)
			}
			if g.cfg.TruncateLast != (len(r.Warnings) == 1) {
				t.Errorf("warnings %q", r.Warnings)
			}
			if r.Info.Packets != g.truth.Packets {
				t.Errorf("packets %d, truth %d", r.Info.Packets, g.truth.Packets)
			}
			wantNonAddr := 0
			want := map[string]capgen.Hit{}
			for _, h := range g.truth.Hits {
				wantNonAddr += h.NonAddr
				for _, a := range h.Addrs {
					want[fmt.Sprint(a, "@", h.Offset)] = h
				}
			}
			if r.Info.NonAddresses != int64(wantNonAddr) {
				t.Errorf("non-address elements %d, truth %d", r.Info.NonAddresses, wantNonAddr)
			}
			hits, _, err := store.Lookup(everything, xff.SetOf(xff.XForwardedFor))
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]bool{}
			for _, h := range hits {
				k := fmt.Sprint(h.Addr, "@", h.Offset)
				got[k] = true
				if _, ok := want[k]; !ok {
					t.Errorf("indexed %s, not in the truth (decoy: %v)", k, capgen.DecoyPrefix.Contains(h.Addr))
				}
			}
			for k := range want {
				if !got[k] {
					t.Errorf("truth %s not indexed (raw %q)", k, want[k].Raw)
				}
			}
			// Read every hit back through the query path.
			res, err := query.Lookup(store, everything)
			if err != nil || len(res.Problems) > 0 {
				t.Fatalf("lookup: %v %v", err, res.Problems)
			}
			for _, row := range res.Rows {
				h := want[fmt.Sprint(row.XFFIP, "@", row.Offset)]
				if row.SrcIP != h.Src.Addr() || row.SrcPort != h.Src.Port() || row.DstIP != h.Dst.Addr() || row.DstPort != h.Dst.Port() {
					t.Errorf("offset %d: tuple %s:%d→%s:%d, truth %s→%s", row.Offset, row.SrcIP, row.SrcPort, row.DstIP, row.DstPort, h.Src, h.Dst)
				}
				if !h.TS.IsZero() && !row.TS.Equal(h.TS) {
					t.Errorf("offset %d: ts %v, truth %v", row.Offset, row.TS, h.TS)
				}
				if !valueShows(row, h.Raw) {
					t.Errorf("offset %d: xff %q, truth %q", row.Offset, row.XFF, h.Raw)
				}
			}
			if len(res.Rows) != len(want) {
				t.Errorf("%d rows, truth %d", len(res.Rows), len(want))
			}
		})
	}
}

// TestGeneratedAgainstTshark is the differential test with the reference
// dissector: every packet tshark shows with an X-Forwarded-For value (but for
// the decoys it is known to show, see capgen's TestTshark) is a hit of
// xffidx for each complete address tshark shows, with tshark's innermost
// 5-tuple.
func TestGeneratedAgainstTshark(t *testing.T) {
	if _, err := exec.LookPath("tshark"); err != nil {
		t.Skip("tshark not installed")
	}
	dir := t.TempDir()
	for _, g := range generateMatrix(t, dir, 7000) {
		t.Run(g.name, func(t *testing.T) {
			t.Parallel()
			store := &index.Store{Dir: t.TempDir(), LockWait: time.Second}
			b := &ingest.Builder{Store: store, Opts: ingest.Options{Workers: 2}}
			if r := b.IndexFile(g.path); r.Err != nil {
				t.Fatal(r.Err)
			}
			res, err := query.Lookup(store, everything)
			if err != nil {
				t.Fatal(err)
			}
			ours := map[int64][]query.Row{}
			for _, r := range res.Rows {
				ours[r.Offset] = append(ours[r.Offset], r)
			}
			offs := frameOffsets(t, g.path)
			out, err := exec.Command("tshark", "-r", g.path, "-o", "tcp.desegment_tcp_streams:FALSE",
				"-o", "tcp.analyze_sequence_numbers:FALSE", "-Y", "http.x_forwarded_for",
				"-T", "fields", "-e", "frame.number", "-e", "ip.src", "-e", "ipv6.src", "-e", "tcp.srcport",
				"-e", "ip.dst", "-e", "ipv6.dst", "-e", "tcp.dstport", "-e", "http.x_forwarded_for",
				"-e", "frame.protocols", "-E", "occurrence=a", "-E", "aggregator=|").Output()
			if err != nil && len(out) == 0 {
				t.Fatalf("tshark: %v", err)
			}
			compared := 0
			for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
				c := strings.Split(line, "\t")
				if len(c) != 9 {
					continue
				}
				var frame int
				fmt.Sscan(c[0], &frame)
				if frame < 1 || frame > len(offs) {
					t.Fatalf("tshark frame %d of %d", frame, len(offs))
				}
				var addrs []netip.Addr
				decoy := false
				for _, v := range strings.Split(c[7], "|") {
					v = strings.ReplaceAll(v, `\t`, "\t")
					xff.Elements([]byte(v), true, func(e []byte) { // the last element may be split
						if a, ok := xff.ParseAddr(e); ok {
							addrs = append(addrs, a)
							decoy = decoy || capgen.DecoyPrefix.Contains(a)
						}
					})
				}
				if decoy {
					continue
				}
				rows := ours[offs[frame-1]]
				for _, a := range addrs {
					if !slices.ContainsFunc(rows, func(r query.Row) bool { return r.XFFIP == a }) {
						t.Errorf("frame %d: tshark shows %s, xffidx has no such hit (%q)", frame, a, c[7])
					}
				}
				last := func(s string) string { p := strings.Split(s, "|"); return p[len(p)-1] }
				// The innermost network layer is the last ip or ipv6 in the
				// protocol stack (an IPv6 connection may ride an IPv4 tunnel).
				src, dst := last(c[1]), last(c[4])
				protos := strings.Split(c[8], ":")
				if lastIndex(protos, "ipv6") > lastIndex(protos, "ip") {
					src, dst = last(c[2]), last(c[5])
				}
				for _, r := range rows {
					if r.SrcIP.String() != src || r.DstIP.String() != dst || fmt.Sprint(r.SrcPort) != last(c[3]) || fmt.Sprint(r.DstPort) != last(c[6]) {
						t.Errorf("frame %d: xffidx %s:%d→%s:%d, tshark %s:%s→%s:%s", frame, r.SrcIP, r.SrcPort, r.DstIP, r.DstPort, src, last(c[3]), dst, last(c[6]))
					}
				}
				compared++
			}
			if compared < 10 {
				t.Errorf("only %d tshark rows compared", compared)
			}
			t.Logf("%d tshark XFF packets compared; xffidx has %d hit packets", compared, len(ours))
		})
	}
}

func lastIndex(s []string, v string) int {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == v {
			return i
		}
	}
	return -1
}

// valueShows reports whether a row's value is what the truth says the
// packet shows: its lines joined, or, for a packet whose requests the build
// recorded (a header block over several segments), the whole list of the
// request holding the address, which contains that request's line here.
func valueShows(row query.Row, raw []string) bool {
	if string(row.XFF) == strings.Join(raw, ", ") {
		return true
	}
	for _, v := range raw {
		holds := false
		xff.XForwardedFor.Elements([]byte(v), false, func(e []byte) {
			if a, ok := xff.ParseAddr(e); ok && a == row.XFFIP {
				holds = true
			}
		})
		if holds && strings.Contains(string(row.XFF), v) {
			return true
		}
	}
	return false
}
