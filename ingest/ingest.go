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
	"os"
	"runtime"
	"slices"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xffidx/xffidx/format"
	"github.com/xffidx/xffidx/format/compressed"
	"github.com/xffidx/xffidx/format/stream"
	"github.com/xffidx/xffidx/index"
)

// fileScan is the pass over one file.
type fileScan struct {
	b *Builder
	s *session
	// turn is set when the file is walked without the session's lock,
	// beside other captures (files.go).
	turn   *fileTurn
	resume *index.FileInfo // set: index only what follows resume.ResumeAt
	f      *os.File
	// src is what records are read from: f, or for a compressed capture
	// its decompressed stream (cfile).
	src   io.ReaderAt
	codec compressed.Codec
	cfile *compressed.File
	in    *inputPos // the compressed file, as its decoders read it
	path  string
	size  int64
	// trailingErr: bytes after a compressed capture's last member or
	// frame that are not one; pointErr: a restart point not stored.
	trailingErr, pointErr error
	points                int   // restart points stored
	pointBytes            int64 // their keys' and values' bytes
	pointBuf              []byte
	table                 *index.TableBuilder
	info                  *index.FileInfo
	warnings              []string

	dataStart int64         // offset of the first record to read
	headerEnd int64         // end of the file's leading header blocks
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
	reported  int64 // file offset up to which progress was reported

	// truth follows the connections as one sequential walk would: each
	// chunk's own tracking is joined to it in file order.
	truth *stream.Tracker
	// spares are chunks Join is done with, whose memory workers use again.
	spares chan *stream.Chunk
	// fetchBlock is the block of the file fetch last read.
	fetchBlock struct {
		at   int64
		data []byte
	}
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

// readHead recognises the format and reads the leading header blocks, or,
// resuming a grown file, takes them from its catalog entry.
func (fs *fileScan) readHead() error {
	if r := fs.resume; r != nil && len(r.Sections) > 0 {
		kind := format.KindPcap
		if r.Format == format.KindPcapNG.String() {
			kind = format.KindPcapNG
		}
		last := r.Sections[len(r.Sections)-1]
		fs.initial = cloneWalker(format.Walker{Kind: kind, Sec: last})
		fs.ctx, fs.latest = cloneWalker(fs.initial), cloneWalker(fs.initial)
		fs.sections = slices.Clone(r.Sections)
		fs.sections[len(fs.sections)-1].Ifaces = slices.Clone(last.Ifaces)
		fs.dataStart, fs.headerEnd = r.ResumeAt, r.FingerprintFrom
		fs.next, fs.nextKind = fs.dataStart, endBoundary
		// The connections open where the last build stopped go on.
		state, err := fs.b.Store.State(r.ID)
		if err != nil {
			return fmt.Errorf("%s: %w", fs.path, err)
		}
		if state != nil {
			prov, err := fs.truth.Resume(state, true)
			if err != nil {
				fs.warnf("connection state saved with the file does not decode (%v): connections open at offset %d are taken up afresh", err, r.ResumeAt)
			}
			// The last build's provisional end is read again, whole.
			fs.info.Addresses -= prov
		}
		return nil
	}
	// Most files' header blocks and first packet fit in 64 KiB; only when
	// they do not is the head read again up to the largest block. (Fresh
	// memory costs a page fault per 4 KiB, and they are dear on a VM.)
	head, err := fs.readStart(min(fs.size, 64<<10))
	if err == nil && !headFits(head) && int64(len(head)) < min(fs.size, overhang) {
		head, err = fs.readStart(min(fs.size, overhang))
	}
	if err != nil {
		return err
	}
	kind := format.Detect(head)
	fs.info.Format = kind.String()
	switch kind {
	case format.KindPcap:
		sec, err := format.ParsePcapHeader(head)
		if err != nil {
			return fmt.Errorf("%s: %w", fs.path, err)
		}
		fs.dataStart, fs.headerEnd = 24, 24
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
		fs.headerEnd = int64(pos)
		fs.initial = w
		fs.ctx = format.Walker{Kind: kind}
	default:
		return fmt.Errorf("%s: %w", fs.path, format.ErrNotCapture)
	}
	fs.latest = cloneWalker(fs.initial)
	fs.next, fs.nextKind = fs.dataStart, endBoundary
	fs.continueRotation(head)
	return nil
}

// readStart reads the first n bytes of the file (fewer at its end).
func (fs *fileScan) readStart(n int64) ([]byte, error) {
	head := make([]byte, n)
	got, err := fs.src.ReadAt(head, 0)
	if err != nil && !errors.Is(err, io.EOF) && (got == 0 || fs.codec == compressed.None) {
		return nil, fmt.Errorf("%s: %w", fs.path, err)
	}
	return head[:got], nil
}

// headFits reports whether head holds the file's leading header blocks and
// the record after them whole, or shows that reading more would not help.
func headFits(head []byte) bool {
	w := format.Walker{Kind: format.Detect(head)}
	pos := 0
	switch w.Kind {
	case format.KindPcap:
		sec, err := format.ParsePcapHeader(head)
		if err != nil {
			return true
		}
		w.Sec, pos = sec, 24
	case format.KindPcapNG:
	default:
		return true
	}
	for {
		_, n, st := w.Next(head, 0, pos)
		if st != format.Header {
			return st != format.Short
		}
		pos += n
	}
}

// continueRotation takes up the connections the previous capture of a
// rotation left open, when there is one (see session.previous).
func (fs *fileScan) continueRotation(head []byte) {
	if fs.s == nil {
		return
	}
	w := cloneWalker(fs.initial)
	pos := int(fs.headerEnd)
	if w.Kind == format.KindPcap {
		pos = int(fs.dataStart)
	}
	var first int64
	for range 64 {
		rec, n, st := w.Next(head, 0, pos)
		if st == format.Packet {
			first = rec.TS
			break
		}
		if st != format.Header {
			return
		}
		pos += n
	}
	var prev *index.FileInfo
	var state []byte
	var err error
	if t := fs.turn; t != nil {
		// Walked beside other captures: the one it continues may be
		// one of them.
		fs.s.waitPredecessors(t, first)
		fs.s.mu.Lock()
		prev = fs.s.previous(fs.path, first)
		if prev != nil {
			state, err = fs.b.Store.State(prev.ID)
			prev = new(*prev)
		}
		fs.s.mu.Unlock()
	} else if prev = fs.s.previous(fs.path, first); prev != nil {
		state, err = fs.b.Store.State(prev.ID)
	}
	if prev == nil || err != nil || state == nil {
		return
	}
	if _, err := fs.truth.Resume(state, false); err != nil {
		fs.warnf("connection state of %s does not decode (%v): its open connections are not continued here", prev.Path, err)
		return
	}
	fs.info.ContinuesFrom = prev.Path
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
	fs.truth = stream.New(stream.Options{})
	if fs.src == nil {
		fs.src = fs.f
	}
	if fs.codec != compressed.None {
		return fs.runCompressed()
	}
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
	fs.spares = make(chan *stream.Chunk, window+workers)

	jobs := make(chan job)
	results := make(chan *chunkResult, window)
	slots := make(chan struct{}, window)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sc := newChunkScanner()
			sc.tr = stream.New(stream.Options{Log: true})
			// A descriptor of its own gives each worker its own kernel
			// read-ahead: two workers interleaving reads on one descriptor
			// look random to it, which halves throughput from disk.
			sc.f = fs.f
			if own, err := format.Open(fs.path); err == nil {
				defer own.Close()
				a, errA := fs.f.Stat()
				b, errB := own.Stat()
				if errA == nil && errB == nil && os.SameFile(a, b) {
					sc.f = own // not if the path was replaced meanwhile
					// Reads are sequential: a larger read-ahead window.
					unix.Fadvise(int(own.Fd()), 0, 0, unix.FADV_SEQUENTIAL)
				}
			}
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
	sc.start(sc.f, from, j.end+overhang, fs.size)
	sc.w, sc.res = j.ctx, res
	sc.walk(0, j.k == 0, j.start, j.end)
	res.ctxOut = sc.w
	var spare *stream.Chunk
	select {
	case spare = <-fs.spares:
	default:
	}
	res.chunk = sc.tr.TakeChunk(spare)
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
	if r.chunk != nil {
		ok, err := fs.truth.Join(r.chunk, fs.fetch)
		if err != nil {
			return fmt.Errorf("%s: %w", fs.path, err)
		}
		select {
		case fs.spares <- r.chunk:
		default:
		}
		if !ok {
			// The chunk's connection tracking cannot be joined to what
			// came before: walk it again on the true tracker.
			fs.b.logger().Debug("chunk walked again: its connection tracking does not join", "file", fs.path, "chunk", r.k)
			r = fs.rerun(r.k, fs.next, fs.nextKind != endCorrupt, start, end)
			if r.err != nil {
				return r.err
			}
		}
	}
	if fs.nextKind == endCorrupt && r.start > fs.next {
		fs.warnf("corrupt data at offset %d: skipped %d bytes to the next valid record", fs.next, r.start-fs.next)
	}
	for _, s := range r.skipped {
		fs.warnf("corrupt data at offset %d: skipped %d bytes to the next valid record", s.from, s.to-s.from)
	}
	if err := fs.absorb(r); err != nil {
		return err
	}
	fs.reportProgress(min(r.end, fs.size))
	return nil
}

// fetch reads a segment's payload back for Join.
// Join asks for payloads in file order, often many close together (the
// header blocks of a busy link that go on into a chunk): they are read a
// block at a time.
func (fs *fileScan) fetch(pos int64, n int, buf []byte) ([]byte, error) {
	const block = 256 << 10
	if b := &fs.fetchBlock; n <= block/4 {
		if pos < b.at || pos+int64(n) > b.at+int64(len(b.data)) {
			at := pos &^ (block - 1)
			if cap(b.data) < block {
				b.data = make([]byte, block)
			}
			got, err := fs.src.ReadAt(b.data[:min(int64(block), fs.size-at)], at)
			b.at, b.data = at, b.data[:got]
			if got == 0 && err != nil && !errors.Is(err, io.EOF) {
				return nil, err
			}
		}
		if pos >= b.at && pos+int64(n) <= b.at+int64(len(b.data)) {
			return b.data[pos-b.at : pos-b.at+int64(n)], nil
		}
	}
	got, err := fs.src.ReadAt(buf[:n], pos)
	if got == n {
		return buf[:n], nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = fmt.Errorf("file shrank while being read (at offset %d)", pos+int64(got))
	}
	return nil, err
}

// rerun walks chunk k again in the coordinator, from a known position and
// the true context, on the true connection tracker.
func (fs *fileScan) rerun(k int, from int64, trusted bool, start, end int64) *chunkResult {
	if fs.rerunner == nil {
		fs.rerunner = newChunkScanner()
	}
	sc := fs.rerunner
	res := &chunkResult{k: k, ctxBlocks: fs.ctx.HeaderBlocks}
	sc.start(fs.src, from, end+overhang, fs.size)
	sc.stream = fs.codec != compressed.None
	sc.w, sc.res, sc.tr = cloneWalker(fs.ctx), res, fs.truth
	if sc.stream {
		// One walk of the whole stream: progress as it goes.
		sc.onRead = func() {
			if fs.in.at.Load() >= fs.reported+progressStep {
				fs.reportProgress(0)
			}
		}
	}
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
	if r.minTS != 0 {
		if info.FirstTS.IsZero() || r.minTS < info.FirstTS.UnixNano() {
			info.FirstTS = time.Unix(0, r.minTS).UTC()
		}
		if t := time.Unix(0, r.maxTS).UTC(); t.After(info.LastTS) {
			info.LastTS = t
		}
	}
	return fs.drain()
}

// drain moves what the true tracker found into the table and the totals.
func (fs *fileScan) drain() error {
	out := fs.truth.Drain()
	defer fs.truth.Reuse(out)
	for _, h := range out.Hits {
		if err := fs.table.AddHit(h.Addr, h.Off, h.Header, h.Pos, h.ConnStart, h.ConnSYN); err != nil {
			return fmt.Errorf("%s: %w", fs.path, err)
		}
	}
	for i := range out.Requests {
		ri := &out.Requests[i]
		r := index.Request{Seq: ri.Seq, Method: ri.Method, Target: ri.Target, Host: ri.Host, First: ri.First, Complete: ri.Complete, Lists: ri.Lists, Listed: ri.Listed, Capped: ri.Capped}
		if err := fs.table.AddRequest(ri.Off, &r); err != nil {
			return fmt.Errorf("%s: %w", fs.path, err)
		}
	}
	c, info := &out.Counts, fs.info
	info.XFFLines += c.XFFLines
	info.OtherLines += c.OtherLines
	info.ContLines += c.ContLines
	info.Hits += c.HitPackets
	info.NonAddresses += c.NonAddr
	info.Requests += c.Requests
	info.Dups += c.Dups
	info.Early += c.Early
	info.Gaps += c.Gaps
	info.Evicted += c.Evicted
	info.Overflow += c.Overflow
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
	fs.info.SkippedBytes += max(0, fs.size-fs.dataStart-fs.covered-fs.truncated)
	fs.info.ResumeAt = fs.size
	if fs.truncated > 0 {
		fs.info.ResumeAt = fs.next // the cut record is read again once complete
	}
	fs.info.Tracking = index.TrackingVersion
	state := fs.truth.Finish()
	if err := fs.drain(); err != nil {
		return err
	}
	if err := fs.table.SetState(state); err != nil {
		return fmt.Errorf("%s: %w", fs.path, err)
	}
	fs.reportProgress(fs.size)
	return nil
}

// reportProgress reports that the file is read up to offset at. A
// compressed file's progress is in compressed bytes, as the build's total
// counts it: how far its decoders have read.
func (fs *fileScan) reportProgress(at int64) {
	size := fs.size
	if fs.codec != compressed.None {
		size = fs.in.size
		if at < fs.size {
			at = min(fs.in.at.Load(), size)
		} else {
			at = size // the end
		}
	}
	if fs.s == nil || at <= fs.reported {
		return
	}
	delta := at - fs.reported
	if fs.reported == 0 {
		delta = at // bytes indexed before count too: not read again
	}
	fs.s.progress(fs.path, at, size, delta)
	fs.reported = at
}
