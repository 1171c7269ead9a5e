package format

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/xffidx/xffidx/format/capgen"
)

func corpusFiles(t testing.TB) []string {
	files, _ := filepath.Glob("../testdata/corpus/*.pcap*")
	if len(files) == 0 {
		t.Skip("no corpus in testdata/corpus")
	}
	return files
}

// walkAll walks a whole file sequentially, resyncing past bad bytes, and
// returns the record and block offsets and the count of skipped bytes.
func walkAll(t testing.TB, data []byte) (offs []int64, skipped int) {
	offs, skipped, _ = walkContexts(t, data)
	return offs, skipped
}

// snapshot is the walker's context from a file offset on.
type snapshot struct {
	from int64
	w    Walker
}

func walkContexts(t testing.TB, data []byte) (offs []int64, skipped int, ctxs []snapshot) {
	w := Walker{Kind: Detect(data)}
	pos := 0
	if w.Kind == KindPcap {
		sec, err := ParsePcapHeader(data)
		if err != nil {
			return nil, 0, nil
		}
		w.Sec, pos = sec, pcapHeaderLen
	}
	for steps := 0; pos < len(data); steps++ {
		if steps > len(data) {
			t.Fatalf("no progress at %d", pos)
		}
		rec, n, st := w.Next(data, 0, pos)
		switch st {
		case Packet:
			if rec.Offset != int64(pos) || n < len(rec.Data) || pos+n > len(data) || len(rec.Data) > MaxCapLen {
				t.Fatalf("record at %d: size %d, data %d, offset %d", pos, n, len(rec.Data), rec.Offset)
			}
			offs = append(offs, rec.Offset)
			pos += n
		case Header:
			offs = append(offs, int64(pos)) // a resync may land on any block
			pos += n
			c := w
			c.Sec.Ifaces = append([]Interface(nil), w.Sec.Ifaces...)
			ctxs = append(ctxs, snapshot{int64(pos), c})
		case Short:
			return offs, skipped, ctxs
		case Bad:
			p, ok := w.Sync(data, 0, pos+1, true)
			if !ok {
				return offs, skipped + len(data) - pos, ctxs
			}
			skipped += p - pos
			pos = p
		}
	}
	return offs, skipped, ctxs
}

func TestCorpusWalksCleanly(t *testing.T) {
	for _, f := range corpusFiles(t) {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		offs, skipped := walkAll(t, data)
		if skipped != 0 || len(offs) < 2 {
			t.Errorf("%s: %d packets, %d bytes skipped", filepath.Base(f), len(offs), skipped)
		}
	}
}

// TestSyncFindsEveryRecord: from (almost) any byte offset, a resync lands on
// the next true record boundary of a real capture. A resync is a heuristic:
// a header misread at a lucky offset can chain into true records, so a few
// misses are allowed; ingest never relies on a resync at chunk boundaries
// (the sequential walk from the previous chunk decides), only after real
// corruption.
func TestSyncFindsEveryRecord(t *testing.T) {
	samples, misses := 0, 0
	defer func() {
		t.Logf("%d of %d resyncs landed elsewhere", misses, samples)
		if misses*200 > samples {
			t.Errorf("%d of %d resyncs landed elsewhere (more than 0.5%%)", misses, samples)
		}
	}()
	for _, f := range corpusFiles(t) {
		data, _ := os.ReadFile(f)
		offs, _, ctxs := walkContexts(t, data)
		w := Walker{Kind: Detect(data)}
		if w.Kind == KindPcap {
			w.Sec, _ = ParsePcapHeader(data)
		}
		next := 0
		for from := int(offs[0]); from < len(data); from += 1 + from%97 {
			for next < len(offs) && offs[next] < int64(from) {
				next++
			}
			for _, c := range ctxs {
				if next < len(offs) && c.from <= offs[next] {
					w = c.w
				}
			}
			p, ok := w.Sync(data, 0, from, true)
			if next == len(offs) {
				if ok {
					t.Errorf("%s: sync from %d found %d past the last record", filepath.Base(f), from, p)
				}
				continue
			}
			samples++
			if !ok || int64(p) != offs[next] {
				misses++
				t.Logf("%s: sync from %d = %d %v, want %d", filepath.Base(f), from, p, ok, offs[next])
			}
		}
	}
}

func TestPcapngTimestampResolutions(t *testing.T) {
	cases := []struct {
		resol uint8
		raw   uint64
		want  int64
	}{
		{6, 1_500_000, 1_500_000_000},
		{9, 1_500_000_001, 1_500_000_001},
		{3, 1500, 1_500_000_000},
		{12, 1_500_000_000_001, 1_500_000_000},
		{0x80 | 10, 1024 + 512, 1_500_000_000},
		{0x80 | 40, 1<<40 + 1<<39, 1_500_000_000},
	}
	for _, c := range cases {
		if got := (Interface{TSResol: c.resol}).Nanos(c.raw); got != c.want {
			t.Errorf("resol %#x raw %d: %d, want %d", c.resol, c.raw, got, c.want)
		}
	}
}

// TestHostileLengths: captured lengths above libpcap's maximum are
// corruption, never allocated; one above the file's snap length is read (as
// libpcap and tshark read it), but a resync does not land on it.
func TestHostileLengths(t *testing.T) {
	hdr := make([]byte, 24+16+100)
	binary.LittleEndian.PutUint32(hdr, pcapMagicMicro)
	binary.LittleEndian.PutUint16(hdr[4:], 2)
	binary.LittleEndian.PutUint32(hdr[16:], 65535)
	binary.LittleEndian.PutUint32(hdr[20:], 1)
	binary.LittleEndian.PutUint32(hdr[24+8:], 0xffffff00)
	binary.LittleEndian.PutUint32(hdr[24+12:], 0xffffff00)
	sec, err := ParsePcapHeader(hdr)
	if err != nil {
		t.Fatal(err)
	}
	w := Walker{Kind: KindPcap, Sec: sec}
	if _, _, st := w.Next(hdr, 0, 24); st != Bad {
		t.Errorf("caplen 0xffffff00: status %d, want Bad", st)
	}
	binary.LittleEndian.PutUint32(hdr[24+8:], MaxCapLen+1)
	binary.LittleEndian.PutUint32(hdr[24+12:], MaxCapLen+1)
	if _, _, st := w.Next(hdr, 0, 24); st != Bad {
		t.Errorf("caplen %d: status %d, want Bad", MaxCapLen+1, st)
	}
	// 100 bytes, above the snap length of 64, four in a row.
	binary.LittleEndian.PutUint32(hdr[16:], 64)
	if w.Sec, err = ParsePcapHeader(hdr); err != nil {
		t.Fatal(err)
	}
	rec := hdr[24:]
	binary.LittleEndian.PutUint32(rec[8:], 100)
	binary.LittleEndian.PutUint32(rec[12:], 100)
	binary.BigEndian.PutUint16(rec[16+12:], 0x0800)
	var four []byte
	for range 4 {
		four = append(four, rec...)
	}
	if r, n, st := w.Next(four, 0, 0); st != Packet || n != 116 || len(r.Data) != 100 {
		t.Errorf("caplen above snaplen: status %d, size %d, want a packet of 116 bytes", st, n)
	}
	if p, ok := w.Sync(four, 0, 0, true); ok {
		t.Errorf("a resync landed at %d on records above the snap length", p)
	}
}

// FuzzWalk feeds arbitrary bytes to the walker: it must never panic, never
// return a record outside the buffer, and always make progress.
func FuzzWalk(f *testing.F) {
	for _, name := range []string{"xff_two_ips_small.pcap", "fmt_nsec_bigendian.pcap", "fmt_sll2.pcap", "fmt_pcapng_2if_proxy_http.pcapng"} {
		if b, err := os.ReadFile("../testdata/corpus/" + name); err == nil {
			f.Add(b[:min(len(b), 4096)])
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		walkAll(t, data)
		// Also as a window starting mid-file, with both kinds of context.
		for _, k := range []Kind{KindPcap, KindPcapNG} {
			w := Walker{Kind: k, Sec: Section{Ifaces: []Interface{{LinkType: 1, SnapLen: 65535, TSResol: 6}}}}
			if p, ok := w.Sync(data, 1000, 0, false); ok {
				if p < 0 || p >= len(data) {
					t.Fatalf("sync returned %d of %d", p, len(data))
				}
				w.Next(data, 1000, p)
			}
		}
	})
}

// TestSyncCostIsLinear: a resync crosses any byte pattern checking few
// positions as the start of a chain of records: zero-filled regions (a
// sparse or preallocated capture), records of zeros, 0xff fill, random
// bytes. It then lands on the first true record after them.
func TestSyncCostIsLinear(t *testing.T) {
	const region = 8 << 20
	valid := capgen.NewPcapWriter(262144, capgen.LinkEthernet, false, false)
	for i := range 6 {
		cli := netip.MustParseAddrPort(fmt.Sprintf("10.0.0.2:%d", 40000+i))
		srv := netip.MustParseAddrPort("10.0.1.8:80")
		valid.Packet(1700000000, uint32(i), capgen.TCPFrame(cli, srv, 1, 1, 0x18, []byte("GET / HTTP/1.1\r\nX-Forwarded-For: 192.0.2.1\r\n\r\n")))
	}
	records := valid.Bytes()[24:]
	zeroRecords := capgen.NewPcapWriter(262144, capgen.LinkEthernet, false, false)
	for range region / (MaxCapLen + 16) {
		zeroRecords.Record(1700000000, 0, MaxCapLen, MaxCapLen, make([]byte, MaxCapLen))
	}
	random := make([]byte, region)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	cases := []struct {
		name    string
		pattern []byte
		checks  int // at most
	}{
		{"zeros", make([]byte, region), 64},
		{"zero records", zeroRecords.Bytes()[24:], 64 * region / MaxCapLen},
		{"0xff", bytes.Repeat([]byte{0xff}, region), 64},
		{"random", random, region / 4096},
	}
	for _, c := range cases {
		sec, err := ParsePcapHeader(valid.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		w := Walker{Kind: KindPcap, Sec: sec}
		data := append(slices.Clip(c.pattern), records...)
		p, ok := w.Sync(data, 0, 1, true)
		if !ok || p != len(c.pattern) || w.chainChecks > c.checks {
			t.Errorf("%s: sync at %d %v after %d chain checks; want %d after at most %d", c.name, p, ok, w.chainChecks, len(c.pattern), c.checks)
		}
	}

	// pcapng: zeros before a section.
	ng := capgen.NewPcapngWriter()
	ng.Interface(capgen.LinkEthernet, 262144)
	for i := range 4 {
		ng.Record(0, uint64(i), 60, 60, make([]byte, 60))
	}
	w := Walker{Kind: KindPcapNG}
	data := append(make([]byte, region), ng.Bytes()...)
	if p, ok := w.Sync(data, 0, 0, true); !ok || p != region || w.chainChecks > 64 {
		t.Errorf("pcapng zeros: sync at %d %v after %d chain checks; want %d", p, ok, w.chainChecks, region)
	}
}

// TestSkipEmpty: a run of records that captured nothing is counted whole,
// with its timestamps, up to a record that captured something or the
// position given.
func TestSkipEmpty(t *testing.T) {
	p := capgen.NewPcapWriter(262144, capgen.LinkEthernet, false, false)
	p.Record(0, 0, 0, 0, nil)
	p.Record(1700000005, 7, 0, 60, nil)
	p.Record(1700000001, 2_000_000, 0, 0, nil) // 1700000003 s
	p.Record(0, 0, 0, 0, nil)
	p.Packet(1700000009, 0, make([]byte, 60))
	p.Record(1600000000, 0, 0, 0, nil)
	data := p.Bytes()
	sec, _ := ParsePcapHeader(data)
	w := Walker{Kind: KindPcap, Sec: sec}
	want := Empty{Records: 4, Bytes: 64, MinTS: 1700000003e9, MaxTS: 1700000005e9 + 7e3}
	if e := w.SkipEmpty(data, 24, len(data)); e != want {
		t.Errorf("run of 4: %+v, want %+v", e, want)
	}
	// Stopped after two records (a chunk's end): those starting before it.
	want = Empty{Records: 2, Bytes: 32, MinTS: 1700000005e9 + 7e3, MaxTS: 1700000005e9 + 7e3}
	if e := w.SkipEmpty(data, 24, 24+17); e != want {
		t.Errorf("stopped at 41: %+v, want %+v", e, want)
	}
	// The last record: a run of one; then a header cut short is left alone.
	last := len(data) - 16
	if e := w.SkipEmpty(data, last, len(data)); e.Records != 1 {
		t.Errorf("last record: %+v", e)
	}
	if e := w.SkipEmpty(data[:len(data)-1], last, len(data)); e.Records != 0 {
		t.Errorf("cut header: %+v", e)
	}
}
