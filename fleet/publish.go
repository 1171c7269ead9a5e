package fleet

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/xffidx/xffidx/format/xff"
	"github.com/xffidx/xffidx/index"
	"github.com/xffidx/xffidx/query"
)

// batchRows bounds the rows of one INSERT or DELETE statement, each its own
// transaction: a few thousand rows, a few MiB at most, well under
// CockroachDB's 64 MiB write batch and its slow path past a few MiB of
// locks.
const batchRows = 2000

// PublishStats says what a publish did.
type PublishStats struct {
	New, Grown, Renamed, Changed, Removed, Unchanged int
	RowsSent, RowsDeleted                            int64
	Problems                                         []query.FileProblem
}

// Sent reports whether the publish changed anything in the store.
func (s PublishStats) Sent() bool {
	return s.New+s.Grown+s.Renamed+s.Changed+s.Removed > 0 || s.RowsSent+s.RowsDeleted > 0
}

// central is a sensor's files row.
type central struct {
	fid                                uint32
	path, fingerprint                  string
	size                               int64
	gen, pending, staleFrom            int64
	next                               int64 // the generation this publish writes
	publishedTo, provisionalFrom, hits int64
}

// Publish brings the central store to the content of the local index for
// this sensor: each capture's rows (decoded once, here, reading only the
// hit packets, as a query does) are added, replaced, renamed or removed so
// that the store answers as the local index does. It takes the index's
// build lock, so that no build changes the index meanwhile. Each statement
// is its own small transaction; a publish stopped at any moment leaves
// every capture visible as before or as after (see the package comment),
// and the next publish finishes the work.
func Publish(ctx context.Context, pool *pgxpool.Pool, store *index.Store, sensor string) (PublishStats, error) {
	return publish(ctx, pool, store, sensor, sendInsert)
}

// sendMode is how rowWriter sends a batch of rows.
type sendMode struct {
	copy  bool // COPY into a temporary table, then INSERT ... SELECT
	batch int  // rows per transaction
}

// sendInsert is the mode Publish uses: multi-row INSERT, which
// CockroachDB and PostgreSQL both take (pgx's CopyFrom has gaps on
// CockroachDB, jackc/pgx#1425).
var sendInsert = sendMode{batch: batchRows}

func publish(ctx context.Context, pool *pgxpool.Pool, store *index.Store, sensor string, mode sendMode) (PublishStats, error) {
	var st PublishStats
	if sensor == "" {
		return st, errors.New("publish: empty sensor name")
	}
	unlock, err := store.LockBuild(true)
	if err != nil {
		return st, err
	}
	defer unlock()
	if err := EnsureSchema(ctx, pool); err != nil {
		return st, err
	}
	files, err := store.Catalog()
	var invalid index.InvalidEntries
	if err != nil && !errors.As(err, &invalid) {
		return st, err
	}
	cent, err := readCentral(ctx, pool, sensor)
	if err != nil {
		return st, err
	}

	local := map[uint32]*index.FileInfo{}
	for i := range files {
		local[files[i].ID] = &files[i]
	}
	// Captures the index no longer has, or whose id now names another
	// capture (an index built again from nothing), go first.
	for _, c := range cent {
		l := local[c.fid]
		if l != nil && l.Fingerprint == c.fingerprint && !(c.gen > 0 && l.ResumeAt < c.publishedTo) {
			continue
		}
		n, err := removeFile(ctx, pool, sensor, c.fid)
		st.RowsDeleted += n
		if err != nil {
			return st, err
		}
		if l == nil {
			st.Removed++
		} else {
			st.Changed++
		}
		delete(cent, c.fid)
	}

	// The rest: new, grown, renamed or unchanged.
	var work []*index.FileInfo
	from := map[uint32]int64{}
	for i := range files {
		l := &files[i]
		c, ok := cent[l.ID]
		if !ok {
			// Rows a files row lost (removed by hand, or by a publish of an
			// index built again from nothing) would come back with it.
			n, err := deleteRows(ctx, pool, sensor, l.ID, "true")
			st.RowsDeleted += n
			if err != nil {
				return st, err
			}
			c = &central{fid: l.ID, path: l.Path, fingerprint: l.Fingerprint, staleFrom: -1}
			if err := insertFile(ctx, pool, sensor, c, l); err != nil {
				return st, err
			}
			cent[l.ID] = c
			st.New++
		}
		if c.pending != 0 {
			// A publish stopped while writing. Its token is taken back
			// first, so that a statement of it the server still runs (its
			// client gone) can no longer make anything visible; then its
			// invisible rows go.
			if _, err := pool.Exec(ctx, `UPDATE xffidx_files SET pending = 0 WHERE sensor = $1 AND fid = $2 AND pending = $3`, sensor, int64(c.fid), c.pending); err != nil {
				return st, fmt.Errorf("%s: %w", l.Path, err)
			}
			c.pending = 0
			n, err := deleteRows(ctx, pool, sensor, c.fid, "gen > $3", c.gen)
			st.RowsDeleted += n
			if err != nil {
				return st, err
			}
		}
		if c.staleFrom >= 0 {
			if err := dropStale(ctx, pool, sensor, c, &st); err != nil {
				return st, err
			}
		}
		if c.path != l.Path {
			if _, err := pool.Exec(ctx, `UPDATE xffidx_files SET path = $3 WHERE sensor = $1 AND fid = $2`, sensor, int64(c.fid), l.Path); err != nil {
				return st, fmt.Errorf("renaming %s: %w", l.Path, err)
			}
			c.path = l.Path
			st.Renamed++
		}
		if c.gen > 0 && l.ResumeAt == c.publishedTo && l.Size == c.size {
			st.Unchanged++
			continue
		}
		if c.gen > 0 {
			st.Grown++
			from[l.ID] = c.provisionalFrom
		}
		work = append(work, l)
	}
	if len(work) == 0 {
		return st, nil
	}

	// One search over the captures to send, each from where its rows may
	// differ from what the store holds.
	// Each capture is claimed with this publish's token: only the claim
	// holder makes its rows visible.
	token := rand.Int64N(1<<62) + 1
	sending := map[uint32]bool{}
	for _, l := range work {
		sending[l.ID] = true
		c := cent[l.ID]
		c.next = c.gen + 1
		tag, err := pool.Exec(ctx, `UPDATE xffidx_files SET pending = $3 WHERE sensor = $1 AND fid = $2 AND pending = 0`, sensor, int64(l.ID), token)
		if err != nil {
			return st, fmt.Errorf("%s: %w", l.Path, err)
		}
		if tag.RowsAffected() != 1 {
			return st, fmt.Errorf("%s: another publish of sensor %s is writing it", l.Path, sensor)
		}
		c.pending = token
	}
	opt := query.Options{
		Prefixes: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")},
		Headers:  xff.AllHeaders,
		Select:   func(f *index.FileInfo) bool { return sending[f.ID] },
		StartAt:  func(f *index.FileInfo) int64 { return from[f.ID] },
	}
	w := &rowWriter{ctx: ctx, pool: pool, sensor: sensor, cent: cent, mode: mode}
	sum, err := query.SearchEach(store, opt, w.add)
	if err == nil {
		err = w.flush()
	}
	st.RowsSent += w.sent
	st.Problems = sum.Problems
	if err != nil {
		return st, err
	}
	// A capture whose packets could not be read is left as the store had
	// it; the next publish tries again.
	failed := map[string]bool{}
	for _, p := range sum.Problems {
		failed[p.Path] = true
	}
	for _, l := range work {
		c := cent[l.ID]
		if failed[l.Path] {
			continue
		}
		provisional := l.ResumeAt
		if p, ok := w.provisional[l.ID]; ok {
			provisional = p
		}
		staleFrom := int64(-1)
		if c.gen > 0 {
			staleFrom = from[l.ID]
		}
		// The one statement that makes the new rows visible.
		tag, err := pool.Exec(ctx, `UPDATE xffidx_files SET gen = $3, pending = 0, stale_from = $4, published_to = $5, provisional_from = $6, size = $7, hits = $8
			WHERE sensor = $1 AND fid = $2 AND pending = $9`,
			sensor, int64(l.ID), c.next, staleFrom, l.ResumeAt, provisional, l.Size, l.Hits, c.pending)
		if err != nil {
			return st, fmt.Errorf("%s: %w", l.Path, err)
		}
		if tag.RowsAffected() != 1 {
			return st, fmt.Errorf("%s: another publish of sensor %s took it over", l.Path, sensor)
		}
		c.gen, c.pending, c.staleFrom = c.next, 0, staleFrom
		if staleFrom >= 0 {
			if err := dropStale(ctx, pool, sensor, c, &st); err != nil {
				return st, err
			}
		}
	}
	return st, nil
}

// readCentral reads the sensor's files rows.
func readCentral(ctx context.Context, pool *pgxpool.Pool, sensor string) (map[uint32]*central, error) {
	rows, err := pool.Query(ctx, `SELECT fid, path, size, fingerprint, gen, pending, stale_from, published_to, provisional_from, hits
		FROM xffidx_files WHERE sensor = $1`, sensor)
	if err != nil {
		return nil, fmt.Errorf("reading the published captures: %w", err)
	}
	out := map[uint32]*central{}
	for rows.Next() {
		var c central
		var fid int64
		if err := rows.Scan(&fid, &c.path, &c.size, &c.fingerprint, &c.gen, &c.pending, &c.staleFrom, &c.publishedTo, &c.provisionalFrom, &c.hits); err != nil {
			rows.Close()
			return nil, fmt.Errorf("reading the published captures: %w", err)
		}
		c.fid = uint32(fid)
		out[c.fid] = &c
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading the published captures: %w", err)
	}
	return out, nil
}

func insertFile(ctx context.Context, pool *pgxpool.Pool, sensor string, c *central, l *index.FileInfo) error {
	_, err := pool.Exec(ctx, `INSERT INTO xffidx_files (sensor, fid, path, size, fingerprint, gen, pending, stale_from, published_to, provisional_from, hits)
		VALUES ($1, $2, $3, $4, $5, 0, 0, -1, 0, 0, 0) ON CONFLICT (sensor, fid) DO NOTHING`,
		sensor, int64(l.ID), l.Path, l.Size, l.Fingerprint)
	if err != nil {
		return fmt.Errorf("%s: %w", l.Path, err)
	}
	return nil
}

// removeFile hides a capture at once (gen -1: no row is visible), deletes
// its rows in batches, then its files row.
func removeFile(ctx context.Context, pool *pgxpool.Pool, sensor string, fid uint32) (int64, error) {
	if _, err := pool.Exec(ctx, `UPDATE xffidx_files SET gen = -1 WHERE sensor = $1 AND fid = $2`, sensor, int64(fid)); err != nil {
		return 0, fmt.Errorf("removing file %d: %w", fid, err)
	}
	n, err := deleteRows(ctx, pool, sensor, fid, "true")
	if err != nil {
		return n, err
	}
	if _, err := pool.Exec(ctx, `DELETE FROM xffidx_files WHERE sensor = $1 AND fid = $2`, sensor, int64(fid)); err != nil {
		return n, fmt.Errorf("removing file %d: %w", fid, err)
	}
	return n, nil
}

// dropStale deletes the rows a newer generation replaced, then marks the
// file as having none.
func dropStale(ctx context.Context, pool *pgxpool.Pool, sensor string, c *central, st *PublishStats) error {
	n, err := deleteRows(ctx, pool, sensor, c.fid, "gen < $3 AND off >= $4", c.gen, c.staleFrom)
	st.RowsDeleted += n
	if err != nil {
		return err
	}
	if _, err := pool.Exec(ctx, `UPDATE xffidx_files SET stale_from = -1 WHERE sensor = $1 AND fid = $2`, sensor, int64(c.fid)); err != nil {
		return fmt.Errorf("file %d: %w", c.fid, err)
	}
	c.staleFrom = -1
	return nil
}

// deleteRows deletes a file's rows matching cond (over $3, $4 ...), a
// bounded batch per statement.
func deleteRows(ctx context.Context, pool *pgxpool.Pool, sensor string, fid uint32, cond string, args ...any) (int64, error) {
	stmt := `DELETE FROM xffidx_hits WHERE (addr, sensor, fid, off, header, gen) IN (
		SELECT addr, sensor, fid, off, header, gen FROM xffidx_hits WHERE sensor = $1 AND fid = $2 AND ` + cond + ` LIMIT ` + fmt.Sprint(batchRows) + `)`
	var total int64
	for {
		tag, err := pool.Exec(ctx, stmt, append([]any{sensor, int64(fid)}, args...)...)
		if err != nil {
			return total, fmt.Errorf("deleting rows of file %d: %w", fid, err)
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < batchRows {
			return total, nil
		}
	}
}

// hitColumns are xffidx_hits' columns in the order rowWriter sends them.
var hitColumns = []string{"addr", "sensor", "fid", "off", "header", "gen", "pos", "ts_sec", "ts_nsec", "ts_digits",
	"src_ip", "src_port", "dst_ip", "dst_port", "proto", "xff", "method", "host", "path"}

// rowWriter sends rows in multi-row INSERTs of batchRows, each a
// transaction of its own; ON CONFLICT DO NOTHING makes a batch sent twice
// (a publish stopped after its commit) harmless.
type rowWriter struct {
	ctx         context.Context
	pool        *pgxpool.Pool
	sensor      string
	cent        map[uint32]*central
	mode        sendMode
	args        []any
	n           int
	sent        int64
	provisional map[uint32]int64 // the lowest offset of a provisional row, per file
}

func (w *rowWriter) add(r query.Row) error {
	if r.Provisional {
		if w.provisional == nil {
			w.provisional = map[uint32]int64{}
		}
		if p, ok := w.provisional[r.FileID]; !ok || r.Offset < p {
			w.provisional[r.FileID] = r.Offset
		}
	}
	var sec, nsec int64
	if !r.TS.IsZero() {
		sec, nsec = r.TS.Unix(), int64(r.TS.Nanosecond())
	}
	w.args = append(w.args, index.AddrKey(nil, r.XFFIP), w.sensor, int64(r.FileID), r.Offset, int16(r.Header), w.cent[r.FileID].next, r.Pos,
		sec, nsec, int16(r.TSDigit), addrText(r.SrcIP), int32(r.SrcPort), addrText(r.DstIP), int32(r.DstPort), r.Proto,
		nonNil(r.XFF), nonNil(r.Method), nonNil(r.Host), nonNil(r.Path))
	if w.n++; w.n == w.mode.batch {
		return w.flush()
	}
	return nil
}

func (w *rowWriter) flush() error {
	if w.n == 0 {
		return nil
	}
	if w.mode.copy {
		return w.flushCopy()
	}
	var sb strings.Builder
	sb.WriteString("INSERT INTO xffidx_hits (" + strings.Join(hitColumns, ", ") + ") VALUES ")
	cols := len(hitColumns)
	for i := range w.n {
		if i > 0 {
			sb.WriteString(", ")
		}
		sb.WriteByte('(')
		for j := range cols {
			if j > 0 {
				sb.WriteString(", ")
			}
			fmt.Fprintf(&sb, "$%d", i*cols+j+1)
		}
		sb.WriteByte(')')
	}
	sb.WriteString(" ON CONFLICT DO NOTHING")
	if _, err := w.pool.Exec(w.ctx, sb.String(), w.args...); err != nil {
		return fmt.Errorf("sending rows: %w", err)
	}
	w.sent += int64(w.n)
	w.args, w.n = w.args[:0], 0
	return nil
}

// flushCopy sends the batch with COPY into a temporary table and one
// INSERT ... SELECT ... ON CONFLICT DO NOTHING from it, in one transaction.
func (w *rowWriter) flushCopy() error {
	cols := len(hitColumns)
	rows := make([][]any, w.n)
	for i := range rows {
		rows[i] = w.args[i*cols : (i+1)*cols]
	}
	err := pgx.BeginFunc(w.ctx, w.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(w.ctx, `CREATE TEMPORARY TABLE xffidx_hits_in (LIKE xffidx_hits) ON COMMIT DROP`); err != nil {
			return err
		}
		if _, err := tx.CopyFrom(w.ctx, pgx.Identifier{"xffidx_hits_in"}, hitColumns, pgx.CopyFromRows(rows)); err != nil {
			return err
		}
		list := strings.Join(hitColumns, ", ")
		_, err := tx.Exec(w.ctx, `INSERT INTO xffidx_hits (`+list+`) SELECT `+list+` FROM xffidx_hits_in ON CONFLICT DO NOTHING`)
		return err
	})
	if err != nil {
		return fmt.Errorf("sending rows: %w", err)
	}
	w.sent += int64(w.n)
	w.args, w.n = w.args[:0], 0
	return nil
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

func addrText(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

// PrefixRange is the addr range [lo, hi) of the addresses in p: the
// index's hit key range without its table tag, since the addr column holds
// what the hit keys hold (index.AddrKey).
func PrefixRange(p netip.Prefix) (lo, hi []byte) {
	lo, hi = index.PrefixRange(p)
	return lo[1:], hi[1:]
}
