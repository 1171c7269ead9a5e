package index

import (
	"net/netip"
	"testing"

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
