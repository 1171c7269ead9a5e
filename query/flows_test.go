package query_test

import (
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xffidx/xffidx/format/capgen"
	"github.com/xffidx/xffidx/format/xff"
	"github.com/xffidx/xffidx/query"
)

// conn names a connection whichever way its packets go.
type conn struct{ a, b netip.AddrPort }

func connOf(ft query.FiveTuple) conn {
	a, b := netip.AddrPortFrom(ft.SrcIP, ft.SrcPort), netip.AddrPortFrom(ft.DstIP, ft.DstPort)
	if b.Compare(a) < 0 {
		a, b = b, a
	}
	return conn{a, b}
}

// TestFlowsGroupRows: --flows is exactly the per-packet rows grouped by
// connection, with distinct packets counted once, first/last timestamp,
// files and addresses; on every prefix and on single addresses.
func TestFlowsGroupRows(t *testing.T) {
	store, _, _ := capgenPair(t)
	for _, ps := range [][]string{{"0.0.0.0/0", "::/0"}, {"203.0.113.0/24"}, {"198.51.100.7"}, {"2001:db8::/32", "192.0.2.0/24"}} {
		rows := search(t, store, query.Options{Prefixes: prefixes(ps...)}).Rows
		type agg struct {
			pkts        map[string]bool
			files       map[string]bool
			addrs       map[netip.Addr]bool
			first, last time.Time
		}
		want := map[conn]*agg{}
		for _, r := range rows {
			c := connOf(r.FiveTuple)
			g := want[c]
			if g == nil {
				g = &agg{pkts: map[string]bool{}, files: map[string]bool{}, addrs: map[netip.Addr]bool{}}
				want[c] = g
			}
			g.pkts[fmt.Sprint(r.File, r.Offset)] = true
			g.files[r.File] = true
			g.addrs[r.XFFIP] = true
			if !r.TS.IsZero() {
				if g.first.IsZero() || r.TS.Before(g.first) {
					g.first = r.TS
				}
				if r.TS.After(g.last) {
					g.last = r.TS
				}
			}
		}
		flows := query.Flows(rows)
		if len(flows) != len(want) || len(flows) == 0 {
			t.Errorf("%v: %d flows, %d connections among the rows", ps, len(flows), len(want))
		}
		seen := map[conn]bool{}
		for i, f := range flows {
			c := connOf(f.FiveTuple)
			g := want[c]
			if g == nil || seen[c] {
				t.Errorf("%v: flow %v not a connection of the rows, or twice", ps, c)
				continue
			}
			seen[c] = true
			var files []string
			for p := range g.files {
				files = append(files, p)
			}
			slices.Sort(files)
			var addrs []netip.Addr
			for a := range g.addrs {
				addrs = append(addrs, a)
			}
			slices.SortFunc(addrs, netip.Addr.Compare)
			if f.Hits != len(g.pkts) || !f.First.Equal(g.first) || !f.Last.Equal(g.last) || !slices.Equal(f.Files, files) || !slices.Equal(f.XFFIPs, addrs) {
				t.Errorf("%v: flow %v: hits %d first %v last %v files %v addrs %v; rows give %d %v %v %v %v",
					ps, c, f.Hits, f.First, f.Last, f.Files, f.XFFIPs, len(g.pkts), g.first, g.last, files, addrs)
			}
			if i > 0 && !f.First.IsZero() && f.First.Before(flows[i-1].First) {
				t.Errorf("%v: flows out of time order", ps)
			}
		}
	}
}

// tsharkStreams returns, per XFF address, the tcp.stream numbers of the
// packets tshark shows it in.
func tsharkStreams(t *testing.T, path string) map[netip.Addr]map[string]bool {
	t.Helper()
	out := map[netip.Addr]map[string]bool{}
	for _, c := range tsharkFields(t, path, "http.x_forwarded_for", "tcp.stream", "http.x_forwarded_for") {
		for _, v := range strings.Split(c[1], "|") {
			xff.Elements([]byte(v), false, func(e []byte) {
				if a, ok := xff.ParseAddr(e); ok {
					if out[a] == nil {
						out[a] = map[string]bool{}
					}
					out[a][c[0]] = true
				}
			})
		}
	}
	return out
}

// TestFlowsAgainstTshark: for every address of every corpus xff_* capture
// and of a generated capture, the number of flows is the number of distinct
// TCP streams tshark shows the address in (tunnelled captures included: the
// stream is the inner connection).
func TestFlowsAgainstTshark(t *testing.T) {
	needTshark(t)
	dir := corpusDir(t)
	captures, _ := filepath.Glob(filepath.Join(dir, "xff_*.pcap*"))
	gen, _ := genCapture(t, t.TempDir(), "bulk.pcap", capgen.Config{Seed: 71, TargetBytes: 2 << 20, XFFRate: 0.1,
		Format: capgen.FormatPcap, LinkType: capgen.LinkEthernet, IPv6Transport: true, Tunnels: true})
	captures = append(captures, gen)
	compared, multi := 0, 0
	for _, path := range captures {
		store := buildIndex(t, path)
		want := tsharkStreams(t, path)
		if len(want) == 0 {
			t.Fatalf("%s: tshark shows no XFF address", path)
		}
		for a, streams := range want {
			res := search(t, store, query.Options{Prefixes: []netip.Prefix{netip.PrefixFrom(a, a.BitLen())}})
			flows := query.Flows(res.Rows)
			if len(flows) != len(streams) {
				t.Errorf("%s: %s: %d flows, tshark %d streams", filepath.Base(path), a, len(flows), len(streams))
			}
			compared++
			if len(streams) > 1 {
				multi++
			}
		}
	}
	t.Logf("%d addresses compared, %d in more than one stream", compared, multi)
	if multi < 5 {
		t.Errorf("only %d addresses in several streams: the check is weak", multi)
	}
}

// TestWiresharkFilterSelectsConversations: the display filter, run through
// tshark, selects exactly the packets (both directions, handshake and
// responses included) of the matched connections, as xffidx's own decoder
// sees every frame. Non-tunnelled captures only: Wireshark applies ip.addr
// and tcp.port to outer headers too.
func TestWiresharkFilterSelectsConversations(t *testing.T) {
	needTshark(t)
	dir := corpusDir(t)
	type capture struct {
		path     string
		prefixes []netip.Prefix
	}
	var captures []capture
	for _, n := range []string{"xff_two_ips_small.pcap", "xff_extradata_download.pcap", "xff_out_of_order_squid.pcap", "xff_arkime_synthetic_multiproto.pcap", "xff_with_original_forwarded_for.pcap"} {
		captures = append(captures, capture{filepath.Join(dir, n), prefixes("0.0.0.0/0", "::/0")})
	}
	tmp := t.TempDir()
	g1, _ := genCapture(t, tmp, "v.pcap", capgen.Config{Seed: 81, Variants: true, TargetBytes: 1 << 20,
		Format: capgen.FormatPcap, LinkType: capgen.LinkEthernet, IPv6Transport: true})
	g2, _ := genCapture(t, tmp, "b.pcap", capgen.Config{Seed: 82, TargetBytes: 1 << 20, XFFRate: 0.1,
		Format: capgen.FormatPcapNs, LinkType: capgen.LinkSLL, IPv6Transport: true})
	// A subset of the generated captures' connections.
	captures = append(captures, capture{g1, prefixes("203.0.113.0/24", "2001:db8::/32")}, capture{g2, prefixes("203.0.113.0/24", "2001:db8::/32")})
	for _, c := range captures {
		path := c.path
		t.Run(filepath.Base(path), func(t *testing.T) {
			store := buildIndex(t, path)
			flows := query.Flows(search(t, store, query.Options{Prefixes: c.prefixes}).Rows)
			if len(flows) == 0 {
				t.Fatal("no flows")
			}
			filter := query.WiresharkFilter(flows)
			matched := map[conn]bool{}
			for _, f := range flows {
				matched[connOf(f.FiveTuple)] = true
			}
			var want []int
			for i, rec := range decReadCapture(t, path) {
				ft, _, err := query.DecodeFrame(rec.linkType, rec.data)
				if err == nil && matched[connOf(ft)] {
					want = append(want, i+1)
				}
			}
			got := tsharkFrames(t, path, filter)
			if !slices.Equal(got, want) {
				t.Errorf("%d flows: tshark selects %d frames, the flows' connections have %d\nfilter: %.300s\ngot  %v\nwant %v",
					len(flows), len(got), len(want), filter, got[:min(len(got), 40)], want[:min(len(want), 40)])
			}
			if len(want) <= len(flows) {
				t.Errorf("only %d frames for %d flows: handshakes and responses should be selected too", len(want), len(flows))
			}
			t.Logf("%d flows, %d frames", len(flows), len(want))
		})
	}
}

func tsharkFrames(t *testing.T, path, filter string) []int {
	t.Helper()
	out, err := exec.Command("tshark", "-r", path, "-Y", filter, "-T", "fields", "-e", "frame.number").Output()
	if err != nil {
		t.Fatalf("tshark -Y %.200q: %v", filter, err)
	}
	var frames []int
	for _, l := range strings.Fields(string(out)) {
		n, err := strconv.Atoi(l)
		if err != nil {
			t.Fatalf("tshark output %q", l)
		}
		frames = append(frames, n)
	}
	return frames
}
