package packet_test

import (
	"testing"
	"unsafe"

	"github.com/xffidx/xffidx/format/packet"
)

// fuzzLinkTypes are the link types the decoder handles, plus two it does not.
// The fuzzer picks one by index so its mutations stay on useful values.
var fuzzLinkTypes = [...]uint32{1, 113, 276, 101, 12, 14, 228, 229, 0, 108, 147, 0xFFFFFFFF}

func fuzzSel(lt uint32) uint8 {
	for i, v := range fuzzLinkTypes {
		if v == lt {
			return uint8(i)
		}
	}
	return 0
}

// FuzzInnermostTCP feeds hostile frames to the decoder: it must not panic,
// and a found payload must lie inside the frame it aliases.
func FuzzInnermostTCP(f *testing.F) {
	for _, c := range builtFrames(f) {
		f.Add(fuzzSel(c.linkType), c.frame)
	}
	// A handful of real frames per file: enough shapes, and the fuzzer's
	// start-up replay of the seed corpus stays short.
	for _, path := range listCorpus() {
		for i, rec := range readCapture(f, path) {
			if i >= 8 {
				break
			}
			f.Add(fuzzSel(rec.linkType), rec.data)
		}
	}
	f.Fuzz(func(t *testing.T, sel uint8, frame []byte) {
		lt := fuzzLinkTypes[int(sel)%len(fuzzLinkTypes)]
		seg, ok := packet.InnermostTCP(lt, frame)
		if !ok {
			if seg.Payload != nil || seg.SrcIP.IsValid() {
				t.Fatalf("ok=false but segment is not zero: %+v", seg)
			}
			return
		}
		if !seg.SrcIP.IsValid() || !seg.DstIP.IsValid() || seg.SrcIP.Is4() != seg.DstIP.Is4() {
			t.Fatalf("bad addresses %v -> %v", seg.SrcIP, seg.DstIP)
		}
		// The smallest frame with TCP is raw IPv4 (20) + TCP (20).
		if len(frame) < 40 {
			t.Fatalf("found TCP in a %d-byte frame", len(frame))
		}
		if seg.Payload == nil {
			t.Fatal("ok=true with a nil payload")
		}
		// Payload must alias frame: same backing array, within bounds.
		// Comparing addresses is the only way to tell a subslice from a copy.
		base := uintptr(unsafe.Pointer(unsafe.SliceData(frame)))
		p := uintptr(unsafe.Pointer(unsafe.SliceData(seg.Payload)))
		off := p - base // wraps to a huge value when p < base
		if off > uintptr(len(frame)) || uintptr(len(seg.Payload)) > uintptr(len(frame))-off {
			t.Fatalf("payload [%d:+%d] outside %d-byte frame", int(off), len(seg.Payload), len(frame))
		}
		// IP and TCP headers (40 bytes at least) precede a non-empty payload.
		// An empty one may point anywhere in the frame: Go does not advance
		// the pointer of a zero-capacity slice past the end.
		if len(seg.Payload) > 0 && off < 40 {
			t.Fatalf("payload at offset %d leaves no room for IP and TCP headers", off)
		}
	})
}
