package inflate

import (
	"bytes"
	"compress/flate"
	"errors"
	"io"
	"math/rand/v2"
	"os/exec"
	"testing"
)

// sample makes compressible bytes of every kind a deflater meets: text-like
// runs, repeats near and far, random stretches, and long runs of one byte.
func sample(rng *rand.Rand, n int) []byte {
	words := [][]byte{[]byte("GET /index.html HTTP/1.1\r\n"), []byte("X-Forwarded-For: 203.0.113.7, 10.0.0.1\r\n"), []byte("Host: example.com\r\n"), {0, 0, 0, 0}, []byte("\xa1\xb2\xc3\xd4")}
	var b []byte
	for len(b) < n {
		switch rng.IntN(6) {
		case 0:
			b = append(b, words[rng.IntN(len(words))]...)
		case 1:
			k := rng.IntN(300)
			for range k {
				b = append(b, byte(rng.Uint32()))
			}
		case 2:
			if len(b) > 0 {
				d := 1 + rng.IntN(min(len(b), 40000))
				k := 3 + rng.IntN(300)
				for range k {
					b = append(b, b[len(b)-d])
				}
			}
		case 3:
			c := byte(rng.Uint32())
			b = append(b, bytes.Repeat([]byte{c}, rng.IntN(2000))...)
		default:
			b = append(b, words[rng.IntN(2)]...)
		}
	}
	return b[:n]
}

func deflate(t testing.TB, data []byte, level int, flushEvery int) []byte {
	var buf bytes.Buffer
	w, err := flate.NewWriter(&buf, level)
	if err != nil {
		t.Fatal(err)
	}
	for len(data) > 0 {
		n := len(data)
		if flushEvery > 0 {
			n = min(n, flushEvery)
		}
		w.Write(data[:n])
		data = data[n:]
		if flushEvery > 0 {
			w.Flush()
		}
	}
	w.Close()
	return buf.Bytes()
}

// oneByte hands its bytes one at a time, to exercise every refill path.
type oneByte struct{ r io.Reader }

func (o oneByte) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	return o.r.Read(p[:1])
}

func TestMatchesCompressFlate(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, size := range []int{0, 1, 100, 70000, 1 << 20, 3 << 20} {
		data := sample(rng, size)
		for _, level := range []int{flate.NoCompression, flate.HuffmanOnly, flate.BestSpeed, 6, flate.BestCompression} {
			for _, flush := range []int{0, 10000} {
				z := deflate(t, data, level, flush)
				got, err := io.ReadAll(NewReader(bytes.NewReader(z)))
				if err != nil {
					t.Fatalf("size %d level %d flush %d: %v", size, level, flush, err)
				}
				if !bytes.Equal(got, data) {
					t.Fatalf("size %d level %d flush %d: output differs", size, level, flush)
				}
				if size <= 70000 {
					got, err := io.ReadAll(NewReader(oneByte{bytes.NewReader(z)}))
					if err != nil || !bytes.Equal(got, data) {
						t.Fatalf("one byte at a time, size %d level %d: %v", size, level, err)
					}
				}
			}
		}
	}
}

// TestGzipCommandOutput decodes what gzip itself writes (its deflater is
// not Go's), at each level.
func TestGzipCommandOutput(t *testing.T) {
	if _, err := exec.LookPath("gzip"); err != nil {
		t.Skip("gzip not installed")
	}
	data := sample(rand.New(rand.NewPCG(3, 4)), 2<<20)
	for _, level := range []string{"-1", "-6", "-9"} {
		cmd := exec.Command("gzip", level, "-c", "-n")
		cmd.Stdin = bytes.NewReader(data)
		z, err := cmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		// A gzip member without a name: a 10-byte header, an 8-byte trailer.
		got, err := io.ReadAll(NewReader(bytes.NewReader(z[10 : len(z)-8])))
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("gzip %s: %v, output equal: %v", level, err, bytes.Equal(got, data))
		}
	}
}

// TestRestartAtEveryBlock takes the stream up at each block start from the
// recorded bit position and window, and checks that the rest decodes
// exactly.
func TestRestartAtEveryBlock(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	data := sample(rng, 2<<20)
	for _, level := range []int{flate.NoCompression, flate.BestSpeed, flate.BestCompression} {
		z := deflate(t, data, level, 0)
		type point struct {
			bit, out int64
			window   []byte
		}
		var points []point
		r := NewReader(bytes.NewReader(z))
		r.OnBlock = func(bit, out int64) {
			points = append(points, point{bit, out, bytes.Clone(r.Window())})
		}
		if got, err := io.ReadAll(r); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("level %d: %v", level, err)
		}
		if len(points) < 3 {
			t.Fatalf("level %d: only %d blocks", level, len(points))
		}
		for _, p := range points {
			rr := NewReaderAt(bytes.NewReader(z[p.bit/8:]), uint(p.bit%8), p.out, p.window)
			got, err := io.ReadAll(rr)
			if err != nil || !bytes.Equal(got, data[p.out:]) {
				t.Fatalf("level %d: restart at bit %d (out %d): %v", level, p.bit, p.out, err)
			}
		}
	}
}

func TestUnreadGivesBackWhatFollows(t *testing.T) {
	data := sample(rand.New(rand.NewPCG(7, 8)), 100000)
	z := deflate(t, data, 6, 0)
	tail := []byte("what follows the stream")
	r := NewReader(bytes.NewReader(append(bytes.Clone(z), tail...)))
	if _, err := io.ReadAll(r); err != nil {
		t.Fatal(err)
	}
	if got := r.Unread(); !bytes.Equal(got, tail) {
		t.Fatalf("Unread = %q, want %q", got, tail)
	}
}

func TestTruncatedAndCorrupt(t *testing.T) {
	data := sample(rand.New(rand.NewPCG(9, 10)), 500000)
	z := deflate(t, data, 6, 0)
	got, err := io.ReadAll(NewReader(bytes.NewReader(z[:len(z)/2])))
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("truncated: err %v", err)
	}
	if len(got) == 0 || !bytes.Equal(got, data[:len(got)]) {
		t.Fatalf("truncated: %d bytes decoded, not a prefix of the data", len(got))
	}
	bad := bytes.Clone(z)
	bad[0] |= 6 // block type 3
	if _, err := io.ReadAll(NewReader(bytes.NewReader(bad))); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("reserved block type: err %v", err)
	}
}

// FuzzInflate: on any input, the decoder agrees with compress/flate where
// that accepts the stream, and never fails otherwise than with an error.
func FuzzInflate(f *testing.F) {
	rng := rand.New(rand.NewPCG(11, 12))
	for _, level := range []int{0, 1, 6, 9, -2} {
		f.Add(deflate(f, sample(rng, 3000), level, 1000))
	}
	f.Fuzz(func(t *testing.T, z []byte) {
		want, werr := io.ReadAll(io.LimitReader(flate.NewReader(bytes.NewReader(z)), 1<<22))
		got, gerr := io.ReadAll(io.LimitReader(NewReader(bytes.NewReader(z)), 1<<22))
		if werr == nil && len(want) < 1<<22 {
			if gerr != nil || !bytes.Equal(got, want) {
				t.Fatalf("compress/flate decodes %d bytes; this decoder: %d bytes, err %v", len(want), len(got), gerr)
			}
		}
		if gerr == nil && len(got) < 1<<22 && werr != nil {
			t.Fatalf("this decoder accepts what compress/flate refuses (%v)", werr)
		}
	})
}

// BenchmarkInflate compares the decoder with compress/flate on the same
// stream (gzip -6 style).
func BenchmarkInflate(b *testing.B) {
	data := sample(rand.New(rand.NewPCG(13, 14)), 8<<20)
	z := deflate(b, data, 6, 0)
	b.Run("this", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			io.Copy(io.Discard, NewReader(bytes.NewReader(z)))
		}
	})
	b.Run("compress-flate", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			io.Copy(io.Discard, flate.NewReader(bytes.NewReader(z)))
		}
	})
}
