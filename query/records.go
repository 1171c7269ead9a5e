package query

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"time"
)

// The aggregations of flows, top and --write sort records of bytes
// (package extsort). Their keys are encoded so that comparing the bytes
// compares the values: integers big-endian, strings escaped (0x00 is 0x00
// 0xff) and ended by 0x00 0x01, addresses as a family byte (4 before 6,
// as netip.Addr.Compare orders them) and sixteen bytes.

func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if s[i] == 0 {
			b = append(b, 0, 0xff)
		} else {
			b = append(b, s[i])
		}
	}
	return append(b, 0, 1)
}

func appendAddr(b []byte, a netip.Addr) []byte {
	fam := byte(6)
	if a.Is4() {
		fam = 4
	}
	a16 := a.As16()
	return append(append(b, fam), a16[:]...)
}

func appendAddrPort(b []byte, ap netip.AddrPort) []byte {
	return binary.BigEndian.AppendUint16(appendAddr(b, ap.Addr()), ap.Port())
}

func appendKey(b []byte, k flowKey) []byte {
	return appendString(appendAddrPort(appendAddrPort(b, k.lo), k.hi), k.proto)
}

// appendTime encodes a timestamp so that a zero one sorts last.
func appendTime(b []byte, t time.Time) []byte {
	if t.IsZero() {
		return binary.BigEndian.AppendUint64(append(b, 1), 0)
	}
	return binary.BigEndian.AppendUint64(append(b, 0), uint64(t.UnixNano())^1<<63)
}

var errRecord = errors.New("internal: an aggregation record does not decode")

// recordReader reads a record written with the functions above; the first
// error sticks (err) and makes every later read return zero values.
type recReader struct {
	b   []byte
	err error
}

func (r *recReader) fail() {
	r.err, r.b = errRecord, nil
}

func (r *recReader) bytes(n int) []byte {
	if r.err != nil || len(r.b) < n {
		r.fail()
		return make([]byte, n)
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *recReader) byte() byte { return r.bytes(1)[0] }

func (r *recReader) uint16() uint16 { return binary.BigEndian.Uint16(r.bytes(2)) }

func (r *recReader) uint64() uint64 { return binary.BigEndian.Uint64(r.bytes(8)) }

func (r *recReader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if r.err != nil || n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *recReader) string() string {
	var s []byte
	for r.err == nil {
		c := r.byte()
		if c != 0 {
			s = append(s, c)
			continue
		}
		switch r.byte() {
		case 0xff:
			s = append(s, 0)
		case 1:
			return string(s)
		default:
			r.fail()
		}
	}
	return ""
}

func (r *recReader) addr() netip.Addr {
	fam := r.byte()
	a := netip.AddrFrom16([16]byte(r.bytes(16)))
	if fam == 4 {
		return a.Unmap()
	}
	return a
}

func (r *recReader) addrPort() netip.AddrPort {
	a := r.addr()
	return netip.AddrPortFrom(a, r.uint16())
}

func (r *recReader) key() flowKey {
	lo := r.addrPort()
	hi := r.addrPort()
	return flowKey{lo, hi, r.string()}
}

func (r *recReader) time() time.Time {
	zero, v := r.byte(), r.uint64()
	if zero != 0 {
		return time.Time{}
	}
	return time.Unix(0, int64(v^1<<63)).UTC()
}
