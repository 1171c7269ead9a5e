package index

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/xffidx/xffidx/format/xff"
)

// TestPrefixRange: a key is in a prefix's range exactly when its address is
// in the prefix.
func TestPrefixRange(t *testing.T) {
	addrs := []string{"0.0.0.0", "10.0.0.0", "10.0.0.255", "10.0.1.0", "10.255.255.255", "11.0.0.0", "255.255.255.255",
		"::", "2001:db8::", "2001:db8::1", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", "2001:db9::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"}
	prefixes := []string{"10.0.0.0/24", "10.0.0.0/8", "0.0.0.0/0", "255.255.255.255/32", "255.0.0.0/8", "10.0.0.1/32",
		"2001:db8::/32", "::/0", "ffff::/16", "2001:db8::1/128", "::ffff:10.0.0.0/104"}
	for _, ps := range prefixes {
		p := netip.MustParsePrefix(ps)
		lo, hi := PrefixRange(p)
		for _, as := range addrs {
			a := netip.MustParseAddr(as)
			k := HitKey(nil, a, 1, 1, xff.CFConnectingIP)
			in := bytes.Compare(k, lo) >= 0 && bytes.Compare(k, hi) < 0
			want := p.Contains(a)
			if p.Addr().Is4In6() {
				want = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96).Contains(a)
			}
			if in != want {
				t.Errorf("%s: %s in range = %v, want %v", ps, as, in, want)
			}
		}
	}
}

func TestHitKeyRoundTrip(t *testing.T) {
	for _, s := range []string{"203.0.113.7", "2001:db8::1", "::ffff:192.0.2.5"} {
		a := netip.MustParseAddr(s)
		for h := range xff.NumHeaders {
			k := HitKey(nil, a, 42, 1<<40+3, h)
			got, ok := decodeHitKey(k)
			if want := (hitKey{a.Unmap(), 42, 1<<40 + 3, h}); !ok || got != want {
				t.Errorf("%s: %+v %v, want %+v", s, got, ok, want)
			}
		}
	}
}
