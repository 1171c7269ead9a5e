package fleet

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/xffidx/xffidx/format/xff"
	"github.com/xffidx/xffidx/query"
)

// rankStatement counts the visible rows of each address in the headers
// asked for ($1), most first, ties by address; the window, when there is
// one, is applied by the statement's extra conditions.
const rankStatement = `SELECT h.addr, count(*) AS hits
	FROM xffidx_hits h JOIN xffidx_files f ON f.sensor = h.sensor AND f.fid = h.fid
	WHERE h.gen <= f.gen AND (h.gen = f.gen OR f.stale_from < 0 OR h.off < f.stale_from)
	AND h.header = ANY($1)`

// Top returns the n addresses with the most rows across the sensors (or
// those named), most first (ties: lower address first), each with its
// flows (distinct connections per sensor) and first and last timestamps,
// as the local top gives them for one index. The store ranks the
// addresses; each winner's rows are then read to sum them up.
func Top(ctx context.Context, pool *pgxpool.Pool, n int, opt Options) ([]query.TopRow, error) {
	if n < 1 {
		return nil, errors.New("top: N must be at least 1")
	}
	if len(opt.Files) > 0 {
		return nil, errors.New("top: --file is not answered from the central store yet: run top on the sensors")
	}
	if err := checkSchema(ctx, pool); err != nil {
		return nil, err
	}
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
	stmt, args := rankStatement, []any{hs}
	if len(opt.Sensors) > 0 {
		args = append(args, opt.Sensors)
		stmt += fmt.Sprintf(" AND h.sensor = ANY($%d)", len(args))
	}
	// The exact window, and rows without a timestamp kept, as a local top.
	if !opt.From.IsZero() {
		args = append(args, opt.From.Unix(), int64(opt.From.Nanosecond()))
		stmt += fmt.Sprintf(" AND ((h.ts_sec = 0 AND h.ts_nsec = 0) OR h.ts_sec > $%d OR (h.ts_sec = $%d AND h.ts_nsec >= $%d))", len(args)-1, len(args)-1, len(args))
	}
	if !opt.To.IsZero() {
		args = append(args, opt.To.Unix(), int64(opt.To.Nanosecond()))
		stmt += fmt.Sprintf(" AND ((h.ts_sec = 0 AND h.ts_nsec = 0) OR h.ts_sec < $%d OR (h.ts_sec = $%d AND h.ts_nsec <= $%d))", len(args)-1, len(args)-1, len(args))
	}
	args = append(args, n)
	stmt += fmt.Sprintf(" GROUP BY h.addr ORDER BY hits DESC, h.addr LIMIT $%d", len(args))
	rows, err := pool.Query(ctx, stmt, args...)
	if err != nil {
		return nil, fmt.Errorf("ranking addresses in the central store: %w", err)
	}
	var winners []netip.Addr
	for rows.Next() {
		var key []byte
		var hits int64
		if err := rows.Scan(&key, &hits); err != nil {
			rows.Close()
			return nil, fmt.Errorf("ranking addresses in the central store: %w", err)
		}
		if a, ok := addrOfKey(key); ok {
			winners = append(winners, a)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("ranking addresses in the central store: %w", err)
	}

	var out []query.TopRow
	for _, a := range winners {
		row := query.TopRow{Addr: a}
		type flow struct {
			sensor string
			lo, hi netip.AddrPort
			proto  string
		}
		flows := map[flow]bool{}
		o := opt
		o.Prefixes = []netip.Prefix{netip.PrefixFrom(a, a.BitLen())}
		_, err := Search(ctx, pool, o, func(r query.Row) error {
			row.Hits++
			lo, hi := netip.AddrPortFrom(r.SrcIP, r.SrcPort), netip.AddrPortFrom(r.DstIP, r.DstPort)
			if hi.Compare(lo) < 0 {
				lo, hi = hi, lo
			}
			flows[flow{r.Sensor, lo, hi, r.Proto}] = true
			row.NoteTime(r.TS, r.TSDigit)
			return nil
		})
		if err != nil {
			return nil, err
		}
		row.Flows = len(flows)
		out = append(out, row)
	}
	// The ranking counted rows; the sums are exact: keep the order they give.
	slices.SortStableFunc(out, func(x, y query.TopRow) int {
		if x.Hits != y.Hits {
			return y.Hits - x.Hits
		}
		return x.Addr.Compare(y.Addr)
	})
	return out, nil
}
