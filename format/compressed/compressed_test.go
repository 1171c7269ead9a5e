package compressed

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/xffidx/xffidx/format/compressed/compresstest"
)

// data makes bytes that compress somewhat, like captures: repeated
// headers between random payload.
func data(seed uint64, n int) []byte {
	rng := rand.New(rand.NewPCG(seed, seed+1))
	var b []byte
	for len(b) < n {
		b = append(b, "GET /x HTTP/1.1\r\nX-Forwarded-For: 203.0.113.9\r\n\r\n"...)
		for range rng.IntN(400) {
			b = append(b, byte(rng.Uint32()%16))
		}
	}
	return b[:n]
}

type pointList []Point

func (l pointList) seek(off int64) (Point, bool, error) {
	i, _ := slices.BinarySearchFunc(l, off, func(p Point, o int64) int {
		if p.Out <= o {
			return -1
		}
		return 1
	})
	if i == 0 {
		return Point{}, false, nil
	}
	return l[i-1], true, nil
}

// TestEveryVariantDecodesAndSeeks decodes each container whole, records its
// restart points (through their encoding, as the index keeps them), and
// reads records at random offsets from them: the bytes equal the
// original, and each read decodes no more than the distance from the
// nearest point before it plus a piece.
func TestEveryVariantDecodesAndSeeks(t *testing.T) {
	d := data(1, 12<<20)
	for _, v := range compresstest.Variants() {
		t.Run(v.Name, func(t *testing.T) {
			z := v.Compress(t, d)
			if got := Detect(z); got != codecOf(t, v) {
				t.Fatalf("Detect = %v, want %v", got, codecOf(t, v))
			}
			var pts pointList
			opt := Options{Spacing: 1 << 20, OnPoint: func(p Point) {
				q, err := DecodePoint(p.Out, AppendPoint(nil, p))
				if err != nil || q.In != p.In || q.Bit != p.Bit || !bytes.Equal(q.Window, p.Window) {
					t.Fatalf("point %+v does not survive its encoding: %v", p.Out, err)
				}
				pts = append(pts, q)
			}}
			r := NewReader(bytes.NewReader(z), int64(len(z)), codecOf(t, v), Point{}, opt)
			got, err := io.ReadAll(r)
			if err != nil || !bytes.Equal(got, d) {
				t.Fatalf("decoded %d bytes (want %d), err %v", len(got), len(d), err)
			}
			if r.Trailing() != nil {
				t.Fatalf("trailing data reported: %+v", r.Trailing())
			}
			t.Logf("%d bytes compressed, %d restart points", len(z), len(pts))
			// Read ahead on a goroutine, the same points reach OnPoint
			// on the reading one.
			var ahead pointList
			fa := NewFile(bytes.NewReader(z), int64(len(z)), codecOf(t, v), nil, Options{Spacing: 1 << 20, ReadAhead: true, OnPoint: func(p Point) {
				ahead = append(ahead, p)
			}})
			all, err := io.ReadAll(io.NewSectionReader(fa, 0, 1<<40))
			fa.Close()
			if err != nil || !bytes.Equal(all, d) || len(ahead) != len(pts) {
				t.Fatalf("read ahead: %d bytes, %d points (want %d), err %v", len(all), len(ahead), len(pts), err)
			}
			rng := rand.New(rand.NewPCG(2, 3))
			offs := make([]int64, 30)
			for i := range offs {
				offs[i] = rng.Int64N(int64(len(d) - 4096))
			}
			slices.Sort(offs)
			f := NewFile(bytes.NewReader(z), int64(len(z)), codecOf(t, v), pts.seek, Options{})
			buf := make([]byte, 4096)
			windows := map[int64]bool{}
			for _, o := range offs {
				before := f.Decoded
				if _, err := f.ReadAt(buf, o); err != nil {
					t.Fatalf("ReadAt %d: %v", o, err)
				}
				if !bytes.Equal(buf, d[o:o+4096]) {
					t.Fatalf("ReadAt %d: bytes differ", o)
				}
				pt, _, _ := pts.seek(o)
				if cost := f.Decoded - before; cost > o+4096-pt.Out+fillPiece {
					t.Fatalf("ReadAt %d decoded %d bytes; the nearest point is %d before", o, cost, o-pt.Out)
				}
				windows[pt.Out] = true
			}
			// All reads together: at most each distinct window between
			// two points, plus a piece past the last read.
			var gap int64
			for i := range pts {
				next := int64(len(d))
				if i+1 < len(pts) {
					next = pts[i+1].Out
				}
				gap = max(gap, next-pts[i].Out)
			}
			if bound := int64(len(windows)) * (gap + fillPiece); f.Decoded > bound {
				t.Fatalf("30 reads decoded %d bytes, more than %d windows of %d", f.Decoded, len(windows), gap+fillPiece)
			}
		})
	}
}

func TestTruncatedReportsBothOffsets(t *testing.T) {
	d := data(4, 3<<20)
	for _, v := range compresstest.Variants() {
		t.Run(v.Name, func(t *testing.T) {
			z := v.Compress(t, d)
			cut := z[:len(z)*2/3]
			got, err := io.ReadAll(NewReader(bytes.NewReader(cut), int64(len(cut)), codecOf(t, v), Point{}, Options{}))
			var e *Error
			if !errors.As(err, &e) || !errors.Is(err, ErrTruncated) {
				t.Fatalf("err = %v, want a truncation", err)
			}
			if e.In != int64(len(cut)) || e.Out != int64(len(got)) {
				t.Fatalf("error at in %d out %d; cut at %d, %d bytes decoded", e.In, e.Out, len(cut), len(got))
			}
			if !bytes.Equal(got, d[:len(got)]) {
				t.Fatal("what decodes is not the data's start")
			}
		})
	}
}

func TestChecksumMismatch(t *testing.T) {
	d := data(5, 1<<20)
	for _, v := range compresstest.Variants() {
		if v.Name != "gzip-members" && v.Name != "zstd-frames" && v.Name != "lz4-go" {
			continue
		}
		t.Run(v.Name, func(t *testing.T) {
			z := bytes.Clone(v.Compress(t, d))
			// The last member's or frame's checksum is in its last 8 or 4
			// bytes (gzip: CRC-32 then the length; zstd, lz4: content
			// checksum after the end mark).
			i := len(z) - 4
			if codecOf(t, v) == Gzip {
				i = len(z) - 8
			}
			z[i] ^= 0x55
			_, err := io.ReadAll(NewReader(bytes.NewReader(z), int64(len(z)), codecOf(t, v), Point{}, Options{}))
			if !errors.Is(err, ErrChecksum) {
				t.Fatalf("err = %v, want a checksum mismatch", err)
			}
		})
	}
}

func TestTrailingGarbage(t *testing.T) {
	d := data(6, 100000)
	for _, v := range compresstest.Variants() {
		if v.Fn == nil || v.Name == "zstd-seekable" {
			continue
		}
		t.Run(v.Name, func(t *testing.T) {
			z := append(bytes.Clone(v.Compress(t, d)), "not compressed"...)
			r := NewReader(bytes.NewReader(z), int64(len(z)), codecOf(t, v), Point{}, Options{})
			got, err := io.ReadAll(r)
			if err != nil || !bytes.Equal(got, d) {
				t.Fatalf("err %v", err)
			}
			tr := r.Trailing()
			if tr == nil || tr.Len != 14 || tr.At != int64(len(z)-14) || tr.Zeros {
				t.Fatalf("trailing = %+v", tr)
			}
		})
	}
}

// TestBombStaysBounded decodes 1 GiB of zeros from about a megabyte of
// gzip and zstd: the heap does not follow the output.
func TestBombStaysBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("decodes 2 GiB")
	}
	dir := t.TempDir()
	zeros := make([]byte, 1<<20)
	for _, codec := range []Codec{Gzip, Zstd} {
		p := filepath.Join(dir, codec.String())
		f, _ := os.Create(p)
		var w io.WriteCloser
		if codec == Gzip {
			w, _ = gzip.NewWriterLevel(f, gzip.BestCompression)
		} else {
			w, _ = zstd.NewWriter(f)
		}
		for range 1024 {
			w.Write(zeros)
		}
		w.Close()
		f.Close()
		f, _ = os.Open(p)
		st, _ := f.Stat()
		r := NewReader(f, st.Size(), codec, Point{}, Options{OnPoint: func(Point) {}})
		var peak uint64
		buf := make([]byte, 256<<10)
		var total int64
		for i := 0; ; i++ {
			n, err := r.Read(buf)
			total += int64(n)
			if i%512 == 0 {
				var ms runtime.MemStats
				runtime.ReadMemStats(&ms)
				peak = max(peak, ms.HeapInuse)
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		f.Close()
		if total != 1<<30 {
			t.Fatalf("%s: %d bytes", codec, total)
		}
		if peak > 64<<20 {
			t.Fatalf("%s: heap in use reached %d MiB decoding %d compressed bytes", codec, peak>>20, st.Size())
		}
	}
}

func codecOf(t testing.TB, v compresstest.Variant) Codec {
	c, ok := ParseCodec(v.Codec)
	if !ok {
		t.Fatalf("variant %s: unknown codec %q", v.Name, v.Codec)
	}
	return c
}

// TestReadAheadRestartLosesNoPoint: a read behind what is buffered
// restarts the read-ahead, which had decoded past points it had not given
// yet; each point still reaches OnPoint once, in order.
func TestReadAheadRestartLosesNoPoint(t *testing.T) {
	d := data(7, 16<<20)
	z := compresstest.GzipMembers(d, len(d), nil)
	var want []int64
	r := NewReader(bytes.NewReader(z), int64(len(z)), Gzip, Point{}, Options{Spacing: 256 << 10, OnPoint: func(p Point) { want = append(want, p.Out) }})
	if _, err := io.Copy(io.Discard, r); err != nil {
		t.Fatal(err)
	}
	var got []int64
	f := NewFile(bytes.NewReader(z), int64(len(z)), Gzip, nil, Options{Spacing: 256 << 10, ReadAhead: true, OnPoint: func(p Point) { got = append(got, p.Out) }})
	defer f.Close()
	buf := make([]byte, 64<<10)
	for _, off := range []int64{0, 3 << 20, 100, 9 << 20, 1 << 20} {
		if _, err := f.ReadAt(buf, off); err != nil || !bytes.Equal(buf, d[off:off+int64(len(buf))]) {
			t.Fatalf("ReadAt %d: %v", off, err)
		}
	}
	if _, err := io.Copy(io.Discard, io.NewSectionReader(f, 1<<20, 1<<40)); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("points given: %v\nwant %v", got, want)
	}
}
