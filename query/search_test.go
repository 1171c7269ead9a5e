package query_test

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/xffidx/xffidx/format/capgen"
	"github.com/xffidx/xffidx/index"
	"github.com/xffidx/xffidx/ingest"
	"github.com/xffidx/xffidx/query"
)

// buildIndex indexes the captures into a fresh index.
func buildIndex(t *testing.T, paths ...string) *index.Store {
	t.Helper()
	store := &index.Store{Dir: t.TempDir(), LockWait: 5 * time.Second}
	b := &ingest.Builder{Store: store, Opts: ingest.Options{Workers: 2}}
	for _, p := range paths {
		if r := b.IndexFile(p); r.Err != nil {
			t.Fatalf("build %s: %v", p, r.Err)
		}
	}
	return store
}

// genCapture writes one synthetic capture and returns its path and truth.
func genCapture(t *testing.T, dir, name string, cfg capgen.Config) (string, capgen.Truth) {
	t.Helper()
	var buf bytes.Buffer
	tr, err := capgen.Write(&buf, cfg)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, tr
}

// hitKey is one (address, packet) pair: one row of a per-packet search.
type hitKey struct {
	addr netip.Addr
	file string
	off  int64
}

func (k hitKey) String() string { return fmt.Sprintf("%s@%s:%d", k.addr, filepath.Base(k.file), k.off) }

// truthHits lists the truth's (address, packet) pairs whose address passes keep.
func truthHits(path string, tr capgen.Truth, keep func(capgen.Hit, netip.Addr) bool) map[hitKey]capgen.Hit {
	out := map[hitKey]capgen.Hit{}
	for _, h := range tr.Hits {
		for _, a := range h.Addrs {
			if keep(h, a) {
				out[hitKey{a, path, h.Offset}] = h
			}
		}
	}
	return out
}

// rowSet turns rows into a set, failing on a repeated (address, packet).
func rowSet(t *testing.T, rows []query.Row) map[hitKey]query.Row {
	t.Helper()
	out := map[hitKey]query.Row{}
	for _, r := range rows {
		k := hitKey{r.XFFIP, r.File, r.Offset}
		if _, dup := out[k]; dup {
			t.Errorf("row %s reported twice", k)
		}
		out[k] = r
	}
	return out
}

// sameKeys reports the differences between two key sets.
func sameKeys[V1, V2 any](t *testing.T, what string, got map[hitKey]V1, want map[hitKey]V2) {
	t.Helper()
	var missing, extra []string
	for k := range want {
		if _, ok := got[k]; !ok {
			missing = append(missing, k.String())
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			extra = append(extra, k.String())
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	if len(missing) > 0 || len(extra) > 0 {
		t.Errorf("%s: %d rows, want %d; missing %d %v; extra %d %v", what, len(got), len(want),
			len(missing), missing[:min(len(missing), 10)], len(extra), extra[:min(len(extra), 10)])
	}
}

func search(t *testing.T, store *index.Store, opt query.Options) query.Result {
	t.Helper()
	res, err := query.Search(store, opt)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Problems) > 0 {
		t.Fatalf("problems: %v", res.Problems)
	}
	return res
}

func prefixes(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p)
			continue
		}
		a := netip.MustParseAddr(s)
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out
}

// capgenPair writes two synthetic captures with every variant, one plain and
// one pcapng with tunnels and a second section, and indexes both.
func capgenPair(t *testing.T) (*index.Store, []string, []capgen.Truth) {
	t.Helper()
	dir := t.TempDir()
	p1, t1 := genCapture(t, dir, "alpha.pcap", capgen.Config{Seed: 41, Variants: true, TargetBytes: 1 << 20,
		Format: capgen.FormatPcap, LinkType: capgen.LinkEthernet, IPv6Transport: true})
	p2, t2 := genCapture(t, dir, "beta.pcapng", capgen.Config{Seed: 42, Variants: true, TargetBytes: 1 << 20,
		Format: capgen.FormatPcapNGMulti, Tunnels: true, IPv6Transport: true})
	return buildIndex(t, p1, p2), []string{p1, p2}, []capgen.Truth{t1, t2}
}

// TestCIDRIsUnionOfAddresses: a prefix search returns exactly the truth's
// (address, packet) pairs of the addresses in it, which is also the union
// of the per-address searches; overlapping prefixes and addresses in one
// search give each pair once.
func TestCIDRIsUnionOfAddresses(t *testing.T) {
	store, paths, truths := capgenPair(t)
	cases := [][]string{
		{"203.0.113.0/24"},
		{"2001:db8::/32"},
		{"198.51.100.0/24", "2001:db8::/32"},
		{"203.0.113.0/24", "203.0.113.0/25", "203.0.113.99", "0.0.0.0/0"},
		{"::ffff:203.0.113.0/120"}, // IPv4-mapped: the IPv4 prefix
		{"2001:db8::/32", "2001:db8::7", "2001:db8::/48"},
	}
	for _, c := range cases {
		t.Run(fmt.Sprint(c), func(t *testing.T) {
			ps := prefixes(c...)
			in := func(_ capgen.Hit, a netip.Addr) bool {
				for _, p := range ps {
					if p.Contains(a) || (p.Addr().Is4In6() && p.Bits() >= 96 && netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96).Contains(a)) {
						return true
					}
				}
				return false
			}
			want := map[hitKey]capgen.Hit{}
			for i, p := range paths {
				for k, v := range truthHits(p, truths[i], in) {
					want[k] = v
				}
			}
			if len(want) < 10 {
				t.Fatalf("only %d truth hits: not a useful case", len(want))
			}
			got := rowSet(t, search(t, store, query.Options{Prefixes: ps}).Rows)
			sameKeys(t, "prefix search vs truth", got, want)
			// The union of per-address searches.
			union := map[hitKey]bool{}
			addrs := map[netip.Addr]bool{}
			for k := range want {
				addrs[k.addr] = true
			}
			for a := range addrs {
				for k := range rowSet(t, search(t, store, query.Options{Prefixes: []netip.Prefix{netip.PrefixFrom(a, a.BitLen())}}).Rows) {
					union[k] = true
				}
			}
			sameKeys(t, "prefix search vs union of address searches", got, union)
		})
	}
}

// TestTimeWindow: --from and --to are inclusive at the nanosecond; a
// packet without a timestamp (pcapng Simple Packet Block) is kept when its
// capture's span overlaps the window; a capture outside the window is not
// even opened.
func TestTimeWindow(t *testing.T) {
	store, paths, truths := capgenPair(t)
	all := prefixes("0.0.0.0/0", "::/0")
	var stamps []time.Time
	for _, tr := range truths {
		for _, h := range tr.Hits {
			if !h.TS.IsZero() {
				stamps = append(stamps, h.TS)
			}
		}
	}
	slices.SortFunc(stamps, time.Time.Compare)
	mid := stamps[len(stamps)/2]
	late := stamps[len(stamps)*3/4]
	first, last := stamps[0], stamps[len(stamps)-1]
	ns := time.Nanosecond
	windows := []struct {
		name     string
		from, to time.Time
	}{
		{"from mid", mid, time.Time{}},
		{"from just after mid", mid.Add(ns), time.Time{}},
		{"to mid", time.Time{}, mid},
		{"to just before mid", time.Time{}, mid.Add(-ns)},
		{"exactly mid", mid, mid},
		{"mid to late", mid, late},
		{"everything", first, last},
		{"after everything", last.Add(ns), time.Time{}},
		{"before everything", time.Time{}, first.Add(-ns)},
	}
	for _, w := range windows {
		t.Run(w.name, func(t *testing.T) {
			want := map[hitKey]capgen.Hit{}
			for i, p := range paths {
				// The capture's span: its first and last timestamp of any packet;
				// the truth holds only hits, so take the catalog's.
				info := catalogEntry(t, store, p)
				overlaps := (w.from.IsZero() || !info.LastTS.Before(w.from)) && (w.to.IsZero() || !info.FirstTS.After(w.to))
				for k, v := range truthHits(p, truths[i], func(h capgen.Hit, _ netip.Addr) bool {
					if h.TS.IsZero() {
						return overlaps
					}
					return (w.from.IsZero() || !h.TS.Before(w.from)) && (w.to.IsZero() || !h.TS.After(w.to))
				}) {
					want[k] = v
				}
			}
			got := rowSet(t, search(t, store, query.Options{Prefixes: all, From: w.from, To: w.to}).Rows)
			sameKeys(t, "window", got, want)
			for _, r := range got {
				if !r.TS.IsZero() && ((!w.from.IsZero() && r.TS.Before(w.from)) || (!w.to.IsZero() && r.TS.After(w.to))) {
					t.Errorf("row at %v outside the window", r.TS)
				}
			}
		})
	}
	if got := search(t, store, query.Options{Prefixes: all, From: mid, To: mid}).Rows; len(got) == 0 {
		t.Error("the window of one instant holds no packet")
	}

	// A capture whose span lies outside the window is not opened: replace
	// one with garbage; only windows touching its span report it.
	info := catalogEntry(t, store, paths[0])
	os.WriteFile(paths[0], []byte("gone"), 0o644)
	res, err := query.Search(store, query.Options{Prefixes: all, From: info.LastTS.Add(ns)})
	if err != nil || len(res.Problems) != 0 {
		t.Errorf("window after the changed capture's span: err %v, problems %v", err, res.Problems)
	}
	res, _ = query.Search(store, query.Options{Prefixes: all, From: info.LastTS})
	if len(res.Problems) != 1 || res.Problems[0].Path != paths[0] {
		t.Errorf("window touching the changed capture's span: problems %v", res.Problems)
	}
}

func catalogEntry(t *testing.T, store *index.Store, path string) index.FileInfo {
	t.Helper()
	files, err := store.Catalog()
	if err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs(path)
	for _, f := range files {
		if f.Path == abs || f.Path == path {
			return f
		}
	}
	t.Fatalf("%s not in the catalog", path)
	return index.FileInfo{}
}

// TestFileGlob: --file matches the absolute path or the base name, before
// any capture is read.
func TestFileGlob(t *testing.T) {
	store, paths, truths := capgenPair(t)
	all := prefixes("0.0.0.0/0", "::/0")
	only := func(i int) map[hitKey]capgen.Hit {
		return truthHits(paths[i], truths[i], func(capgen.Hit, netip.Addr) bool { return true })
	}
	both := only(0)
	for k, v := range only(1) {
		both[k] = v
	}
	dir := filepath.Dir(paths[0])
	for _, c := range []struct {
		globs []string
		want  map[hitKey]capgen.Hit
	}{
		{[]string{"alpha.pcap"}, only(0)},
		{[]string{"*.pcapng"}, only(1)},
		{[]string{filepath.Join(dir, "b*")}, only(1)},
		{[]string{"alpha*", "beta*"}, both},
		{[]string{"[ab]*.pcap*"}, both},
		{[]string{"gamma*"}, nil},
		{[]string{"*/alpha.pcap"}, nil}, // * does not cross a /
	} {
		got := rowSet(t, search(t, store, query.Options{Prefixes: all, Files: c.globs}).Rows)
		sameKeys(t, fmt.Sprint(c.globs), got, c.want)
	}
	if _, err := query.Search(store, query.Options{Prefixes: all, Files: []string{"[a"}}); err == nil {
		t.Error("a bad pattern is not an error")
	}
	// A capture the patterns exclude is never opened.
	os.Remove(paths[1])
	if res, err := query.Search(store, query.Options{Prefixes: all, Files: []string{"alpha.pcap"}}); err != nil || len(res.Problems) != 0 || len(res.Rows) == 0 {
		t.Errorf("excluded capture removed: err %v, problems %v, %d rows", err, res.Problems, len(res.Rows))
	}
}
