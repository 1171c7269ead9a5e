// Package ingest builds the index: one parallel pass over each capture's raw
// bytes finds every X-Forwarded-For header line and records its addresses,
// with the file offset of the packet record that carries it.
//
// A file is cut into chunks. Workers walk the records of their chunk on
// their own (resyncing to a record boundary at the chunk start), search each
// packet's bytes for the header name, and fully decode only the packets that
// contain it. A coordinator accepts chunk results in file order, checking
// that each chunk begins exactly where the previous one ended and from the
// same pcapng section context; a chunk that does not is walked again from
// the right place. Hits go to an index.TableBuilder, which spills sorted runs
// to disk, so memory does not grow with the file or the number of hits.
package ingest

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/xffidx/xffidx/format"
	"github.com/xffidx/xffidx/index"
)

// Options tune a build.
type Options struct {
	Workers   int   // parallel chunk walkers; 0 means one per CPU
	ChunkSize int64 // bytes per chunk; 0 means DefaultChunkSize
	Logger    *slog.Logger
}

// DefaultChunkSize balances parallelism on small files against per-chunk
// overhead (a resync and a 1.8 MiB read beyond the chunk).
const DefaultChunkSize = 16 << 20

// FileResult reports one file of a build.
type FileResult struct {
	Path      string
	Skipped   bool // unchanged since it was last indexed
	Info      index.FileInfo
	Warnings  []string
	Err       error // the file could not be indexed, or is corrupt in places
	Committed bool  // its hits are in the index (possibly despite Err)
}

// Stats sums a build.
type Stats struct {
	// Files were indexed, Corrupt of them with regions skipped; Failed could
	// not be indexed at all.
	Files, Corrupt, Unchanged, Failed int
	Bytes, Packets                    int64
	XFFLines, Hits                    int64
	Addresses, NonAddresses           int64
	SkippedBytes                      int64
	Duration                          time.Duration
}

// Add folds one file's result in.
func (s *Stats) Add(r FileResult) {
	if r.Skipped {
		s.Unchanged++
		return
	}
	if !r.Committed {
		s.Failed++
		return
	}
	s.Files++
	if r.Err != nil {
		s.Corrupt++
	}
	s.Bytes += r.Info.Size
	s.Packets += r.Info.Packets
	s.XFFLines += r.Info.XFFLines
	s.Hits += r.Info.Hits
	s.Addresses += r.Info.Addresses
	s.NonAddresses += r.Info.NonAddresses
	s.SkippedBytes += r.Info.SkippedBytes
}

// Builder indexes capture files into a store.
type Builder struct {
	Store *index.Store
	Opts  Options
}

func (b *Builder) logger() *slog.Logger {
	if b.Opts.Logger != nil {
		return b.Opts.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// IndexFile indexes one capture file (path must be absolute) unless the
// index already holds it unchanged.
func (b *Builder) IndexFile(path string) FileResult {
	r := FileResult{Path: path}
	st, err := os.Stat(path)
	if err != nil {
		r.Err = err
		return r
	}
	olds, fid, err := b.Store.Prepare(path)
	if err != nil {
		r.Err = err
		return r
	}
	for _, o := range olds {
		if o.Size == st.Size() && o.ModTime.Equal(st.ModTime()) {
			r.Skipped, r.Info = true, o
			return r
		}
	}
	f, err := os.Open(path)
	if err != nil {
		r.Err = err
		return r
	}
	defer f.Close()
	table, err := b.Store.NewTable(fid)
	if err != nil {
		r.Err = fmt.Errorf("%s: %w", path, err)
		return r
	}
	defer table.Discard()
	info := index.FileInfo{ID: fid, Path: path, Size: st.Size(), ModTime: st.ModTime()}
	fs := &fileScan{b: b, f: f, path: path, size: st.Size(), table: table, info: &info}
	t0 := time.Now()
	if err := fs.run(); err != nil {
		r.Err = err
		return r
	}
	r.Warnings = fs.warnings
	info.Addresses = table.Entries
	info.IndexedAt = time.Now().UTC()
	t1 := time.Now()
	sst, err := table.Finish(info)
	t2 := time.Now()
	if err == nil {
		err = b.Store.Commit(sst, info, olds)
	}
	b.logger().Debug("indexed", "file", path, "scan", t1.Sub(t0), "table", t2.Sub(t1), "commit", time.Since(t2))
	if err != nil {
		r.Err = fmt.Errorf("%s: %w", path, err)
		return r
	}
	r.Committed, r.Info = true, info
	if info.SkippedBytes > 0 {
		r.Err = fmt.Errorf("%s: corrupt: %d bytes are not packet records and were skipped (see the warnings for where); every record around them is indexed", path, info.SkippedBytes)
	}
	return r
}

// fileScan is the pass over one file.
type fileScan struct {
	b        *Builder
	f        *os.File
	path     string
	size     int64
	table    *index.TableBuilder
	info     *index.FileInfo
	warnings []string

	dataStart int64         // offset of the first record
	initial   format.Walker // context after the file's leading header blocks

	mu     sync.Mutex
	latest format.Walker // context of the last accepted chunk, for dispatch

	// Coordinator state, in file order.
	next      int64 // where the next chunk must begin
	nextKind  endKind
	ctx       format.Walker
	sections  []format.Section
	covered   int64
	truncated int64
	rerunner  *chunkScanner
}

func (fs *fileScan) chunkSize() int64 {
	if fs.b.Opts.ChunkSize > 0 {
		return fs.b.Opts.ChunkSize
	}
	return DefaultChunkSize
}

func (fs *fileScan) workers() int {
	if fs.b.Opts.Workers > 0 {
		return fs.b.Opts.Workers
	}
	return runtime.GOMAXPROCS(0)
}

// readHead recognises the format and reads the leading header blocks.
func (fs *fileScan) readHead() error {
	head := make([]byte, min(fs.size, overhang))
	if _, err := fs.f.ReadAt(head, 0); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("%s: %w", fs.path, err)
	}
	kind := format.Detect(head)
	fs.info.Format = kind.String()
	switch kind {
	case format.KindPcap:
		sec, err := format.ParsePcapHeader(head)
		if err != nil {
			return fmt.Errorf("%s: %w", fs.path, err)
		}
		fs.dataStart = 24
		fs.initial = format.Walker{Kind: kind, Sec: sec}
		fs.ctx = fs.initial
		fs.sections = []format.Section{sec}
	case format.KindPcapNG:
		w := format.Walker{Kind: kind}
		pos := 0
		for {
			_, n, st := w.Next(head, 0, pos)
			if st != format.Header {
				break
			}
			pos += n
		}
		if w.HeaderBlocks == 0 {
			return fmt.Errorf("%s: pcapng section header block is corrupt", fs.path)
		}
		fs.initial = w
		fs.ctx = format.Walker{Kind: kind}
	default:
		return fmt.Errorf("%s: %w", fs.path, format.ErrNotCapture)
	}
	fs.latest = cloneWalker(fs.initial)
	fs.next, fs.nextKind = fs.dataStart, endBoundary
	return nil
}

func cloneWalker(w format.Walker) format.Walker {
	w.Sec.Ifaces = slices.Clone(w.Sec.Ifaces)
	return w
}

type job struct {
	k          int
	start, end int64
	ctx        format.Walker
}

func (fs *fileScan) run() error {
	if err := fs.readHead(); err != nil {
		return err
	}
	c := fs.chunkSize()
	nChunks := int((fs.size - fs.dataStart + c - 1) / c)
	if nChunks == 0 {
		nChunks = 1
	}
	workers := min(fs.workers(), nChunks)
	window := 2 * workers // chunks in flight: bounds memory

	jobs := make(chan job)
	results := make(chan *chunkResult, window)
	slots := make(chan struct{}, window)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sc := newChunkScanner()
			for j := range jobs {
				results <- fs.scanChunk(sc, j)
			}
		}()
	}
	stop := make(chan struct{})
	ctx0 := cloneWalker(fs.ctx)
	go func() {
		defer close(jobs)
		for k := range nChunks {
			select {
			case slots <- struct{}{}:
			case <-stop:
				return
			}
			start := fs.dataStart + int64(k)*c
			fs.mu.Lock()
			ctx := cloneWalker(fs.latest)
			fs.mu.Unlock()
			if k == 0 {
				ctx = ctx0
			}
			select {
			case jobs <- job{k: k, start: start, end: min(start+c, fs.size), ctx: ctx}:
			case <-stop:
				return
			}
		}
	}()
	go func() { wg.Wait(); close(results) }()

	pending := map[int]*chunkResult{}
	var firstErr error
	for k := 0; k < nChunks; {
		r, ok := <-results
		if !ok {
			break
		}
		pending[r.k] = r
		for pending[k] != nil {
			r := pending[k]
			delete(pending, k)
			<-slots
			if firstErr == nil {
				firstErr = fs.accept(r)
			}
			k++
		}
	}
	close(stop)
	for range results {
	}
	if firstErr != nil {
		return firstErr
	}
	return fs.finish()
}

// scanChunk reads and walks one chunk.
func (fs *fileScan) scanChunk(sc *chunkScanner, j job) *chunkResult {
	res := &chunkResult{k: j.k, ctxBlocks: j.ctx.HeaderBlocks}
	from := max(fs.dataStart, j.start-min(preroll, fs.chunkSize()))
	if j.k == 0 {
		from = j.start
	}
	sc.start(fs.f, from, j.end+overhang, fs.size)
	sc.w, sc.res = j.ctx, res
	sc.walk(0, j.k == 0, j.start, j.end)
	res.ctxOut = sc.w
	sc.res = nil
	if sc.readErr != nil {
		res.err = fmt.Errorf("%s: %w", fs.path, sc.readErr)
	}
	return res
}

// accept takes chunk results in file order, re-walking a chunk that does not
// start where the previous one ended or started from another context.
func (fs *fileScan) accept(r *chunkResult) error {
	if r.err != nil {
		return r.err
	}
	c := fs.chunkSize()
	start := fs.dataStart + int64(r.k)*c
	end := min(start+c, fs.size)
	switch fs.nextKind {
	case endEOF, endTruncated:
		return nil // the file ended in an earlier chunk's overhang
	case endCorrupt:
		// The previous chunk ended in bytes that are not records; this
		// chunk's own resync says where records begin again.
		if r.ctxBlocks != fs.ctx.HeaderBlocks || (r.start >= 0 && r.start < fs.next) {
			r = fs.rerun(r.k, fs.next, false, start, end)
		}
		if r.err == nil && r.start < 0 {
			return nil // still inside the corrupt region
		}
	default:
		if r.start != fs.next || r.ctxBlocks != fs.ctx.HeaderBlocks {
			r = fs.rerun(r.k, fs.next, true, start, end)
		}
	}
	if r.err != nil {
		return r.err
	}
	if fs.nextKind == endCorrupt && r.start > fs.next {
		fs.warnf("corrupt data at offset %d: skipped %d bytes to the next valid record", fs.next, r.start-fs.next)
	}
	for _, s := range r.skipped {
		fs.warnf("corrupt data at offset %d: skipped %d bytes to the next valid record", s.from, s.to-s.from)
	}
	return fs.absorb(r)
}

// rerun walks chunk k again in the coordinator, from a known position and
// the true context.
func (fs *fileScan) rerun(k int, from int64, trusted bool, start, end int64) *chunkResult {
	if fs.rerunner == nil {
		fs.rerunner = newChunkScanner()
	}
	sc := fs.rerunner
	res := &chunkResult{k: k, ctxBlocks: fs.ctx.HeaderBlocks}
	sc.start(fs.f, from, end+overhang, fs.size)
	sc.w, sc.res = cloneWalker(fs.ctx), res
	sc.walk(0, trusted, max(start, from), end)
	res.ctxOut = sc.w
	if sc.readErr != nil {
		res.err = fmt.Errorf("%s: %w", fs.path, sc.readErr)
	}
	return res
}

func (fs *fileScan) warnf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	fs.warnings = append(fs.warnings, msg)
	fs.b.logger().Debug(msg, "file", fs.path)
}

// absorb folds an accepted chunk into the file's totals and the table.
func (fs *fileScan) absorb(r *chunkResult) error {
	info := fs.info
	for _, e := range r.events {
		if e.shb {
			fs.sections = append(fs.sections, format.Section{Offset: e.off, BigEndian: e.big})
		} else if len(fs.sections) > 0 {
			last := &fs.sections[len(fs.sections)-1]
			last.Ifaces = append(last.Ifaces, e.iface)
		}
	}
	fs.ctx = cloneWalker(r.ctxOut)
	fs.mu.Lock()
	fs.latest = cloneWalker(r.ctxOut)
	fs.mu.Unlock()
	fs.next, fs.nextKind = r.end, r.endKind
	if r.endKind == endTruncated {
		fs.truncated = r.truncLen
	}
	fs.covered += r.covered
	info.Packets += r.packets
	info.XFFLines += r.xffLines
	info.Hits += r.hitPkts
	info.NonAddresses += r.nonAddr
	if r.minTS != 0 {
		if info.FirstTS.IsZero() || r.minTS < info.FirstTS.UnixNano() {
			info.FirstTS = time.Unix(0, r.minTS).UTC()
		}
		if t := time.Unix(0, r.maxTS).UTC(); t.After(info.LastTS) {
			info.LastTS = t
		}
	}
	for _, h := range r.hits {
		if err := fs.table.AddHit(h.addr, h.off, h.pos); err != nil {
			return fmt.Errorf("%s: %w", fs.path, err)
		}
	}
	for _, v := range r.raws {
		if err := fs.table.AddRaw(v.off, v.raw); err != nil {
			return fmt.Errorf("%s: %w", fs.path, err)
		}
	}
	return nil
}

func (fs *fileScan) finish() error {
	if fs.nextKind == endCorrupt && fs.next >= 0 && fs.next < fs.size {
		fs.warnf("corrupt data at offset %d: skipped the last %d bytes", fs.next, fs.size-fs.next)
	}
	if fs.truncated > 0 {
		fs.warnf("last record cut short at offset %d (%d bytes; the file may still be being written): everything before it is indexed", fs.next, fs.truncated)
	}
	fs.info.Sections = fs.sections
	for _, sec := range fs.sections {
		for _, iface := range sec.Ifaces {
			if !slices.Contains(fs.info.LinkTypes, iface.LinkType) {
				fs.info.LinkTypes = append(fs.info.LinkTypes, iface.LinkType)
			}
		}
	}
	fs.info.SkippedBytes = max(0, fs.size-fs.dataStart-fs.covered-fs.truncated)
	return nil
}

// Build indexes every capture among paths: files, and directories walked
// recursively. In a directory, files that are not captures (by magic number)
// are passed over; a named file that is not a capture is an error. report is
// called for each file as it is done.
func (b *Builder) Build(paths []string, report func(FileResult)) Stats {
	t0 := time.Now()
	var st Stats
	done := func(r FileResult) {
		st.Add(r)
		if report != nil {
			report(r)
		}
	}
	for _, p := range paths {
		for _, c := range b.expand(p, done) {
			done(b.IndexFile(c))
		}
	}
	st.Duration = time.Since(t0)
	return st
}

// expand lists the captures named by path, in lexical order.
func (b *Builder) expand(path string, fail func(FileResult)) []string {
	abs, err := filepath.Abs(path)
	if err != nil {
		fail(FileResult{Path: path, Err: err})
		return nil
	}
	fi, err := os.Stat(abs)
	if err != nil {
		fail(FileResult{Path: abs, Err: err})
		return nil
	}
	if !fi.IsDir() {
		if err := checkMagic(abs); err != nil {
			fail(FileResult{Path: abs, Err: err})
			return nil
		}
		return []string{abs}
	}
	var out []string
	err = filepath.WalkDir(abs, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			fail(FileResult{Path: p, Err: err})
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		if err := checkMagic(p); err != nil {
			if errors.Is(err, format.ErrNotCapture) {
				b.logger().Debug("not a capture, passed over", "file", p)
			} else {
				fail(FileResult{Path: p, Err: err})
			}
			return nil
		}
		out = append(out, p)
		return nil
	})
	if err != nil {
		fail(FileResult{Path: abs, Err: err})
	}
	return out
}

func checkMagic(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	head := make([]byte, 12)
	n, err := io.ReadFull(f, head)
	if err != nil && n == 0 {
		if err == io.EOF {
			return fmt.Errorf("%s: empty file: %w", path, format.ErrNotCapture)
		}
		return fmt.Errorf("%s: %w", path, err)
	}
	if format.Detect(head[:n]) == format.KindUnknown {
		return fmt.Errorf("%s: %w", path, format.ErrNotCapture)
	}
	return nil
}
