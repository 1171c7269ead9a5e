package query

import (
	"bytes"
)

// httpRequest is one HTTP/1.x request header block, or the part of one, found
// in a TCP payload.
type httpRequest struct {
	// Method, Target and Host come from the request line and the first Host
	// header. They are empty for a block begun in an earlier segment (Cont):
	// its request line is not in this packet.
	Method, Target, Host []byte
	Cont                 bool
	Lines                []xffValue // X-Forwarded-For lines (and obs-folds of them), in order
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
}

type xffValue struct {
	Value []byte
	Cut   bool // the payload ended before the line's end of line
	// Joined: the value was completed from the next segment, as the build
	// stored it; the line's own end is in that segment.
	Joined bool
}

// parseRequests splits a TCP payload into request header blocks the way
// format/xff's scanner does (same request-line test, same header-line test,
// same body skipping by Content-Length or chunked framing), and keeps what
// the scanner drops: request line, Host, and where each block ends. With
// inHeaders the payload continues a header block begun in an earlier
// segment. malformed says the scan stopped at a line inside a header block
// that is not a header line.
func parseRequests(p []byte, inHeaders bool) (reqs []httpRequest, malformed bool) {
	pos := 0
	for round := 0; round <= len(p)/16; round++ {
		var r httpRequest
		if inHeaders {
			r.Cont = true
		} else {
			pos += skipEmptyLines(p[pos:])
			n, method, target := parseRequestLine(p[pos:])
			if n <= 0 {
				return reqs, false
			}
			r.Method, r.Target = method, target
			pos += n
		}
		var contentLength int64 = -1
		chunked, lastXFF := false, false
		for {
			if pos >= len(p) {
				r.Open = true
				return append(reqs, r), false
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
				if lastXFF {
					r.Lines = append(r.Lines, xffValue{Value: trimSpace(line), Cut: cut})
				}
			} else {
				colon := bytes.IndexByte(line, ':')
				if colon <= 0 || !isToken(line[:colon]) {
					if cut && isToken(line) {
						r.Open, r.LastCut, r.Tail, r.CutLine = true, true, line, line
						return append(reqs, r), false
					}
					return append(reqs, r), true
				}
				name, value := line[:colon], line[colon+1:]
				lastXFF = asciiEqualFold(name, "x-forwarded-for")
				switch {
				case lastXFF:
					r.Lines = append(r.Lines, xffValue{Value: trimSpace(value), Cut: cut})
				case asciiEqualFold(name, "host"):
					if r.Host == nil {
						r.Host = trimSpace(value)
					}
				case asciiEqualFold(name, "content-length"):
					contentLength = parseLength(trimSpace(value))
				case asciiEqualFold(name, "transfer-encoding"):
					chunked = bytes.Contains(bytes.ToLower(value), []byte("chunked"))
				}
			}
			if cut {
				r.Open, r.LastCut, r.CutLine = true, true, line
				return append(reqs, r), false
			}
			pos = end + 1
		}
		reqs = append(reqs, r)
		inHeaders = false
		switch {
		case chunked:
			n, ok := skipChunked(p[pos:])
			if !ok {
				return reqs, false
			}
			pos += n
		case contentLength > 0:
			if contentLength > int64(len(p)-pos) {
				return reqs, false
			}
			pos += int(contentLength)
		}
	}
	return reqs, false
}

// parseRequestLine returns the length of the request line at the start of p
// (0 if p does not start with one) and its method and request target.
func parseRequestLine(p []byte) (n int, method, target []byte) {
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

func skipEmptyLines(p []byte) int {
	i := 0
	for i < len(p) && (p[i] == '\r' || p[i] == '\n') {
		i++
	}
	return i
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

func trimSpace(v []byte) []byte { return bytes.Trim(v, " \t\r") }

// asciiEqualFold compares ASCII case-insensitively; want is lower case.
func asciiEqualFold(b []byte, want string) bool {
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
// does not end inside p. It follows format/xff's framing exactly, so that
// pipelined requests are numbered as the build numbered them.
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

// joinValues joins XFF line values with ", " as the build does.
func joinValues(dst []byte, lines []xffValue) []byte {
	for i, l := range lines {
		if i > 0 {
			dst = append(dst, ", "...)
		}
		dst = append(dst, l.Value...)
	}
	return dst
}
