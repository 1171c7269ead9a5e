// Package inflate decodes raw deflate streams (RFC 1951) and says, at the
// start of every block, the exact bit position in the compressed input and
// the count of bytes produced so far: what a restart point inside one long
// deflate stream needs (the bit offset of a block start and the 32 KiB of
// output before it, as zlib's zran example keeps). Neither compress/flate
// nor klauspost/compress exposes block boundaries, hence a decoder of its
// own; it is tested byte for byte against compress/flate.
//
// Memory is fixed (a 256 KiB output buffer and a 64 KiB input buffer),
// whatever the stream claims or expands to.
package inflate

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
)

// WindowSize is the farthest back a deflate match may reach.
const WindowSize = 32 << 10

// ErrCorrupt says the bytes are not a valid deflate stream.
var ErrCorrupt = errors.New("invalid deflate data")

const (
	outSize  = 256 << 10
	inSize   = 64 << 10
	maxMatch = 258
)

// BlockFunc is told of each block start: bit is the position of the block's
// first header bit in the input (counted from the reader's first byte, as
// 8 × bytes + bits), out the bytes produced before it.
type BlockFunc func(bit, out int64)

// Reader decodes one raw deflate stream. It reads from its source in
// 64 KiB pieces, so it may read past the end of the stream: Unread gives
// back what it read and did not use.
type Reader struct {
	src io.Reader

	in         []byte
	inPos      int
	inEnd      int
	inBase     int64 // input offset of in[0]
	srcEOF     bool
	srcErr     error
	bitBuf     uint64
	nbits      uint
	out        []byte
	outPos     int   // bytes decoded into out
	readPos    int   // bytes of out handed to Read
	outBase    int64 // stream offset of out[0]
	final      bool  // the block being decoded is the last
	done       bool  // the final block ended
	err        error
	state      int // what the next step decodes
	storedLeft int
	// lit and dist are the current block's codes: the fixed ones, or
	// ownLit and ownDist built from a dynamic block's header.
	lit, dist       *huffman
	ownLit, ownDist huffman
	lens            [320]uint8
	// OnBlock, if set, is told of every block start.
	OnBlock BlockFunc
}

const (
	stateHeader = iota
	stateStored
	stateHuffman
)

// NewReader returns a reader of the deflate stream src starts with.
func NewReader(src io.Reader) *Reader {
	return NewReaderAt(src, 0, 0, nil)
}

// NewReaderAt returns a reader of a deflate stream taken up at a block
// start: src is positioned at the byte holding the block's first bit, skip
// (0-7) is that bit's position in the byte, out the stream offset of the
// block's first output byte, and dict the up to 32 KiB of output before
// it (a restart point).
func NewReaderAt(src io.Reader, skip uint, out int64, dict []byte) *Reader {
	r := &Reader{src: src, in: make([]byte, inSize), out: make([]byte, outSize)}
	if len(dict) > WindowSize {
		dict = dict[len(dict)-WindowSize:]
	}
	copy(r.out, dict)
	r.outPos, r.readPos = len(dict), len(dict)
	r.outBase = out - int64(len(dict))
	if skip > 0 {
		if err := r.need(skip); err != nil {
			r.err = err
		} else {
			r.drop(skip)
		}
	}
	return r
}

// BitPos is the input position of the next bit to decode.
func (r *Reader) BitPos() int64 {
	return (r.inBase+int64(r.inPos))*8 - int64(r.nbits)
}

// Produced is the count of bytes decoded so far (stream offset).
func (r *Reader) Produced() int64 { return r.outBase + int64(r.outPos) }

// Window returns the up to 32 KiB of output before the current position.
// It aliases the reader's buffer: copy it before the next Read.
func (r *Reader) Window() []byte {
	n := min(WindowSize, r.outPos)
	return r.out[r.outPos-n : r.outPos]
}

// Unread returns the input the reader holds and has not decoded, once the
// stream has ended: the bits left in the last byte are dropped (a deflate
// stream ends on a byte boundary for what follows it).
func (r *Reader) Unread() []byte {
	r.drop(r.nbits % 8)
	back := int(r.nbits / 8)
	r.nbits, r.bitBuf = 0, 0
	r.inPos -= back
	return r.in[r.inPos:r.inEnd]
}

// Done reports whether the final block has been decoded.
func (r *Reader) Done() bool { return r.done }

// Read implements io.Reader: io.EOF at the end of the final block.
func (r *Reader) Read(p []byte) (int, error) {
	for r.readPos == r.outPos {
		if r.err != nil {
			return 0, r.err
		}
		if r.done {
			return 0, io.EOF
		}
		r.decode()
	}
	n := copy(p, r.out[r.readPos:r.outPos])
	r.readPos += n
	return n, nil
}

// decode decodes until the output buffer is full or the stream ends.
func (r *Reader) decode() {
	if r.readPos == r.outPos && r.outPos > outSize-maxMatch-1 {
		// Keep the window; everything before it has been read.
		keep := min(WindowSize, r.outPos)
		copy(r.out, r.out[r.outPos-keep:r.outPos])
		r.outBase += int64(r.outPos - keep)
		r.outPos, r.readPos = keep, keep
	}
	for r.err == nil && !r.done && r.outPos <= outSize-maxMatch-1 {
		switch r.state {
		case stateHeader:
			if r.final {
				r.done = true
				return
			}
			r.header()
		case stateStored:
			r.stored()
		case stateHuffman:
			r.huffmanBlock()
		}
	}
}

func (r *Reader) fail(err error) {
	if r.err == nil {
		r.err = err
	}
}

func (r *Reader) corrupt(what string) {
	r.fail(fmt.Errorf("%w at input bit %d: %s", ErrCorrupt, r.BitPos(), what))
}

// fill reads more input, keeping the unread bytes; false at the source's end.
func (r *Reader) fill() bool {
	if r.srcEOF {
		return false
	}
	// The last 8 bytes taken stay: the bit buffer may give them back
	// (Unread).
	keep := max(0, r.inPos-8)
	n := copy(r.in, r.in[keep:r.inEnd])
	r.inBase += int64(keep)
	r.inPos -= keep
	r.inEnd = n
	for r.inEnd < len(r.in) {
		got, err := r.src.Read(r.in[r.inEnd:])
		r.inEnd += got
		if err != nil {
			r.srcEOF = true
			if err != io.EOF {
				r.srcErr = err
			}
			break
		}
		if got > 0 {
			break
		}
	}
	return r.inEnd > n
}

// refill tops the bit buffer up to at least 56 bits when input allows.
func (r *Reader) refill() {
	for r.nbits <= 56 {
		if r.inEnd-r.inPos >= 8 {
			r.bitBuf |= binary.LittleEndian.Uint64(r.in[r.inPos:]) << r.nbits
			r.inPos += int(63-r.nbits) >> 3
			r.nbits |= 56
			return
		}
		if r.inPos < r.inEnd {
			r.bitBuf |= uint64(r.in[r.inPos]) << r.nbits
			r.inPos++
			r.nbits += 8
			continue
		}
		if !r.fill() {
			return
		}
	}
}

// need makes n bits (≤ 56) available, or records why they are not.
func (r *Reader) need(n uint) error {
	if r.nbits < n {
		r.refill()
		if r.nbits < n {
			return r.eofErr()
		}
	}
	return nil
}

func (r *Reader) eofErr() error {
	if r.srcErr != nil {
		return r.srcErr
	}
	return io.ErrUnexpectedEOF
}

func (r *Reader) drop(n uint) {
	r.bitBuf >>= n
	r.nbits -= n
}

func (r *Reader) bits(n uint) uint32 {
	v := uint32(r.bitBuf & (1<<n - 1))
	r.drop(n)
	return v
}

func (r *Reader) header() {
	if r.OnBlock != nil {
		r.OnBlock(r.BitPos(), r.Produced())
	}
	if err := r.need(3); err != nil {
		r.fail(err)
		return
	}
	h := r.bits(3)
	r.final = h&1 == 1
	switch h >> 1 {
	case 0:
		r.drop(r.nbits % 8)
		if err := r.need(32); err != nil {
			r.fail(err)
			return
		}
		n, nn := r.bits(16), r.bits(16)
		if n != ^nn&0xffff {
			r.corrupt("stored block length does not match its complement")
			return
		}
		r.storedLeft, r.state = int(n), stateStored
	case 1:
		r.fixed()
		r.state = stateHuffman
	case 2:
		r.dynamic()
		r.state = stateHuffman
	default:
		r.corrupt("reserved block type")
	}
}

func (r *Reader) stored() {
	for r.storedLeft > 0 && r.outPos < outSize {
		// Whole bytes still in the bit buffer come first.
		if r.nbits >= 8 {
			r.out[r.outPos] = byte(r.bits(8))
			r.outPos++
			r.storedLeft--
			continue
		}
		// The bit buffer may hold copies of the bytes past its count,
		// which are now read directly.
		r.bitBuf = 0
		if r.inPos == r.inEnd && !r.fill() {
			r.fail(r.eofErr())
			return
		}
		n := copy(r.out[r.outPos:min(outSize, r.outPos+r.storedLeft)], r.in[r.inPos:r.inEnd])
		r.inPos += n
		r.outPos += n
		r.storedLeft -= n
	}
	if r.storedLeft == 0 {
		r.state = stateHeader
	}
}

var fixedLit, fixedDist huffman

func init() {
	var l [288 + 32]uint8
	for i := range 288 {
		switch {
		case i < 144:
			l[i] = 8
		case i < 256:
			l[i] = 9
		case i < 280:
			l[i] = 7
		default:
			l[i] = 8
		}
	}
	for i := 288; i < len(l); i++ {
		l[i] = 5
	}
	if !fixedLit.build(l[:288], 9) || !fixedDist.build(l[288:], 6) {
		panic("inflate: fixed codes do not build")
	}
}

func (r *Reader) fixed() {
	r.lit, r.dist = &fixedLit, &fixedDist
}

var clOrder = [19]uint8{16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15}

func (r *Reader) dynamic() {
	if err := r.need(14); err != nil {
		r.fail(err)
		return
	}
	nlit := int(r.bits(5)) + 257
	ndist := int(r.bits(5)) + 1
	nclen := int(r.bits(4)) + 4
	if nlit > 286 || ndist > 30 {
		r.corrupt("too many length or distance codes")
		return
	}
	var cl [19]uint8
	for i := range nclen {
		if err := r.need(3); err != nil {
			r.fail(err)
			return
		}
		cl[clOrder[i]] = uint8(r.bits(3))
	}
	var clh huffman
	if !clh.build(cl[:], 7) {
		r.corrupt("invalid code length code")
		return
	}
	lens := r.lens[:nlit+ndist]
	for i := 0; i < len(lens); {
		sym, ok := r.symbol(&clh)
		if !ok {
			return
		}
		if sym < 16 {
			lens[i] = uint8(sym)
			i++
			continue
		}
		var rep int
		var val uint8
		switch sym {
		case 16:
			if i == 0 {
				r.corrupt("repeat of no previous length")
				return
			}
			if err := r.need(2); err != nil {
				r.fail(err)
				return
			}
			rep, val = 3+int(r.bits(2)), lens[i-1]
		case 17:
			if err := r.need(3); err != nil {
				r.fail(err)
				return
			}
			rep = 3 + int(r.bits(3))
		default:
			if err := r.need(7); err != nil {
				r.fail(err)
				return
			}
			rep = 11 + int(r.bits(7))
		}
		if i+rep > len(lens) {
			r.corrupt("code lengths repeat past their count")
			return
		}
		for range rep {
			lens[i] = val
			i++
		}
	}
	if lens[256] == 0 {
		r.corrupt("no end-of-block code")
		return
	}
	r.lit, r.dist = &r.ownLit, &r.ownDist
	if !r.lit.build(lens[:nlit], 10) || !r.dist.build(lens[nlit:], 8) {
		r.corrupt("invalid literal/length or distance code")
	}
}

// symbol decodes one symbol of h bit by bit as input allows (the slow
// path: code lengths, and the end of the input).
func (r *Reader) symbol(h *huffman) (int, bool) {
	r.refill()
	e := h.lookup(r.bitBuf)
	n := uint(e & lenMask)
	if n == 0 {
		if r.nbits < h.maxLen {
			r.fail(r.eofErr())
		} else {
			r.corrupt("invalid code")
		}
		return 0, false
	}
	if n > r.nbits {
		r.fail(r.eofErr())
		return 0, false
	}
	r.drop(n)
	return int(e >> 16), true
}

var (
	lenBase  = [29]uint16{3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258}
	lenExtra = [29]uint8{0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0}
	dstBase  = [30]uint32{1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577}
	dstExtra = [30]uint8{0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13}
)

// huffmanBlock decodes symbols until the block ends or the output buffer
// has less room than the longest match.
func (r *Reader) huffmanBlock() {
	out, op := r.out, r.outPos
	limit := outSize - maxMatch
	lit, dist := r.lit, r.dist
	// The bit buffer and the input position live in locals here, where
	// the compiler keeps them in registers (the fields, through r, went
	// to memory at every symbol): put back before anything else reads
	// them, and at the end.
	bb, nb := r.bitBuf, r.nbits
	in, ip, ie := r.in, r.inPos, r.inEnd
	for op < limit {
		if nb < 48 {
			if ie-ip >= 8 {
				bb |= binary.LittleEndian.Uint64(in[ip:]) << nb
				ip += int(63-nb) >> 3
				nb |= 56
			} else {
				// Near the input's end: refill reads more.
				r.bitBuf, r.nbits, r.inPos = bb, nb, ip
				r.refill()
				bb, nb, in, ip, ie = r.bitBuf, r.nbits, r.in, r.inPos, r.inEnd
			}
		}
		e := lit.lookup(bb)
		n := uint(e & lenMask)
		if n == 0 || n > nb {
			r.bitBuf, r.nbits, r.inPos, r.outPos = bb, nb, ip, op
			r.symbolFail(lit, n)
			return
		}
		bb >>= n
		nb -= n
		sym := int(e >> 16)
		if sym < 256 {
			out[op] = byte(sym)
			op++
			continue
		}
		if sym == 256 {
			r.bitBuf, r.nbits, r.inPos, r.outPos = bb, nb, ip, op
			r.state = stateHeader
			return
		}
		sym -= 257
		if sym >= 29 {
			r.bitBuf, r.nbits, r.inPos, r.outPos = bb, nb, ip, op
			r.corrupt("invalid length symbol")
			return
		}
		length := int(lenBase[sym])
		if x := uint(lenExtra[sym]); x > 0 {
			if nb < x {
				r.bitBuf, r.nbits, r.inPos, r.outPos = bb, nb, ip, op
				r.fail(r.eofErr())
				return
			}
			length += int(bb & (1<<x - 1))
			bb >>= x
			nb -= x
		}
		if nb < 28 {
			if ie-ip >= 8 {
				bb |= binary.LittleEndian.Uint64(in[ip:]) << nb
				ip += int(63-nb) >> 3
				nb |= 56
			} else {
				// Near the input's end: refill reads more.
				r.bitBuf, r.nbits, r.inPos = bb, nb, ip
				r.refill()
				bb, nb, in, ip, ie = r.bitBuf, r.nbits, r.in, r.inPos, r.inEnd
			}
		}
		e = dist.lookup(bb)
		n = uint(e & lenMask)
		if n == 0 || n > nb {
			r.bitBuf, r.nbits, r.inPos, r.outPos = bb, nb, ip, op
			r.symbolFail(dist, n)
			return
		}
		bb >>= n
		nb -= n
		ds := int(e >> 16)
		if ds >= 30 {
			r.bitBuf, r.nbits, r.inPos, r.outPos = bb, nb, ip, op
			r.corrupt("invalid distance symbol")
			return
		}
		d := int(dstBase[ds])
		if x := uint(dstExtra[ds]); x > 0 {
			if nb < x {
				r.bitBuf, r.nbits, r.inPos, r.outPos = bb, nb, ip, op
				r.fail(r.eofErr())
				return
			}
			d += int(bb & (1<<x - 1))
			bb >>= x
			nb -= x
		}
		if int64(d) > r.outBase+int64(op) || d > op {
			r.bitBuf, r.nbits, r.inPos, r.outPos = bb, nb, ip, op
			r.corrupt("distance reaches before the start of the stream")
			return
		}
		src := op - d
		if d >= length {
			copy(out[op:op+length], out[src:src+length])
			op += length
			continue
		}
		// Overlapping: the copy repeats the last d bytes.
		for end := op + length; op < end; {
			op += copy(out[op:end], out[src:op])
		}
	}
	r.bitBuf, r.nbits, r.inPos, r.outPos = bb, nb, ip, op
}

func (r *Reader) symbolFail(h *huffman, n uint) {
	if n == 0 && r.nbits >= h.maxLen {
		r.corrupt("invalid code")
		return
	}
	r.fail(r.eofErr())
}

// A huffman table is indexed by the next primary bits of input (deflate
// codes are read least significant bit first); an entry holds the symbol
// (high 16 bits) and the code length (low bits), or, for longer codes, the
// offset of a subtable (high 16 bits), its index bits, and subFlag.
type huffman struct {
	table   []uint32
	primary uint
	maxLen  uint
}

const (
	lenMask = 0x1f
	subFlag = 0x80
)

func (h *huffman) lookup(b uint64) uint32 {
	e := h.table[b&(1<<h.primary-1)]
	if e&subFlag != 0 {
		sub := (e >> 8) & 0x0f
		e = h.table[int(e>>16)+int(b>>h.primary)&(1<<sub-1)]
	}
	return e
}

// build makes the table of a code given by its lengths. It refuses an
// over-subscribed code, and an incomplete one unless it is a single code
// of length 1 or no code at all (as zlib accepts).
func (h *huffman) build(lengths []uint8, primary uint) bool {
	var count [16]int
	maxLen := uint(0)
	for _, l := range lengths {
		if l > 15 {
			return false
		}
		count[l]++
		if uint(l) > maxLen {
			maxLen = uint(l)
		}
	}
	count[0] = 0
	left := 1
	for l := 1; l <= 15; l++ {
		left <<= 1
		left -= count[l]
		if left < 0 {
			return false
		}
	}
	if left > 0 && !(maxLen <= 1) {
		return false
	}
	h.primary = min(primary, max(maxLen, 1))
	h.maxLen = maxLen
	var next [16]int
	code := 0
	for l := 1; l <= 15; l++ {
		code = (code + count[l-1]) << 1
		next[l] = code
	}
	size := 1 << h.primary
	// Subtable sizes: for each primary prefix, the longest code under it.
	var subBits []uint8
	if maxLen > h.primary {
		subBits = make([]uint8, size)
		c := next
		for _, l := range lengths {
			if uint(l) <= h.primary {
				if l > 0 {
					c[l]++
				}
				continue
			}
			rev := int(bits.Reverse16(uint16(c[l])) >> (16 - l))
			c[l]++
			p := rev & (size - 1)
			subBits[p] = max(subBits[p], l-uint8(h.primary))
		}
	}
	total := size
	offsets := make([]int, len(subBits))
	for p, sb := range subBits {
		if sb > 0 {
			offsets[p] = total
			total += 1 << sb
		}
	}
	if cap(h.table) >= total {
		h.table = h.table[:total]
		clear(h.table)
	} else {
		h.table = make([]uint32, total)
	}
	for p, sb := range subBits {
		if sb > 0 {
			h.table[p] = uint32(offsets[p])<<16 | uint32(sb)<<8 | subFlag
		}
	}
	for sym, l := range lengths {
		if l == 0 {
			continue
		}
		rev := int(bits.Reverse16(uint16(next[l])) >> (16 - l))
		next[l]++
		if uint(l) <= h.primary {
			for i := rev; i < size; i += 1 << l {
				h.table[i] = uint32(sym)<<16 | uint32(l)
			}
			continue
		}
		p := rev & (size - 1)
		sb := uint(subBits[p])
		sl := uint(l) - h.primary
		for i := rev >> h.primary; i < 1<<sb; i += 1 << sl {
			h.table[offsets[p]+i] = uint32(sym)<<16 | uint32(l)
		}
	}
	return true
}
