package compressed

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
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

// variant is one way of compressing; cmd ones need that command.
type variant struct {
	name  string
	codec Codec
	cmd   []string
	fn    func(t testing.TB, d []byte) []byte
}

func gzipMembers(t testing.TB, d []byte, member int, extra []byte) []byte {
	var out bytes.Buffer
	for len(d) > 0 || out.Len() == 0 {
		n := min(member, len(d))
		w := gzip.NewWriter(&out)
		w.Header.Extra = extra
		w.Header.Name = "capture.pcap"
		w.Write(d[:n])
		w.Close()
		d = d[n:]
	}
	return out.Bytes()
}

func zstdFrames(t testing.TB, d []byte, frame int) []byte {
	var out bytes.Buffer
	for len(d) > 0 {
		n := min(frame, len(d))
		w, err := zstd.NewWriter(&out, zstd.WithEncoderCRC(true))
		if err != nil {
			t.Fatal(err)
		}
		w.Write(d[:n])
		w.Close()
		d = d[n:]
	}
	return out.Bytes()
}

func lz4Frame(t testing.TB, d []byte) []byte {
	var out bytes.Buffer
	w := lz4.NewWriter(&out)
	w.Apply(lz4.ChecksumOption(true), lz4.BlockSizeOption(lz4.Block256Kb))
	w.Write(d)
	w.Close()
	return out.Bytes()
}

var variants = []variant{
	{name: "gzip", codec: Gzip, cmd: []string{"gzip", "-c"}},
	{name: "gzip-1", codec: Gzip, cmd: []string{"gzip", "-1", "-c"}},
	{name: "gzip-9", codec: Gzip, cmd: []string{"gzip", "-9", "-c"}},
	{name: "go-gzip-members", codec: Gzip, fn: func(t testing.TB, d []byte) []byte { return gzipMembers(t, d, 700<<10, nil) }},
	// BGZF: members of at most 64 KiB with a BC extra field.
	{name: "bgzf-like", codec: Gzip, fn: func(t testing.TB, d []byte) []byte {
		return gzipMembers(t, d, 65280, []byte{'B', 'C', 2, 0, 0, 0})
	}},
	{name: "zstd", codec: Zstd, cmd: []string{"zstd", "-q", "-c"}},
	{name: "zstd-T0", codec: Zstd, cmd: []string{"zstd", "-q", "-T0", "-c"}},
	{name: "zstd-frames", codec: Zstd, fn: func(t testing.TB, d []byte) []byte { return zstdFrames(t, d, 1<<20) }},
	// The seekable format: frames, then its seek table in a skippable
	// frame (magic 0x184D2A5E), which a reader passes over.
	{name: "zstd-seekable", codec: Zstd, fn: func(t testing.TB, d []byte) []byte {
		z := zstdFrames(t, d, 256<<10)
		table := []byte{0x5e, 0x2a, 0x4d, 0x18, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0xb1, 0xea, 0x92, 0x8f}
		return append(z, table...)
	}},
	{name: "lz4", codec: LZ4, cmd: []string{"lz4", "-q", "-c"}},
	{name: "go-lz4", codec: LZ4, fn: lz4Frame},
}

func (v variant) compress(t testing.TB, d []byte) []byte {
	if v.fn != nil {
		return v.fn(t, d)
	}
	if _, err := exec.LookPath(v.cmd[0]); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not installed", v.cmd[0])
		}
		t.Skipf("%s not installed", v.cmd[0])
	}
	cmd := exec.Command(v.cmd[0], v.cmd[1:]...)
	cmd.Stdin = bytes.NewReader(d)
	z, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	return z
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
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			z := v.compress(t, d)
			if got := Detect(z); got != v.codec {
				t.Fatalf("Detect = %v, want %v", got, v.codec)
			}
			var pts pointList
			opt := Options{Spacing: 1 << 20, OnPoint: func(p Point) {
				q, err := DecodePoint(p.Out, AppendPoint(nil, p))
				if err != nil || q.In != p.In || q.Bit != p.Bit || !bytes.Equal(q.Window, p.Window) {
					t.Fatalf("point %+v does not survive its encoding: %v", p.Out, err)
				}
				pts = append(pts, q)
			}}
			r := NewReader(bytes.NewReader(z), int64(len(z)), v.codec, Point{}, opt)
			got, err := io.ReadAll(r)
			if err != nil || !bytes.Equal(got, d) {
				t.Fatalf("decoded %d bytes (want %d), err %v", len(got), len(d), err)
			}
			if r.Trailing() != nil {
				t.Fatalf("trailing data reported: %+v", r.Trailing())
			}
			t.Logf("%d bytes compressed, %d restart points", len(z), len(pts))
			rng := rand.New(rand.NewPCG(2, 3))
			offs := make([]int64, 30)
			for i := range offs {
				offs[i] = rng.Int64N(int64(len(d) - 4096))
			}
			slices.Sort(offs)
			f := NewFile(bytes.NewReader(z), int64(len(z)), v.codec, pts.seek, Options{})
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
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			z := v.compress(t, d)
			cut := z[:len(z)*2/3]
			got, err := io.ReadAll(NewReader(bytes.NewReader(cut), int64(len(cut)), v.codec, Point{}, Options{}))
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
	for _, v := range variants {
		if v.name != "go-gzip-members" && v.name != "zstd-frames" && v.name != "go-lz4" {
			continue
		}
		t.Run(v.name, func(t *testing.T) {
			z := bytes.Clone(v.compress(t, d))
			// The last member's or frame's checksum is in its last 8 or 4
			// bytes (gzip: CRC-32 then the length; zstd, lz4: content
			// checksum after the end mark).
			i := len(z) - 4
			if v.codec == Gzip {
				i = len(z) - 8
			}
			z[i] ^= 0x55
			_, err := io.ReadAll(NewReader(bytes.NewReader(z), int64(len(z)), v.codec, Point{}, Options{}))
			if !errors.Is(err, ErrChecksum) {
				t.Fatalf("err = %v, want a checksum mismatch", err)
			}
		})
	}
}

func TestTrailingGarbage(t *testing.T) {
	d := data(6, 100000)
	for _, v := range variants {
		if v.fn == nil {
			continue
		}
		t.Run(v.name, func(t *testing.T) {
			z := append(bytes.Clone(v.compress(t, d)), "not compressed"...)
			r := NewReader(bytes.NewReader(z), int64(len(z)), v.codec, Point{}, Options{})
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
