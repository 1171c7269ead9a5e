package fleet

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/xffidx/xffidx/query"
)

// rankStatement counts the visible rows of each address, most first, ties
// by address. Its first %s joins the captures --file selects, when it is
// given; the second holds hitConditions.
const rankStatement = `SELECT h.addr, count(*) AS hits
	FROM xffidx_hits h JOIN xffidx_files f ON f.sensor = h.sensor AND f.fid = h.fid%s
	WHERE h.gen <= f.gen AND (h.gen = f.gen OR f.stale_from < 0 OR h.off < f.stale_from)%s
	GROUP BY h.addr ORDER BY hits DESC, h.addr LIMIT $%d`

// Top returns the n addresses with the most rows across the sensors (or
// those named), among the options' prefixes if it has any, most first (ties: lower address first), each with its
// flows (distinct connections per sensor) and first and last timestamps,
// as the local top gives them for one index. The store ranks the
// addresses; each winner's rows are then read to sum them up.
func Top(ctx context.Context, db Querier, n int, opt Options) ([]query.TopRow, error) {
	if n < 1 {
		return nil, errors.New("top: N must be at least 1")
	}
	if err := checkSchema(ctx, db); err != nil {
		return nil, err
	}
	var args []any
	join, ranks := "", ""
	if len(opt.Files) > 0 {
		// --file patterns are path.Match patterns, which SQL does not
		// speak: the captures they select are listed here and joined.
		sensors, fids, err := matchingFiles(ctx, db, opt)
		if err != nil {
			return nil, err
		}
		if len(fids) == 0 {
			return nil, nil
		}
		args = append(args, sensors, fids)
		join = " JOIN unnest($1::TEXT[], $2::BIGINT[]) AS sel (sensor, fid) ON sel.sensor = h.sensor AND sel.fid = h.fid"
	}
	if len(opt.Prefixes) > 0 {
		// Rank only these addresses.
		var ranges string
		var rangeJoin string
		rangeJoin, ranges, args = rangeConditions(opt.Prefixes, "h", args)
		join += rangeJoin
		ranks = " AND (" + ranges + ")"
	}
	cond, args := hitConditions(opt, "h", args)
	args = append(args, n)
	rows, err := db.Query(ctx, fmt.Sprintf(rankStatement, join, ranks+cond, len(args)), args...)
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
		_, err := Search(ctx, db, o, func(r query.Row) error {
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

// matchingFiles lists the captures (sensor and fid, side by side) whose
// path matches the options' --file patterns, on the sensors asked for.
func matchingFiles(ctx context.Context, db Querier, opt Options) (sensors []string, fids []int64, err error) {
	stmt, args := `SELECT sensor, fid, path FROM xffidx_files`, []any{}
	if len(opt.Sensors) > 0 {
		stmt, args = stmt+` WHERE sensor = ANY($1::TEXT[])`, append(args, opt.Sensors)
	}
	rows, err := db.Query(ctx, stmt, args...)
	if err != nil {
		return nil, nil, fmt.Errorf("listing the central store's captures: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var sensor, path string
		var fid int64
		if err := rows.Scan(&sensor, &fid, &path); err != nil {
			return nil, nil, fmt.Errorf("listing the central store's captures: %w", err)
		}
		if query.MatchFiles(opt.Files, path) {
			sensors, fids = append(sensors, sensor), append(fids, fid)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("listing the central store's captures: %w", err)
	}
	return sensors, fids, nil
}
