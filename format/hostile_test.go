package format_test

import (
	"errors"
	"fmt"
	"strings"

	"net/netip"
	"os"
	"os/exec"
	"slices"
	"testing"

	"github.com/xffidx/xffidx/format"
	"github.com/xffidx/xffidx/format/capgen"
	"github.com/xffidx/xffidx/format/stream"
	"github.com/xffidx/xffidx/format/xff"
)

// readLikeBuild walks a capture as a sequential build does (records,
// resyncs past bytes that are not records, connection tracking) and
// returns how many packet records it read, how many bytes it skipped, and
// the X-Forwarded-For addresses found per frame number (from 1).
func readLikeBuild(t testing.TB, data []byte) (frames, skipped int, found map[int][]netip.Addr) {
	t.Helper()
	w := format.Walker{Kind: format.Detect(data)}
	pos := 0
	switch w.Kind {
	case format.KindPcap:
		sec, err := format.ParsePcapHeader(data)
		if err != nil {
			t.Fatal(err)
		}
		w.Sec, pos = sec, 24
	case format.KindUnknown:
		t.Fatal("not a capture")
	}
	tr := stream.New(stream.Options{})
	frameAt := map[int64]int{}
	for pos < len(data) {
		rec, n, st := w.Next(data, 0, pos)
		switch st {
		case format.Packet:
			frames++
			frameAt[rec.Offset] = frames
			tr.Record(&rec, rec.Offset+int64(rec.DataOff))
			pos += n
		case format.Header:
			pos += n
		case format.Short:
			skipped += len(data) - pos
			pos = len(data)
		case format.Bad:
			p, ok := w.Sync(data, 0, pos+1, true)
			if !ok {
				p = len(data)
			}
			skipped += p - pos
			pos = p
		}
	}
	tr.Finish()
	found = map[int][]netip.Addr{}
	for _, h := range tr.Drain().Hits {
		if h.Header == xff.XForwardedFor {
			found[frameAt[h.Off]] = append(found[frameAt[h.Off]], h.Addr)
		}
	}
	return frames, skipped, found
}

// addrsOf reads values as the build reads X-Forwarded-For values.
func addrsOf(values map[int][]string) map[int][]netip.Addr {
	out := map[int][]netip.Addr{}
	for fr, vs := range values {
		for _, v := range vs {
			xff.Elements([]byte(v), false, func(e []byte) {
				if a, ok := xff.ParseAddr(e); ok && !slices.Contains(out[fr], a) {
					out[fr] = append(out[fr], a)
				}
			})
		}
	}
	return out
}

// sameFound compares addresses per frame, in any order.
func sameFound(a, b map[int][]netip.Addr) bool {
	for _, m := range []map[int][]netip.Addr{a, b} {
		for fr, x := range m {
			if len(x) == 0 {
				delete(m, fr)
			}
			slices.SortFunc(x, netip.Addr.Compare)
		}
	}
	if len(a) != len(b) {
		return false
	}
	for fr, x := range a {
		if !slices.Equal(x, b[fr]) {
			return false
		}
	}
	return true
}

// foundDiff lists the frames where a and b (compared by sameFound) differ.
func foundDiff(a, b map[int][]netip.Addr) string {
	var frames []int
	for _, m := range []map[int][]netip.Addr{a, b} {
		for fr := range m {
			if !slices.Contains(frames, fr) {
				frames = append(frames, fr)
			}
		}
	}
	slices.Sort(frames)
	var s strings.Builder
	for _, fr := range frames {
		if !slices.Equal(a[fr], b[fr]) {
			fmt.Fprintf(&s, " frame %d: %v, want %v;", fr, a[fr], b[fr])
		}
	}
	return s.String()
}

// tsharkOrSkip runs tshark on a capture, skipping the test when tshark is
// not installed (failing under CI=true, where it must be).
func tsharkOrSkip(t *testing.T, data []byte) (map[int][]string, int) {
	t.Helper()
	values, frames, err := capgen.TsharkXFF(data)
	if errors.Is(err, exec.ErrNotFound) {
		if os.Getenv("CI") == "true" {
			t.Fatal("tshark not installed (CI=true)")
		}
		t.Skip("tshark not installed")
	}
	if err != nil {
		t.Fatal(err)
	}
	return values, frames
}

// checkHostile compares what a build finds in each case with the case's
// Want and, where tshark is installed, with what tshark shows.
func checkHostile(t *testing.T, cases []capgen.HostileCase) {
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			t.Parallel() // tshark takes seconds to start
			frames, skipped, found := readLikeBuild(t, c.Data)
			want := addrsOf(c.Want)
			if frames != c.Frames || skipped != 0 || !sameFound(found, want) {
				t.Errorf("read %d frames, skipped %d bytes; want %d frames, nothing skipped; frames found differently: %s", frames, skipped, c.Frames, foundDiff(found, want))
			}
			// tshark shows the addresses found but those the case says its
			// display hides.
			shown := map[int][]netip.Addr{}
			for fr, as := range want {
				for _, a := range as {
					if !slices.Contains(c.Hidden[fr], a.String()) {
						shown[fr] = append(shown[fr], a)
					}
				}
			}
			values, tframes := tsharkOrSkip(t, c.Data)
			if got := addrsOf(values); tframes != c.Frames || !sameFound(got, shown) {
				t.Errorf("tshark read %d frames; want %d; frames shown differently (tshark, want): %s", tframes, c.Frames, foundDiff(got, shown))
			}
		})
	}
}

// TestOddRecordsReadAsTsharkDoes: records that libpcap and tshark read
// although they break a rule of the format (captured length above the snap
// length, wire length below the captured length, a fraction of a second
// out of range, records that captured nothing) are read, with what they
// carry and what follows them.
func TestOddRecordsReadAsTsharkDoes(t *testing.T) {
	checkHostile(t, capgen.OddRecordCaptures())
}

// TestZeroRegionsReadAsTsharkDoes: a zero-filled region is a run of
// records that captured nothing, counted as tshark counts them, and the
// requests around it are read.
func TestZeroRegionsReadAsTsharkDoes(t *testing.T) {
	checkHostile(t, []capgen.HostileCase{capgen.ZeroRegionCapture()})
}

// TestEvasiveRequestsReadAsTsharkDoes: control bytes, bytes above 0x7f and
// spaces in a request target, control bytes in a value, header lines with
// invalid names before X-Forwarded-For, and a block padded with hundreds of
// X-Forwarded-For lines hide no address tshark shows. xffidx finds more
// where tshark's display stops (at a NUL or a bare CR in a value) and
// where it does not take a method for one.
func TestEvasiveRequestsReadAsTsharkDoes(t *testing.T) {
	checkHostile(t, []capgen.HostileCase{capgen.EvasiveRequests()})
}
