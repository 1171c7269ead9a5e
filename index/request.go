package index

import (
	"encoding/binary"
	"errors"

	"github.com/xffidx/xffidx/format/xff"
)

// Request is what the build recorded about one request behind the hits of a
// packet whose packet alone does not show it: a header block begun in an
// earlier TCP segment, or going on in later ones (the 'r' table).
type Request struct {
	// Seq is the TCP sequence number of the request's first byte; it tells
	// apart two requests with hits in one packet.
	Seq                  uint32
	Method, Target, Host []byte
	// First: this packet holds the request line.
	First bool
	// Complete: the header block was followed to its end, so Lists are the
	// request's whole lists (unless Capped).
	Complete bool
	// Lists holds, per header with lines in the request, all its values in
	// order, joined with ", ".
	Lists          [xff.NumHeaders][]byte
	Listed, Capped xff.HeaderSet
}

// requestVersion is the first byte of an 'r' value.
const requestVersion = 1

// maxRequestField bounds one field of a decoded request record.
const maxRequestField = 1 << 16

// appendRequest encodes r: version, flags (1 First, 2 Complete), method,
// target, host (uvarint length + bytes each), the Listed and Capped header
// sets (one byte each), then each listed header's list, in header order.
func appendRequest(b []byte, r *Request) []byte {
	flags := byte(0)
	if r.First {
		flags |= 1
	}
	if r.Complete {
		flags |= 2
	}
	b = append(b, requestVersion, flags)
	for _, f := range [][]byte{r.Method, r.Target, r.Host} {
		b = binary.AppendUvarint(b, uint64(len(f)))
		b = append(b, f...)
	}
	b = append(b, byte(r.Listed), byte(r.Capped))
	for h := range xff.NumHeaders {
		if r.Listed.Has(h) {
			b = binary.AppendUvarint(b, uint64(len(r.Lists[h])))
			b = append(b, r.Lists[h]...)
		}
	}
	return b
}

var errRequest = errors.New("request record does not decode")

// decodeRequest decodes an 'r' value. The fields alias v.
func decodeRequest(seq uint32, v []byte) (Request, error) {
	r := Request{Seq: seq}
	if len(v) < 2 || v[0] != requestVersion {
		return r, errRequest
	}
	r.First, r.Complete = v[1]&1 != 0, v[1]&2 != 0
	v = v[2:]
	field := func() []byte {
		n, k := binary.Uvarint(v)
		if k <= 0 || n > maxRequestField || n > uint64(len(v)-k) {
			v = nil
			return nil
		}
		f := v[k : k+int(n) : k+int(n)]
		v = v[k+int(n):]
		return f
	}
	r.Method, r.Target, r.Host = field(), field(), field()
	if len(v) < 2 {
		return r, errRequest
	}
	r.Listed, r.Capped = xff.HeaderSet(v[0]), xff.HeaderSet(v[1])
	v = v[2:]
	for h := range xff.NumHeaders {
		if r.Listed.Has(h) {
			if v == nil {
				return r, errRequest
			}
			r.Lists[h] = field()
		}
	}
	if v == nil {
		return r, errRequest
	}
	return r, nil
}

// RequestKey appends the key of a request record to dst.
func RequestKey(dst []byte, fid uint32, off int64, seq uint32) []byte {
	dst = append(dst, tagRequest)
	dst = binary.BigEndian.AppendUint32(dst, fid)
	dst = binary.BigEndian.AppendUint64(dst, uint64(off))
	return binary.BigEndian.AppendUint32(dst, seq)
}

// seekKey is the key of a compressed file's restart point at uncompressed
// offset off.
func seekKey(fid uint32, off int64) []byte {
	k := binary.BigEndian.AppendUint32([]byte{tagSeek}, fid)
	return binary.BigEndian.AppendUint64(k, uint64(off))
}

func decodeSeekKey(k []byte, fid uint32) (int64, bool) {
	if len(k) != 13 || k[0] != tagSeek || binary.BigEndian.Uint32(k[1:]) != fid || k[5]&0x80 != 0 {
		return 0, false
	}
	return int64(binary.BigEndian.Uint64(k[5:])), true
}

// stateKey is the key of a file's saved connection state.
func stateKey(fid uint32) []byte {
	return binary.BigEndian.AppendUint32([]byte{tagState}, fid)
}
