package compressed

import (
	"errors"
	"io"
)

// SeekFunc returns the restart point nearest at or before uncompressed
// offset off (ok false: none but the file's start).
type SeekFunc func(off int64) (p Point, ok bool, err error)

// File reads the uncompressed stream of a compressed file at any offset
// (io.ReaderAt), decoding from the nearest restart point before an offset
// when that is closer than the decoder's position, and forwards otherwise.
// It keeps the last bytes it decoded, so that reads a little behind the
// newest one do not restart. Not safe for concurrent use.
type File struct {
	src   io.ReaderAt
	size  int64
	codec Codec
	seek  SeekFunc
	opt   Options

	r     *Reader
	ahead *ahead // the read-ahead decoding r, if Options.ReadAhead
	// frames decodes several frames at once instead (Options.Frames).
	frames *framesAhead
	// delivered is the Out of the last restart point given to OnPoint
	// (-1: none): a restart stops the read-ahead, losing the points it had
	// not delivered, so the reader reports again those past it.
	delivered int64
	buf       []byte // uncompressed bytes [bufOff, bufOff+len(buf))
	bufOff    int64
	err       error // the decoder's error at the end of buf

	// Decoded counts the uncompressed bytes decoded, Restarts the
	// decoders started: what reading cost.
	Decoded  int64
	Restarts int
}

// fileBuf is how much decoded data a File keeps; keepBack how much of it
// stays behind the newest read when it slides.
const (
	fileBuf   = 2 << 20
	keepBack  = 512 << 10
	fillPiece = 128 << 10
)

// NewFile reads src, a compressed file of size bytes. seek may be nil: the
// stream is then decoded from the start (a sequential reader); opt's
// OnPoint sees the restart points the decoding meets.
func NewFile(src io.ReaderAt, size int64, codec Codec, seek SeekFunc, opt Options) *File {
	return &File{src: src, size: size, codec: codec, seek: seek, opt: opt, delivered: -1}
}

// ReadAt implements io.ReaderAt over the uncompressed stream: io.EOF past
// its end, or the decoding error (an *Error) met before len(p) bytes.
func (f *File) ReadAt(p []byte, off int64) (int, error) {
	n := 0
	for n < len(p) {
		o := off + int64(n)
		if o >= f.bufOff && o < f.bufOff+int64(len(f.buf)) {
			n += copy(p[n:], f.buf[o-f.bufOff:])
			continue
		}
		end := f.bufOff + int64(len(f.buf))
		if f.r == nil || o < f.bufOff {
			if err := f.restart(o); err != nil {
				return n, err
			}
			continue
		}
		if o > end && f.seek != nil {
			// A restart point past what is decoded saves decoding the
			// bytes up to it.
			pt, ok, err := f.seek(o)
			if err != nil {
				return n, err
			}
			if ok && pt.Out > end {
				if err := f.restartAt(pt); err != nil {
					return n, err
				}
				continue
			}
		}
		if f.err != nil {
			return n, f.err
		}
		f.fill(o)
	}
	return n, nil
}

func (f *File) restart(o int64) error {
	var pt Point
	if f.seek != nil {
		p, ok, err := f.seek(o)
		if err != nil {
			return err
		}
		if ok {
			pt = p
		}
	}
	return f.restartAt(pt)
}

func (f *File) restartAt(pt Point) error {
	f.ahead.stop()
	f.ahead = nil
	f.frames.stop()
	f.frames = nil
	if f.r == nil {
		opt := f.opt
		if opt.ReadAhead && opt.OnPoint != nil {
			opt.OnPoint = func(p Point) { f.ahead.pending = append(f.ahead.pending, p) }
		}
		f.r = NewReader(f.src, f.size, f.codec, pt, opt)
	} else {
		f.r.Reset(pt)
		if f.opt.ReadAhead {
			f.r.lastPt = f.delivered
		}
	}
	switch {
	case f.opt.ReadAhead && f.opt.Frames > 1 && (f.codec == Zstd || f.codec == LZ4):
		f.frames = newFramesAhead(f.src, f.size, f.codec, pt, f.opt, f.opt.Frames, f.delivered)
	case f.opt.ReadAhead:
		// Set before its goroutine starts: the reader's OnPoint uses it.
		f.ahead = newAhead()
		f.ahead.start(f.r)
	}
	f.Restarts++
	f.buf, f.bufOff, f.err = f.buf[:0], pt.Out, nil
	return nil
}

// fill decodes the next piece, dropping what lies well behind o.
func (f *File) fill(o int64) {
	if f.buf == nil {
		f.buf = make([]byte, 0, fileBuf)
	}
	if len(f.buf) > cap(f.buf)-(256<<10) {
		drop := min(int64(len(f.buf)), max(0, o-keepBack-f.bufOff))
		if drop == 0 {
			drop = int64(len(f.buf)) / 2
		}
		k := copy(f.buf, f.buf[drop:])
		f.buf, f.bufOff = f.buf[:k], f.bufOff+drop
	}
	var got int
	var err error
	onPoint := func(p Point) {
		f.delivered = p.Out
		if f.opt.OnPoint != nil {
			f.opt.OnPoint(p)
		}
	}
	if f.frames != nil {
		got, err = f.frames.read(f.buf[len(f.buf):cap(f.buf)], onPoint)
	} else if f.ahead != nil {
		got, err = f.ahead.read(f.buf[len(f.buf):cap(f.buf)], onPoint)
	} else {
		// Small pieces: a read of one record decodes little past it.
		got, err = f.r.Read(f.buf[len(f.buf):min(cap(f.buf), len(f.buf)+fillPiece)])
	}
	f.buf = f.buf[:len(f.buf)+got]
	f.Decoded += int64(got)
	if err != nil {
		f.err = err
	}
}

// Trailing reports what follows the last member or frame, once the
// stream has been read to its end.
func (f *File) Trailing() *Trailing {
	if f.r == nil || !errors.Is(f.err, io.EOF) {
		return nil
	}
	if f.frames != nil {
		return f.frames.trailing()
	}
	return f.r.Trailing()
}

// Close stops the read-ahead, if any. The File must not be used after.
func (f *File) Close() {
	f.ahead.stop()
	f.ahead = nil
	f.frames.stop()
	f.frames = nil
}

// ahead decodes a Reader on a goroutine of its own, a few pieces ahead.
type ahead struct {
	pieces chan piece
	free   chan []byte
	quit   chan struct{}
	done   chan struct{}
	cur    piece // being read from
	// pending are the restart points met while decoding the next piece
	// (the decoding goroutine's); each piece carries its own to the
	// reader's goroutine, which passes them to OnPoint.
	pending []Point
}

type piece struct {
	buf    []byte // the whole buffer, to be used again
	b      []byte // what is left to read of it
	points []Point
	err    error
	head   bool // framesAhead: the piece holds one of headTokens
}

const (
	aheadPiece = 1 << 20
	aheadDepth = 4
)

func newAhead() *ahead {
	return &ahead{pieces: make(chan piece, aheadDepth), free: make(chan []byte, aheadDepth+2), quit: make(chan struct{}), done: make(chan struct{})}
}

func (a *ahead) start(r *Reader) {
	go func() {
		defer close(a.done)
		for {
			b, n, err := decodePiece(r, a.free)
			p := piece{buf: b, b: b[:n], points: a.pending, err: err}
			a.pending = nil
			select {
			case a.pieces <- p:
			case <-a.quit:
				return
			}
			if err != nil {
				return
			}
		}
	}()
}

// decodePiece decodes the next piece of r into a buffer from free (or a
// new one): n bytes, fewer only with the error that ended them.
func decodePiece(r *Reader, free <-chan []byte) (b []byte, n int, err error) {
	select {
	case b = <-free:
	default:
		b = make([]byte, aheadPiece)
	}
	for n < len(b) && err == nil {
		var k int
		k, err = r.Read(b[n:])
		n += k
	}
	return b, n, err
}

// read copies decoded bytes into p, giving the restart points met before
// them to onPoint.
func (a *ahead) read(p []byte, onPoint func(Point)) (int, error) {
	for len(a.cur.b) == 0 {
		if a.cur.err != nil {
			return 0, a.cur.err
		}
		if a.cur.buf != nil {
			select {
			case a.free <- a.cur.buf:
			default:
			}
		}
		a.cur = <-a.pieces
		if onPoint != nil {
			for _, pt := range a.cur.points {
				onPoint(pt)
			}
		}
	}
	n := copy(p, a.cur.b)
	a.cur.b = a.cur.b[n:]
	return n, nil
}

func (a *ahead) stop() {
	if a == nil {
		return
	}
	close(a.quit)
	<-a.done
}
