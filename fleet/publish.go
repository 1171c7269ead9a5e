package fleet

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"

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
	crdb, err := isCockroach(ctx, pool)
	if err != nil {
		return PublishStats{}, err
	}
	if crdb {
		return publish(ctx, pool, store, sensor, sendInsert)
	}
	return publish(ctx, pool, store, sensor, sendCopy)
}

// isCockroach reports whether the store is CockroachDB, which tells itself
// apart at connection start (the crdb_version parameter).
func isCockroach(ctx context.Context, pool *pgxpool.Pool) (bool, error) {
	c, err := pool.Acquire(ctx)
	if err != nil {
		return false, fmt.Errorf("central store: %w", err)
	}
	defer c.Release()
	return c.Conn().PgConn().ParameterStatus("crdb_version") != "", nil
}

// sendMode is how rowWriter sends a batch of rows.
type sendMode struct {
	copy  bool // COPY straight into xffidx_hits; else INSERT ... SELECT FROM unnest(...)
	batch int  // rows per transaction
}

// sendInsert is how Publish sends to CockroachDB: an INSERT of column
// arrays (pgx's CopyFrom has gaps on CockroachDB, jackc/pgx#1425).
var sendInsert = sendMode{batch: batchRows}

// sendCopy is how Publish sends to PostgreSQL: COPY, the fastest way in
// (bench: BenchmarkPublish). The rows of a new generation cannot be there
// already (takeBack), so COPY needs no ON CONFLICT.
var sendCopy = sendMode{copy: true, batch: batchRows}

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
			n, err := takeBack(ctx, pool, sensor, c)
			st.RowsDeleted += n
			if err != nil {
				return st, fmt.Errorf("%s: %w", l.Path, err)
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
	w := newRowWriter(ctx, pool, sensor, token, cent, mode)
	sum, err := query.SearchEach(store, opt, w.add)
	err = w.close(err)
	st.RowsSent += w.sent.Load()
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

// takeBack finishes what a publish stopped while writing a capture left:
// it takes that publish's token back, then deletes its invisible rows.
// Taking the token back (pending = -1) waits for any batch of the dead
// publish the server still runs (each batch locks its captures' files rows
// against it, see rowWriter.send) and stops later ones from committing, so
// that the delete after it leaves no row of that publish behind: the next
// generation can then be sent without conflicts. A publish stopped during
// the delete leaves pending = -1, and the next one deletes again.
func takeBack(ctx context.Context, pool *pgxpool.Pool, sensor string, c *central) (int64, error) {
	if c.pending != takenBack {
		tag, err := pool.Exec(ctx, `UPDATE xffidx_files SET pending = $4 WHERE sensor = $1 AND fid = $2 AND pending = $3`, sensor, int64(c.fid), c.pending, takenBack)
		if err != nil {
			return 0, err
		}
		if tag.RowsAffected() != 1 {
			return 0, fmt.Errorf("another publish of sensor %s is writing it", sensor)
		}
		c.pending = takenBack
	}
	n, err := deleteRows(ctx, pool, sensor, c.fid, "gen > $3", c.gen)
	if err != nil {
		return n, err
	}
	if _, err := pool.Exec(ctx, `UPDATE xffidx_files SET pending = 0 WHERE sensor = $1 AND fid = $2 AND pending = $3`, sensor, int64(c.fid), takenBack); err != nil {
		return n, err
	}
	c.pending = 0
	return n, nil
}

// takenBack is pending's value while a stopped publish's rows are deleted.
const takenBack = -1

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
	// pending = takenBack also fences off the batches of a stopped
	// publish the server may still run (see takeBack).
	if _, err := pool.Exec(ctx, `UPDATE xffidx_files SET gen = -1, pending = $3 WHERE sensor = $1 AND fid = $2`, sensor, int64(fid), takenBack); err != nil {
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

// hitBatch is a batch of rows, column by column, as the unnest INSERT
// sends them.
type hitBatch struct {
	addr, xff, method, host, path [][]byte
	fid, off, gen, tsSec          []int64
	header, tsDigits              []int16
	pos, tsNsec, srcPort, dstPort []int32
	srcIP, dstIP, proto           []string
	fids                          map[int64]bool
}

func (b *hitBatch) len() int { return len(b.off) }

// copySource hands a batch to COPY row by row.
type copySource struct {
	b      *hitBatch
	sensor string
	i      int
	row    []any
}

func (c *copySource) Next() bool { c.i++; return c.i <= c.b.len() }
func (c *copySource) Err() error { return nil }
func (c *copySource) Values() ([]any, error) {
	b, i := c.b, c.i-1
	c.row = append(c.row[:0], b.addr[i], c.sensor, b.fid[i], b.off[i], b.header[i], b.gen[i], b.pos[i],
		b.tsSec[i], b.tsNsec[i], b.tsDigits[i], b.srcIP[i], b.srcPort[i], b.dstIP[i], b.dstPort[i], b.proto[i],
		b.xff[i], b.method[i], b.host[i], b.path[i])
	return c.row, nil
}

// insertStatement sends a batch as column arrays: one statement text for
// every batch size, which both engines parse once per connection.
var insertStatement = `INSERT INTO xffidx_hits (` + strings.Join(hitColumns, ", ") + `)
	SELECT a, $2, fid, off, header, gen, pos, ts_sec, ts_nsec, ts_digits, src_ip, src_port, dst_ip, dst_port, proto, xff, method, host, path
	FROM unnest($1::BYTEA[], $3::BIGINT[], $4::BIGINT[], $5::SMALLINT[], $6::BIGINT[], $7::INT[], $8::BIGINT[], $9::INT[], $10::SMALLINT[],
		$11::TEXT[], $12::INT[], $13::TEXT[], $14::INT[], $15::TEXT[], $16::BYTEA[], $17::BYTEA[], $18::BYTEA[], $19::BYTEA[])
		AS r (a, fid, off, header, gen, pos, ts_sec, ts_nsec, ts_digits, src_ip, src_port, dst_ip, dst_port, proto, xff, method, host, path)
	ON CONFLICT DO NOTHING`

// senders is how many connections send batches at once, while the rows of
// the next ones are decoded.
const senders = 2

// rowWriter gathers the decoded rows into batches and hands them to
// senders, each batch a transaction of its own on its own connection.
// A batch is fenced: it commits only while this publish still holds the
// token of each capture it has rows of, so that once the next publish
// took a dead publish's token back, no statement of the dead one the
// server still runs can add rows (see takeBack).
type rowWriter struct {
	ctx         context.Context
	cancel      context.CancelFunc
	pool        *pgxpool.Pool
	sensor      string
	token       int64
	cent        map[uint32]*central
	mode        sendMode
	cur         *hitBatch
	batches     chan *hitBatch
	wg          sync.WaitGroup
	errOnce     sync.Once
	err         error
	sent        atomic.Int64
	provisional map[uint32]int64 // the lowest offset of a provisional row, per file
}

func newRowWriter(ctx context.Context, pool *pgxpool.Pool, sensor string, token int64, cent map[uint32]*central, mode sendMode) *rowWriter {
	ctx, cancel := context.WithCancel(ctx)
	w := &rowWriter{ctx: ctx, cancel: cancel, pool: pool, sensor: sensor, token: token, cent: cent, mode: mode,
		batches: make(chan *hitBatch, senders)}
	for range senders {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			for b := range w.batches {
				if w.ctx.Err() != nil {
					continue
				}
				if err := w.send(b); err != nil {
					w.fail(err)
				}
			}
		}()
	}
	return w
}

func (w *rowWriter) fail(err error) {
	w.errOnce.Do(func() {
		w.err = err
		w.cancel()
	})
}

// errStopped stops the decoding when sending failed or was cancelled;
// close then says why.
var errStopped = errors.New("publish stopped")

func (w *rowWriter) add(r query.Row) error {
	if w.ctx.Err() != nil {
		return errStopped
	}
	if r.Provisional {
		if w.provisional == nil {
			w.provisional = map[uint32]int64{}
		}
		if p, ok := w.provisional[r.FileID]; !ok || r.Offset < p {
			w.provisional[r.FileID] = r.Offset
		}
	}
	if w.cur == nil {
		w.cur = &hitBatch{fids: map[int64]bool{}}
	}
	var sec, nsec int64
	if !r.TS.IsZero() {
		sec, nsec = r.TS.Unix(), int64(r.TS.Nanosecond())
	}
	b := w.cur
	fid := int64(r.FileID)
	b.fids[fid] = true
	b.addr = append(b.addr, index.AddrKey(nil, r.XFFIP))
	b.fid, b.off, b.header, b.gen = append(b.fid, fid), append(b.off, r.Offset), append(b.header, int16(r.Header)), append(b.gen, w.cent[r.FileID].next)
	b.pos, b.tsSec, b.tsNsec, b.tsDigits = append(b.pos, int32(r.Pos)), append(b.tsSec, sec), append(b.tsNsec, int32(nsec)), append(b.tsDigits, int16(r.TSDigit))
	b.srcIP, b.srcPort, b.dstIP, b.dstPort = append(b.srcIP, addrText(r.SrcIP)), append(b.srcPort, int32(r.SrcPort)), append(b.dstIP, addrText(r.DstIP)), append(b.dstPort, int32(r.DstPort))
	b.proto, b.xff, b.method, b.host, b.path = append(b.proto, r.Proto), append(b.xff, nonNil(r.XFF)), append(b.method, nonNil(r.Method)), append(b.host, nonNil(r.Host)), append(b.path, nonNil(r.Path))
	if b.len() == w.mode.batch {
		return w.hand()
	}
	return nil
}

// hand passes the current batch to a sender, waiting while every sender
// is busy and one batch waits already.
func (w *rowWriter) hand() error {
	select {
	case w.batches <- w.cur:
		w.cur = nil
		return nil
	case <-w.ctx.Done():
		return errStopped
	}
}

// close sends the last batch and waits for the senders; decodeErr is the
// decoding's outcome.
func (w *rowWriter) close(decodeErr error) error {
	if decodeErr == nil && w.cur != nil && w.cur.len() > 0 {
		decodeErr = w.hand()
	}
	if decodeErr != nil && !errors.Is(decodeErr, errStopped) {
		w.fail(decodeErr)
	}
	close(w.batches)
	w.wg.Wait()
	if w.err == nil && decodeErr != nil {
		w.err = w.ctx.Err() // cancelled from outside
	}
	w.cancel()
	return w.err
}

// fenceStatement returns the captures among $2 that the publish holding
// token $3 still holds, and locks their files rows until the transaction
// ends, so that taking them back waits for it.
const fenceStatement = `SELECT fid FROM xffidx_files WHERE sensor = $1 AND fid = ANY($2::BIGINT[]) AND pending = $3 FOR SHARE`

// send writes one batch in a transaction that first checks, and locks
// against a takeover, this publish's claim on the batch's captures.
func (w *rowWriter) send(b *hitBatch) error {
	fids := make([]int64, 0, len(b.fids))
	for f := range b.fids {
		fids = append(fids, f)
	}
	err := pgx.BeginFunc(w.ctx, w.pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(w.ctx, fenceStatement, w.sensor, fids, w.token)
		if err != nil {
			return err
		}
		held := 0
		for rows.Next() {
			held++
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if held != len(fids) {
			return fmt.Errorf("another publish of sensor %s took over captures this one was sending", w.sensor)
		}
		if w.mode.copy {
			_, err = tx.CopyFrom(w.ctx, pgx.Identifier{"xffidx_hits"}, hitColumns, &copySource{b: b, sensor: w.sensor})
		} else {
			_, err = tx.Exec(w.ctx, insertStatement, b.addr, w.sensor, b.fid, b.off, b.header, b.gen, b.pos, b.tsSec, b.tsNsec, b.tsDigits,
				b.srcIP, b.srcPort, b.dstIP, b.dstPort, b.proto, b.xff, b.method, b.host, b.path)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("sending rows: %w", err)
	}
	w.sent.Add(int64(b.len()))
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
