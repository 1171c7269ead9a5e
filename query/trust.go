package query

import (
	"net/netip"
	"slices"

	"github.com/xffidx/xffidx/format/xff"
	"github.com/xffidx/xffidx/index"
)

// ClientAddr applies the --client-only rule to one request's list of header
// h (all its lines of h joined in order, each value given separately): it
// returns the right-most entry that is not in a trusted range, the address
// the last trusted proxy actually saw its peer use. Proxies append, so
// everything left of that entry was written by the client or by proxies
// nobody vouches for, and may be forged.
//
// Empty elements, and Forwarded elements without for=, are skipped. An element that is not an address ("unknown",
// garbage) is an untrusted entry like any other: if it is the right-most
// untrusted one, ok is false and no address counts. ok is also false when
// every entry is trusted. The packet's own source address is not part of the
// rule: only the list is.
func ClientAddr(h xff.Header, values [][]byte, trusted []netip.Prefix) (client netip.Addr, ok bool) {
	var elems [][]byte
	for _, v := range values {
		h.Elements(v, false, func(e []byte) {
			if len(e) > 0 {
				elems = append(elems, e)
			}
		})
	}
	for i := len(elems) - 1; i >= 0; i-- {
		a, isAddr := xff.ParseAddr(elems[i])
		if !isAddr {
			return netip.Addr{}, false
		}
		if !inPrefixes(a, trusted) {
			return a, true
		}
	}
	return netip.Addr{}, false
}

func inPrefixes(a netip.Addr, ps []netip.Prefix) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Verdicts of the --client-only rule for one hit.
const (
	clientNo = iota
	clientYes
	clientUndecided // the request's XFF list could not be read whole
)

// clientVerdict decides whether a is the client of some request of the
// packet whose XFF list holds it, and returns that request.
func (s *searcher) clientVerdict(pi *packetInfo, a netip.Addr) (int, *httpRequest) {
	verdict := clientNo
	found := false
	for i := range pi.reqs {
		req := &pi.reqs[i]
		if !req.holds(a) {
			continue
		}
		found = true
		c := s.requestClient(pi, req)
		if c.undecided {
			verdict = clientUndecided
			continue
		}
		if c.ok && c.addr == a {
			return clientYes, req
		}
	}
	if !found {
		return clientUndecided, nil
	}
	return verdict, nil
}

// requestClient applies the rule to one request's list, once per request
// (every hit of the request asks).
func (s *searcher) requestClient(pi *packetInfo, req *httpRequest) *clientOf {
	if req.client != nil {
		return req.client
	}
	req.client = &clientOf{}
	if !pi.exact {
		req.client.undecided = true
		return req.client
	}
	values := make([][]byte, len(req.Lines))
	for j, l := range req.Lines {
		values[j] = l.Value
	}
	if req.Open {
		// The block goes on in the next segment, and with it perhaps more
		// lines, appended by nearer proxies. A capture indexed with
		// connection tracking records such a request with its packet
		// (Hit.Requests); one indexed before it does not tell.
		req.client.undecided = true
		return req.client
	}
	req.client.addr, req.client.ok = ClientAddr(req.Header, values, s.opt.Trusted)
	return req.client
}

// recorded is a request the build recorded with a hit packet (index.Request),
// with what the query works out from it once.
type recorded struct {
	r      *index.Request
	addrs  [xff.NumHeaders][]netip.Addr // once holds asked (short lists: slices cost less than maps)
	parsed xff.HeaderSet
	client [xff.NumHeaders]*clientOf
}

// holds reports whether a is in the request's list of header h.
func (q *recorded) holds(h xff.Header, a netip.Addr) bool {
	if !q.r.Listed.Has(h) {
		return false
	}
	if !q.parsed.Has(h) {
		q.parsed |= xff.SetOf(h)
		h.Elements(q.r.Lists[h], q.r.Capped.Has(h), func(e []byte) {
			if b, ok := xff.ParseAddr(e); ok {
				q.addrs[h] = append(q.addrs[h], b)
			}
		})
	}
	return slices.Contains(q.addrs[h], a)
}

// clientOf applies the --client-only rule to the request's list of h: only
// a list the build read whole (the header block followed to its end, not
// capped) decides.
func (q *recorded) clientOf(h xff.Header, trusted []netip.Prefix) *clientOf {
	if q.client[h] == nil {
		c := &clientOf{}
		if !q.r.Complete || q.r.Capped.Has(h) {
			c.undecided = true
		} else {
			c.addr, c.ok = ClientAddr(h, [][]byte{q.r.Lists[h]}, trusted)
		}
		q.client[h] = c
	}
	return q.client[h]
}

// clientOfOrNil is clientOf on a request that may be missing (nil).
func (q *recorded) clientOfOrNil(h xff.Header, trusted []netip.Prefix) *clientOf {
	if q == nil {
		return nil
	}
	return q.clientOf(h, trusted)
}
