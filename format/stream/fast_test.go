package stream

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/xffidx/xffidx/format"
	"github.com/xffidx/xffidx/format/packet"
)

// sameDecode checks the fast decoder against packet.InnermostTCP on one
// frame: where it decodes, it must find what the general decoder finds.
func sameDecode(t *testing.T, linkType uint32, f []byte) {
	var d decoded
	ok, handled := fastTCP(linkType, f, &d)
	if !handled {
		return
	}
	seg, gok := packet.InnermostTCP(linkType, f)
	if ok != gok {
		t.Fatalf("frame %x: fast ok %v, general %v", f, ok, gok)
	}
	if !ok {
		return
	}
	key, dir := keyOf(&seg)
	if d.key != key || d.dir != dir || d.seq != seg.Seq || d.flags != seg.Flags || string(d.payload) != string(seg.Payload) || cap(d.payload) != cap(seg.Payload) {
		t.Fatalf("frame %x: fast %+v, general %+v", f, d, seg)
	}
}

// TestFastDecodeAgreesOnCorpus: on every frame of the corpus captures the
// fast path and the general decoder agree.
func TestFastDecodeAgreesOnCorpus(t *testing.T) {
	files, _ := filepath.Glob("../../testdata/corpus/*.pcap*")
	n := 0
	for _, path := range files {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		kind := format.Detect(b)
		w := format.Walker{Kind: kind}
		pos := 0
		if kind == format.KindPcap {
			if w.Sec, err = format.ParsePcapHeader(b); err != nil {
				t.Fatal(err)
			}
			pos = 24
		}
		for pos < len(b) {
			rec, size, st := w.Next(b, 0, pos)
			if st != format.Packet && st != format.Header {
				break
			}
			if st == format.Packet {
				sameDecode(t, rec.LinkType, rec.Data)
				n++
			}
			pos += size
		}
	}
	if n < 1000 {
		t.Fatalf("%d frames compared", n)
	}
}

func FuzzFastDecode(f *testing.F) {
	c := newCapture()
	c.frame(1, endpoint{ipA, 1}, endpoint{ipB, 2}, 7, flagACK, []byte("GET / HTTP/1.1\r\n\r\n"), 0)
	c.frame(1, endpoint{ip6A, 1}, endpoint{ip6B, 2}, 7, flagSYN, nil, 0)
	for _, r := range c.records(f) {
		f.Add(r.Data)
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		sameDecode(t, 1, frame)
	})
}
