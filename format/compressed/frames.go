package compressed

import (
	"encoding/binary"
	"errors"
	"io"
	"sync"
)

// Frames decoded at once.
//
// A zstd or lz4 file written in several frames (the seekable format, a
// post-rotate hook compressing in pieces) can be decoded on several cores:
// each frame starts from nothing. framesAhead finds the frames' ends from
// their block headers (no decoding), decodes up to Options.Frames of them at
// once, each on a goroutine of its own with its own decoder, and hands their
// output over in stream order. The frames decoded ahead of the one being
// read hold at most the budget (Options.Budget, which the Files of a build
// share), the one being read a few pieces of its own, so memory stays
// bounded whatever the frames' sizes and however many files are read. A frame whose end cannot be found by its
// block headers (cut short, corrupt), and whatever follows it, is decoded by
// one Reader from there, the sequential Reader's own code: errors, trailing
// bytes and skippable frames come out as they would from one Reader.

// DefaultFrameBudget bounds the decoded bytes held by the frames decoded
// ahead of those being read, over the Files that share a FrameBudget;
// frameHead, in pieces, is what a frame being read holds besides.
const (
	DefaultFrameBudget = 64 << 20
	frameHead          = 4
)

// A FrameBudget bounds the memory of frames decoded ahead over every File
// that shares it: a build walking several captures at once gives them one,
// so that its peak memory does not grow with the number of files.
type FrameBudget struct {
	tokens chan struct{} // a token per piece held
	pieces chan []byte   // pieces to use again
}

// NewFrameBudget returns a budget of about bytes of decoded data (0:
// DefaultFrameBudget), at least one piece.
func NewFrameBudget(bytes int) *FrameBudget {
	if bytes <= 0 {
		bytes = DefaultFrameBudget
	}
	n := max(1, bytes/aheadPiece)
	return &FrameBudget{tokens: make(chan struct{}, n), pieces: make(chan []byte, n+8)}
}

// Held is the number of pieces held under the budget now.
func (b *FrameBudget) Held() int { return len(b.tokens) }

// frameJob is one frame, or the rest of the file from a frame start (tail).
type frameJob struct {
	start, end int64
	tail       bool
	pieces     chan piece
	// head is closed when the reader begins the job: from then on its
	// pieces take headTokens instead of the budget's tokens.
	head chan struct{}
	r    *Reader // the job's reader; set before its last piece is sent
	out  int64   // bytes handed over so far (reader's side)
}

type framesAhead struct {
	src    io.ReaderAt
	size   int64
	codec  Codec
	opt    Options
	budget *FrameBudget

	order chan *frameJob // jobs in stream order, for the reader
	jobs  chan *frameJob // for the decoding goroutines
	// headTokens holds a token per piece of the job being read.
	headTokens chan struct{}
	quit       chan struct{}
	wg         sync.WaitGroup

	// The reader's side.
	job    *frameJob
	cur    piece
	base   int64 // uncompressed offset of job's start
	lastPt int64 // Out of the last point delivered (-1: none)
	done   error // io.EOF or the error that ended the stream
	trail  *Trailing
}

// newFramesAhead starts decoding the frames from pt (a frame start, or the
// file's start) on n goroutines. lastPt is the last restart point already
// delivered (-1: none).
func newFramesAhead(src io.ReaderAt, size int64, codec Codec, pt Point, opt Options, n int, lastPt int64) *framesAhead {
	budget := opt.Budget
	if budget == nil {
		budget = NewFrameBudget(0)
	}
	a := &framesAhead{src: src, size: size, codec: codec, opt: opt, budget: budget,
		order: make(chan *frameJob, n+1), jobs: make(chan *frameJob), quit: make(chan struct{}),
		headTokens: make(chan struct{}, frameHead), base: pt.Out, lastPt: lastPt}
	a.wg.Add(1 + n)
	go a.dispatch(pt.In)
	for range n {
		go a.decode()
	}
	return a
}

// dispatch finds the frames from pos on and hands them out.
func (a *framesAhead) dispatch(pos int64) {
	defer a.wg.Done()
	defer close(a.order)
	defer close(a.jobs)
	want := uint32(zstdMagic)
	if a.codec == LZ4 {
		want = lz4Magic
	}
	for pos < a.size {
		job := &frameJob{start: pos, end: a.size, tail: true, pieces: make(chan piece, cap(a.budget.tokens)+frameHead), head: make(chan struct{})}
		var h [8]byte
		n, _ := a.src.ReadAt(h[:min(8, a.size-pos)], pos)
		if n == 8 && binary.LittleEndian.Uint32(h[:])&0xfffffff0 == skippableMagic {
			if next := pos + 8 + int64(binary.LittleEndian.Uint32(h[4:])); next <= a.size {
				pos = next
				continue
			}
		} else if n >= 4 && binary.LittleEndian.Uint32(h[:]) == want {
			var end int64
			var err error
			if a.codec == Zstd {
				end, err = zstdFrameEnd(a.src, pos, a.size)
			} else {
				end, err = lz4FrameEnd(a.src, pos, a.size)
			}
			if err == nil {
				job.end, job.tail = end, false
			}
		}
		select {
		case a.order <- job:
		case <-a.quit:
			return
		}
		select {
		case a.jobs <- job:
		case <-a.quit:
			return
		}
		if job.tail {
			return
		}
		pos = job.end
	}
}

// decode decodes jobs, a piece at a time, with one Reader used again.
func (a *framesAhead) decode() {
	defer a.wg.Done()
	var pending []Point
	opt := a.opt
	opt.OnPoint = func(p Point) { pending = append(pending, p) }
	var r *Reader
	for job := range a.jobs {
		// The job's reader sees the file as ending at the frame's end:
		// it stops there. Its offsets start at 0 (read adds the job's).
		if r == nil {
			r = NewReader(a.src, job.end, a.codec, Point{In: job.start, Member: true}, opt)
		} else {
			r.size, r.lastPt = job.end, -1
			r.Reset(Point{In: job.start, Member: true})
		}
		for {
			head, ok := a.token(job)
			if !ok {
				return
			}
			b, n, err := decodePiece(r, a.budget.pieces)
			if err != nil && job.tail {
				job.r = r
			}
			select {
			case job.pieces <- piece{buf: b, b: b[:n], points: pending, err: err, head: head}:
			case <-a.quit:
				a.release(piece{buf: b, head: head})
				return
			}
			pending = nil
			if err != nil {
				break
			}
		}
	}
}

// token takes the token for a piece of job: one of headTokens if the job
// is being read, else one of the budget's, whichever comes first. false if
// the reading stopped.
func (a *framesAhead) token(job *frameJob) (head, ok bool) {
	select {
	case <-job.head:
	default:
		select {
		case a.budget.tokens <- struct{}{}:
			return false, true
		case <-job.head:
		case <-a.quit:
			return false, false
		}
	}
	select {
	case a.headTokens <- struct{}{}:
		return true, true
	case <-a.quit:
		return false, false
	}
}

// release gives back a piece read whole, and its token.
func (a *framesAhead) release(p piece) {
	if p.buf == nil {
		return
	}
	select {
	case a.budget.pieces <- p.buf:
	default:
	}
	if p.head {
		<-a.headTokens
	} else {
		<-a.budget.tokens
	}
}

// read copies decoded bytes into p, giving the restart points met before
// them to onPoint (with their offsets in the whole stream).
func (a *framesAhead) read(p []byte, onPoint func(Point)) (int, error) {
	for len(a.cur.b) == 0 {
		if a.done != nil {
			return 0, a.done
		}
		a.release(a.cur)
		a.cur.buf = nil
		if err := a.cur.err; err != nil {
			a.cur.err = nil
			if !errors.Is(err, io.EOF) {
				if e, ok := err.(*Error); ok {
					c := *e
					c.Out += a.base
					err = &c
				}
				a.done = err
				return 0, err
			}
			// The job is over: the next one starts where it ended.
			if a.job.tail {
				a.trail = a.job.r.Trailing()
			}
			a.base += a.job.out
			a.job = nil
		}
		if a.job == nil {
			job, ok := <-a.order
			if !ok {
				a.done = io.EOF
				return 0, io.EOF
			}
			a.job = job
			close(job.head)
		}
		a.cur = <-a.job.pieces
		a.job.out += int64(len(a.cur.b))
		for _, pt := range a.cur.points {
			pt.Out += a.base
			// The sequential Reader's choice (Reader.point).
			if pt.Out <= a.lastPt || pt.Member && a.lastPt >= 0 && pt.Out-a.lastPt < a.opt.spacing()/4 {
				continue
			}
			a.lastPt = pt.Out
			if onPoint != nil {
				onPoint(pt)
			}
		}
	}
	n := copy(p, a.cur.b)
	a.cur.b = a.cur.b[n:]
	return n, nil
}

// trailing is what follows the last frame, once read returned io.EOF.
func (a *framesAhead) trailing() *Trailing { return a.trail }

func (a *framesAhead) stop() {
	if a == nil {
		return
	}
	close(a.quit)
	a.wg.Wait()
	// The tokens of the pieces not read go back.
	a.release(a.cur)
	a.cur = piece{}
	if a.job != nil {
		a.drain(a.job)
	}
	for job := range a.order {
		a.drain(job)
	}
}

func (a *framesAhead) drain(job *frameJob) {
	for {
		select {
		case p := <-job.pieces:
			a.release(p)
		default:
			return
		}
	}
}
