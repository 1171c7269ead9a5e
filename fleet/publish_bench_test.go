package fleet

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/xffidx/xffidx/format/xff"
	"github.com/xffidx/xffidx/index"
	"github.com/xffidx/xffidx/query"
)

// BenchmarkPublish publishes one generated capture's rows into an empty
// store per iteration, side by side: INSERT of column arrays (what Publish
// sends to CockroachDB) and COPY (what it sends to PostgreSQL), at two
// batch sizes; "decode" is the reference: the same rows decoded and
// dropped.
// The capture's size is XFFIDX_BENCH_PUBLISH_BYTES (default 16 MiB).
func BenchmarkPublish(b *testing.B) {
	size := int64(16 << 20)
	if v := os.Getenv("XFFIDX_BENCH_PUBLISH_BYTES"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			b.Fatalf("XFFIDX_BENCH_PUBLISH_BYTES: %v", err)
		}
		size = n
	}
	dir := b.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "c.pcap"), genCapture(b, 2, size), 0o644); err != nil {
		b.Fatal(err)
	}
	store := &index.Store{Dir: b.TempDir(), LockWait: 5 * time.Second}
	build(b, store, dir)

	b.Run("decode", func(b *testing.B) {
		var rows int64
		for b.Loop() {
			opt := query.Options{Prefixes: everything, Headers: xff.AllHeaders}
			if _, err := query.SearchEach(store, opt, func(query.Row) error { rows++; return nil }); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(rows)/b.Elapsed().Seconds(), "hits/s")
	})
	for _, mode := range []sendMode{sendInsert, sendCopy, {copy: true, batch: 5 * batchRows}} {
		name := fmt.Sprintf("insert/batch=%d", mode.batch)
		if mode.copy {
			name = fmt.Sprintf("copy/batch=%d", mode.batch)
		}
		b.Run(name, func(b *testing.B) {
			var rows int64
			for b.Loop() {
				b.StopTimer()
				pool := connect(b)
				b.StartTimer()
				st, err := publish(context.Background(), pool, store, "s", mode)
				if err != nil {
					b.Fatal(err)
				}
				rows += st.RowsSent
			}
			b.ReportMetric(float64(rows)/b.Elapsed().Seconds(), "hits/s")
		})
	}
}

// TestInsertModeSendsWhatCopySends: the INSERT path (CockroachDB's; the
// tests' server is PostgreSQL, where Publish uses COPY) leaves the store
// answering as the local index does, with a batch size that splits the
// rows over several transactions.
func TestInsertModeSendsWhatCopySends(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "c.pcap"), genCapture(t, 2, 2<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	store := &index.Store{Dir: t.TempDir(), LockWait: 5 * time.Second}
	build(t, store, dir)
	opt := query.Options{Prefixes: everything, Headers: xff.AllHeaders}
	want := localRows(t, store, "s", opt)
	pool := connect(t)
	st, err := publish(context.Background(), pool, store, "s", sendMode{batch: 100})
	if err != nil {
		t.Fatal(err)
	}
	if st.RowsSent < 300 {
		t.Fatalf("only %d rows sent: the capture should need several batches", st.RowsSent)
	}
	got := centralRows(t, pool, Options{Prefixes: everything, Headers: xff.AllHeaders})
	if d := firstDiff(got, want); d != "" {
		t.Fatalf("central rows differ from the local index's (%d vs %d): %s", len(got), len(want), d)
	}
}
