package compressed

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"

	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"

	"github.com/xffidx/xffidx/format/compressed/inflate"
)

// DefaultSpacing is the uncompressed distance between the restart points
// recorded inside one long deflate stream. Each costs its 32 KiB window,
// deflated: 10-32 KiB (nearly incompressible data), so 1-3 % of the
// uncompressed size at 1 MiB. A read decodes at most 1 MiB (half on
// average) before the record it wants: a few milliseconds, so that a query
// of 50 packets spread over a 4 GB capture decodes about 25 MB. (tshark
// keeps its gzip seek points 1 MiB apart too.) Member and frame starts
// cost a few bytes and are kept every DefaultSpacing/4.
const DefaultSpacing = 1 << 20

// MaxZstdWindow bounds the window a zstd frame may ask for (zstd's levels
// up to 19 use at most 8 MiB; --long=27 128 MiB): memory stays bounded
// whatever a header claims.
const MaxZstdWindow = 128 << 20

// Options tune a Reader.
type Options struct {
	// Spacing between recorded restart points inside a deflate stream
	// (0: DefaultSpacing).
	Spacing int64
	// OnPoint, if set, is given each restart point met (windows are
	// copies), in stream order, on the goroutine that reads.
	OnPoint func(Point)
	// ReadAhead (File only): decode on a goroutine of its own, up to a few
	// MiB ahead of the reads, so that a sequential reader's work and the
	// decoding run on two cores. For a pass over the whole stream.
	ReadAhead bool
	// Frames (File with ReadAhead only): zstd and lz4 frames decoded at
	// once, each on a goroutine of its own (frames.go); 0 or 1: one.
	Frames int
	// Budget bounds what the frames decoded ahead hold, shared with the
	// other Files given the same one (nil: a budget of the File's own).
	Budget *FrameBudget
}

func (o *Options) spacing() int64 {
	if o.Spacing > 0 {
		return o.Spacing
	}
	return DefaultSpacing
}

// Trailing is what follows the last member or frame and is not one.
type Trailing struct {
	At, Len int64 // file offset and length
	Zeros   bool  // all zero bytes (preallocated space)
}

// Reader decodes the uncompressed stream of a compressed file from a
// restart point on.
type Reader struct {
	src   io.ReaderAt
	size  int64
	codec Codec
	opt   Options

	pos      int64 // file offset of the next member or frame
	out      int64 // uncompressed offset of the next byte Read returns
	lastPt   int64 // Out of the last point reported (-1: none)
	err      error
	eof      bool
	trailing *Trailing

	// gzip
	infl       *inflate.Reader
	memberData int64 // file offset of the current member's deflate data
	crc        hash.Hash32
	memberLen  uint32 // bytes of the current member (mod 2^32); checked if crc != nil
	// zstd and lz4: the current frame
	frame    io.Reader
	frameEnd int64
	frameCut bool          // the frame is cut by the end of the file
	zdec     *zstd.Decoder // windows up to 8 MiB
	zdecBig  *zstd.Decoder // larger windows, in low-memory mode
	lzdec    *lz4.Reader
}

// NewReader starts decoding src, a compressed file of size bytes, at the
// restart point from (the zero Point is the file's start).
func NewReader(src io.ReaderAt, size int64, codec Codec, from Point, opt Options) *Reader {
	r := &Reader{src: src, size: size, codec: codec, opt: opt, lastPt: -1}
	r.restart(from)
	return r
}

// Reset starts the reader again at from, keeping its decoders.
func (r *Reader) Reset(from Point) { r.restart(from) }

func (r *Reader) restart(from Point) {
	r.pos, r.out, r.err, r.eof, r.trailing = from.In, from.Out, nil, false, nil
	r.infl, r.crc, r.frame = nil, nil, nil
	if r.codec == Gzip && !from.Member && (from.In != 0 || from.Bit != 0 || len(from.Window) > 0 || from.Out != 0) {
		// Inside a member: its trailer's checksum cannot be checked.
		r.startDeflate(from.In, uint(from.Bit), from.Out, from.Window)
	}
}

// Out is the uncompressed offset of the next byte Read returns.
func (r *Reader) Out() int64 { return r.out }

// Trailing reports bytes after the last member or frame that are not one
// (nil if none): known once Read has returned io.EOF.
func (r *Reader) Trailing() *Trailing { return r.trailing }

func (r *Reader) fail(in int64, err error) error {
	if r.err == nil {
		// Out is set by Read, once the bytes returned with the error
		// are counted.
		r.err = &Error{Codec: r.codec, Out: -1, In: in, Err: err}
	}
	return r.err
}

// Read implements io.Reader; io.EOF at the clean end of the last member or
// frame, an *Error otherwise.
func (r *Reader) Read(p []byte) (int, error) {
	for {
		if r.err != nil {
			return 0, r.err
		}
		if r.eof {
			return 0, io.EOF
		}
		var n int
		var err error
		switch r.codec {
		case Gzip:
			n, err = r.readGzip(p)
		case Zstd, LZ4:
			n, err = r.readFrames(p)
		default:
			return 0, fmt.Errorf("not a compressed container")
		}
		r.out += int64(n)
		if e, ok := err.(*Error); ok && e.Out < 0 {
			e.Out = r.out
		}
		if n > 0 || err != nil {
			return n, err
		}
	}
}

func (r *Reader) point(p Point) {
	if r.opt.OnPoint == nil || p.Out <= r.lastPt {
		return
	}
	if p.Member && r.lastPt >= 0 && p.Out-r.lastPt < r.opt.spacing()/4 {
		return
	}
	r.lastPt = p.Out
	r.opt.OnPoint(p)
}

// readAt reads up to len(b) bytes at off (fewer at the end of the file).
func (r *Reader) readAt(b []byte, off int64) []byte {
	n := int(max(0, min(int64(len(b)), r.size-off)))
	got, _ := r.src.ReadAt(b[:n], off)
	return b[:got]
}

// ---- gzip

// maxGzipHeader bounds a member header (its name, comment and extra field).
const maxGzipHeader = 128 << 10

func (r *Reader) readGzip(p []byte) (int, error) {
	if r.infl == nil {
		if err := r.nextMember(); err != nil || r.eof {
			return 0, err
		}
	}
	n, err := r.infl.Read(p)
	if r.crc != nil && n > 0 {
		r.crc.Write(p[:n])
		r.memberLen += uint32(n)
	}
	switch {
	case err == io.EOF:
		return n, r.endMember()
	case errors.Is(err, io.ErrUnexpectedEOF):
		return n, r.fail(r.size, ErrTruncated)
	case err != nil:
		return n, r.fail(r.memberData+r.infl.BitPos()/8, fmt.Errorf("%w: %v", ErrCorrupt, err))
	}
	return n, nil
}

func (r *Reader) startDeflate(at int64, bit uint, out int64, window []byte) {
	r.memberData = at
	r.infl = inflate.NewReaderAt(io.NewSectionReader(r.src, at, r.size-at), bit, out, window)
	spacing := r.opt.spacing()
	last := out
	if r.opt.OnPoint != nil {
		r.infl.OnBlock = func(b, o int64) {
			if o-last < spacing {
				return
			}
			last = o
			abs := at*8 + int64(bit) + b
			r.point(Point{Out: o, In: abs / 8, Bit: uint8(abs % 8), Window: bytes.Clone(r.infl.Window())})
		}
	}
}

// nextMember reads the header of the member at r.pos, or finds the end.
func (r *Reader) nextMember() error {
	if r.pos >= r.size {
		r.eof = true
		return nil
	}
	// Most headers are 10 bytes and a name: a small read first.
	var small [512]byte
	head := r.readAt(small[:], r.pos)
	if len(head) < 2 || head[0] != 0x1f || head[1] != 0x8b {
		if r.pos == 0 {
			return r.fail(r.pos, fmt.Errorf("%w: no gzip header", ErrCorrupt))
		}
		r.trailing = &Trailing{At: r.pos, Len: r.size - r.pos, Zeros: allZero(r.src, r.pos, r.size)}
		r.eof = true
		return nil
	}
	n, err := gzipHeaderLen(head)
	if errors.Is(err, ErrTruncated) && len(head) == len(small) {
		head = r.readAt(make([]byte, maxGzipHeader), r.pos)
		n, err = gzipHeaderLen(head)
	}
	if err != nil {
		if errors.Is(err, ErrTruncated) && int64(len(head)) == r.size-r.pos {
			return r.fail(r.pos, ErrTruncated)
		}
		return r.fail(r.pos, err)
	}
	r.point(Point{Out: r.out, In: r.pos, Member: true})
	r.crc, r.memberLen = crc32.NewIEEE(), 0
	r.startDeflate(r.pos+int64(n), 0, r.out, nil)
	return nil
}

// gzipHeaderLen parses a member header and returns its length.
func gzipHeaderLen(h []byte) (int, error) {
	if len(h) < 10 {
		return 0, ErrTruncated
	}
	if h[2] != 8 {
		return 0, fmt.Errorf("%w: gzip compression method %d", ErrCorrupt, h[2])
	}
	flg := h[3]
	if flg&0xe0 != 0 {
		return 0, fmt.Errorf("%w: reserved gzip header flags set", ErrCorrupt)
	}
	n := 10
	if flg&4 != 0 { // FEXTRA (BGZF keeps its block size there)
		if len(h) < n+2 {
			return 0, ErrTruncated
		}
		n += 2 + int(binary.LittleEndian.Uint16(h[n:]))
	}
	for _, bit := range []byte{8, 16} { // FNAME, FCOMMENT: zero-terminated
		if flg&bit == 0 {
			continue
		}
		if n >= len(h) {
			return 0, ErrTruncated
		}
		i := bytes.IndexByte(h[n:], 0)
		if i < 0 {
			if len(h) == maxGzipHeader {
				return 0, fmt.Errorf("%w: gzip header longer than %d bytes", ErrCorrupt, maxGzipHeader)
			}
			return 0, ErrTruncated
		}
		n += i + 1
	}
	if flg&2 != 0 { // FHCRC
		n += 2
	}
	if n > len(h) {
		return 0, ErrTruncated
	}
	return n, nil
}

// endMember checks the member's trailer; the next member follows it.
func (r *Reader) endMember() error {
	end := r.memberData + (r.infl.BitPos()+7)/8
	var buf [8]byte
	t := r.readAt(buf[:], end)
	if len(t) < 8 {
		return r.fail(r.size, ErrTruncated)
	}
	if r.crc != nil {
		if binary.LittleEndian.Uint32(t) != r.crc.Sum32() {
			return r.fail(end, fmt.Errorf("%w: the gzip member's CRC-32 is %08x, its data gives %08x", ErrChecksum, binary.LittleEndian.Uint32(t), r.crc.Sum32()))
		}
		if binary.LittleEndian.Uint32(t[4:]) != r.memberLen {
			return r.fail(end, fmt.Errorf("%w: the gzip member says %d bytes (mod 2^32), its data has %d", ErrChecksum, binary.LittleEndian.Uint32(t[4:]), r.memberLen))
		}
	}
	r.infl, r.crc = nil, nil
	r.pos = end + 8
	return nil
}

func allZero(src io.ReaderAt, from, to int64) bool {
	var buf [64 << 10]byte
	for off := from; off < to; {
		n := int(min(int64(len(buf)), to-off))
		got, _ := src.ReadAt(buf[:n], off)
		if got == 0 {
			return false
		}
		for _, c := range buf[:got] {
			if c != 0 {
				return false
			}
		}
		off += int64(got)
	}
	return true
}

// ---- zstd and lz4 frames

func (r *Reader) readFrames(p []byte) (int, error) {
	if r.frame == nil {
		if err := r.nextFrame(); err != nil || r.eof {
			return 0, err
		}
	}
	n, err := r.frame.Read(p)
	switch {
	case err == io.EOF:
		if r.frameCut {
			return n, r.fail(r.size, ErrTruncated)
		}
		r.frame, r.pos = nil, r.frameEnd
		return n, nil
	case err != nil:
		if r.frameCut {
			return n, r.fail(r.size, ErrTruncated)
		}
		what := ErrCorrupt
		if isChecksum(err) {
			what = ErrChecksum
		}
		return n, r.fail(r.pos, fmt.Errorf("%w: %v", what, err))
	}
	return n, nil
}

func isChecksum(err error) bool {
	return errors.Is(err, zstd.ErrCRCMismatch) || bytes.Contains([]byte(err.Error()), []byte("checksum"))
}

// nextFrame finds the frame at r.pos (passing skippable frames over) and
// starts decoding it.
func (r *Reader) nextFrame() error {
	for {
		if r.pos >= r.size {
			r.eof = true
			return nil
		}
		var buf [8]byte
		h := r.readAt(buf[:], r.pos)
		if len(h) < 4 {
			return r.trailingOrCut(h)
		}
		m := binary.LittleEndian.Uint32(h)
		if m&0xfffffff0 == skippableMagic {
			if len(h) < 8 {
				return r.fail(r.size, ErrTruncated)
			}
			r.pos += 8 + int64(binary.LittleEndian.Uint32(h[4:]))
			if r.pos > r.size {
				return r.fail(r.size, ErrTruncated)
			}
			continue
		}
		want := uint32(zstdMagic)
		if r.codec == LZ4 {
			want = lz4Magic
		}
		if m != want {
			return r.trailingOrCut(h)
		}
		var end int64
		var err error
		if r.codec == Zstd {
			end, err = zstdFrameEnd(r.src, r.pos, r.size)
		} else {
			end, err = lz4FrameEnd(r.src, r.pos, r.size)
		}
		r.frameCut = errors.Is(err, ErrTruncated)
		if err != nil && !r.frameCut {
			return r.fail(r.pos, err)
		}
		r.point(Point{Out: r.out, In: r.pos, Member: true})
		sec := io.NewSectionReader(r.src, r.pos, min(end, r.size)-r.pos)
		r.frameEnd = end
		if r.codec == Zstd {
			// A decoder keeps twice the frame's window, and moves it
			// down once per window of output; in low-memory mode one
			// window and a block, moved down once per block (twice the
			// copying of the output at zstd's usual 2-8 MiB windows).
			// Windows up to 8 MiB get the first (16 MiB at most); larger
			// ones, up to MaxZstdWindow, the second.
			var h zstd.Header
			var hb [zstd.HeaderMaxSize]byte
			big := h.Decode(r.readAt(hb[:], r.pos)) != nil || h.WindowSize > 8<<20
			dec := &r.zdec
			if big {
				dec = &r.zdecBig
			}
			if *dec == nil {
				*dec, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(big), zstd.WithDecoderMaxWindow(MaxZstdWindow), zstd.WithDecoderMaxMemory(1<<62))
				if err != nil {
					return r.fail(r.pos, err)
				}
			}
			if err := (*dec).Reset(sec); err != nil {
				return r.fail(r.pos, fmt.Errorf("%w: %v", ErrCorrupt, err))
			}
			r.frame = *dec
		} else {
			if r.lzdec == nil {
				r.lzdec = lz4.NewReader(nil)
			}
			r.lzdec.Reset(sec)
			r.frame = r.lzdec
		}
		return nil
	}
}

func (r *Reader) trailingOrCut(h []byte) error {
	if r.pos == 0 {
		return r.fail(0, fmt.Errorf("%w: no %s frame", ErrCorrupt, r.codec))
	}
	r.trailing = &Trailing{At: r.pos, Len: r.size - r.pos, Zeros: allZero(r.src, r.pos, r.size)}
	r.eof = true
	return nil
}

// zstdFrameEnd walks the block headers of the zstd frame at pos to its
// end; ErrTruncated (with the end of the file) when the file cuts it.
func zstdFrameEnd(src io.ReaderAt, pos, size int64) (int64, error) {
	var h [18]byte
	n, _ := src.ReadAt(h[:min(int64(len(h)), size-pos)], pos)
	if n < 6 {
		return size, ErrTruncated
	}
	fhd := h[4]
	if fhd&8 != 0 {
		return 0, fmt.Errorf("%w: reserved zstd frame header bit set", ErrCorrupt)
	}
	single := fhd&0x20 != 0
	off := 5
	if !single {
		off++
	}
	off += [4]int{0, 1, 2, 4}[fhd&3]
	fcs := [4]int{0, 2, 4, 8}[fhd>>6]
	if fhd>>6 == 0 && single {
		fcs = 1
	}
	off += fcs
	if off > n {
		return size, ErrTruncated
	}
	at := pos + int64(off)
	for {
		var b [3]byte
		if k, _ := src.ReadAt(b[:min(3, max(0, size-at))], at); k < 3 {
			return size, ErrTruncated
		}
		bh := uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16
		last, typ, bsize := bh&1 == 1, (bh>>1)&3, int64(bh>>3)
		switch typ {
		case 1: // RLE: one byte
			bsize = 1
		case 3:
			return 0, fmt.Errorf("%w: reserved zstd block type at offset %d", ErrCorrupt, at)
		}
		if bsize > 128<<10 {
			return 0, fmt.Errorf("%w: zstd block of %d bytes at offset %d", ErrCorrupt, bsize, at)
		}
		at += 3 + bsize
		if last {
			break
		}
	}
	if fhd&4 != 0 {
		at += 4
	}
	if at > size {
		return size, ErrTruncated
	}
	return at, nil
}

// lz4FrameEnd walks the block sizes of the lz4 frame at pos to its end.
func lz4FrameEnd(src io.ReaderAt, pos, size int64) (int64, error) {
	var h [7]byte
	n, _ := src.ReadAt(h[:min(int64(len(h)), size-pos)], pos)
	if n < 7 {
		return size, ErrTruncated
	}
	flg := h[4]
	if flg>>6 != 1 {
		return 0, fmt.Errorf("%w: lz4 frame version %d", ErrCorrupt, flg>>6)
	}
	off := int64(4 + 2 + 1)
	if flg&8 != 0 {
		off += 8
	}
	if flg&1 != 0 {
		off += 4
	}
	blockSum := flg&0x10 != 0
	at := pos + off
	for {
		var b [4]byte
		if k, _ := src.ReadAt(b[:min(4, max(0, size-at))], at); k < 4 {
			return size, ErrTruncated
		}
		bs := binary.LittleEndian.Uint32(b[:])
		at += 4
		if bs == 0 {
			break
		}
		bs &= 0x7fffffff
		if bs > 4<<20 {
			return 0, fmt.Errorf("%w: lz4 block of %d bytes at offset %d", ErrCorrupt, bs, at-4)
		}
		at += int64(bs)
		if blockSum {
			at += 4
		}
	}
	if flg&4 != 0 {
		at += 4
	}
	if at > size {
		return size, ErrTruncated
	}
	return at, nil
}
