package ingest

import (
	"errors"
	"fmt"
	"math"

	"github.com/xffidx/xffidx/format/compressed"
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
		return fmt.Errorf("%s: %w", fs.path, fs.pointErr)
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
	fs.cfile = compressed.NewFile(fs.f, size, fs.codec, seek, compressed.Options{OnPoint: func(p compressed.Point) {
		if fs.pointErr != nil {
			return
		}
		v := compressed.AppendPoint(nil, p)
		fs.points++
		fs.pointBytes += int64(len(v)) + 13
		fs.pointErr = fs.table.AddSeekPoint(p.Out, v)
	}})
	fs.src = fs.cfile
	return nil
}
