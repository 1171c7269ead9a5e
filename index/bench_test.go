package index

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/xffidx/xffidx/format"
	"github.com/xffidx/xffidx/format/xff"
)

func BenchmarkHitKey(b *testing.B) {
	addrs := []netip.Addr{netip.MustParseAddr("203.0.113.7"), netip.MustParseAddr("2001:db8::1")}
	var key []byte
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		key = HitKey(key[:0], addrs[i&1], 7, int64(i)*1514, xff.XForwardedFor)
		i++
	}
}

func BenchmarkDecodeHitKey(b *testing.B) {
	key := HitKey(nil, netip.MustParseAddr("2001:db8::1"), 7, 123456789, xff.Forwarded)
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := decodeHitKey(key); !ok {
			b.Fatal("bad key")
		}
	}
}

// BenchmarkCatalogEntry decodes one catalog entry of a typical capture:
// the binary encoding of schema 4 against the JSON of schema 3, side by
// side.
func BenchmarkCatalogEntry(b *testing.B) {
	f := FileInfo{ID: 123456, Path: "/var/capture/cap-20260102100000.pcap", Size: 1 << 30, ModTime: time.Now(), Format: "pcap", LinkTypes: []uint32{1},
		Packets: 1234567, Hits: 23456, XFFLines: 23456, Headers: xff.AllHeaders, Addresses: 34567, FirstTS: time.Now(), LastTS: time.Now(),
		Sections: []format.Section{{Ifaces: []format.Interface{{LinkType: 1, SnapLen: 65535, TSResol: 6}}}}, IndexedAt: time.Now(),
		Dev: 2049, Inode: 1234567, Fingerprint: strings.Repeat("0123456789abcdef", 4), FingerprintFrom: 24, FingerprintLen: 65536, ResumeAt: 1 << 30, Tracking: 1}
	bin := appendFileInfo(nil, &f)
	js, err := json.Marshal(f)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("binary", func(b *testing.B) {
		b.ReportAllocs()
		b.ReportMetric(float64(len(bin)), "bytes/entry")
		for b.Loop() {
			if _, err := decodeFileInfo(1, bin); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("json", func(b *testing.B) {
		b.ReportAllocs()
		b.ReportMetric(float64(len(js)), "bytes/entry")
		for b.Loop() {
			var g FileInfo
			if err := json.Unmarshal(js, &g); err != nil {
				b.Fatal(err)
			}
		}
	})
}
