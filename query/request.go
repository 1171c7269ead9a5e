package query

import (
	"net/netip"

	"github.com/xffidx/xffidx/format/xff"
)

// httpRequest is one HTTP/1.x request header block, or the part of one, found
// in a TCP payload.
type httpRequest struct {
	// Method, Target and Host come from the request line and the first Host
	// header. They are empty for a block begun in an earlier segment (Cont):
	// its request line is not in this packet.
	Method, Target, Host []byte
	Cont                 bool
	// Header is the forwarding header whose lines Lines are.
	Header xff.Header
	Lines  []xffValue // lines of Header (and obs-folds of them), in order
	// Open: the payload ended inside this block; more header lines, XFF lines
	// among them, may follow in the next segment.
	Open bool
	// LastCut: the payload ended in the middle of a line of this block.
	LastCut bool
	// Tail is that cut line when it is not yet a complete "name:" (it may be
	// a header name split across segments).
	Tail []byte
	// CutLine is the whole cut line (name included) when LastCut.
	CutLine []byte

	addrs  []netip.Addr // the list's addresses, once holds asked (a short list: a slice costs less than a map)
	parsed bool
	client *clientOf // the --client-only answer, once asked
}

// clientOf is the --client-only rule's answer for one request.
type clientOf struct {
	addr      netip.Addr
	ok        bool // addr is the client
	undecided bool // the list could not be read whole
}

type xffValue struct {
	Value []byte
	Cut   bool // the payload ended before the line's end of line
	// Joined: the value was completed from the next segment, as the build
	// stored it; the line's own end is in that segment.
	Joined bool
}

// parseRequests splits a TCP payload into request header blocks with
// format/xff's scanner, the one the build used, and arranges the lines of
// header h by request. With inHeaders the payload continues a header block begun in an
// earlier segment. malformed says the scan stopped at a line inside a header
// block that is not a header line.
func parseRequests(p []byte, inHeaders bool, h xff.Header) (reqs []httpRequest, malformed bool) {
	var res xff.Result
	xff.Scan(&res, p, inHeaders)
	reqs = make([]httpRequest, len(res.Requests))
	for i, ri := range res.Requests {
		reqs[i] = httpRequest{Method: ri.Method, Target: ri.Target, Host: ri.Host, Cont: ri.Cont, Header: h}
	}
	for _, l := range res.Lines {
		if l.Header != h {
			continue
		}
		r := &reqs[l.Request]
		r.Lines = append(r.Lines, xffValue{Value: l.Value, Cut: l.Cut})
	}
	if n := len(reqs); n > 0 && res.Open {
		last := &reqs[n-1]
		last.Open, last.LastCut, last.Tail, last.CutLine = true, res.LastCut, res.Tail, res.CutLine
	}
	return reqs, res.Malformed
}
