package xff

import "bytes"

// FieldKind says what one line of a request header block is, as far as
// following a request stream is concerned.
type FieldKind uint8

const (
	FieldEmpty     FieldKind = iota // the empty line that ends the block
	FieldFold                       // obs-fold: continues the previous field's value
	FieldForward                    // a forwarding header (Field.Header says which)
	FieldHost                       // Host
	FieldLength                     // Content-Length
	FieldTransfer                   // Transfer-Encoding
	FieldOther                      // any other well-formed field
	FieldMalformed                  // not a field line (no colon): ends the block
)

// Field is one classified header line.
type Field struct {
	Kind   FieldKind
	Header Header // for FieldForward
	Value  []byte // trimmed value (the folded text for FieldFold); aliases the line
}

// ParseField classifies one complete line of a request header block, given
// without its LF (a trailing CR is removed here). It is the one place that
// decides what a header line is, for the single-payload scan and for the
// stream tracker alike, so that the two never disagree.
func ParseField(line []byte) Field {
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	if len(line) == 0 {
		return Field{Kind: FieldEmpty}
	}
	if line[0] == ' ' || line[0] == '\t' {
		return Field{Kind: FieldFold, Value: trimValue(line)}
	}
	colon := bytes.IndexByte(line, ':')
	if colon < 0 {
		return Field{Kind: FieldMalformed}
	}
	name, value := line[:colon], line[colon+1:]
	if !isToken(name) {
		// Not a valid field name (a control byte in it, a space before the
		// colon, none at all): the line is skipped, as tshark skips it (and
		// nginx with ignore_invalid_headers), and the block goes on. Ending
		// the block there would let a client hide every line after it.
		return Field{Kind: FieldOther}
	}
	if h, ok := headerOf(name); ok {
		return Field{Kind: FieldForward, Header: h, Value: trimValue(value)}
	}
	switch {
	case equalFold(name, "host"):
		return Field{Kind: FieldHost, Value: trimValue(value)}
	case equalFold(name, "content-length"):
		return Field{Kind: FieldLength, Value: trimValue(value)}
	case equalFold(name, "transfer-encoding"):
		return Field{Kind: FieldTransfer, Value: value}
	}
	return Field{Kind: FieldOther}
}

// ContentLength reads a Content-Length value; -1 when it is not a number.
func ContentLength(v []byte) int64 { return parseLength(v) }

// IsChunked reports whether a Transfer-Encoding value names chunked.
func IsChunked(v []byte) bool { return containsFold(v, "chunked") }

// RequestLine returns the length of the HTTP/1.x request line (with its end
// of line) at the start of p, with its method and request target; n is 0 if
// p does not start with a complete one.
func RequestLine(p []byte) (n int, method, target []byte) { return requestLine(p) }

// SkipEmptyLines returns how many CR and LF bytes p starts with: the empty
// lines a client may send between requests.
func SkipEmptyLines(p []byte) int { return skipEmptyLines(p) }

// IsTokenPrefix reports whether b could be the start of a header line whose
// name is not complete yet: every byte a token byte.
func IsTokenPrefix(b []byte) bool { return isToken(b) }

// HexDigit returns the value of a hexadecimal digit, or -1.
func HexDigit(c byte) int { return hexVal(c) }
