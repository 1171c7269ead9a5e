package fleet

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/xffidx/xffidx/format/xff"
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

// searchStatement reads the visible rows of one addr range. The bounds are
// explicit so that both engines scan the primary key's range.
const searchStatement = `SELECT h.addr, h.sensor, f.path, h.off, h.header, h.pos, h.ts_sec, h.ts_nsec, h.ts_digits,
	h.src_ip, h.src_port, h.dst_ip, h.dst_port, h.proto, h.xff, h.method, h.host, h.path
	FROM xffidx_hits h JOIN xffidx_files f ON f.sensor = h.sensor AND f.fid = h.fid
	WHERE h.addr >= $1 AND h.addr < $2
	AND h.gen <= f.gen AND (h.gen = f.gen OR f.stale_from < 0 OR h.off < f.stale_from)`

// Search calls fn with every row of the central store in the options'
// prefixes, as a local query of each sensor would give it (with its
// Sensor), ordered by sensor, file, offset, header and address within each
// prefix.
func Search(ctx context.Context, pool *pgxpool.Pool, opt Options, fn func(query.Row) error) (int, error) {
	if len(opt.Prefixes) == 0 {
		return 0, errors.New("no address or prefix to look for")
	}
	if err := checkSchema(ctx, pool); err != nil {
		return 0, err
	}
	headers := opt.Headers
	if headers == 0 {
		headers = xff.SetOf(xff.XForwardedFor)
	}
	stmt := searchStatement
	args := []any{nil, nil}
	if len(opt.Sensors) > 0 {
		args = append(args, opt.Sensors)
		stmt += fmt.Sprintf(" AND h.sensor = ANY($%d)", len(args))
	}
	var hs []int16
	for h := range xff.NumHeaders {
		if headers.Has(h) {
			hs = append(hs, int16(h))
		}
	}
	args = append(args, hs)
	stmt += fmt.Sprintf(" AND h.header = ANY($%d)", len(args))
	// By whole seconds here (rows without a timestamp kept); inWindow is
	// exact.
	if !opt.From.IsZero() {
		args = append(args, opt.From.Unix())
		stmt += fmt.Sprintf(" AND (h.ts_sec >= $%d OR (h.ts_sec = 0 AND h.ts_nsec = 0))", len(args))
	}
	if !opt.To.IsZero() {
		args = append(args, opt.To.Unix())
		stmt += fmt.Sprintf(" AND h.ts_sec <= $%d", len(args))
	}
	stmt += " ORDER BY h.sensor, f.path, h.off, h.header, h.addr"

	// One statement per prefix; overlapping prefixes give a row once.
	seen := map[string]bool{}
	n := 0
	for _, p := range opt.Prefixes {
		lo, hi := PrefixRange(p)
		args[0], args[1] = lo, hi
		rows, err := pool.Query(ctx, stmt, args...)
		if err != nil {
			return n, fmt.Errorf("querying the central store: %w", err)
		}
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
				rows.Close()
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
			if !inWindow(r.TS, opt) || !query.MatchFiles(opt.Files, r.File) {
				continue
			}
			r.SrcIP, _ = netip.ParseAddr(src)
			r.DstIP, _ = netip.ParseAddr(dst)
			r.SrcPort, r.DstPort = uint16(sport), uint16(dport)
			r.XFF, r.Method, r.Host, r.Path = xffv, m, host, u
			key := fmt.Sprintf("%s\x00%s\x00%d\x00%d\x00%x", r.Sensor, r.File, off, header, addr)
			if len(opt.Prefixes) > 1 {
				if seen[key] {
					continue
				}
				seen[key] = true
			}
			n++
			if err := fn(r); err != nil {
				rows.Close()
				return n, err
			}
		}
		if err := rows.Err(); err != nil {
			return n, fmt.Errorf("reading the central store: %w", err)
		}
	}
	return n, nil
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

// inWindow is the exact window check (the statement's is by whole seconds).
func inWindow(ts time.Time, opt Options) bool {
	if ts.IsZero() {
		return true
	}
	return (opt.From.IsZero() || !ts.Before(opt.From)) && (opt.To.IsZero() || !ts.After(opt.To))
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
