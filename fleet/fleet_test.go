package fleet

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
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

var everything = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}

// rowKey is what a row says, as text, with its sensor.
func rowKey(sensor string, r query.Row) string {
	return fmt.Sprintf("%s|%s|%s@%d|%v|pos %d|%s|%s|%s:%d>%s:%d %s|%q|%q %q %q",
		sensor, r.XFFIP, r.File, r.Offset, r.Header, r.Pos, query.FormatTS(r.TS, r.TSDigit), "",
		r.SrcIP, r.SrcPort, r.DstIP, r.DstPort, r.Proto, r.XFF, r.Method, r.Host, r.Path)
}

// localRows is every row of the local index in the prefixes and headers,
// as the central store must give it for sensor.
func localRows(t *testing.T, store *index.Store, sensor string, opt query.Options) []string {
	t.Helper()
	var out []string
	if !store.Exists() {
		return nil
	}
	_, err := query.SearchEach(store, opt, func(r query.Row) error {
		out = append(out, rowKey(sensor, r))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

func centralRows(t *testing.T, pool *pgxpool.Pool, opt Options) []string {
	t.Helper()
	var out []string
	_, err := Search(context.Background(), pool, opt, func(r query.Row) error {
		out = append(out, rowKey(r.Sensor, r))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

func firstDiff(got, want []string) string {
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			return fmt.Sprintf("central: %s\n local:   %s", got[i], want[i])
		}
	}
	if len(got) > len(want) {
		return "central has more: " + got[len(want)]
	}
	if len(want) > len(got) {
		return "local has more: " + want[len(got)]
	}
	return ""
}

func connect(t testing.TB) *pgxpool.Pool {
	t.Helper()
	pool, err := Connect(context.Background(), pgtest.Shared(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

func build(t testing.TB, store *index.Store, dir string) {
	t.Helper()
	if _, err := (&ingest.Builder{Store: store, Opts: ingest.Options{Prune: true, Workers: 2}}).Build([]string{dir}, nil); err != nil {
		t.Fatal(err)
	}
}

func genCapture(t testing.TB, seed int64, size int64) []byte {
	t.Helper()
	var buf bytes.Buffer
	var err error
	if seed%2 == 1 {
		_, err = capgen.WriteBusy(&buf, capgen.BusyConfig{Seed: seed, TargetBytes: size, Conns: 100, NoTruth: true})
	} else {
		_, err = capgen.Write(&buf, capgen.Config{Seed: seed, Format: capgen.FormatPcap, LinkType: capgen.LinkEthernet, TargetBytes: size, XFFRate: 0.1, CookieRate: 0.3, NoTruth: true})
	}
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func copyCorpus(t *testing.T, dir string, names ...string) {
	t.Helper()
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join("../testdata/corpus", n))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, n), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestFleetEqualsUnionOfSensors: three sensors over different captures
// (real ones from testdata, and generated ones), published to one store;
// for random addresses and prefixes, with and without windows and other
// headers, the central answer is the union of the three local answers,
// row for row, each with its sensor; a second publish sends nothing.
func TestFleetEqualsUnionOfSensors(t *testing.T) {
	checkFleetEqualsUnion(t, connect(t), "")
}

// TestCockroachFleet runs the differential test against the CockroachDB
// server of XFFIDX_TEST_COCKROACH_URL, when it is set, with sensor names of
// its own (their rows are removed at the end), so that a shared cluster
// does for it. PostgreSQL is the tests' server; CockroachDB is optional.
func TestCockroachFleet(t *testing.T) {
	url := os.Getenv("XFFIDX_TEST_COCKROACH_URL")
	if url == "" {
		t.Skip("XFFIDX_TEST_COCKROACH_URL is not set")
	}
	ctx := context.Background()
	pool, err := Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if crdb, err := isCockroach(ctx, pool); err != nil || !crdb {
		t.Fatalf("XFFIDX_TEST_COCKROACH_URL names a server that is not CockroachDB (%v)", err)
	}
	prefix := fmt.Sprintf("test-%x-", rand.Uint64())
	defer func() {
		for _, table := range []string{"xffidx_hits", "xffidx_files"} {
			if _, err := pool.Exec(ctx, `DELETE FROM `+table+` WHERE sensor LIKE $1`, prefix+"%"); err != nil {
				t.Error(err)
			}
		}
	}()
	checkFleetEqualsUnion(t, pool, prefix)
}

// checkFleetEqualsUnion is TestFleetEqualsUnionOfSensors on a store, with
// sensor names starting with prefix.
func checkFleetEqualsUnion(t *testing.T, pool *pgxpool.Pool, prefix string) {
	ctx := context.Background()
	sensors := map[string]*index.Store{}
	var names []string
	corpus := [][]string{
		{"xff_erspan_gre_mixed.pcap", "xff_two_ips_small.pcap", "xff_with_original_forwarded_for.pcap"},
		{"xff_arkime_synthetic_multiproto.pcap", "fmt_pcapng_2if_proxy_http.pcapng", "xff_out_of_order_squid.pcap"},
		{"xff_leading_zeros.pcap", "fmt_sll2.pcap", "xff_extradata_download.pcap"},
	}
	for i, name := range []string{"dc-east", "dc-west", "edge"} {
		name = prefix + name
		names = append(names, name)
		dir := t.TempDir()
		copyCorpus(t, dir, corpus[i]...)
		if err := os.WriteFile(filepath.Join(dir, "gen.pcap"), genCapture(t, int64(10+i), 2<<20), 0o644); err != nil {
			t.Fatal(err)
		}
		store := &index.Store{Dir: t.TempDir(), LockWait: 5 * time.Second}
		build(t, store, dir)
		st, err := Publish(ctx, pool, store, name)
		if err != nil {
			t.Fatal(err)
		}
		if st.New != 4 || st.RowsSent == 0 {
			t.Fatalf("%s: publish %+v", name, st)
		}
		if st, err = Publish(ctx, pool, store, name); err != nil || st.Sent() || st.Unchanged != 4 {
			t.Fatalf("%s: second publish %+v, %v: want nothing sent", name, st, err)
		}
		sensors[name] = store
	}

	// Addresses that are there (from every sensor's rows), and some that
	// are not.
	var present []netip.Addr
	for name, store := range sensors {
		_, err := query.SearchEach(store, query.Options{Prefixes: everything, Headers: xff.AllHeaders}, func(r query.Row) error {
			present = append(present, r.XFFIP)
			return nil
		})
		if err != nil {
			t.Fatal(name, err)
		}
	}
	if len(present) < 100 {
		t.Fatalf("only %d rows in the sensors", len(present))
	}
	rng := rand.New(rand.NewPCG(1, 2))
	type question struct {
		prefixes []netip.Prefix
		headers  xff.HeaderSet
		from, to time.Time
	}
	var qs []question
	for i := range 200 {
		a := present[rng.IntN(len(present))]
		if i%10 == 0 {
			a = netip.AddrFrom4([4]byte{192, 0, 2, byte(rng.IntN(256))})
		}
		q := question{prefixes: []netip.Prefix{netip.PrefixFrom(a, a.BitLen())}}
		if i%3 == 0 {
			q.headers = xff.AllHeaders
		}
		qs = append(qs, q)
	}
	for i := range 20 {
		a := present[rng.IntN(len(present))]
		bits := 8 + rng.IntN(17)
		if a.Is6() {
			bits = 16 + rng.IntN(64)
		}
		q := question{prefixes: []netip.Prefix{netip.PrefixFrom(a, bits).Masked()}, headers: xff.AllHeaders}
		if i%2 == 0 {
			// A window around the generated captures' times.
			q.from = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			q.to = q.from.Add(time.Duration(rng.IntN(60)) * time.Second)
		}
		qs = append(qs, q)
	}
	// Address lists, shorter and longer than the statement spells out
	// (inlineRanges), with absent addresses and overlapping prefixes.
	distinct := slices.Clone(present)
	slices.SortFunc(distinct, netip.Addr.Compare)
	distinct = slices.Compact(distinct)
	rng.Shuffle(len(distinct), func(i, j int) { distinct[i], distinct[j] = distinct[j], distinct[i] })
	for _, n := range []int{inlineRanges / 2, 3 * inlineRanges} {
		q := question{headers: xff.AllHeaders}
		for i, a := range distinct[:n] {
			if i%7 == 0 {
				a = netip.AddrFrom4([4]byte{198, 51, 100, byte(i)})
			}
			q.prefixes = append(q.prefixes, netip.PrefixFrom(a, a.BitLen()))
			if i%31 == 0 {
				q.prefixes = append(q.prefixes, netip.PrefixFrom(a, a.BitLen()-4).Masked())
			}
		}
		if los, _ := addrRanges(q.prefixes); (len(los) > inlineRanges) != (n > inlineRanges) {
			t.Fatalf("a list of %d addresses makes %d ranges", n, len(los))
		}
		qs = append(qs, q)
	}
	for _, q := range qs {
		var want []string
		for name, store := range sensors {
			want = append(want, localRows(t, store, name, query.Options{Prefixes: q.prefixes, Headers: q.headers, From: q.from, To: q.to})...)
		}
		slices.Sort(want)
		got := centralRows(t, pool, Options{Prefixes: q.prefixes, Headers: q.headers, From: q.from, To: q.to, Sensors: names})
		if !slices.Equal(got, want) {
			shown := fmt.Sprint(q.prefixes)
			if len(q.prefixes) > 4 {
				shown = fmt.Sprintf("%v and %d more", q.prefixes[:4], len(q.prefixes)-4)
			}
			t.Fatalf("%s headers %b window %v-%v: central %d rows, local %d\n%s", shown, q.headers, q.from, q.to, len(got), len(want), firstDiff(got, want))
		}
	}
	// Flows: the union of each sensor's flows, each with its sensor.
	for _, q := range qs[200:] {
		var want []string
		for name, store := range sensors {
			_, err := query.SearchFlows(store, query.Options{Prefixes: q.prefixes, Headers: q.headers, From: q.from, To: q.to}, func(f query.Flow) error {
				f.Sensor = name
				want = append(want, fmt.Sprintf("%+v", f))
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		var got []string
		err := query.GroupFlows(0, func(add func(query.Row) error) error {
			_, err := Search(ctx, pool, Options{Prefixes: q.prefixes, Headers: q.headers, From: q.from, To: q.to, Sensors: names}, add)
			return err
		}, func(f query.Flow) error {
			got = append(got, fmt.Sprintf("%+v", f))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(want)
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Fatalf("flows of %v: central %d, local %d\n%s", q.prefixes, len(got), len(want), firstDiff(got, want))
		}
	}
	// --sensor narrows.
	edge := prefix + "edge"
	got := centralRows(t, pool, Options{Prefixes: everything, Headers: xff.AllHeaders, Sensors: []string{edge}})
	if want := localRows(t, sensors[edge], edge, query.Options{Prefixes: everything, Headers: xff.AllHeaders}); !slices.Equal(got, want) {
		t.Fatalf("--sensor edge: central %d rows, local %d\n%s", len(got), len(want), firstDiff(got, want))
	}
}

// TestFleetFollowsTheIndex: after each step of a random sequence of grow
// (appends cut anywhere, inside header blocks too), rename, delete with
// prune, overwrite and new captures, and a build and a publish, the central
// store holds exactly the local index's rows; a publish right after sends
// nothing.
func TestFleetFollowsTheIndex(t *testing.T) {
	pool := connect(t)
	ctx := context.Background()
	for seed := range uint64(3) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			sensor := fmt.Sprintf("follow-%d", seed)
			rng := rand.New(rand.NewPCG(seed, 99))
			dir := t.TempDir()
			store := &index.Store{Dir: t.TempDir(), LockWait: 5 * time.Second}
			type growing struct {
				data    []byte
				written int
			}
			live := map[string]*growing{}
			next := 0
			newFile := func() {
				name := filepath.Join(dir, fmt.Sprintf("cap%02d.pcap", next))
				g := &growing{data: genCapture(t, int64(seed)*100+int64(next), 400<<10)}
				g.written = 24 + rng.IntN(len(g.data)-24)
				next++
				live[name] = g
				if err := os.WriteFile(name, g.data[:g.written], 0o644); err != nil {
					t.Fatal(err)
				}
			}
			pick := func() string {
				var names []string
				for n := range live {
					names = append(names, n)
				}
				if len(names) == 0 {
					return ""
				}
				slices.Sort(names)
				return names[rng.IntN(len(names))]
			}
			newFile()
			var log []string
			for range 12 {
				op, name := rng.IntN(6), pick()
				switch {
				case op == 0 || name == "":
					newFile()
					log = append(log, "new")
				case op <= 2:
					g := live[name]
					if g.written < len(g.data) {
						from := g.written
						g.written += 1 + rng.IntN(len(g.data)-g.written)
						f, err := os.OpenFile(name, os.O_WRONLY|os.O_APPEND, 0)
						if err != nil {
							t.Fatal(err)
						}
						f.Write(g.data[from:g.written])
						f.Close()
					}
					log = append(log, "grow")
				case op == 3:
					to := name + ".1"
					if _, err := os.Stat(to); err == nil {
						continue
					}
					os.Rename(name, to)
					live[to] = live[name]
					delete(live, name)
					log = append(log, "rename")
				case op == 4:
					os.Remove(name)
					delete(live, name)
					log = append(log, "delete")
				default:
					g := &growing{data: genCapture(t, int64(seed)*100+50+int64(len(log)), 300<<10)}
					g.written = len(g.data)
					live[name] = g
					os.WriteFile(name, g.data, 0o644)
					log = append(log, "overwrite")
				}
				build(t, store, dir)
				if _, err := Publish(ctx, pool, store, sensor); err != nil {
					t.Fatalf("after %v: %v", log, err)
				}
				got := centralRows(t, pool, Options{Prefixes: everything, Headers: xff.AllHeaders, Sensors: []string{sensor}})
				want := localRows(t, store, sensor, query.Options{Prefixes: everything, Headers: xff.AllHeaders})
				if !slices.Equal(got, want) {
					t.Fatalf("after %v: central %d rows, local %d\n%s", log, len(got), len(want), firstDiff(got, want))
				}
				if st, err := Publish(ctx, pool, store, sensor); err != nil || st.Sent() {
					t.Fatalf("after %v: a second publish %+v, %v; want nothing sent", log, st, err)
				}
			}
			t.Logf("steps: %v", log)
		})
	}
}

// TestStoppedPublishConverges: publishes stopped at random moments (their
// context cancelled mid-statement: mid-batch, between files, during
// deletes) never let a query see a capture half published, and the next
// publish reaches exactly the local content.
func TestStoppedPublishConverges(t *testing.T) {
	pool := connect(t)
	dir := t.TempDir()
	for i := range 3 {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("c%d.pcap", i)), genCapture(t, int64(20+i), 3<<20), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	store := &index.Store{Dir: t.TempDir(), LockWait: 5 * time.Second}
	build(t, store, dir)
	const sensor = "stopped"
	want := localRows(t, store, sensor, query.Options{Prefixes: everything, Headers: xff.AllHeaders})
	perFile := map[string][]string{}
	for _, r := range want {
		f := strings.Split(r, "|")[2]
		f = f[:strings.LastIndex(f, "@")]
		perFile[f] = append(perFile[f], r)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	// Timeouts are drawn below span, which follows the time the publishes
	// with work to do take on this machine: it shrinks to most of a
	// publish that finished, grows a little after one that was stopped.
	// At least 20 rounds, more (up to 60) until 5 publishes were stopped.
	stopped, round := 0, 0
	span := 150 * time.Millisecond
	for round < 20 || (stopped < 5 && round < 60) {
		round++
		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(rng.Int64N(int64(span))))
		t0 := time.Now()
		sum, err := Publish(ctx, pool, store, sensor)
		took := time.Since(t0)
		cancel()
		if err != nil {
			stopped++
			span = span * 11 / 10
		} else if sum.Sent() {
			span = max(took*3/4, time.Millisecond)
		}
		// Every capture the store shows, it shows whole.
		got := centralRows(t, pool, Options{Prefixes: everything, Headers: xff.AllHeaders, Sensors: []string{sensor}})
		shown := map[string][]string{}
		for _, r := range got {
			f := strings.Split(r, "|")[2]
			f = f[:strings.LastIndex(f, "@")]
			shown[f] = append(shown[f], r)
		}
		for f, rows := range shown {
			if !slices.Equal(rows, perFile[f]) {
				t.Fatalf("%s shown with %d rows of %d", f, len(rows), len(perFile[f]))
			}
		}
		// Take a capture's files row away (its rows stay, orphaned), for
		// the next publish to redo.
		if rng.IntN(3) == 0 {
			if _, err := pool.Exec(context.Background(), `DELETE FROM xffidx_files WHERE sensor = $1 AND fid = $2`, sensor, int64(1+rng.IntN(3))); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Logf("%d of %d publishes stopped", stopped, round)
	if stopped < 5 {
		t.Fatalf("only %d of %d publishes stopped: the test did not test much", stopped, round)
	}
	if _, err := Publish(context.Background(), pool, store, sensor); err != nil {
		t.Fatal(err)
	}
	if got := centralRows(t, pool, Options{Prefixes: everything, Headers: xff.AllHeaders, Sensors: []string{sensor}}); !slices.Equal(got, want) {
		t.Fatalf("after the last publish: central %d rows, local %d\n%s", len(got), len(want), firstDiff(got, want))
	}
}

// TestStatementsArePortable: the statements xffidx sends use nothing that
// CockroachDB lacks: no SERIAL or sequences, no inet types or containment
// operators, no PostgreSQL-only DDL options, no RETURNING-less upsert
// forms other than ON CONFLICT DO NOTHING / a primary key update.
func TestStatementsArePortable(t *testing.T) {
	var stmts []string
	stmts = append(stmts, schemaStatements...)
	stmts = append(stmts, searchStatement)
	stmts = append(stmts, insertStatement, rankStatement)
	for _, file := range []string{"publish.go", "top.go", "search.go", "schema.go"} {
		src, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range regexp.MustCompile("(?s)`((?:SELECT|INSERT|UPDATE|DELETE)[^`]*)`").FindAllSubmatch(src, -1) {
			stmts = append(stmts, string(m[1]))
		}
	}
	banned := regexp.MustCompile(`(?i)\b(SERIAL|BIGSERIAL|SEQUENCE|INET|CIDR|<<=|>>=|ILIKE|UNLOGGED|TABLESPACE|WITH\s*\(\s*fillfactor|COPY|LISTEN|NOTIFY|::regclass|pg_[a-z_]+)\b`)
	for _, s := range stmts {
		if m := banned.FindString(s); m != "" {
			t.Errorf("statement uses %q, which CockroachDB does not accept:\n%s", m, s)
		}
	}
	if len(stmts) < 10 {
		t.Fatalf("only %d statements found", len(stmts))
	}
}

func TestPrefixRange(t *testing.T) {
	for _, c := range []struct {
		p      string
		in     []string
		notIn  []string
		hiNext bool
	}{
		{"203.0.113.0/24", []string{"203.0.113.0", "203.0.113.255"}, []string{"203.0.112.255", "203.0.114.0", "::1"}, false},
		{"0.0.0.0/0", []string{"0.0.0.0", "255.255.255.255"}, []string{"::", "2001:db8::1"}, true},
		{"2001:db8::/32", []string{"2001:db8::", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"}, []string{"2001:db9::", "2001:db7:ffff::", "10.0.0.1"}, false},
		{"::/0", []string{"::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "2001:db8::1"}, []string{"10.0.0.1"}, true},
		{"10.1.2.3/32", []string{"10.1.2.3"}, []string{"10.1.2.2", "10.1.2.4"}, false},
	} {
		lo, hi := PrefixRange(netip.MustParsePrefix(c.p))
		inRange := func(a string) bool {
			k := index.AddrKey(nil, netip.MustParseAddr(a))
			return bytes.Compare(k, lo) >= 0 && bytes.Compare(k, hi) < 0
		}
		for _, a := range c.in {
			if !inRange(a) {
				t.Errorf("%s: %s not in [%x, %x)", c.p, a, lo, hi)
			}
		}
		for _, a := range c.notIn {
			if inRange(a) {
				t.Errorf("%s: %s in [%x, %x)", c.p, a, lo, hi)
			}
		}
	}
}

func TestRedact(t *testing.T) {
	for _, c := range []struct{ url, msg string }{
		{"postgres://pub:s3cr3t@db.example:26257/xffidx?sslmode=verify-full", "failed to connect to pub:s3cr3t@db.example"},
		{"host=db user=pub password=s3cr3t dbname=xffidx", "cannot parse `host=db user=pub password=s3cr3t`"},
	} {
		if got := Redact(c.msg, c.url); strings.Contains(got, "s3cr3t") || !strings.Contains(got, "xxxxx") {
			t.Errorf("Redact(%q) = %q", c.msg, got)
		}
	}
}

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// TestGrants: the roles README describes can do their jobs with the grants
// it gives, and no more: a publisher publishes (once the schema is made),
// an analyst queries and cannot write.
func TestGrants(t *testing.T) {
	admin := pgtest.Shared(t)
	ctx := context.Background()
	pool, err := Connect(ctx, admin)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := EnsureSchema(ctx, pool); err != nil {
		t.Fatal(err)
	}
	for _, st := range []string{
		`CREATE ROLE xffidx_publisher LOGIN`,
		`GRANT SELECT, INSERT, UPDATE, DELETE ON xffidx_files, xffidx_hits TO xffidx_publisher`,
		`GRANT SELECT ON xffidx_meta TO xffidx_publisher`,
		`CREATE ROLE xffidx_analyst LOGIN`,
		`GRANT SELECT ON xffidx_meta, xffidx_files, xffidx_hits TO xffidx_analyst`,
	} {
		if _, err := pool.Exec(ctx, st); err != nil {
			t.Fatalf("%s: %v", st, err)
		}
	}
	as := func(role string) *pgxpool.Pool {
		u := strings.Replace(admin, "postgres://"+pgtest.Superuser+"@", "postgres://"+role+"@", 1)
		if u == admin {
			t.Fatalf("cannot make a URL for %s from %s", role, admin)
		}
		p, err := Connect(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Close)
		return p
	}
	dir := t.TempDir()
	copyCorpus(t, dir, "xff_erspan_gre_mixed.pcap")
	store := &index.Store{Dir: t.TempDir(), LockWait: 5 * time.Second}
	build(t, store, dir)
	if st, err := Publish(ctx, as("xffidx_publisher"), store, "granted"); err != nil || st.New != 1 {
		t.Fatalf("publish as the publisher role: %+v, %v", st, err)
	}
	analyst := as("xffidx_analyst")
	got := centralRows(t, analyst, Options{Prefixes: everything, Headers: xff.AllHeaders, Sensors: []string{"granted"}})
	if want := localRows(t, store, "granted", query.Options{Prefixes: everything, Headers: xff.AllHeaders}); !slices.Equal(got, want) {
		t.Fatalf("query as the analyst role: %d rows, want %d", len(got), len(want))
	}
	if _, err := Publish(ctx, analyst, store, "analyst"); err == nil {
		t.Fatal("the analyst role could publish")
	}
}

// TestConcurrentSchemaCreation: sensors publishing for the first time at
// once to a fresh store all create the schema (IF NOT EXISTS races with
// the other creators in PostgreSQL's catalog), and all succeed.
func TestConcurrentSchemaCreation(t *testing.T) {
	const creators = 8
	ctx := context.Background()
	for round := range 5 {
		pool, err := Connect(ctx, pgtest.Shared(t)+fmt.Sprintf("&pool_max_conns=%d", creators))
		if err != nil {
			t.Fatal(err)
		}
		var ready, wg sync.WaitGroup
		ready.Add(creators)
		errs := make([]error, creators)
		for i := range creators {
			wg.Go(func() {
				// Each on its own connection, all sending their first
				// statement together.
				conn, err := pool.Acquire(ctx)
				if err != nil {
					errs[i] = err
					ready.Done()
					return
				}
				conn.Release()
				ready.Done()
				ready.Wait()
				errs[i] = EnsureSchema(ctx, pool)
			})
		}
		wg.Wait()
		pool.Close()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("round %d, creator %d: %v", round, i, err)
			}
		}
	}
}

// publishedCapture is an index of one corpus capture, published as sensor
// to a new store.
func publishedCapture(t *testing.T, sensor string) (*index.Store, *pgxpool.Pool) {
	t.Helper()
	dir := t.TempDir()
	copyCorpus(t, dir, "xff_erspan_gre_mixed.pcap")
	store := &index.Store{Dir: t.TempDir(), LockWait: 5 * time.Second}
	build(t, store, dir)
	pool := connect(t)
	if _, err := Publish(context.Background(), pool, store, sensor); err != nil {
		t.Fatal(err)
	}
	return store, pool
}

// TestNewerSchemaIsRefused: a store made by a newer xffidx is refused by
// every path, with an error saying so, rather than read as if it were
// this one's schema: a search that finds nothing, a search that would find
// rows, top and publish.
func TestNewerSchemaIsRefused(t *testing.T) {
	store, pool := publishedCapture(t, "s")
	ctx := context.Background()
	if n, err := Search(ctx, pool, Options{Prefixes: everything}, func(query.Row) error { return nil }); err != nil || n == 0 {
		t.Fatalf("search before: %d rows, %v", n, err)
	}
	if _, err := pool.Exec(ctx, `UPDATE xffidx_meta SET value = $1 WHERE name = 'schema'`, fmt.Sprint(SchemaVersion+1)); err != nil {
		t.Fatal(err)
	}
	for name, err := range map[string]error{
		"search everything": func() error {
			_, err := Search(ctx, pool, Options{Prefixes: everything}, func(query.Row) error { return nil })
			return err
		}(),
		"search nothing": func() error {
			_, err := Search(ctx, pool, Options{Prefixes: []netip.Prefix{netip.MustParsePrefix("192.0.2.1/32")}}, func(query.Row) error { return nil })
			return err
		}(),
		"top": func() error {
			_, err := Top(ctx, pool, 5, Options{})
			return err
		}(),
		"publish": func() error {
			_, err := Publish(ctx, pool, store, "s")
			return err
		}(),
	} {
		if !errors.Is(err, ErrNewerSchema) {
			t.Errorf("%s on a newer schema: %v, want ErrNewerSchema", name, err)
		}
	}
}

// TestTakeoverFencesOffADeadPublish: a batch of a stopped publish that the
// server still runs (its client gone) when the next publish starts either
// commits before the takeover, and its rows are then deleted, or finds its
// token gone and adds nothing; the store ends with exactly the local rows.
func TestTakeoverFencesOffADeadPublish(t *testing.T) {
	const sensor, deadToken = "s", 777
	store, pool := publishedCapture(t, sensor)
	ctx := context.Background()
	want := localRows(t, store, sensor, query.Options{Prefixes: everything, Headers: xff.AllHeaders})
	var fid, gen int64
	if err := pool.QueryRow(ctx, `SELECT fid, gen FROM xffidx_files WHERE sensor = $1`, sensor).Scan(&fid, &gen); err != nil {
		t.Fatal(err)
	}
	// The dead publish: it claimed the capture and is inside a batch that
	// passed the fence and wrote a row of the next generation.
	if _, err := pool.Exec(ctx, `UPDATE xffidx_files SET pending = $3 WHERE sensor = $1 AND fid = $2`, sensor, fid, deadToken); err != nil {
		t.Fatal(err)
	}
	dead, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Rollback(ctx)
	var held int64
	if err := dead.QueryRow(ctx, fenceStatement, sensor, []int64{fid}, deadToken).Scan(&held); err != nil {
		t.Fatal(err)
	}
	if _, err := dead.Exec(ctx, `INSERT INTO xffidx_hits SELECT addr, sensor, fid, off + 1, header, gen + 1, pos, ts_sec, ts_nsec, ts_digits, src_ip, src_port, dst_ip, dst_port, proto, xff, method, host, path
		FROM xffidx_hits WHERE sensor = $1 AND fid = $2 LIMIT 1`, sensor, fid); err != nil {
		t.Fatal(err)
	}
	// The next publish takes the token back: it must wait for the batch.
	done := make(chan error, 1)
	go func() {
		_, err := Publish(ctx, pool, store, sensor)
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("the next publish did not wait for the dead publish's batch (%v)", err)
	case <-time.After(500 * time.Millisecond):
	}
	if err := dead.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := centralRows(t, pool, Options{Prefixes: everything, Headers: xff.AllHeaders, Sensors: []string{sensor}}); !slices.Equal(got, want) {
		t.Fatalf("central %d rows, local %d\n%s", len(got), len(want), firstDiff(got, want))
	}
	var left int64
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM xffidx_hits WHERE sensor = $1 AND gen > $2`, sensor, gen).Scan(&left); err != nil || left != 0 {
		t.Fatalf("%d rows of the dead publish left (%v)", left, err)
	}
	// A later batch of the dead publish finds its token gone.
	rows, err := pool.Query(ctx, fenceStatement, sensor, []int64{fid}, deadToken)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for rows.Next() {
		n++
	}
	if rows.Close(); n != 0 {
		t.Fatalf("the dead publish's token still holds %d captures", n)
	}
}

// TestTopRanksOnlyTheListedAddresses: top with prefixes (an address list,
// shorter and longer than the statement spells out) ranks the addresses in
// them as the whole ranking does, and no other.
func TestTopRanksOnlyTheListedAddresses(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "gen.pcap"), genCapture(t, 4, 6<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	store := &index.Store{Dir: t.TempDir(), LockWait: 5 * time.Second}
	build(t, store, dir)
	pool := connect(t)
	ctx := context.Background()
	if _, err := Publish(ctx, pool, store, "s"); err != nil {
		t.Fatal(err)
	}
	all, err := Top(ctx, pool, 100000, Options{Headers: xff.AllHeaders})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) < 2*(inlineRanges+8) {
		t.Fatalf("only %d addresses ranked", len(all))
	}
	// Every other address in address order: no two listed ones adjacent,
	// so that each is a range of its own.
	byAddr := slices.Clone(all)
	slices.SortFunc(byAddr, func(a, b query.TopRow) int { return a.Addr.Compare(b.Addr) })
	for _, n := range []int{5, inlineRanges + 8} {
		var ps []netip.Prefix
		listed := map[netip.Addr]bool{}
		for i, r := range byAddr {
			if i%2 == 0 && len(ps) < n {
				ps = append(ps, netip.PrefixFrom(r.Addr, r.Addr.BitLen()))
				listed[r.Addr] = true
			}
		}
		var want []query.TopRow
		for _, r := range all {
			if listed[r.Addr] {
				want = append(want, r)
			}
		}
		ps = append(ps, netip.MustParsePrefix("10.255.255.254/32")) // absent
		if los, _ := addrRanges(ps); (len(los) > inlineRanges) != (n > inlineRanges) {
			t.Fatalf("a list of %d addresses makes %d ranges", n, len(los))
		}
		got, err := Top(ctx, pool, 100000, Options{Headers: xff.AllHeaders, Prefixes: ps})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.EqualFunc(got, want, func(a, b query.TopRow) bool { return fmt.Sprint(a) == fmt.Sprint(b) }) {
			t.Fatalf("top of %d listed addresses: %d rows, want %d", n, len(got), len(want))
		}
	}
}
