package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/xffidx/xffidx/fleet"
	"github.com/xffidx/xffidx/fleet/pgtest"
	"github.com/xffidx/xffidx/format/capgen"
	"github.com/xffidx/xffidx/format/xff"
	"github.com/xffidx/xffidx/index"
	"github.com/xffidx/xffidx/query"
)

// fleetRowKey is what a row says, as text: the fields the central store
// keeps of a local row.
func fleetRowKey(r query.Row) string {
	return fmt.Sprintf("%s|%s@%d|%v|pos %d|%s|%s:%d>%s:%d %s|%q|%q %q %q",
		r.XFFIP, r.File, r.Offset, r.Header, r.Pos, query.FormatTS(r.TS, r.TSDigit),
		r.SrcIP, r.SrcPort, r.DstIP, r.DstPort, r.Proto, r.XFF, r.Method, r.Host, r.Path)
}

var allAddrs = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}

// localRowsByFile is every row of the local index, by capture path, sorted.
func localRowsByFile(t *testing.T, ix string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	store := &index.Store{Dir: ix, LockWait: 10 * time.Second}
	_, err := query.SearchEach(store, query.Options{Prefixes: allAddrs, Headers: xff.AllHeaders}, func(r query.Row) error {
		out[r.File] = append(out[r.File], fleetRowKey(r))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, rows := range out {
		slices.Sort(rows)
	}
	return out
}

// centralRowsByFile is every row the central store shows for sensor, by
// capture path, sorted.
func centralRowsByFile(t *testing.T, pool *pgxpool.Pool, sensor string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	_, err := fleet.Search(context.Background(), pool, fleet.Options{Prefixes: allAddrs, Headers: xff.AllHeaders, Sensors: []string{sensor}}, func(r query.Row) error {
		if r.Sensor != sensor {
			return fmt.Errorf("a row of sensor %q in an answer for %q", r.Sensor, sensor)
		}
		out[r.File] = append(out[r.File], fleetRowKey(r))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, rows := range out {
		slices.Sort(rows)
	}
	return out
}

// denseCapture is a capture of about size bytes that is mostly rows: small
// requests, each listing eight addresses in X-Forwarded-For and one in
// X-Real-IP, on 64 connections. One request in eight is split in two
// segments after its X-Forwarded-For line, so that a capture cut between
// them ends with a provisional row, whose request a grown capture completes.
func denseCapture(seed int64, size int) []byte {
	rng := rand.New(rand.NewPCG(uint64(seed), 7))
	w := capgen.NewPcapWriter(65535, 1, false, false)
	server := netip.MustParseAddrPort("10.0.0.2:8080")
	seqs := make([]uint32, 64)
	addr := func() string {
		if rng.IntN(4) == 0 {
			return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 14: byte(rng.IntN(256)), 15: byte(rng.IntN(256))}).String()
		}
		return netip.AddrFrom4([4]byte{byte(1 + rng.IntN(223)), byte(rng.IntN(256)), byte(rng.IntN(256)), byte(rng.IntN(256))}).String()
	}
	const ack = 0x10
	for sec := uint32(1700000000); len(w.Bytes()) < size; sec++ {
		c := rng.IntN(len(seqs))
		client := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, 1}), uint16(40000+c))
		var xffs []string
		for range 8 {
			xffs = append(xffs, addr())
		}
		head := fmt.Sprintf("GET /p/%d HTTP/1.1\r\nX-Forwarded-For: %s\r\n", rng.IntN(1e6), strings.Join(xffs, ", "))
		tail := fmt.Sprintf("Host: h%d.example\r\nX-Real-IP: %s\r\n\r\n", rng.IntN(100), addr())
		segments := []string{head + tail}
		if rng.IntN(8) == 0 {
			segments = []string{head, tail}
		}
		for i, seg := range segments {
			w.Packet(sec, uint32(i), capgen.TCPFrame(client, server, 1000+seqs[c], 1, ack, []byte(seg)))
			seqs[c] += uint32(len(seg))
		}
	}
	return w.Bytes()
}

// centralState sums up the sensor's files rows and row count: what a
// killed publish changed, and where it stopped.
func centralState(t *testing.T, pool *pgxpool.Pool, sensor string) (summary string, where string) {
	t.Helper()
	ctx := context.Background()
	var hits int64
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM xffidx_hits WHERE sensor = $1`, sensor).Scan(&hits); err != nil {
		t.Fatal(err)
	}
	rows, err := pool.Query(ctx, `SELECT fid, gen, pending, stale_from, published_to FROM xffidx_files WHERE sensor = $1 ORDER BY fid`, sensor)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var sb strings.Builder
	fmt.Fprintf(&sb, "%d rows;", hits)
	var sending, removing, dropping bool
	for rows.Next() {
		var fid, gen, pending, staleFrom, publishedTo int64
		if err := rows.Scan(&fid, &gen, &pending, &staleFrom, &publishedTo); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&sb, " %d:%d/%d/%d/%d", fid, gen, pending, staleFrom, publishedTo)
		sending = sending || pending != 0
		removing = removing || gen < 0
		dropping = dropping || staleFrom >= 0
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	switch {
	case removing:
		where = "removing a capture"
	case dropping:
		where = "dropping replaced rows"
	case sending:
		where = "sending rows"
	default:
		where = "between captures"
	}
	return sb.String(), where
}

// TestKilledPublishesConverge is issue 11's kill test: publish, as a
// process, SIGKILLed at random moments while the local index changes
// between kills (captures grown, new, overwritten, deleted and pruned), so
// that kills land mid-batch, between captures and during deletes. After
// every kill each capture the central store shows is shown whole, as one
// of the local states it had since it was last seen; the next publish
// converges to exactly the local rows, and one more sends nothing.
func TestKilledPublishesConverge(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	db := pgtest.Start(t)
	pool, err := fleet.Connect(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	const sensor = "killed"
	dir, ix := t.TempDir(), t.TempDir()
	rng := rand.New(rand.NewPCG(11, 20))

	// Captures are written in part and grown by appending the rest.
	type capture struct {
		data    []byte
		written int
	}
	live := map[string]*capture{}
	seed := int64(1100)
	generate := func(size int) []byte {
		seed++
		return denseCapture(seed, size)
	}
	write := func(path string, c *capture) {
		if err := os.WriteFile(path, c.data[:c.written], 0o644); err != nil {
			t.Fatal(err)
		}
		live[path] = c
	}
	next := 0
	// A capture of captureSize holds about 6,000 rows: several batches
	// to send or delete.
	const captureSize = 192 << 10
	newCapture := func() string {
		path := filepath.Join(dir, fmt.Sprintf("c%02d.pcap", next))
		next++
		c := &capture{data: generate(captureSize)}
		c.written = len(c.data) * (2 + rng.IntN(2)) / 4
		write(path, c)
		return path
	}
	for range 4 {
		newCapture()
	}

	// history holds, per capture path, the row sets it had locally (nil:
	// absent) since the central store last showed it, oldest first; the
	// store may show any of them, never another set of rows. A capture may
	// be missing from the store while new, overwritten or deleted
	// (mayVanish), not when it was shown as it is and only grown since.
	history := map[string][][]string{}
	mayVanish := map[string]bool{}
	build := func() {
		if code, _, stderr := xffx(t, ix, "build", "--prune", dir); code != 0 {
			t.Fatalf("build: exit %d, %s", code, stderr)
		}
		local := localRowsByFile(t, ix)
		for path := range live {
			if local[path] == nil {
				local[path] = []string{}
			}
			if _, ok := history[path]; !ok {
				mayVanish[path] = true
			}
		}
		for path, h := range history {
			if _, ok := local[path]; !ok && h[len(h)-1] != nil {
				history[path] = append(h, nil)
			}
		}
		for path, rows := range local {
			if h := history[path]; len(h) == 0 || !slices.Equal(h[len(h)-1], rows) {
				history[path] = append(h, rows)
			}
		}
	}
	check := func(round int, op string) {
		t.Helper()
		shown := centralRowsByFile(t, pool, sensor)
		for path, rows := range shown {
			h := history[path]
			i := slices.IndexFunc(h, func(s []string) bool { return s != nil && slices.Equal(s, rows) })
			if i < 0 {
				t.Fatalf("round %d (%s): %s shown with %d rows, none of the %d local states it had since last shown", round, op, path, len(rows), len(h))
			}
			history[path] = h[i:]
			if i == len(h)-1 {
				mayVanish[path] = false
			}
		}
		for path := range live {
			if _, ok := shown[path]; !ok && !mayVanish[path] {
				t.Fatalf("round %d (%s): %s, shown before and only grown since, is not shown", round, op, path)
			}
		}
	}

	// The first publish runs to its end: its duration sets the first
	// kill delays.
	build()
	t0 := time.Now()
	if killAfter(t, time.Minute, "--index", ix, "publish", "--db", db, "--sensor", sensor) {
		t.Fatal("the first publish did not end within a minute")
	}
	full := time.Since(t0)
	check(0, "first publish")
	// A publish with nothing to send: the time a publish takes to start,
	// during which a kill tests nothing; kills land after most of it.
	t0 = time.Now()
	if killAfter(t, time.Minute, "--index", ix, "publish", "--db", db, "--sensor", sensor) {
		t.Fatal("a publish with nothing to send did not end within a minute")
	}
	startup := time.Since(t0) * 3 / 4

	// Each round changes the local index, then kills a publish after a
	// random delay below its operation's span. Even rounds start from a
	// store that holds the local content (a publish runs to its end
	// first), so that the killed publish has only that round's work: a
	// deletion's publish is killed while it deletes. Odd rounds start from
	// where the last kill left the store. A span is set from the duration
	// of a publish of its kind that finished, and grows slowly after one
	// that was killed, so that most kills land before the end, spread over
	// the publish.
	ops := []string{"grow", "delete", "new", "overwrite"}
	span := map[string]time.Duration{}
	for _, op := range ops {
		span[op] = full / 3
	}
	killed, progressed := 0, 0
	where := map[string]int{}
	// At least 20 rounds, and more (up to 60) until half of the planned
	// kills have landed before their publish finished: on a loaded machine
	// a publish's time varies more than the spans follow.
	const rounds, maxRounds = 20, 60
	round := 0
	for round < rounds || (killed < rounds/2 && round < maxRounds) {
		round++
		if round%2 == 0 {
			if code, _, stderr := xffx(t, ix, "publish", "--db", db, "--sensor", sensor); code != 0 {
				t.Fatalf("round %d: publish: exit %d, %s", round, code, stderr)
			}
			check(round, "converged")
		}
		op := ops[rng.IntN(len(ops))]
		var names []string
		for path := range live {
			names = append(names, path)
		}
		slices.Sort(names)
		victim := names[rng.IntN(len(names))]
		switch op {
		case "grow":
			var growable []string
			for _, path := range names {
				if live[path].written < len(live[path].data) {
					growable = append(growable, path)
				}
			}
			if len(growable) == 0 {
				op = "new"
				newCapture()
				break
			}
			path := growable[rng.IntN(len(growable))]
			c := live[path]
			c.written += 1 + rng.IntN(len(c.data)-c.written)
			write(path, c)
		case "delete":
			// Two captures when there are enough, for deletes that take a
			// while; a new one keeps the count up.
			gone := []string{victim}
			if len(names) > 3 {
				gone = append(gone, names[(slices.Index(names, victim)+1)%len(names)])
			} else {
				newCapture()
			}
			for _, path := range gone {
				if err := os.Remove(path); err != nil {
					t.Fatal(err)
				}
				delete(live, path)
				mayVanish[path] = true
			}
		case "new":
			newCapture()
		case "overwrite":
			c := &capture{data: generate(captureSize)}
			c.written = len(c.data)
			write(victim, c)
			mayVanish[victim] = true
		}
		build()
		before, _ := centralState(t, pool, sensor)
		delay := startup + time.Duration(rng.Int64N(int64(max(span[op]-startup, time.Millisecond))))
		t0 := time.Now()
		if killAfter(t, delay, "--index", ix, "publish", "--db", db, "--sensor", sensor) {
			killed++
			span[op] = span[op] * 21 / 20
			after, w := centralState(t, pool, sensor)
			if after != before {
				progressed++
				where[w]++
			} else {
				w = "before it changed the store"
			}
			t.Logf("round %d (%s): killed after %v: %s", round, op, delay.Round(time.Millisecond), w)
		} else {
			span[op] = time.Since(t0) * 5 / 4
			t.Logf("round %d (%s): finished within %v", round, op, time.Since(t0).Round(time.Millisecond))
		}
		check(round, op)
	}

	code, _, stderr := xffx(t, ix, "publish", "--db", db, "--sensor", sensor)
	if code != 0 {
		t.Fatalf("final publish: exit %d, %s", code, stderr)
	}
	got, want := centralRowsByFile(t, pool, sensor), localRowsByFile(t, ix)
	for path := range live {
		if len(got[path]) != len(want[path]) || !slices.Equal(got[path], want[path]) {
			t.Errorf("after the final publish %s has %d rows in the store, %d in the local index", path, len(got[path]), len(want[path]))
		}
	}
	for path := range got {
		if _, ok := want[path]; !ok {
			t.Errorf("after the final publish the store shows %s, which the local index no longer has", path)
		}
	}
	// Nothing left behind either: no invisible rows, no unfinished state.
	var total, visible int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM xffidx_hits WHERE sensor = $1`, sensor).Scan(&total); err != nil {
		t.Fatal(err)
	}
	for _, rows := range want {
		visible += len(rows)
	}
	if _, w := centralState(t, pool, sensor); total != visible || w != "between captures" {
		t.Errorf("after the final publish the store holds %d rows of the sensor for %d local ones, and is %s", total, visible, w)
	}
	if code, _, stderr := xffx(t, ix, "publish", "--db", db, "--sensor", sensor); code != 0 || !strings.Contains(stderr, "nothing to send") {
		t.Errorf("a publish after the final one: exit %d, %q; want nothing sent", code, stderr)
	}
	t.Logf("first publish %v, start-up %v; %d of %d publishes killed before they finished, %d after changing the store; where: %v", full.Round(time.Millisecond), startup.Round(time.Millisecond), killed, round, progressed, where)
	if killed < rounds/2 {
		t.Errorf("only %d of %d publishes killed before they finished: the test did not test much", killed, round)
	}
}

// TestInterruptedPublish: Ctrl-C (SIGINT) stops a publish that is sending
// rows at once, with a message saying what the store shows, and the next
// publish reaches exactly the local rows.
func TestInterruptedPublish(t *testing.T) {
	db := pgtest.Start(t)
	pool, err := fleet.Connect(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	const sensor = "interrupted"
	dir, ix := t.TempDir(), t.TempDir()
	for i := range 4 {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("c%d.pcap", i)), denseCapture(int64(2000+i), 2<<20), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if code, _, stderr := xffx(t, ix, "build", dir); code != 0 {
		t.Fatalf("build: exit %d, %s", code, stderr)
	}
	cmd := exec.Command(os.Args[0], "--index", ix, "publish", "--db", db, "--sensor", sensor)
	cmd.Env = append(os.Environ(), "XFFIDX_TEST_CLI=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Interrupt it once rows are arriving.
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(5 * time.Millisecond) {
		var n int64
		if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM xffidx_hits WHERE sensor = $1`, sensor).Scan(&n); err == nil && n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no row arrived in a minute")
		}
	}
	interrupted := time.Now()
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 2 || !strings.Contains(stderr.String(), "interrupted") {
		t.Fatalf("interrupted publish: %v, %q; want exit 2 saying it was interrupted", err, stderr.String())
	}
	if d := time.Since(interrupted); d > 5*time.Second {
		t.Errorf("the publish took %v to stop", d)
	}
	if code, _, stderr := xffx(t, ix, "publish", "--db", db, "--sensor", sensor); code != 0 {
		t.Fatalf("publish after the interrupt: exit %d, %s", code, stderr)
	}
	local, central := localRowsByFile(t, ix), centralRowsByFile(t, pool, sensor)
	if len(local) != 4 || !maps.EqualFunc(local, central, slices.Equal) {
		t.Fatalf("after the next publish the store holds %d captures, the index %d, or their rows differ", len(central), len(local))
	}
}
