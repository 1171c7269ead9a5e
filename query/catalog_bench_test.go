package query_test

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/xffidx/xffidx/index"
	"github.com/xffidx/xffidx/ingest"
	"github.com/xffidx/xffidx/query"
)

// BenchmarkQueryCatalog: a one-address query in an index whose catalog
// holds 1,000 and 200,000 captures (one holds the address; the others'
// entries are copies of its entry under other ids and paths, as a
// directory of many rotated captures gives), side by side; and, for
// reference, reading the whole catalog, which every query did before it
// read its hits' entries alone. bench/scale-index.sh prints the ratios.
func BenchmarkQueryCatalog(b *testing.B) {
	dir := b.TempDir()
	writeRequests(b, filepath.Join(dir, "c.pcap"), time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), "198.18.0.42, 10.0.0.1")
	addr := []netip.Prefix{netip.MustParsePrefix("198.18.0.42/32")}
	for _, files := range []int{1000, 200_000} {
		store := &index.Store{Dir: b.TempDir(), LockWait: 5 * time.Second}
		if _, err := (&ingest.Builder{Store: store}).Build([]string{dir}, nil); err != nil {
			b.Fatal(err)
		}
		cat, err := store.Catalog()
		if err != nil || len(cat) != 1 {
			b.Fatal(cat, err)
		}
		var more []index.FileInfo
		for i := 1; i < files; i++ {
			f := cat[0]
			f.ID, f.Path = cat[0].ID+uint32(i), filepath.Join(dir, fmt.Sprintf("other-%06d.pcap", i))
			more = append(more, f)
			if len(more) == 10_000 || i == files-1 {
				if err := store.Update(more...); err != nil {
					b.Fatal(err)
				}
				more = more[:0]
			}
		}
		b.Run(fmt.Sprintf("files=%d/query", files), func(b *testing.B) {
			for b.Loop() {
				res, err := query.Search(store, query.Options{Prefixes: addr})
				if err != nil || len(res.Rows) != 1 {
					b.Fatal(res.Rows, err)
				}
			}
		})
		b.Run(fmt.Sprintf("files=%d/whole-catalog", files), func(b *testing.B) {
			for b.Loop() {
				if cat, err := store.Catalog(); err != nil || len(cat) != files {
					b.Fatal(len(cat), err)
				}
			}
		})
	}
}
