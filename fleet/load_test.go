package fleet

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"hash/maphash"
	"maps"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/xffidx/xffidx/fleet/pgtest"
	"github.com/xffidx/xffidx/format/capgen"
	"github.com/xffidx/xffidx/format/xff"
	"github.com/xffidx/xffidx/index"
	"github.com/xffidx/xffidx/ingest"
	"github.com/xffidx/xffidx/query"
)

// The load test's sizes: loadSensors sensors of loadFiles captures each,
// enough for loadMinRows rows per sensor (a capture cut at 512 bytes a
// packet, with the most XFF requests capgen makes, gives about 1,350 rows a
// MiB), and loadQueriers query loops.
const (
	loadSensors   = 4
	loadFiles     = 8
	loadFileBytes = 25 << 20
	loadMinRows   = 250_000
	loadQueriers  = 20
)

// localHit is one row of a sensor's local index, as the load test's
// queries check it: where it is, and a hash of all it says.
type localHit struct {
	addr    []byte // AddrKey
	header  xff.Header
	capture string // sensor, NUL, path
	sum     uint64 // of rowKey
}

// TestLoadConcurrentPublishes is issue 11's load test, bounded and on the
// loopback only (a private PostgreSQL server on a Unix socket): four
// sensors, each with at least 250,000 rows in its local index, publish at
// once to one fresh store (so they also race to create the schema), each
// through its own pool, while 20 loops query random addresses and prefixes.
// Every query must succeed and show every capture whole or not at all (a
// capture's rows for the question are exactly the local index's, or
// absent); once the publishes are done the store holds exactly the union of
// the four local indexes. It takes a minute or two and about 800 MB of
// temporary files, so `go test -short` skips it.
func TestLoadConcurrentPublishes(t *testing.T) {
	if testing.Short() {
		t.Skip("load test: skipped with -short")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	url := pgtest.Shared(t)
	open := func(url string) *pgxpool.Pool {
		pool, err := Connect(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(pool.Close)
		return pool
	}

	// The sensors' captures and local indexes, made in parallel.
	names := make([]string, loadSensors)
	stores := make([]*index.Store, loadSensors)
	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, loadSensors)
	for i := range loadSensors {
		names[i] = fmt.Sprintf("load-%d", i)
		stores[i] = &index.Store{Dir: t.TempDir(), LockWait: time.Minute}
		dir := t.TempDir()
		wg.Go(func() { errs[i] = makeSensor(dir, stores[i], int64(i)) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("%s: %v", names[i], err)
		}
	}
	t.Logf("captures generated and indexed in %v", time.Since(start).Round(time.Millisecond))

	// Every local row, sorted by address, to check answers against.
	seed := maphash.MakeSeed()
	var hits []localHit
	distinct := map[netip.Addr]bool{}
	rowsOf := make([]int, loadSensors)
	for i, store := range stores {
		_, err := query.SearchEach(store, query.Options{Prefixes: everything, Headers: xff.AllHeaders}, func(r query.Row) error {
			hits = append(hits, localHit{addr: index.AddrKey(nil, r.XFFIP), header: r.Header, capture: names[i] + "\x00" + r.File, sum: maphash.String(seed, rowKey(names[i], r))})
			rowsOf[i]++
			distinct[r.XFFIP] = true
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if rowsOf[i] < loadMinRows {
			t.Fatalf("%s has %d rows, want at least %d: make the captures bigger", names[i], rowsOf[i], loadMinRows)
		}
	}
	// The addresses asked about: drawn from the distinct ones, not from the
	// rows, so that the few addresses in most XFF chains (each one a scan
	// of a hundred thousand rows) are asked about as rarely as the others.
	present := slices.SortedFunc(maps.Keys(distinct), netip.Addr.Compare)
	slices.SortFunc(hits, func(a, b localHit) int { return bytes.Compare(a.addr, b.addr) })
	t.Logf("rows per sensor: %v", rowsOf)

	// expect gives, per capture, the sorted row hashes a question must show.
	expect := func(p netip.Prefix, headers xff.HeaderSet) map[string][]uint64 {
		lo, hi := PrefixRange(p)
		out := map[string][]uint64{}
		i, _ := slices.BinarySearchFunc(hits, lo, func(h localHit, k []byte) int { return bytes.Compare(h.addr, k) })
		for ; i < len(hits) && bytes.Compare(hits[i].addr, hi) < 0; i++ {
			if headers.Has(hits[i].header) {
				out[hits[i].capture] = append(out[hits[i].capture], hits[i].sum)
			}
		}
		for _, s := range out {
			slices.Sort(s)
		}
		return out
	}

	// The publishers, each with its own pool, all at once on a fresh store.
	pools := make([]*pgxpool.Pool, loadSensors)
	for i := range loadSensors {
		pools[i] = open(url)
	}
	queryPool := open(url + "&pool_max_conns=" + fmt.Sprint(loadQueriers))
	published := make(chan struct{})
	took := make([]time.Duration, loadSensors)
	stats := make([]PublishStats, loadSensors)
	var pubs sync.WaitGroup
	start = time.Now()
	for i := range loadSensors {
		pubs.Go(func() {
			t0 := time.Now()
			st, err := Publish(ctx, pools[i], stores[i], names[i])
			took[i], stats[i] = time.Since(t0), st
			if err != nil {
				t.Errorf("publish %s: %v", names[i], err)
				cancel()
			}
		})
	}
	go func() { pubs.Wait(); close(published) }()

	// The query loops, until the publishes are done; they start once a
	// publisher has made the schema.
	var queries, rowsSeen, partial atomic.Int64
	var loops sync.WaitGroup
	for q := range loadQueriers {
		loops.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(q), 11))
			for checkSchema(ctx, queryPool) != nil {
				select {
				case <-published:
					return
				case <-ctx.Done():
					return
				case <-time.After(10 * time.Millisecond):
				}
			}
			for {
				// An analyst's pace, not a busy loop: 20 unpaced loops take
				// the two cores from the publishers.
				select {
				case <-published:
					return
				case <-ctx.Done():
					return
				case <-time.After(time.Duration(5+rng.IntN(15)) * time.Millisecond):
				}
				a := present[rng.IntN(len(present))]
				p := netip.PrefixFrom(a, a.BitLen())
				switch n := rng.IntN(10); {
				case n == 0:
					p = netip.PrefixFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(rng.IntN(256))}), 32)
				case n <= 2 && a.Is4():
					p = netip.PrefixFrom(a, 24+rng.IntN(8)).Masked()
				case n <= 2:
					p = netip.PrefixFrom(a, 96+rng.IntN(32)).Masked()
				}
				headers := xff.AllHeaders
				if rng.IntN(2) == 0 {
					headers = xff.SetOf(xff.XForwardedFor)
				}
				got := map[string][]uint64{}
				n, err := Search(ctx, queryPool, Options{Prefixes: []netip.Prefix{p}, Headers: headers}, func(r query.Row) error {
					c := r.Sensor + "\x00" + r.File
					got[c] = append(got[c], maphash.String(seed, rowKey(r.Sensor, r)))
					return nil
				})
				if err != nil {
					if ctx.Err() == nil {
						t.Errorf("query %v: %v", p, err)
						cancel()
					}
					return
				}
				want := expect(p, headers)
				for c, sums := range got {
					slices.Sort(sums)
					if !slices.Equal(sums, want[c]) {
						t.Errorf("query %v headers %b: capture %q shown with %d rows, the local index has %d", p, headers, c, len(sums), len(want[c]))
						cancel()
						return
					}
				}
				if len(got) < len(want) {
					partial.Add(1)
				}
				queries.Add(1)
				rowsSeen.Add(int64(n))
			}
		})
	}
	loops.Wait()
	pubs.Wait()
	if t.Failed() {
		return
	}
	t.Logf("publishes took %v (all done after %v)", took, time.Since(start).Round(time.Millisecond))
	t.Logf("%d queries (%d rows) during the publishes, %d of them before every capture they ask about was shown", queries.Load(), rowsSeen.Load(), partial.Load())
	if queries.Load() == 0 {
		t.Fatal("no query ran while the sensors published")
	}

	// The store now holds exactly the union of the local indexes: each
	// sensor's rows, row for row, and nothing else.
	total := 0
	for i, store := range stores {
		if stats[i].New != loadFiles || stats[i].RowsSent != int64(rowsOf[i]) {
			t.Errorf("%s: publish %+v, want %d new captures and %d rows sent", names[i], stats[i], loadFiles, rowsOf[i])
		}
		got := centralRows(t, queryPool, Options{Prefixes: everything, Headers: xff.AllHeaders, Sensors: []string{names[i]}})
		want := localRows(t, store, names[i], query.Options{Prefixes: everything, Headers: xff.AllHeaders})
		if !slices.Equal(got, want) {
			t.Fatalf("%s: central %d rows, local %d\n%s", names[i], len(got), len(want), firstDiff(got, want))
		}
		total += len(want)
	}
	n, err := Search(context.Background(), queryPool, Options{Prefixes: everything, Headers: xff.AllHeaders}, func(query.Row) error { return nil })
	if err != nil || n != total {
		t.Fatalf("the store has %d rows (%v), the sensors %d", n, err, total)
	}
}

// makeSensor writes a sensor's captures into dir and indexes them into
// store. The captures are cut at 512 bytes a packet (the XFF lines stay
// whole) and carry as many XFF requests as capgen makes, for many rows in
// few bytes; each sensor has its own seeds, and half of them also IPv6
// connections.
func makeSensor(dir string, store *index.Store, sensor int64) error {
	for f := range int64(loadFiles) {
		path := filepath.Join(dir, fmt.Sprintf("cap%02d.pcap", f))
		out, err := os.Create(path)
		if err != nil {
			return err
		}
		w := bufio.NewWriterSize(out, 1<<20)
		_, err = capgen.Write(w, capgen.Config{Seed: 1000*sensor + f, Format: capgen.FormatPcap, LinkType: capgen.LinkEthernet,
			TargetBytes: loadFileBytes, XFFRate: 0.3, SnapLen: 512, IPv6Transport: sensor%2 == 1, NoTruth: true})
		if err == nil {
			err = w.Flush()
		}
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	}
	_, err := (&ingest.Builder{Store: store, Opts: ingest.Options{Prune: true, Workers: 1}}).Build([]string{dir}, nil)
	return err
}
