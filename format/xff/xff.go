// Package xff finds X-Forwarded-For header lines inside the header blocks of
// HTTP/1.x requests carried in a TCP payload, and parses their elements into
// canonical addresses.
//
// Only a real request header block counts: the payload must start with a
// request line (or continue a header block begun in an earlier segment), and
// the scan stops at the first line that is not a header. Bodies are skipped by
// Content-Length or chunked framing so that pipelined requests are searched
// too, but the same text inside a body, a response, or a look-alike header
// (X-Original-Forwarded-For) never matches.
package xff

import (
	"bytes"
	"net/netip"
	"unsafe"
)

// Name is the header name, lower case, with its colon: the needle a raw byte
// search looks for.
const Name = "x-forwarded-for:"

// MaxValue caps how much of one header value is kept: values are
// attacker-controlled and a real chain of proxies fits in far less.
const MaxValue = 4096

// Line is one X-Forwarded-For header line (or an obs-fold continuation of one).
type Line struct {
	Value []byte // the value, surrounding whitespace trimmed; aliases the payload
	Start int    // offset in the payload where the line starts
	// Request numbers the pipelined request the line belongs to, from 0:
	// each request's lines form one list.
	Request int
	// Cut: the payload ended before the line's end of line, so the value may
	// go on in the next segment, or was cut by the snap length.
	Cut bool
}

// Result describes a scanned payload.
type Result struct {
	Lines []Line
	// Request: the payload started with a request line or continued a header block.
	Request bool
	// Open: the payload ended inside a header block.
	Open bool
	// LastCut: the payload ended in the middle of a line of a header block.
	LastCut bool
	// Tail is that cut line when it is not a complete "name:" yet (it may be
	// a header name split across segments).
	Tail []byte
	// BodyDeclared: the header block open at the end announced a body
	// (Content-Length above 0, or chunked).
	BodyDeclared bool
	// Malformed: the scan stopped at a line inside a header block that is
	// not a header line.
	Malformed bool
	// CutLine is the whole cut last line (name included) when LastCut.
	CutLine []byte
	// Requests describes each header block, in order; Line.Request indexes it.
	Requests []RequestInfo
}

// RequestInfo is one request header block of a scanned payload.
type RequestInfo struct {
	// Method and Target come from the request line, Host from the first
	// Host header; Method and Target are empty for a block begun in an
	// earlier segment (Cont).
	Method, Target, Host []byte
	Cont                 bool
}

// ScanRequests scans a TCP payload that starts at a request boundary: one or
// more pipelined requests. Lines are appended to lines (pass a reused slice).
func ScanRequests(payload []byte, lines []Line) Result {
	res := Result{Lines: lines}
	Scan(&res, payload, false)
	return res
}

// ScanHeaders scans a payload that continues an open header block, then any
// requests that follow it.
func ScanHeaders(payload []byte, lines []Line) Result {
	res := Result{Lines: lines}
	Scan(&res, payload, true)
	return res
}

// Scan scans payload into res, reusing the memory of its Lines and
// Requests. With inHeaders the payload continues a header block begun in an
// earlier segment.
func Scan(res *Result, payload []byte, inHeaders bool) {
	*res = Result{Lines: res.Lines[:0], Requests: res.Requests[:0]}
	scan(res, payload, inHeaders)
}

// StartsRequest reports whether payload starts with an HTTP request line.
func StartsRequest(payload []byte) bool {
	p := skipEmptyLines(payload)
	n, _, _ := requestLine(payload[p:])
	return n > 0
}

func skipEmptyLines(p []byte) int {
	i := 0
	for i < len(p) && (p[i] == '\r' || p[i] == '\n') {
		i++
	}
	return i
}

func scan(res *Result, p []byte, inHeaders bool) {
	res.Request = inHeaders
	if inHeaders {
		res.Requests = append(res.Requests, RequestInfo{Cont: true})
	}
	pos := 0
	// A payload holds at most len(p)/16 requests; the bound makes the loop's
	// termination obvious even on hostile framing.
	for round := 0; round <= len(p)/16; round++ {
		if !inHeaders {
			pos += skipEmptyLines(p[pos:])
			n, method, target := requestLine(p[pos:])
			if n <= 0 {
				return
			}
			res.Requests = append(res.Requests, RequestInfo{Method: method, Target: target})
			res.Request = true
			pos += n
		}
		request := len(res.Requests) - 1
		req := &res.Requests[request]
		var contentLength int64 = -1
		chunked := false
		lastXFF := false
		for {
			if pos >= len(p) {
				res.Open, res.BodyDeclared = true, contentLength > 0 || chunked
				return
			}
			eol := bytes.IndexByte(p[pos:], '\n')
			cut := eol < 0
			end := pos + eol
			if cut {
				end = len(p)
			}
			line := p[pos:end]
			if !cut && len(line) > 0 && line[len(line)-1] == '\r' {
				line = line[:len(line)-1]
			}
			if len(line) == 0 && !cut {
				pos = end + 1
				break
			}
			if line[0] == ' ' || line[0] == '\t' {
				// obs-fold: the line continues the previous header's value.
				if lastXFF {
					res.Lines = append(res.Lines, Line{Value: trimValue(line), Start: pos, Cut: cut, Request: request})
				}
			} else {
				colon := headerName(line)
				if colon < 0 {
					if cut && isToken(line) {
						// A header name cut by the end of the payload.
						res.Open, res.LastCut, res.Tail, res.CutLine = true, true, line, line
						res.BodyDeclared = contentLength > 0 || chunked
					} else {
						res.Malformed = true
					}
					return
				}
				name, value := line[:colon], line[colon+1:]
				lastXFF = equalFold(name, Name[:len(Name)-1])
				switch {
				case lastXFF:
					res.Lines = append(res.Lines, Line{Value: trimValue(value), Start: pos, Cut: cut, Request: request})
				case equalFold(name, "host"):
					if req.Host == nil {
						req.Host = trimValue(value)
					}
				case equalFold(name, "content-length"):
					contentLength = parseLength(trimValue(value))
				case equalFold(name, "transfer-encoding"):
					chunked = containsFold(value, "chunked")
				}
			}
			if cut {
				res.Open, res.LastCut, res.CutLine = true, true, line
				res.BodyDeclared = contentLength > 0 || chunked
				return
			}
			pos = end + 1
		}
		inHeaders = false
		switch {
		case chunked:
			n, ok := skipChunked(p[pos:])
			if !ok {
				return
			}
			pos += n
		case contentLength > 0:
			if contentLength > int64(len(p)-pos) {
				return
			}
			pos += int(contentLength)
		}
	}
}

// requestLine returns the length of the request line (with its end of line)
// at the start of p, with its method and request target; n is 0 if p does not
// start with one.
func requestLine(p []byte) (n int, method, target []byte) {
	eol := bytes.IndexByte(p, '\n')
	if eol < 0 {
		return 0, nil, nil
	}
	line := p[:eol]
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	sp := bytes.IndexByte(line, ' ')
	if sp <= 0 || sp > 32 || !isToken(line[:sp]) {
		return 0, nil, nil
	}
	// HTTP/d.d at the end, after a space and a non-empty target.
	if len(line) < sp+2+8 {
		return 0, nil, nil
	}
	v := line[len(line)-8:]
	if line[len(line)-9] != ' ' || string(v[:5]) != "HTTP/" || !isDigit(v[5]) || v[6] != '.' || !isDigit(v[7]) {
		return 0, nil, nil
	}
	target = line[sp+1 : len(line)-9]
	for _, c := range target {
		if c <= ' ' || c == 0x7f {
			return 0, nil, nil
		}
	}
	return eol + 1, line[:sp], target
}

// headerName returns the index of the colon ending a valid field name, or -1.
func headerName(line []byte) int {
	colon := bytes.IndexByte(line, ':')
	if colon <= 0 || !isToken(line[:colon]) {
		return -1
	}
	return colon
}

func isToken(b []byte) bool {
	for _, c := range b {
		if !tchar[c] {
			return false
		}
	}
	return len(b) > 0
}

var tchar = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-32] = true, true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func trimValue(v []byte) []byte {
	return bytes.Trim(v, " \t\r")
}

// equalFold compares ASCII case-insensitively; want must be lower case.
func equalFold(b []byte, want string) bool {
	if len(b) != len(want) {
		return false
	}
	for i := range b {
		c := b[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != want[i] {
			return false
		}
	}
	return true
}

func containsFold(b []byte, want string) bool {
	for i := 0; i+len(want) <= len(b); i++ {
		if equalFold(b[i:i+len(want)], want) {
			return true
		}
	}
	return false
}

func parseLength(v []byte) int64 {
	if len(v) == 0 || len(v) > 15 {
		return -1
	}
	var n int64
	for _, c := range v {
		if !isDigit(c) {
			return -1
		}
		n = n*10 + int64(c-'0')
	}
	return n
}

// skipChunked skips a chunked body with its trailer; ok is false if the body
// does not end inside p.
func skipChunked(p []byte) (int, bool) {
	pos := 0
	for range 1 << 16 {
		eol := bytes.IndexByte(p[pos:], '\n')
		if eol < 0 {
			return 0, false
		}
		var size int64
		digits := 0
		for _, c := range p[pos : pos+eol] {
			v := hexVal(c)
			if v < 0 || digits == 15 {
				break
			}
			size = size<<4 | int64(v)
			digits++
		}
		if digits == 0 {
			return 0, false
		}
		pos += eol + 1
		if size == 0 {
			// Trailer fields, then an empty line.
			for {
				eol := bytes.IndexByte(p[pos:], '\n')
				if eol < 0 {
					return 0, false
				}
				empty := eol == 0 || (eol == 1 && p[pos] == '\r')
				pos += eol + 1
				if empty {
					return pos, true
				}
			}
		}
		if size+2 > int64(len(p)-pos) {
			return 0, false
		}
		pos += int(size)
		pos += skipEmptyLines(p[pos:min(len(p), pos+2)])
	}
	return 0, false
}

func hexVal(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c|0x20 >= 'a' && c|0x20 <= 'f':
		return int(c|0x20-'a') + 10
	}
	return -1
}

// Elements calls fn for each comma-separated element of an XFF value, with
// surrounding whitespace trimmed (an empty element is passed as empty).
// When lastIsCut is true the element after the last comma is incomplete and
// is not passed.
func Elements(value []byte, lastIsCut bool, fn func(elem []byte)) {
	for {
		comma := bytes.IndexByte(value, ',')
		if comma < 0 {
			if !lastIsCut {
				fn(trimValue(value))
			}
			return
		}
		fn(trimValue(value[:comma]))
		value = value[comma+1:]
	}
}

// ParseAddr reads one XFF element as an address. It accepts IPv4, IPv6 in any
// spelling, either with a port (1.2.3.4:80, [2001:db8::1]:443) or in
// brackets or quotes, and IPv4 with leading zeros, read as decimal
// (10.000.000.03 is 10.0.0.3, as HTTP servers and proxies log it; not octal as
// inet_aton would). IPv4-mapped IPv6 is unmapped to IPv4 and zones are
// dropped, so that one client has one spelling in the index.
func ParseAddr(elem []byte) (netip.Addr, bool) {
	if len(elem) >= 2 && elem[0] == '"' && elem[len(elem)-1] == '"' {
		elem = elem[1 : len(elem)-1]
	}
	if len(elem) == 0 || len(elem) > 64 {
		return netip.Addr{}, false
	}
	if elem[0] == '[' {
		end := bytes.IndexByte(elem, ']')
		if end < 0 {
			return netip.Addr{}, false
		}
		rest := elem[end+1:]
		if len(rest) > 0 && (rest[0] != ':' || !allDigits(rest[1:])) {
			return netip.Addr{}, false
		}
		elem = elem[1:end]
	} else if c := bytes.Count(elem, []byte{':'}); c == 1 {
		// Only IPv4 (or a name) can carry a port without brackets.
		colon := bytes.IndexByte(elem, ':')
		if !allDigits(elem[colon+1:]) {
			return netip.Addr{}, false
		}
		elem = elem[:colon]
	}
	if a, ok := parseDecimalIPv4(elem); ok {
		return a, true
	}
	if bytes.IndexByte(elem, ':') < 0 || len(elem) == 0 {
		return netip.Addr{}, false
	}
	// netip.ParseAddr keeps no reference to its argument but for a zone,
	// which is dropped below, so a string view of the bytes avoids a copy
	// on this per-hit path.
	a, err := netip.ParseAddr(unsafe.String(&elem[0], len(elem)))
	if err != nil {
		return netip.Addr{}, false
	}
	return a.WithZone("").Unmap(), true
}

func allDigits(b []byte) bool {
	for _, c := range b {
		if !isDigit(c) {
			return false
		}
	}
	return len(b) > 0 && len(b) <= 5
}

func parseDecimalIPv4(b []byte) (netip.Addr, bool) {
	var out [4]byte
	part, digits, val := 0, 0, 0
	for i := 0; i <= len(b); i++ {
		if i == len(b) || b[i] == '.' {
			if digits == 0 || val > 255 || part > 3 {
				return netip.Addr{}, false
			}
			out[part] = byte(val)
			part, digits, val = part+1, 0, 0
			continue
		}
		if !isDigit(b[i]) || digits == 3 {
			return netip.Addr{}, false
		}
		val = val*10 + int(b[i]-'0')
		digits++
	}
	if part != 4 {
		return netip.Addr{}, false
	}
	return netip.AddrFrom4(out), true
}

// EndsWithNamePrefix reports whether b ends with a line that is a proper,
// non-empty prefix of Name (case-insensitive): a header name that may go on
// in the next TCP segment. It reads at most the last 16 bytes.
func EndsWithNamePrefix(b []byte) bool {
	if len(b) == 0 || !nameByte[b[len(b)-1]] {
		return false // the common case, decided by one table look-up
	}
	tail := b[max(0, len(b)-len(Name)):]
	nl := bytes.LastIndexByte(tail, '\n')
	if nl < 0 {
		return false
	}
	return IsNamePrefix(tail[nl+1:])
}

// nameByte marks the bytes a proper prefix of Name can end with.
var nameByte = func() (t [256]bool) {
	for _, c := range []byte(Name[:len(Name)-1]) {
		t[c] = true
		if c >= 'a' && c <= 'z' {
			t[c-'a'+'A'] = true
		}
	}
	return t
}()

// IsNamePrefix reports whether b is a proper, non-empty prefix of Name.
func IsNamePrefix(b []byte) bool {
	return len(b) > 0 && len(b) < len(Name) && equalFold(b, Name[:len(b)])
}

// HasName reports whether line starts with Name (case-insensitive) and
// returns the value after it, trimmed.
func HasName(line []byte) ([]byte, bool) {
	if len(line) < len(Name) || !equalFold(line[:len(Name)], Name) {
		return nil, false
	}
	return trimValue(line[len(Name):]), true
}

// IndexName returns the index of the first case-insensitive occurrence of
// Name in b, or -1. It is the build's per-packet filter, so it looks at raw
// frame bytes: it cannot insist on a line start, because a TCP payload that
// begins with the header (a header block continued from an earlier segment)
// follows TCP header bytes, not a newline; ScanRequests and ScanHeaders decide.
func IndexName(b []byte) int {
	for off := 1; off < len(b); {
		i := indexDashPair(b[off:])
		if i < 0 {
			return -1
		}
		start := off + i - 1
		if start+len(Name) <= len(b) && equalFold(b[start:start+len(Name)], Name) {
			return start
		}
		off += i + 1
	}
	return -1
}
