package compressed

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"testing"

	"github.com/xffidx/xffidx/format/compressed/compresstest"
)

// decodeAll reads f's stream to its end in pieces of n bytes and returns
// the bytes, the restart points met, the trailing bytes reported and the
// error that ended it.
func decodeAll(t *testing.T, z []byte, codec Codec, frames, n int, budget *FrameBudget) ([]byte, []Point, *Trailing, error) {
	t.Helper()
	var points []Point
	f := NewFile(bytes.NewReader(z), int64(len(z)), codec, nil, Options{Spacing: 256 << 10, ReadAhead: true, Frames: frames, Budget: budget, OnPoint: func(p Point) { points = append(points, p) }})
	defer f.Close()
	var out []byte
	buf := make([]byte, n)
	for {
		k, err := f.ReadAt(buf, int64(len(out)))
		out = append(out, buf[:k]...)
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = nil
			}
			return out, points, f.Trailing(), err
		}
	}
}

// TestFramesAtOnceEqualOneReader: zstd and lz4 files of several frames
// decoded several frames at once give the bytes, the restart points, the
// errors (with both offsets) and the trailing bytes of one sequential
// Reader: frames of every size (more than the budget lets a frame run
// ahead, with 16 at once),
// skippable frames between them, the seekable format, a frame cut short,
// a checksum mismatch in a middle frame, garbage and zeros after the last.
func TestFramesAtOnceEqualOneReader(t *testing.T) {
	d := data(7, 9<<20)
	skippable := func(n int) []byte {
		b := binary.LittleEndian.AppendUint32(nil, skippableMagic+3)
		b = binary.LittleEndian.AppendUint32(b, uint32(n))
		return append(b, make([]byte, n)...)
	}
	withSkippable := func(frame int) []byte {
		var z []byte
		for off := 0; off < len(d); off += frame {
			z = append(z, compresstest.ZstdFrames(t, d[off:min(len(d), off+frame)], frame)...)
			z = append(z, skippable(100)...)
		}
		return z
	}
	var lz4Frames []byte
	for off := 0; off < len(d); off += 2 << 20 {
		lz4Frames = append(lz4Frames, compresstest.LZ4Frame(d[off:min(len(d), off+2<<20)])...)
	}
	type input struct {
		name  string
		codec Codec
		z     []byte
	}
	var inputs []input
	for _, frame := range []int{64 << 10, 1 << 20, 3 << 20, 40 << 20} {
		inputs = append(inputs, input{fmt.Sprintf("zstd-%dk", frame>>10), Zstd, compresstest.ZstdFrames(t, d, frame)})
	}
	inputs = append(inputs,
		input{"zstd-skippable", Zstd, withSkippable(1 << 20)},
		input{"lz4-frames", LZ4, lz4Frames},
	)
	for _, v := range compresstest.Variants() {
		if v.Name == "zstd-seekable" || v.Name == "lz4" {
			inputs = append(inputs, input{v.Name, codecOf(t, v), v.Compress(t, d)})
		}
	}
	multi := compresstest.ZstdFrames(t, d, 1<<20)
	// The second frame damaged: its last byte flipped (its checksum, or
	// its data).
	bad := slices.Clone(multi)
	pos := int64(0)
	for range 2 {
		end, err := zstdFrameEnd(bytes.NewReader(bad), pos, int64(len(bad)))
		if err != nil {
			t.Fatal(err)
		}
		if pos > 0 {
			bad[end-1] ^= 0xff
			break
		}
		pos = end
	}
	inputs = append(inputs,
		input{"zstd-cut", Zstd, multi[:len(multi)*2/3]},
		input{"zstd-bad-frame", Zstd, bad},
		input{"zstd-garbage-after", Zstd, append(slices.Clone(multi), "not a frame at all"...)},
		input{"zstd-zeros-after", Zstd, append(slices.Clone(multi), make([]byte, 4096)...)},
		input{"lz4-cut", LZ4, lz4Frames[:len(lz4Frames)/2]},
	)
	for _, in := range inputs {
		t.Run(in.name, func(t *testing.T) {
			budget := NewFrameBudget(0)
			want, wantPts, wantTrail, wantErr := decodeAll(t, in.z, in.codec, 1, 300<<10, budget)
			t.Logf("%d bytes, %d points, error %v, trailing %+v", len(want), len(wantPts), wantErr, wantTrail)
			for _, frames := range []int{2, 3, 16} {
				got, gotPts, gotTrail, gotErr := decodeAll(t, in.z, in.codec, frames, 300<<10, budget)
				if !bytes.Equal(got, want) {
					t.Fatalf("%d at once: %d bytes, one reader %d", frames, len(got), len(want))
				}
				if fmt.Sprint(gotErr) != fmt.Sprint(wantErr) {
					t.Fatalf("%d at once: error %v, one reader %v", frames, gotErr, wantErr)
				}
				if fmt.Sprint(gotTrail) != fmt.Sprint(wantTrail) {
					t.Fatalf("%d at once: trailing %+v, one reader %+v", frames, gotTrail, wantTrail)
				}
				if !slices.EqualFunc(gotPts, wantPts, func(a, b Point) bool { return a.Out == b.Out && a.In == b.In && a.Member == b.Member }) {
					t.Fatalf("%d at once: %d points %v, one reader %d %v", frames, len(gotPts), gotPts, len(wantPts), wantPts)
				}
			}
			if in.name == "zstd-bad-frame" && wantErr == nil {
				t.Fatal("the damaged frame decodes")
			}
			if n := budget.Held(); n != 0 {
				t.Fatalf("%d tokens not given back", n)
			}
		})
	}
}

// TestFramesShareTheBudget: files read at once, whose frames run ahead
// under a budget far smaller than a frame (two pieces, shared by the three files),
// still decode whole and right (the frame being read never waits for the
// budget), and every piece's token is back once they are read or closed
// half-way.
func TestFramesShareTheBudget(t *testing.T) {
	budget := NewFrameBudget(2 * aheadPiece)
	d := data(9, 6<<20)
	files := [][]byte{compresstest.ZstdFrames(t, d, 3<<20), compresstest.ZstdFrames(t, d[:5<<20], 1<<20), compresstest.ZstdFrames(t, d, 256<<10)}
	errs := make(chan error, len(files))
	for _, z := range files {
		go func() {
			got, _, _, err := decodeAll(t, z, Zstd, 3, 200<<10, budget)
			if err == nil && !bytes.Equal(got, d[:len(got)]) || len(got) < 5<<20 {
				err = fmt.Errorf("%d bytes decoded, not the data", len(got))
			}
			errs <- err
		}()
	}
	for range files {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	// Closed half-way: the pieces decoded ahead give their tokens back.
	f := NewFile(bytes.NewReader(files[2]), int64(len(files[2])), Zstd, nil, Options{ReadAhead: true, Frames: 3, Budget: budget})
	if _, err := f.ReadAt(make([]byte, 100), 1<<20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if n := budget.Held(); n != 0 {
		t.Fatalf("%d tokens not given back", n)
	}
}
