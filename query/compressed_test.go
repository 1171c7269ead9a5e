package query_test

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/xffidx/xffidx/format/capgen"
	"github.com/xffidx/xffidx/format/compressed/compresstest"
	"github.com/xffidx/xffidx/index"
	"github.com/xffidx/xffidx/query"
)

// answersOf is everything a query, --client-only, --flows, top and --write
// give for every address, with the captures' directory written as DIR.
func answersOf(t *testing.T, store *index.Store, dir string) (rows []string, written []byte, sum query.Summary) {
	t.Helper()
	all := []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}
	clean := func(s string) string { return strings.ReplaceAll(s, dir, "DIR") }
	for _, opt := range []query.Options{
		{Prefixes: all},
		{Prefixes: all, ClientOnly: true, Trusted: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("172.16.0.0/12")}},
	} {
		s, err := query.SearchEach(store, opt, func(r query.Row) error {
			rows = append(rows, clean(fmt.Sprintf("%v %+v", opt.ClientOnly, r)))
			return nil
		})
		if err != nil || len(s.Problems) > 0 {
			t.Fatalf("search: %v %v", err, s.Problems)
		}
		sum.Decompressed += s.Decompressed
	}
	if _, err := query.SearchFlows(store, query.Options{Prefixes: all}, func(f query.Flow) error {
		rows = append(rows, clean(fmt.Sprintf("flow %+v", f)))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	top, err := query.Top(store, query.TopOptions{N: 5})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range top.Rows {
		rows = append(rows, clean(fmt.Sprintf("top %+v", r)))
	}
	out := filepath.Join(t.TempDir(), "out.pcap")
	if _, _, err := query.SearchExport(store, query.Options{Prefixes: prefixes("203.0.113.0/24", "198.51.100.0/24", "2001:db8::/32")}, out, false); err != nil {
		t.Fatal(err)
	}
	written, _ = os.ReadFile(out)
	slices.Sort(rows)
	return rows, written, sum
}

// TestCompressedAnswersEqualUncompressed: the corpus captures and a
// generated one, compressed every way, give exactly the uncompressed
// captures' rows, 5-tuples, requests, --client-only rows, flows, top and
// --write output; a query of one address decodes far less than the
// captures hold.
func TestCompressedAnswersEqualUncompressed(t *testing.T) {
	plainDir := t.TempDir()
	var plain []string
	corpus, _ := filepath.Glob(filepath.Join(corpusDir(t), "*.pcap*"))
	for _, c := range corpus {
		data, err := os.ReadFile(c)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(plainDir, filepath.Base(c))
		os.WriteFile(p, data, 0o644)
		plain = append(plain, p)
	}
	gen, tr := genCapture(t, plainDir, "gen.pcap", capgen.Config{Seed: 12, Format: capgen.FormatPcap, LinkType: capgen.LinkEthernet, TargetBytes: 12 << 20, XFFRate: 0.02})
	plain = append(plain, gen)
	want, wantPcap, _ := answersOf(t, buildIndex(t, plain...), plainDir)
	if len(want) < 100 || len(wantPcap) == 0 {
		t.Fatalf("%d answers, %d bytes written: too few to compare", len(want), len(wantPcap))
	}
	// One address of the generated capture.
	one := tr.Hits[len(tr.Hits)/2].Addrs[0]
	for _, v := range compresstest.Variants() {
		t.Run(v.Name, func(t *testing.T) {
			dir := t.TempDir()
			var paths []string
			for _, p := range plain {
				data, _ := os.ReadFile(p)
				z := filepath.Join(dir, filepath.Base(p))
				if err := os.WriteFile(z, v.Compress(t, data), 0o644); err != nil {
					t.Fatal(err)
				}
				paths = append(paths, z)
			}
			store := buildIndex(t, paths...)
			got, gotPcap, _ := answersOf(t, store, dir)
			if !slices.Equal(got, want) {
				t.Fatalf("%d answers, %d uncompressed; first difference:\n%s", len(got), len(want), firstDifference(got, want))
			}
			if string(gotPcap) != string(wantPcap) {
				t.Fatalf("--write: %d bytes, %d from the uncompressed captures, not the same", len(gotPcap), len(wantPcap))
			}
			res, err := query.Search(store, query.Options{Prefixes: []netip.Prefix{netip.PrefixFrom(one, one.BitLen())}, Files: []string{"gen.pcap"}})
			if err != nil || len(res.Rows) == 0 {
				t.Fatalf("one address: %v, %d rows", err, len(res.Rows))
			}
			st, _ := os.Stat(gen)
			t.Logf("one address: %d rows, %d bytes decoded from %d restart points (capture %d bytes)", len(res.Rows), res.Decompressed, res.Restarts, st.Size())
			if multiPoint := v.Name != "zstd" && v.Name != "zstd-T0" && !strings.HasPrefix(v.Name, "lz4"); multiPoint && res.Decompressed > st.Size()/2 {
				t.Fatalf("one address decoded %d of %d bytes", res.Decompressed, st.Size())
			}
		})
	}
}

func firstDifference(a, b []string) string {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return fmt.Sprintf(" compressed:   %s\n uncompressed: %s", a[i], b[i])
		}
	}
	return fmt.Sprintf(" lengths %d and %d", len(a), len(b))
}
