package capgen

import "net/netip"

// rng is a splitmix64 generator. It is defined here rather than taken from
// math/rand so that a seed produces the same bytes with every Go release.
type rng struct{ s uint64 }

func newRNG(seed int64) rng {
	r := rng{s: uint64(seed)*0x2545f4914f6cdd1d ^ 0x6a09e667f3bcc909}
	r.u64()
	return r
}

func (r *rng) u64() uint64 {
	r.s += 0x9e3779b97f4a7c15
	z := r.s
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// intn returns a value in [0, n); n must be positive and below 2^32.
func (r *rng) intn(n int) int { return int(((r.u64() >> 32) * uint64(n)) >> 32) }

// float returns a value in [0, 1).
func (r *rng) float() float64 { return float64(r.u64()>>11) * (1.0 / (1 << 53)) }

func (r *rng) chance(p float64) bool { return r.float() < p }

// Well-known frequent client addresses. hotClient is the one that appears in
// about a quarter of all XFF requests.
var (
	hotClient  = netip.AddrFrom4([4]byte{198, 51, 100, 7})
	hotClient2 = netip.AddrFrom4([4]byte{198, 51, 100, 23})
	hotClient3 = netip.MustParseAddr("2001:db8::7")
	hotClient4 = netip.AddrFrom4([4]byte{203, 0, 113, 99})
	hotClient5 = netip.AddrFrom4([4]byte{192, 0, 2, 200})
)

// clientAddr draws an original-client address from a skewed distribution:
// 25% 198.51.100.7, 15% four other frequent addresses, then a long tail over
// 203.0.113.0/24, 192.0.2.0/24 and 2001:db8::/32.
func (r *rng) clientAddr() netip.Addr {
	u := r.intn(1000)
	switch {
	case u < 250:
		return hotClient
	case u < 310:
		return hotClient2
	case u < 350:
		return hotClient3
	case u < 380:
		return hotClient4
	case u < 400:
		return hotClient5
	case u < 650:
		return netip.AddrFrom4([4]byte{203, 0, 113, byte(1 + r.intn(254))})
	case u < 800:
		return netip.AddrFrom4([4]byte{192, 0, 2, byte(1 + r.intn(254))})
	}
	return r.tailV6()
}

// tailV6 draws from 2001:db8::/32 with a mix of compressible and
// incompressible shapes.
func (r *rng) tailV6() netip.Addr {
	var b [16]byte
	b[0], b[1], b[2], b[3] = 0x20, 0x01, 0x0d, 0xb8
	x := r.u64()
	y := r.u64()
	switch r.intn(3) {
	case 0: // 2001:db8:X:Y::Z
		b[4], b[5], b[6], b[7] = byte(x), byte(x>>8), byte(x>>16), byte(x>>24)
		b[14], b[15] = byte(y), byte(y>>8)
	case 1: // 2001:db8::Z
		b[14], b[15] = byte(y), byte(y>>8)|1
	default: // all bits random
		for i := 4; i < 12; i++ {
			b[i] = byte(x >> (8 * (i - 4)))
		}
		for i := 12; i < 16; i++ {
			b[i] = byte(y >> (8 * (i - 12)))
		}
	}
	return netip.AddrFrom16(b)
}

// proxyAddr draws the address of an intermediate proxy (a later element of
// a chain).
func (r *rng) proxyAddr() netip.Addr {
	switch r.intn(3) {
	case 0:
		return netip.AddrFrom4([4]byte{192, 0, 2, byte(1 + r.intn(254))})
	case 1:
		return netip.AddrFrom4([4]byte{203, 0, 113, byte(1 + r.intn(254))})
	}
	return r.tailV6()
}

// DecoyPrefix holds every address the generator places where an exact
// indexer must not find an XFF value (response bodies, POST bodies,
// look-alike headers, response headers). No Hit ever holds one.
var DecoyPrefix = netip.MustParsePrefix("100.64.0.0/10")

func (r *rng) decoyAddr() netip.Addr {
	return netip.AddrFrom4([4]byte{100, byte(64 + r.intn(64)), byte(r.intn(256)), byte(1 + r.intn(254))})
}
