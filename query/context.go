package query

import (
	"bytes"
	"net/netip"
	"slices"

	"github.com/xffidx/xffidx/format/xff"
	"github.com/xffidx/xffidx/index"
)

// packetInfo is the HTTP request context of one hit packet: its request
// header blocks with their XFF lines, reconciled with the raw value the build
// stored for the packet.
type packetInfo struct {
	reqs []httpRequest
	// exact: the XFF lines found here are exactly the ones the build indexed
	// (the stored raw value, where there is one, is their join). When false
	// the lines are what this packet alone shows.
	exact bool
}

// parsePacket parses a hit packet's TCP payload for the lines of header h.
// raw is the value the build stored for it (index.Hit.Raw), nil when the
// packet alone shows its values.
func parsePacket(payload, raw []byte, h xff.Header) packetInfo {
	pi := parsePacketLines(payload, raw, h)
	if len(raw) >= xff.MaxValue {
		// The build capped the value it joined: the list is not whole.
		pi.exact = false
	}
	return pi
}

func parsePacketLines(payload, raw []byte, h xff.Header) packetInfo {
	if xff.StartsRequest(payload) {
		reqs, _ := parseRequests(payload, false, h)
		return reconcile(reqs, raw)
	}
	// A continuation of a header block begun in an earlier segment (the build
	// checked that segment). When that segment ended inside a line, the build
	// skipped the first line here; the stored value tells which it was.
	reqs, _ := parseRequests(payload, true, h)
	pi := reconcile(reqs, raw)
	if pi.exact {
		return pi
	}
	if nl := bytes.IndexByte(payload, '\n'); nl >= 0 {
		reqs, _ := parseRequests(payload[nl+1:], true, h)
		if pi2 := reconcile(reqs, raw); pi2.exact {
			return pi2
		}
	}
	return pi
}

// reconcile checks the parsed XFF lines against the stored raw value and,
// where the build completed a line from the next TCP segment (a value split
// across segments, or a header name split across them), completes it the
// same way.
func reconcile(reqs []httpRequest, raw []byte) packetInfo {
	pi := packetInfo{reqs: reqs}
	if raw == nil {
		pi.exact = true
		return pi
	}
	var all []*xffValue
	for i := range reqs {
		for j := range reqs[i].Lines {
			all = append(all, &reqs[i].Lines[j])
		}
	}
	join := func(ls []*xffValue) []byte {
		var b []byte
		for i, l := range ls {
			if i > 0 {
				b = append(b, ", "...)
			}
			b = append(b, l.Value...)
		}
		return b
	}
	joined := join(all)
	n := len(all)
	if bytes.Equal(joined, raw) {
		if n > 0 && all[n-1].Cut {
			// The build completed the cut line from the next segment and
			// found nothing more (a line split between CR and LF).
			all[n-1].Cut, all[n-1].Joined = false, true
		}
		pi.exact = true
		return pi
	}
	if n > 0 && all[n-1].Cut {
		// The last value goes on in the next segment: the stored value is
		// the earlier lines, then the whole of that one.
		prefix := join(all[:n-1])
		if n > 1 {
			prefix = append(prefix, ", "...)
		}
		if rest, ok := bytes.CutPrefix(raw, prefix); ok && bytes.HasPrefix(rest, all[n-1].Value) {
			all[n-1].Value, all[n-1].Cut, all[n-1].Joined = rest, false, true
			pi.exact = true
			return pi
		}
	}
	if len(reqs) > 0 {
		last := &reqs[len(reqs)-1]
		if last.Tail != nil && last.Header.IsNamePrefix(last.Tail) {
			// "X-Forwar" | "ded-For: ...": the build added the joined line.
			prefix := joined
			if n > 0 {
				prefix = append(prefix, ", "...)
			}
			if rest, ok := bytes.CutPrefix(raw, prefix); ok {
				last.Lines = append(last.Lines, xffValue{Value: rest, Joined: true})
				pi.exact = true
				return pi
			}
		}
	}
	return pi
}

// requestOf returns the request whose XFF list holds a; else the last
// request with XFF lines (a value completed from the next segment is at the
// end); nil if there is none.
func (pi *packetInfo) requestOf(a netip.Addr) *httpRequest {
	var lastWith *httpRequest
	for i := range pi.reqs {
		r := &pi.reqs[i]
		if len(r.Lines) == 0 {
			continue
		}
		lastWith = r
		if r.holds(a) {
			return r
		}
	}
	return lastWith
}

// holds reports whether a is an element of the request's list. The list is
// parsed once per request: a packet may hold thousands of addresses, each a
// hit asking.
// heldBy reports whether the packet still shows the hits the build found
// in it, where it can tell: a packet that begins a request and has no
// request records is one the build read whole, so each hit's address is in
// one of its requests' lists. Other packets (continuations, and those of a
// schema 2 index whose value was stored) are not judged.
func (pi *packetInfo) heldBy(payload []byte, hits []index.Hit) bool {
	if len(hits) == 0 || len(hits[0].Requests) > 0 || hits[0].Raw != nil || !xff.StartsRequest(payload) {
		return true
	}
	for _, h := range hits {
		r := pi.requestOf(h.Addr)
		if r == nil || !r.holds(h.Addr) {
			return false
		}
	}
	return true
}

func (r *httpRequest) holds(a netip.Addr) bool {
	if !r.parsed {
		r.parsed = true
		for _, l := range r.Lines {
			r.Header.Elements(l.Value, l.Cut, func(e []byte) {
				if b, ok := xff.ParseAddr(e); ok {
					r.addrs = append(r.addrs, b)
				}
			})
		}
	}
	return slices.Contains(r.addrs, a)
}
