package ingest

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xffidx/xffidx/format/capgen"
	"github.com/xffidx/xffidx/format/xff"
	"github.com/xffidx/xffidx/index"
)

// writeCaptures writes n small captures with many addresses (seeds from
// seed on) into dir and returns their paths.
func writeCaptures(t *testing.T, dir string, seed, n int, size int64) []string {
	t.Helper()
	var paths []string
	for i := range n {
		p := filepath.Join(dir, fmt.Sprintf("cap%04d.pcap", seed+i))
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		_, err = capgen.Write(f, capgen.Config{Seed: int64(seed + i), Format: capgen.FormatPcap, LinkType: capgen.LinkEthernet, TargetBytes: size, XFFRate: 0.3, NoTruth: true})
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	return paths
}

// TestPruneWorkIsLinear: pruning N deleted captures reads each hit key of
// the index at most a few times in all, so that 4N captures cost about 4
// times N's, not 16 times (one scan of the hit table per file deleted);
// the index then answers as a fresh build of the captures left.
func TestPruneWorkIsLinear(t *testing.T) {
	const kept = 3
	visited := map[int]int64{}
	for _, n := range []int{10, 40} {
		dir := t.TempDir()
		keep := writeCaptures(t, dir, 1000, kept, 40<<10)
		gone := writeCaptures(t, dir, 0, n, 40<<10)
		counts := &index.Counts{}
		store := &index.Store{Dir: t.TempDir(), LockWait: 5 * time.Second, Counts: counts}
		b := &Builder{Store: store}
		if _, err := b.Build([]string{dir}, nil); err != nil {
			t.Fatal(err)
		}
		var entries int64
		files, err := store.Catalog()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			entries += f.Addresses
		}
		for _, p := range gone {
			os.Remove(p)
		}
		st, err := b.Prune(nil)
		if err != nil {
			t.Fatal(err)
		}
		if st.Pruned != n {
			t.Fatalf("%d pruned, want %d", st.Pruned, n)
		}
		visited[n] = counts.HitKeysVisited.Load()
		t.Logf("%d captures deleted: %d hit keys visited, %d entries in the index", n, visited[n], entries)
		if visited[n] > 2*entries {
			t.Errorf("%d captures deleted: %d hit keys visited, for %d entries in the index", n, visited[n], entries)
		}
		// Nothing of the deleted captures is left to remove.
		if cs, err := store.Collect(-1); err != nil || cs.Removed != 0 {
			t.Errorf("hits left behind: %+v %v", cs, err)
		}
		fresh := &index.Store{Dir: t.TempDir(), LockWait: 5 * time.Second}
		if _, err := (&Builder{Store: fresh}).Build(keep, nil); err != nil {
			t.Fatal(err)
		}
		if got, want := answers(t, store), answers(t, fresh); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("after prune: %s", firstDiff(got, want))
		}
	}
	if r := float64(visited[40]) / float64(visited[10]); r > 6 {
		t.Errorf("4 times the captures deleted cost %.1f times the work", r)
	}
}

// TestQueryDuringPrune: a look-up while a prune removes many captures'
// hits gets its turn: the prune lets go of the database between slices.
func TestQueryDuringPrune(t *testing.T) {
	dir := t.TempDir()
	writeCaptures(t, dir, 2000, 2, 64<<10)
	gone := writeCaptures(t, dir, 0, 60, 400<<10)
	ix := t.TempDir()
	b := &Builder{Store: &index.Store{Dir: ix, LockWait: 10 * time.Second, ScanHold: 5 * time.Millisecond}}
	if _, err := b.Build([]string{dir}, nil); err != nil {
		t.Fatal(err)
	}
	for _, p := range gone {
		os.Remove(p)
	}
	reader := &index.Store{Dir: ix, LockWait: 300 * time.Millisecond}
	some := []netip.Prefix{netip.MustParsePrefix("0.0.0.0/4")}
	var running atomic.Bool
	running.Store(true)
	var wg sync.WaitGroup
	var pruneErr error
	start := time.Now()
	var took time.Duration
	wg.Go(func() {
		_, pruneErr = b.Prune(nil)
		took = time.Since(start)
		running.Store(false)
	})
	during := 0
	for running.Load() {
		began := time.Now()
		_, _, err := reader.Lookup(some, xff.AllHeaders)
		if err != nil {
			t.Fatalf("query %v into the prune: %v", began.Sub(start), err)
		}
		if running.Load() {
			during++
		}
		time.Sleep(10 * time.Millisecond) // a person's queries, not a flood
	}
	wg.Wait()
	if pruneErr != nil {
		t.Fatal(pruneErr)
	}
	t.Logf("prune took %v, %d queries answered meanwhile", took, during)
	if during == 0 {
		t.Error("no query ran during the prune: the test proves nothing")
	}
}

// TestPruneInvalidEntry: prune removes the catalog entry of a capture that
// is gone also when the entry is invalid (it cannot be read to learn
// more than its path), with its hits; the other capture stays answered.
func TestPruneInvalidEntry(t *testing.T) {
	dir := t.TempDir()
	captures := writeCaptures(t, dir, 0, 2, 64<<10)
	store := &index.Store{Dir: t.TempDir(), LockWait: 5 * time.Second}
	b := &Builder{Store: store}
	if _, err := b.Build(captures, nil); err != nil {
		t.Fatal(err)
	}
	fresh := &index.Store{Dir: t.TempDir(), LockWait: 5 * time.Second}
	if _, err := (&Builder{Store: fresh}).Build(captures[1:], nil); err != nil {
		t.Fatal(err)
	}
	files, err := store.Catalog()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if f.Path == captures[0] {
			f.Sections = nil
			if err := store.Update(f); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := os.Remove(captures[0]); err != nil {
		t.Fatal(err)
	}
	var results []FileResult
	st, err := b.Prune(func(r FileResult) { results = append(results, r) })
	if err != nil || st.Pruned != 1 || len(results) != 1 || results[0].Path != captures[0] {
		t.Fatalf("prune: %+v %+v %v, want the removed capture pruned", st, results, err)
	}
	if files, err := store.Catalog(); err != nil || len(files) != 1 {
		t.Errorf("catalog after the prune: %+v %v", files, err)
	}
	if diff := firstDiff(answers(t, store), answers(t, fresh)); diff != "" {
		t.Errorf("after the prune, unlike an index of the other capture: %s", diff)
	}
}
