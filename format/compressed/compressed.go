// Package compressed reads captures kept in compressed containers (gzip,
// zstd, lz4): it recognises the container by its magic number, decodes it
// as one sequential stream while noting restart points (gzip member starts
// and deflate block starts every few MiB of output with the 32 KiB window
// before them, zstd and lz4 frame starts), and takes the stream up again
// at a restart point, so that reading a few records far into a large
// compressed capture decodes little of it.
//
// Offsets are offsets in the uncompressed stream, the capture's own. Sizes
// the containers declare are compared, never trusted: memory stays fixed
// whatever the data expands to.
package compressed

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
)

// Codec is a compressed container format.
type Codec uint8

const (
	None Codec = iota
	Gzip       // RFC 1952, any number of members (gzip, pigz, BGZF)
	Zstd       // RFC 8878 frames, skippable frames passed over
	LZ4        // LZ4 frame format
)

func (c Codec) String() string {
	switch c {
	case Gzip:
		return "gzip"
	case Zstd:
		return "zstd"
	case LZ4:
		return "lz4"
	}
	return ""
}

// ParseCodec is the inverse of Codec.String ("" is None).
func ParseCodec(s string) (Codec, bool) {
	for _, c := range []Codec{None, Gzip, Zstd, LZ4} {
		if c.String() == s {
			return c, true
		}
	}
	return None, false
}

const (
	zstdMagic      = 0xfd2fb528
	lz4Magic       = 0x184d2204
	skippableMagic = 0x184d2a50 // zstd and lz4 skippable frames: 0x184d2a50-5f
)

// Detect recognises a compressed container from its first bytes (at
// least 4).
func Detect(head []byte) Codec {
	if len(head) >= 3 && head[0] == 0x1f && head[1] == 0x8b && head[2] == 8 {
		return Gzip
	}
	if len(head) < 4 {
		return None
	}
	switch m := binary.LittleEndian.Uint32(head); {
	case m == zstdMagic:
		return Zstd
	case m == lz4Magic:
		return LZ4
	case m&0xfffffff0 == skippableMagic && len(head) >= 8:
		// A skippable frame first (a zstd seekable file may start with
		// one): what follows it says which.
		n := int64(binary.LittleEndian.Uint32(head[4:]))
		if 8+n+4 <= int64(len(head)) {
			return Detect(head[8+n:])
		}
	}
	return None
}

// Errors a Reader reports, inside an *Error that says where.
var (
	ErrTruncated = errors.New("compressed data cut short")
	ErrChecksum  = errors.New("checksum mismatch")
	ErrCorrupt   = errors.New("corrupt compressed data")
)

// Error is a failure to decode, with the position in both streams.
type Error struct {
	Codec Codec
	Out   int64 // uncompressed bytes decoded before it
	In    int64 // file offset of the compressed data it concerns
	Err   error
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s: %v at compressed offset %d (uncompressed offset %d)", e.Codec, e.Err, e.In, e.Out)
}

func (e *Error) Unwrap() error { return e.Err }

// Point is a restart point: where decoding can begin without what comes
// before it.
type Point struct {
	Out int64 // offset in the uncompressed stream
	In  int64 // file offset of the byte holding the point's first bit
	// Bit is the first bit's position in that byte (a deflate block
	// inside a gzip member; 0 otherwise).
	Bit uint8
	// Member: In is the start of a gzip member or a zstd or lz4 frame;
	// otherwise it is a deflate block inside a gzip member (whose trailer
	// is then not checked: the CRC covers bytes before the point).
	Member bool
	// Window is the up to 32 KiB of output before a deflate block start.
	Window []byte
}

// pointVersion leads an encoded Point.
const pointVersion = 1

// AppendPoint encodes p (but Out, which the index keys it by) after b; the
// window is stored deflated. Safe for concurrent use.
func AppendPoint(b []byte, p Point) []byte {
	b = append(b, pointVersion)
	flags := byte(0)
	if p.Member {
		flags = 1
	}
	b = append(b, flags, p.Bit)
	b = binary.AppendUvarint(b, uint64(p.In))
	if len(p.Window) == 0 {
		return b
	}
	b = binary.AppendUvarint(b, uint64(len(p.Window)))
	// A deflate writer costs about a megabyte to set up: one per point (a
	// thousand per GB of a deflate stream) kept the garbage collector
	// busy beside the decoder. They are used again.
	e := pointEncoders.Get().(*pointEncoder)
	defer pointEncoders.Put(e)
	e.out.b = b
	e.w.Reset(&e.out)
	e.w.Write(p.Window)
	e.w.Close()
	b = e.out.b
	e.out.b = nil
	return b
}

// pointEncoder deflates restart point windows.
type pointEncoder struct {
	w   *flate.Writer
	out appender
}

// appender is an io.Writer appending to b.
type appender struct{ b []byte }

func (a *appender) Write(p []byte) (int, error) {
	a.b = append(a.b, p...)
	return len(p), nil
}

var pointEncoders = sync.Pool{New: func() any {
	w, _ := flate.NewWriter(io.Discard, flate.BestSpeed)
	return &pointEncoder{w: w}
}}

// DecodePoint decodes a Point encoded by AppendPoint, restart point out of
// the uncompressed stream. Index contents are hostile: lengths are bounded.
func DecodePoint(out int64, v []byte) (Point, error) {
	p := Point{Out: out}
	if len(v) < 4 || v[0] != pointVersion || v[1] > 1 || v[2] > 7 {
		return p, errors.New("restart point does not decode")
	}
	p.Member, p.Bit = v[1] == 1, v[2]
	in, n := binary.Uvarint(v[3:])
	if n <= 0 || in > 1<<62 {
		return p, errors.New("restart point does not decode")
	}
	p.In = int64(in)
	rest := v[3+n:]
	if len(rest) == 0 {
		return p, nil
	}
	wlen, n := binary.Uvarint(rest)
	if n <= 0 || wlen > 32<<10 || p.Member {
		return p, errors.New("restart point window does not decode")
	}
	win := make([]byte, wlen)
	got, err := io.ReadFull(flate.NewReader(bytes.NewReader(rest[n:])), win)
	if err != nil || got != int(wlen) {
		return p, errors.New("restart point window does not decode")
	}
	p.Window = win
	return p, nil
}
