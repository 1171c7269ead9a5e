package query

import (
	"bytes"
	"errors"
	"io"
	"net/netip"

	"github.com/xffidx/xffidx/format"
	"github.com/xffidx/xffidx/format/packet"
	"github.com/xffidx/xffidx/format/xff"
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
// packet whose XFF list holds it, and returns that request. rec is the
// packet's record, for following a header block into later segments.
func (s *searcher) clientVerdict(pi *packetInfo, a netip.Addr, rec format.Record) (int, *httpRequest) {
	verdict := clientNo
	found := false
	for i := range pi.reqs {
		req := &pi.reqs[i]
		if !req.holds(a) {
			continue
		}
		found = true
		c := s.requestClient(pi, req, rec)
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
func (s *searcher) requestClient(pi *packetInfo, req *httpRequest, rec format.Record) *clientOf {
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
		// lines, appended by nearer proxies: read them.
		var ok bool
		if values, ok = s.completeBlock(rec, req, values); !ok {
			req.client.undecided = true
			return req.client
		}
	}
	req.client.addr, req.client.ok = ClientAddr(req.Header, values, s.opt.Trusted)
	return req.client
}

// Bounds of following a header block, as the build's look-ahead: the next
// segment must be among the next lookRecords records, and a block is
// followed over at most maxFollow further segments.
const (
	lookRecords = 64
	maxFollow   = 3
	maxCutLine  = 64 << 10
	// lookWindowMax bounds one read of following records; it holds the
	// largest record a walk accepts.
	lookWindowMax = 4 << 20
)

// completeBlock follows the header block of req, the last block of the
// packet in rec and open at its end, into the next segments of the same TCP
// connection, and returns values with the XFF values found there appended
// (a value cut at the end of a segment is completed). ok is false when the
// rest of the block is not in the capture within the bounds, or the snap
// length cut a segment while the block was still open.
func (s *searcher) completeBlock(rec format.Record, req *httpRequest, values [][]byte) ([][]byte, bool) {
	if rec.CapLen < rec.OrigLen {
		return nil, false
	}
	seg, ok := packet.InnermostTCP(rec.LinkType, rec.Data)
	if !ok {
		return nil, false
	}
	values = values[:len(values):len(values)] // appends must not write into the caller's lines
	lastCut := req.LastCut
	cutLine := bytes.Clone(req.CutLine)
	cutIsOurs := lastCut && len(req.Lines) > 0 && (req.Lines[len(req.Lines)-1].Cut || req.Lines[len(req.Lines)-1].Joined)
	from := rec.Offset + int64(rec.Size)
	for range maxFollow {
		want := seg.Seq + uint32(len(seg.Payload))
		next, nrec, after, found := s.nextSegment(from, &seg, want)
		if !found {
			return nil, false
		}
		snapCut := nrec.CapLen < nrec.OrigLen
		p := next.Payload
		if lastCut {
			nl := bytes.IndexByte(p, '\n')
			if nl < 0 {
				// The cut line goes on through this whole segment.
				if snapCut || len(cutLine)+len(p) > maxCutLine {
					return nil, false
				}
				cutLine = append(cutLine, p...)
				seg, from = next, after
				continue
			}
			line := bytes.TrimRight(append(cutLine, p[:nl]...), "\r")
			switch {
			case cutIsOurs && len(line) > 0 && (line[0] == ' ' || line[0] == '\t'):
				values[len(values)-1] = bytes.Trim(line, " \t\r")
			case cutIsOurs:
				if h, v, ok := xff.MatchName(line); ok && h == req.Header {
					values[len(values)-1] = v
				}
			default:
				if h, v, ok := xff.MatchName(line); ok && h == req.Header {
					values = append(values, v)
				}
			}
			p = p[nl+1:]
			lastCut = false
		}
		if len(p) == 0 {
			// The segment ended at a line end: the block goes on.
			if snapCut {
				return nil, false
			}
			seg, from = next, after
			continue
		}
		blocks, _ := parseRequests(p, true, req.Header)
		if len(blocks) == 0 {
			return values, true
		}
		b := blocks[0]
		for _, l := range b.Lines {
			values = append(values, bytes.Clone(l.Value))
		}
		if !b.Open {
			return values, true // the block ended (a malformed line ends it too)
		}
		if snapCut {
			return nil, false
		}
		lastCut, cutLine = b.LastCut, bytes.Clone(b.CutLine)
		cutIsOurs = lastCut && len(b.Lines) > 0 && b.Lines[len(b.Lines)-1].Cut
		seg, from = next, after
	}
	return nil, false
}

// nextSegment finds, among the lookRecords packet records starting at file
// offset from, the next segment of seg's connection: same innermost 5-tuple
// and direction, sequence number want, with payload. It returns the segment
// (its payload copied), its record and the offset after it.
func (s *searcher) nextSegment(from int64, seg *packet.Segment, want uint32) (packet.Segment, format.Record, int64, bool) {
	var out packet.Segment
	var outRec format.Record
	var after int64
	found := false
	s.following(from, lookRecords, func(rec format.Record, end int64) bool {
		n, ok := packet.InnermostTCP(rec.LinkType, rec.Data)
		if !ok || n.Seq != want || len(n.Payload) == 0 || n.SrcPort != seg.SrcPort || n.DstPort != seg.DstPort || n.SrcIP != seg.SrcIP || n.DstIP != seg.DstIP {
			return true
		}
		n.Payload = bytes.Clone(n.Payload)
		rec.Data = nil
		out, outRec, after, found = n, rec, end, true
		return false
	})
	return out, outRec, after, found
}

// following calls fn for up to n packet records starting at file offset
// from, with the offset after each, until fn returns false. Section and
// interface blocks on the way are skipped (not applied), as in the build's
// look-ahead. It stops quietly at the end of the file or at bytes that are
// not a record.
func (s *searcher) following(from int64, n int, fn func(rec format.Record, end int64) bool) {
	info := s.r.info
	sec, ok := info.SectionAt(from)
	if !ok {
		return
	}
	kind := format.KindPcap
	if info.Format == format.KindPcapNG.String() {
		kind = format.KindPcapNG
	}
	w := format.Walker{Kind: kind, Sec: *sec}
	win := 256 << 10
	for n > 0 {
		size := int(min(int64(win), info.Size-from))
		if size <= 0 {
			return
		}
		if cap(s.ahead) < size {
			s.ahead = make([]byte, size)
		}
		buf := s.ahead[:size]
		if _, err := s.r.f.ReadAt(buf, from); err != nil && !errors.Is(err, io.EOF) {
			return
		}
		pos := 0
	walk:
		for n > 0 {
			rec, sz, st := w.Peek(buf, from, pos)
			switch st {
			case format.Header:
				pos += sz
			case format.Packet:
				n--
				pos += sz
				if !fn(rec, from+int64(pos)) {
					return
				}
			case format.Short:
				if from+int64(size) >= info.Size {
					return // a cut last record
				}
				if pos == 0 {
					if win >= lookWindowMax {
						return
					}
					win *= 4
				}
				break walk
			default:
				return
			}
		}
		from += int64(pos)
	}
}
