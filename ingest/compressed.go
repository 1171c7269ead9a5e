package ingest

import (
	"errors"
	"fmt"
	"io"
	"math"
	"sync/atomic"
	"time"

	"github.com/xffidx/xffidx/format"
	"github.com/xffidx/xffidx/format/compressed"
	"github.com/xffidx/xffidx/index"
)

// unknownEnd stands for the end of a decompressed stream while it is
// read: its length is known only when the decoder reaches it.
const unknownEnd = math.MaxInt64 / 4

// runCompressed indexes a compressed capture: one sequential walk of its
// decompressed stream on the true connection tracker (a deflate stream
// cannot be cut into chunks that decode on their own), the same walk a
// chunk re-walked by the coordinator gets, so the hits are those of the
// uncompressed file. Offsets are the uncompressed stream's.
func (fs *fileScan) runCompressed() error {
	fs.size = unknownEnd
	defer fs.cfile.Close()
	if err := fs.readHead(); err != nil {
		return fs.compressedErr(err)
	}
	if fs.dataStart > fs.next {
		fs.next = fs.dataStart
	}
	r := fs.rerun(0, fs.next, true, fs.dataStart, unknownEnd)
	if r.err != nil {
		return r.err
	}
	end := fs.rerunner.limit
	if err := fs.rerunner.streamErr; err != nil {
		if !errors.Is(err, compressed.ErrTruncated) {
			return fs.compressedErr(err)
		}
		fs.warnf("%v (the file may still be being written): everything before it is indexed", err)
	}
	fs.size = end
	for _, s := range r.skipped {
		fs.warnf("corrupt data at offset %d: skipped %d bytes to the next valid record", s.from, s.to-s.from)
	}
	if err := fs.absorb(r); err != nil {
		return err
	}
	if t := fs.cfile.Trailing(); t != nil {
		what := fmt.Sprintf("%d bytes after the last %s %s, at compressed offset %d, are not %s data", t.Len, fs.codec, map[bool]string{true: "member", false: "frame"}[fs.codec == compressed.Gzip], t.At, fs.codec)
		if t.Zeros {
			fs.warnf("%s (zero bytes): ignored", what)
		} else {
			fs.trailingErr = fmt.Errorf("%s: corrupt: %s; everything before them is indexed", fs.path, what)
		}
	}
	if fs.pointErr != nil {
		return fs.compressedErr(fmt.Errorf("%s: %w", fs.path, fs.pointErr))
	}
	if fs.codec != compressed.Gzip && fs.resume == nil && fs.points <= 1 && fs.size > 4<<20 {
		fs.warnf("one %s frame: no restart point inside it, so each query decodes it from its start (%d MB); compressed in frames (the seekable format, or pieces), it would not be", fs.codec, fs.size/1e6)
	}
	return fs.finish()
}

// compressedErr names the file in a decoding error, and says the file was
// not indexed.
func (fs *fileScan) compressedErr(err error) error {
	var ce *compressed.Error
	if errors.As(err, &ce) {
		return fmt.Errorf("%s: %w: not indexed", fs.path, err)
	}
	return err
}

// openContainer recognises a compressed capture and sets its decompressed
// stream up as the source of records, storing the restart points met in
// the file's table. A grown one is taken up at the restart point nearest
// before where the last build stopped.
func (fs *fileScan) openContainer(size int64) error {
	var head [64]byte
	n, _ := fs.f.ReadAt(head[:], 0)
	fs.codec = compressed.Detect(head[:n])
	if fs.codec == compressed.None {
		return nil
	}
	var seek compressed.SeekFunc
	if fs.resume != nil {
		seek = fs.b.Store.SeekFunc(fs.resume.ID)
	}
	fs.in = &inputPos{f: fs.f, size: size}
	var budget *compressed.FrameBudget
	frames := fs.workers()
	if fs.s != nil {
		budget, frames = fs.s.frames, fs.s.frameDecoders(frames)
	}
	fs.cfile = compressed.NewFile(fs.in, size, fs.codec, seek, compressed.Options{Spacing: fs.b.Opts.SeekSpacing, ReadAhead: true, Frames: frames, Budget: budget, OnPoint: func(p compressed.Point) {
		fs.addPoint(p)
	}})
	fs.src = fs.cfile
	return nil
}

// addPoint stores a restart point in the file's table (which copies it:
// the encoding buffer is used again).
func (fs *fileScan) addPoint(p compressed.Point) {
	if fs.pointErr != nil {
		return
	}
	fs.pointBuf = compressed.AppendPoint(fs.pointBuf[:0], p)
	fs.points++
	fs.pointBytes += int64(len(fs.pointBuf)) + 13
	fs.pointErr = fs.table.AddSeekPoint(p.Out, fs.pointBuf)
}

// inputPos reads a compressed file and notes how far into it its decoders
// have read, for progress.
type inputPos struct {
	f    io.ReaderAt
	size int64
	at   atomic.Int64
}

// progressStep: a compressed file's progress is reported every so many
// compressed bytes.
const progressStep = 4 << 20

func (p *inputPos) ReadAt(b []byte, off int64) (int, error) {
	n, err := p.f.ReadAt(b, off)
	end := off + int64(n)
	for {
		at := p.at.Load()
		if end <= at || p.at.CompareAndSwap(at, end) {
			return n, err
		}
	}
}

// containerOf names the compressed container of the file at path ("" for
// none, or if it cannot be read).
func containerOf(path string) string {
	f, err := format.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	var head [64]byte
	n, _ := f.ReadAt(head[:], 0)
	return compressed.Detect(head[:n]).String()
}

// compressedEntryFor finds the entry of a compressed capture at a path the
// catalog does not know: an indexed capture whose path is gone and whose
// decompressed start has its fingerprint (the capture compressed after a
// rename, its original deleted). Size and inode say nothing here: the
// compressed file is another file, smaller. The start is decompressed once
// per distinct fingerprint span.
func (s *session) compressedEntryFor(path string, id index.Identity) (*index.FileInfo, string) {
	type span struct{ from, n int64 }
	hashes := map[span]string{}
	for i := range s.files {
		c := &s.files[i]
		// A compressed file is at most a little larger than what it
		// expands to.
		if s.claimed[c.ID] || c.Fingerprint == "" || id.Size > c.DataEnd()+c.DataEnd()/100+(64<<10) {
			continue
		}
		if old, err := index.StatIdentity(c.Path); err == nil && old.SameFile(c) {
			continue // the old path still holds that file
		}
		sp := span{c.FingerprintFrom, c.FingerprintLen}
		fp, ok := hashes[sp]
		if !ok {
			fp, _ = index.Fingerprint(path, sp.from, sp.n)
			hashes[sp] = fp
		}
		if fp == c.Fingerprint {
			return c, c.Path
		}
	}
	return nil, ""
}

// recompressed handles a capture indexed as it was whose container has
// changed since (compressed after a rename, or decompressed): its
// uncompressed bytes are the indexed ones if its decompressed start has the
// fingerprint (checked) and its decompressed length is what was indexed.
// Then its hits are kept and one decompress-only pass stores its restart
// points (the cost of decoding it once, without the record walk). If not,
// it is indexed again.
func (s *session) recompressed(path string, id index.Identity, entry *index.FileInfo) FileResult {
	again := func() FileResult {
		r := s.scan(path, id, entry, true)
		r.Action = ActionChanged
		return r
	}
	if !index.SameStart(path, entry) {
		return again()
	}
	r := FileResult{Path: path, Action: ActionRenamed}
	f, err := format.Open(path)
	if err != nil {
		r.Err = err
		return r
	}
	defer f.Close()
	var head [64]byte
	n, _ := f.ReadAt(head[:], 0)
	codec := compressed.Detect(head[:n])
	table, err := s.b.Store.NewTable(entry.ID)
	if err != nil {
		r.Err = fmt.Errorf("%s: %w", path, err)
		return r
	}
	defer table.Discard()
	size := id.Size
	if codec != compressed.None {
		var pointErr error
		cf := compressed.NewFile(f, id.Size, codec, nil, compressed.Options{Spacing: s.b.Opts.SeekSpacing, ReadAhead: true, Frames: s.frameDecoders(s.b.fileWorkers()), Budget: s.frames, OnPoint: func(p compressed.Point) {
			if pointErr == nil {
				pointErr = table.AddSeekPoint(p.Out, compressed.AppendPoint(nil, p))
			}
		}})
		t0 := time.Now()
		size, err = io.Copy(io.Discard, io.NewSectionReader(cf, 0, unknownEnd))
		cf.Close()
		s.b.logger().Debug("decompress-only pass", "file", path, "compressed", id.Size, "uncompressed", size, "took", time.Since(t0))
		if err != nil || cf.Trailing() != nil || pointErr != nil {
			return again() // the full pass reports what is wrong
		}
	}
	if size != entry.DataEnd() {
		return again()
	}
	info := *entry
	info.Path, info.Size, info.ModTime = path, id.Size, id.ModTime
	info.Dev, info.Inode, info.CTime = uint64(id.Dev), uint64(id.Inode), id.CTime
	info.Container, info.DataSize = codec.String(), 0
	if codec != compressed.None {
		info.DataSize = size
	}
	// Points of an earlier container would lead readers astray.
	if err := s.b.Store.DeleteSeekPoints(entry.ID); err != nil {
		r.Err = fmt.Errorf("%s: %w", path, err)
		return r
	}
	tables, err := table.Finish(info)
	if err == nil {
		err = s.b.Store.Commit(tables)
	}
	if err != nil {
		r.Err = fmt.Errorf("%s: %w", path, err)
		return r
	}
	*entry = info
	s.claimed[info.ID] = true
	s.progress(path, id.Size, id.Size, id.Size)
	r.Committed, r.Info = true, info
	return r
}
