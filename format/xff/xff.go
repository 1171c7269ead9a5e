// Package xff finds the forwarding header lines that carry a client address
// (X-Forwarded-For, and Forwarded, X-Real-IP, True-Client-IP and
// CF-Connecting-IP) inside the header blocks of HTTP/1.x requests carried in
// a TCP payload, and parses their elements into canonical addresses.
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

// Name is the X-Forwarded-For header name, lower case, with its colon.
const Name = "x-forwarded-for:"

// Header names one of the forwarding headers. The numbers are stored in the
// index (see package index): add new headers at the end, never renumber.
type Header uint8

const (
	XForwardedFor  Header = iota // X-Forwarded-For: a comma-separated list
	Forwarded                    // RFC 7239: the for= parameter of each element
	XRealIP                      // X-Real-IP (nginx): one address
	TrueClientIP                 // True-Client-IP (Akamai, Cloudflare)
	CFConnectingIP               // CF-Connecting-IP (Cloudflare)
	NumHeaders                   // the number of headers; not a header
)

// String returns the header's canonical spelling.
func (h Header) String() string {
	switch h {
	case XForwardedFor:
		return "X-Forwarded-For"
	case Forwarded:
		return "Forwarded"
	case XRealIP:
		return "X-Real-IP"
	case TrueClientIP:
		return "True-Client-IP"
	case CFConnectingIP:
		return "CF-Connecting-IP"
	}
	return "unknown"
}

// nameOf returns the header's name, lower case, with its colon.
func (h Header) nameOf() string {
	switch h {
	case XForwardedFor:
		return Name
	case Forwarded:
		return "forwarded:"
	case XRealIP:
		return "x-real-ip:"
	case TrueClientIP:
		return "true-client-ip:"
	case CFConnectingIP:
		return "cf-connecting-ip:"
	}
	return ""
}

// HeaderSet is a set of headers, one bit per Header.
type HeaderSet uint8

// AllHeaders holds every header.
const AllHeaders HeaderSet = 1<<NumHeaders - 1

// SetOf returns the set of the given headers.
func SetOf(hs ...Header) HeaderSet {
	var s HeaderSet
	for _, h := range hs {
		s |= 1 << h
	}
	return s
}

// Has reports whether h is in the set.
func (s HeaderSet) Has(h Header) bool { return h < NumHeaders && s&(1<<h) != 0 }

// ParseHeader reads a header name in any letter case, without its colon.
func ParseHeader(name string) (Header, bool) {
	return headerOf([]byte(name))
}

// headerOf returns the header a field name (without colon) names.
func headerOf(name []byte) (Header, bool) {
	// The lengths tell the names apart but for two of 9 bytes.
	switch len(name) {
	case 15:
		return XForwardedFor, equalFold(name, Name[:15])
	case 9:
		if equalFold(name, "forwarded") {
			return Forwarded, true
		}
		return XRealIP, equalFold(name, "x-real-ip")
	case 14:
		return TrueClientIP, equalFold(name, "true-client-ip")
	case 16:
		return CFConnectingIP, equalFold(name, "cf-connecting-ip")
	}
	return 0, false
}

// MaxValue caps how much of one header value is kept: values are
// attacker-controlled and a real chain of proxies fits in far less.
const MaxValue = 4096

// Line is one forwarding header line (or an obs-fold continuation of one).
type Line struct {
	Value  []byte // the value, surrounding whitespace trimmed; aliases the payload
	Start  int    // offset in the payload where the line starts
	Header Header
	// Request numbers the pipelined request the line belongs to, from 0:
	// each request's lines of one header form one list.
	Request int
	// Cut: the payload ended before the line's end of line, so the value may
	// go on in the next segment, or was cut by the snap length.
	Cut bool
	// Fold: an obs-fold line (it starts with a space or tab) continuing the
	// value of the line before it.
	Fold bool
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
		lastFwd := false // the previous line was a forwarding header
		var lastHeader Header
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
			if cut && (isToken(line) || string(line) == "\r") {
				// A header name, or the CR of a line end, cut by the end of
				// the payload.
				res.Open, res.LastCut, res.Tail, res.CutLine = true, true, line, line
				res.BodyDeclared = contentLength > 0 || chunked
				return
			}
			f := ParseField(line)
			switch f.Kind {
			case FieldFold:
				// obs-fold: the line continues the previous header's value.
				if lastFwd {
					res.Lines = append(res.Lines, Line{Value: f.Value, Start: pos, Cut: cut, Request: request, Header: lastHeader, Fold: true})
				}
			case FieldMalformed:
				res.Malformed = true
				return
			case FieldForward:
				lastHeader, lastFwd = f.Header, true
				res.Lines = append(res.Lines, Line{Value: f.Value, Start: pos, Cut: cut, Request: request, Header: f.Header})
			default:
				lastFwd = false
				switch f.Kind {
				case FieldHost:
					if req.Host == nil {
						req.Host = f.Value
					}
				case FieldLength:
					contentLength = parseLength(f.Value)
				case FieldTransfer:
					chunked = IsChunked(f.Value)
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
	// The target is whatever lies between: a request with control bytes,
	// bytes above 0x7f or spaces in its target is still a request (tshark
	// reads it as one, and a lax server answers it), and its header block
	// must not escape the index. Only a CR, which ends the line for tshark,
	// makes it no request line.
	target = line[sp+1 : len(line)-9]
	if bytes.IndexByte(target, '\r') >= 0 {
		return 0, nil, nil
	}
	return eol + 1, line[:sp], target
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

// trimValue drops spaces, tabs and CRs around a value (bytes.Trim would
// build its byte set on every call, on every header line).
func trimValue(v []byte) []byte {
	for len(v) > 0 && (v[0] == ' ' || v[0] == '\t' || v[0] == '\r') {
		v = v[1:]
	}
	for len(v) > 0 && (v[len(v)-1] == ' ' || v[len(v)-1] == '\t' || v[len(v)-1] == '\r') {
		v = v[:len(v)-1]
	}
	return v
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
//
// A control byte (below 0x20 but HTAB, or DEL) separates elements too, but
// adds no empty element: "192.0.2.1\x00, 192.0.2.2" and
// "192.0.2.1\x00192.0.2.2" are two addresses. No address holds one, and
// tshark, which shows a value up to its first NUL (or CR), would otherwise
// show an address xffidx misses; this way xffidx finds what tshark shows
// and what follows.
func Elements(value []byte, lastIsCut bool, fn func(elem []byte)) {
	for {
		comma := bytes.IndexByte(value, ',')
		if comma < 0 {
			if !lastIsCut {
				splitControls(value, fn)
			}
			return
		}
		splitControls(value[:comma], fn)
		value = value[comma+1:]
	}
}

// splitControls passes the parts of one comma-separated element that
// control bytes separate, trimmed; an element without any is passed
// whole, even empty.
func splitControls(elem []byte, fn func(elem []byte)) {
	i := indexControl(elem)
	if i < 0 {
		fn(trimValue(elem))
		return
	}
	for {
		if part := trimValue(elem[:i]); len(part) > 0 {
			fn(part)
		}
		elem = elem[i+1:]
		if i = indexControl(elem); i < 0 {
			if part := trimValue(elem); len(part) > 0 {
				fn(part)
			}
			return
		}
	}
}

// isControl reports whether c is a control byte other than HTAB.
func isControl(c byte) bool { return c < 0x20 && c != '\t' || c == 0x7f }

func indexControl(b []byte) int {
	for i, c := range b {
		if isControl(c) {
			return i
		}
	}
	return -1
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

// Elements calls fn for each element of a value of header h, in list
// order: the comma-separated elements, or for Forwarded the for= node of each
// element (nil for an element without one). lastIsCut is as for Elements.
func (h Header) Elements(value []byte, lastIsCut bool, fn func(elem []byte)) {
	if h != Forwarded {
		Elements(value, lastIsCut, fn)
		return
	}
	// Control bytes separate elements as commas do (see Elements): each
	// part between them is a list of its own.
	for split := false; ; split = true {
		i := indexControl(value)
		if i < 0 {
			if !split || len(trimValue(value)) > 0 {
				forwardedElements(value, lastIsCut, fn)
			}
			return
		}
		if len(trimValue(value[:i])) > 0 {
			forwardedElements(value[:i], false, fn)
		}
		value = value[i+1:]
	}
}

// forwardedElements splits a Forwarded value (RFC 7239: elements separated
// by commas, each a list of name=value pairs separated by semicolons, values
// tokens or quoted strings) and passes the node of each element's for=
// parameter, unquoted, with an obfuscated port ("_abc") removed; ParseAddr
// then reads it like an X-Forwarded-For element. "unknown" and obfuscated
// identifiers ("_hidden") are passed as they are and are not addresses.
//
// The elements on the right were appended by the proxies nearest the
// capture and the ones on the left may be written by the client, so a
// malformed element (an unterminated or misplaced quote, a pair without
// '=') must not swallow the ones after it: it passes nil, and parsing
// resumes after the first comma following its start, quotes or not.
func forwardedElements(value []byte, lastIsCut bool, fn func(node []byte)) {
	for pos := 0; ; {
		node, end, ok := forwardedElement(value, pos)
		if !ok {
			node, end = nil, len(value)
			if c := bytes.IndexByte(value[pos:], ','); c >= 0 {
				end = pos + c
			}
		}
		if end >= len(value) {
			if !lastIsCut {
				fn(node)
			}
			return
		}
		fn(node)
		pos = end + 1
	}
}

// maxQuoted bounds a quoted value: a node is far shorter, and the bound
// keeps a value full of escaped quotes from being scanned again from every
// comma (quadratic time).
const maxQuoted = 128

// forwardedElement parses the element of v starting at pos and returns the
// node of its first for= pair (nil if none), and the index of the comma
// ending it (len(v) for the last). ok is false for a malformed element. A
// value that is not quoted is read up to the next ';', ',', space or
// quote, which accepts the unquoted IPv6 and "ip:port" nodes some proxies
// write.
func forwardedElement(v []byte, pos int) (node []byte, end int, ok bool) {
	found := false
	i := pos
	for {
		i = skipOWS(v, i)
		if i >= len(v) || v[i] == ',' {
			return node, i, true
		}
		if v[i] == ';' { // an empty pair
			i++
			continue
		}
		ns := i
		for i < len(v) && tchar[v[i]] {
			i++
		}
		name := v[ns:i]
		i = skipOWS(v, i)
		if len(name) == 0 || i >= len(v) || v[i] != '=' {
			return nil, 0, false
		}
		i = skipOWS(v, i+1)
		var val []byte
		if i < len(v) && v[i] == '"' {
			j := i + 1
			for j < len(v) && v[j] != '"' && j-i <= maxQuoted {
				if v[j] == '\\' {
					j++
				}
				j++
			}
			if j >= len(v) || v[j] != '"' {
				return nil, 0, false // unterminated, or too long
			}
			val, i = v[i:j+1], j+1
		} else {
			vs := i
			for i < len(v) && v[i] != ';' && v[i] != ',' && v[i] != '"' && v[i] != ' ' && v[i] != '\t' {
				i++
			}
			val = v[vs:i]
		}
		i = skipOWS(v, i)
		if i < len(v) && v[i] != ';' && v[i] != ',' {
			return nil, 0, false // something after the value
		}
		if !found && equalFold(name, "for") {
			node, found = forwardedNode(val), true
		}
		if i < len(v) && v[i] == ';' {
			i++
		}
	}
}

func skipOWS(v []byte, i int) int {
	for i < len(v) && (v[i] == ' ' || v[i] == '\t') {
		i++
	}
	return i
}

// forwardedNode unquotes a for= value and drops an obfuscated port.
func forwardedNode(v []byte) []byte {
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		v = v[1 : len(v)-1]
		if bytes.IndexByte(v, '\\') >= 0 {
			// quoted-pair: rare enough that a copy does not matter.
			u := make([]byte, 0, len(v))
			for i := 0; i < len(v); i++ {
				if v[i] == '\\' && i+1 < len(v) {
					i++
				}
				u = append(u, v[i])
			}
			v = u
		}
	}
	colon := bytes.LastIndexByte(v, ':')
	if colon >= 0 && colon+1 < len(v) && v[colon+1] == '_' {
		// node-port = port / obfport; only IPv4 (one colon) and a
		// bracketed IPv6 carry a port.
		if (len(v) > 0 && v[0] == '[' && colon > 0 && v[colon-1] == ']') || bytes.Count(v, []byte{':'}) == 1 {
			v = v[:colon]
		}
	}
	return v
}

// IsNamePrefix reports whether b is a proper, non-empty prefix of h's name
// with its colon.
func (h Header) IsNamePrefix(b []byte) bool {
	name := h.nameOf()
	return len(b) > 0 && len(b) < len(name) && equalFold(b, name[:len(b)])
}
