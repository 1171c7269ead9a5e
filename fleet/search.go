package fleet

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/xffidx/xffidx/format/xff"
	"github.com/xffidx/xffidx/index"
	"github.com/xffidx/xffidx/query"
)

// Options select what Search reports: the local query's options that the
// central store can answer, and the sensors.
type Options struct {
	Prefixes []netip.Prefix
	From, To time.Time
	Files    []string // path.Match patterns on the path or its base name
	Headers  xff.HeaderSet
	Sensors  []string // empty: every sensor
}

// Querier is what reading the central store needs: one connection (a
// *pgx.Conn, as a one-shot query opens with Dial) or a pool.
type Querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// searchStatement reads the visible rows of some addr ranges. The inner
// select reads each range once (rangeConditions). Up to inlineRanges
// ranges, its %s are "xffidx_hits x" and a disjunction of explicit bounds, "(x.addr >= $1 AND
// x.addr < $2) OR ...", which both engines turn into range scans of the
// primary key (one span each), and whose bounds PostgreSQL's planner sees,
// so that it estimates the rows right (bounds from a joined array made it
// guess a million rows per range, plan for them and compile the plan: 0.4
// s for one address). Past that (an address list), the bounds come as two
// arrays joined to xffidx_hits, one range scan per pair, and the statement
// stays within the protocol's 65,535 parameters. OFFSET 0 keeps the inner
// select a select of its own: PostgreSQL would otherwise fold it into the
// join and may drive the join from xffidx_files, scanning the ranges once
// per capture. The third %s holds hitConditions. The statement checks the
// schema version itself, sparing a fresh server session a statement: when
// it finds nothing, or fails, checkSchema says whether that is why.
const searchStatement = `SELECT h.addr, h.sensor, f.path, h.off, h.header, h.pos, h.ts_sec, h.ts_nsec, h.ts_digits,
	h.src_ip, h.src_port, h.dst_ip, h.dst_port, h.proto, h.xff, h.method, h.host, h.path
	FROM (SELECT x.addr, x.sensor, x.fid, x.off, x.header, x.gen, x.pos, x.ts_sec, x.ts_nsec, x.ts_digits,
		x.src_ip, x.src_port, x.dst_ip, x.dst_port, x.proto, x.xff, x.method, x.host, x.path
		FROM %s WHERE (%s)%s OFFSET 0) h
	JOIN xffidx_files f ON f.sensor = h.sensor AND f.fid = h.fid
	WHERE h.gen <= f.gen AND (h.gen = f.gen OR f.stale_from < 0 OR h.off < f.stale_from)
	AND (SELECT value FROM xffidx_meta WHERE name = 'schema') = '` + schemaVersionText + `'
	ORDER BY h.sensor, f.path, h.off, h.header, h.addr`

// inlineRanges is the most ranges searchStatement spells out as bounds.
const inlineRanges = 64

// Search calls fn with every row of the central store in the options'
// prefixes, as a local query of each sensor would give it (with its
// Sensor), ordered by sensor, file, offset, header and address, each row
// once however the prefixes overlap.
func Search(ctx context.Context, db Querier, opt Options, fn func(query.Row) error) (int, error) {
	if len(opt.Prefixes) == 0 {
		return 0, errors.New("no address or prefix to look for")
	}
	n, err := search(ctx, db, opt, fn)
	if n == 0 {
		if serr := checkSchema(ctx, db); serr != nil {
			return 0, serr
		}
	}
	return n, err
}

func search(ctx context.Context, db Querier, opt Options, fn func(query.Row) error) (int, error) {
	join, ranges, args := rangeConditions(opt.Prefixes, "x", nil)
	cond, args := hitConditions(opt, "x", args)
	rows, err := db.Query(ctx, fmt.Sprintf(searchStatement, "xffidx_hits x"+join, ranges, cond), args...)
	if err != nil {
		return 0, fmt.Errorf("querying the central store: %w", err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var (
			r                query.Row
			addr             []byte
			off, sec, nsec   int64
			header, digits   int16
			pos              int32
			src, dst         string
			sport, dport     int32
			xffv, m, host, u []byte
		)
		if err := rows.Scan(&addr, &r.Sensor, &r.File, &off, &header, &pos, &sec, &nsec, &digits,
			&src, &sport, &dst, &dport, &r.Proto, &xffv, &m, &host, &u); err != nil {
			return n, fmt.Errorf("reading the central store: %w", err)
		}
		a, ok := addrOfKey(addr)
		if !ok {
			continue
		}
		r.XFFIP, r.Offset, r.Header, r.Pos, r.TSDigit = a, off, xff.Header(header), int(pos), int(digits)
		if sec != 0 || nsec != 0 {
			r.TS = time.Unix(sec, nsec).UTC()
		}
		if !query.MatchFiles(opt.Files, r.File) {
			continue
		}
		r.SrcIP, _ = netip.ParseAddr(src)
		r.DstIP, _ = netip.ParseAddr(dst)
		r.SrcPort, r.DstPort = uint16(sport), uint16(dport)
		r.XFF, r.Method, r.Host, r.Path = xffv, m, host, u
		n++
		if err := fn(r); err != nil {
			return n, err
		}
	}
	if err := rows.Err(); err != nil {
		return n, fmt.Errorf("reading the central store: %w", err)
	}
	return n, nil
}

// rangeConditions select the rows of xffidx_hits (as alias) in the
// prefixes, in one of the two forms searchStatement tells about: a join
// to follow the table (empty up to inlineRanges ranges) and a condition.
// Their parameters go on after args.
func rangeConditions(ps []netip.Prefix, alias string, args []any) (join, cond string, _ []any) {
	los, his := addrRanges(ps)
	if len(los) > inlineRanges {
		args = append(args, los, his)
		return fmt.Sprintf(" JOIN unnest($%[2]d::BYTEA[], $%[3]d::BYTEA[]) AS r (lo, hi) ON %[1]s.addr >= r.lo AND %[1]s.addr < r.hi", alias, len(args)-1, len(args)), "true", args
	}
	var sb strings.Builder
	for i := range los {
		if i > 0 {
			sb.WriteString(" OR ")
		}
		args = append(args, los[i], his[i])
		fmt.Fprintf(&sb, "(%s.addr >= $%d AND %s.addr < $%d)", alias, len(args)-1, alias, len(args))
	}
	return "", sb.String(), args
}

// hitConditions are the conditions on xffidx_hits (as alias) that the
// options ask for beyond the addresses: headers, sensors and the window,
// exact to the nanosecond (rows without a timestamp kept, as a local query
// keeps them). They go on as parameters after args.
func hitConditions(opt Options, alias string, args []any) (string, []any) {
	var sb strings.Builder
	headers := opt.Headers
	if headers == 0 {
		headers = xff.SetOf(xff.XForwardedFor)
	}
	var hs []int16
	for h := range xff.NumHeaders {
		if headers.Has(h) {
			hs = append(hs, int16(h))
		}
	}
	args = append(args, hs)
	fmt.Fprintf(&sb, " AND %s.header = ANY($%d::SMALLINT[])", alias, len(args))
	if len(opt.Sensors) > 0 {
		args = append(args, opt.Sensors)
		fmt.Fprintf(&sb, " AND %s.sensor = ANY($%d::TEXT[])", alias, len(args))
	}
	if !opt.From.IsZero() {
		args = append(args, opt.From.Unix(), int64(opt.From.Nanosecond()))
		s, ns := len(args)-1, len(args)
		fmt.Fprintf(&sb, " AND ((%[1]s.ts_sec = 0 AND %[1]s.ts_nsec = 0) OR %[1]s.ts_sec > $%[2]d OR (%[1]s.ts_sec = $%[2]d AND %[1]s.ts_nsec >= $%[3]d))", alias, s, ns)
	}
	if !opt.To.IsZero() {
		args = append(args, opt.To.Unix(), int64(opt.To.Nanosecond()))
		s, ns := len(args)-1, len(args)
		fmt.Fprintf(&sb, " AND ((%[1]s.ts_sec = 0 AND %[1]s.ts_nsec = 0) OR %[1]s.ts_sec < $%[2]d OR (%[1]s.ts_sec = $%[2]d AND %[1]s.ts_nsec <= $%[3]d))", alias, s, ns)
	}
	return sb.String(), args
}

// addrRanges are the addr ranges of the prefixes, sorted, with overlapping
// and adjacent ones merged: each row lies in at most one.
func addrRanges(ps []netip.Prefix) (los, his [][]byte) {
	los, his = index.MergedPrefixRanges(ps)
	for i := range los {
		los[i], his[i] = los[i][1:], his[i][1:] // the addr column has no table tag
	}
	return los, his
}

func addrOfKey(b []byte) (netip.Addr, bool) {
	switch {
	case len(b) == 5 && b[0] == 4:
		return netip.AddrFrom4([4]byte(b[1:])), true
	case len(b) == 17 && b[0] == 6:
		return netip.AddrFrom16([16]byte(b[1:])), true
	}
	return netip.Addr{}, false
}

// Connect opens a pool on url (a PostgreSQL URL or keyword/value string;
// libpq's environment, PGPASSWORD, PGSSLMODE, PGSERVICE..., fills what it
// leaves out). Its errors never hold the password.
func Connect(ctx context.Context, url string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("central store: %s", Redact(err.Error(), url))
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("central store: %s", Redact(err.Error(), url))
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("central store: %s", Redact(err.Error(), url, cfg.ConnConfig.Password))
	}
	return pool, nil
}

// Dial opens one connection to the central store, for a one-shot read (a
// query's or top's): no pool to set up and no extra round trip to check
// it, the first statement does. Its errors never hold the password.
func Dial(ctx context.Context, url string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("central store: %s", Redact(err.Error(), url))
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("central store: %s", Redact(err.Error(), url, cfg.Password))
	}
	return conn, nil
}

// Redact replaces in s the password of url (and any other secrets given)
// with "xxxxx".
func Redact(s, url string, secrets ...string) string {
	if i := strings.Index(url, "://"); i >= 0 {
		rest := url[i+3:]
		if at := strings.LastIndex(rest, "@"); at >= 0 {
			if c := strings.Index(rest[:at], ":"); c >= 0 {
				secrets = append(secrets, rest[c+1:at])
			}
		}
	}
	for _, f := range strings.Fields(url) {
		if v, ok := strings.CutPrefix(f, "password="); ok {
			secrets = append(secrets, strings.Trim(v, "'"))
		}
	}
	for _, p := range secrets {
		if p != "" {
			s = strings.ReplaceAll(s, p, "xxxxx")
		}
	}
	return s
}
