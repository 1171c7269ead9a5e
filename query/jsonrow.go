package query

import (
	"net/netip"
	"strconv"
	"time"
	"unicode/utf8"
)

// jsonWriter appends a row's NDJSON line as encoding/json encodes its
// jsonRow (with SetEscapeHTML(false)), without reflection and without an
// allocation per field: a query prints thousands of rows, and each value
// is Sanitized first anyway.
type jsonWriter struct {
	line    []byte
	scratch []byte
}

// row returns r's line, newline included, valid until the next call.
func (j *jsonWriter) row(r *Row, header, sensor string) []byte {
	b := j.line[:0]
	b = append(b, `{"xff_ip":`...)
	b = appendJSONAddr(b, r.XFFIP)
	b = append(b, `,"xff":`...)
	b = j.text(b, r.XFF)
	b = append(b, `,"file":`...)
	b = j.text(b, []byte(r.File))
	b = append(b, `,"offset":`...)
	b = strconv.AppendInt(b, r.Offset, 10)
	b = append(b, `,"ts":"`...)
	b = appendTS(b, r.TS, r.TSDigit)
	b = append(b, `","src_ip":`...)
	b = appendJSONAddr(b, r.SrcIP)
	b = append(b, `,"src_port":`...)
	b = strconv.AppendUint(b, uint64(r.SrcPort), 10)
	b = append(b, `,"dst_ip":`...)
	b = appendJSONAddr(b, r.DstIP)
	b = append(b, `,"dst_port":`...)
	b = strconv.AppendUint(b, uint64(r.DstPort), 10)
	b = append(b, `,"proto":`...)
	b = appendJSONString(b, []byte(r.Proto))
	b = append(b, `,"method":`...)
	b = j.text(b, r.Method)
	b = append(b, `,"host":`...)
	b = j.text(b, r.Host)
	b = append(b, `,"path":`...)
	b = j.text(b, r.Path)
	if header != "" {
		b = append(b, `,"header":`...)
		b = appendJSONString(b, []byte(header))
	}
	if sensor != "" {
		b = append(b, `,"sensor":`...)
		b = j.text(b, []byte(sensor))
	}
	b = append(b, "}\n"...)
	j.line = b
	return b
}

// text appends raw bytes Sanitized (uncapped), as a JSON string.
func (j *jsonWriter) text(b, raw []byte) []byte {
	j.scratch = appendSanitized(j.scratch[:0], raw, uncapped)
	return appendJSONString(b, j.scratch)
}

// appendJSONAddr appends an address's text as a JSON string (netip.Addr's
// String: "invalid IP" for the zero address).
func appendJSONAddr(b []byte, a netip.Addr) []byte {
	b = append(b, '"')
	if a.IsValid() {
		b = a.AppendTo(b)
	} else {
		b = append(b, "invalid IP"...)
	}
	return append(b, '"')
}

// tsLayouts are FormatTS's layouts by fractional digits.
var tsLayouts = func() (l [10]string) {
	for d := range l {
		l[d] = "2006-01-02T15:04:05"
		if d > 0 {
			l[d] += "." + "000000000"[:d]
		}
		l[d] += "Z07:00"
	}
	return l
}()

// appendTS appends FormatTS(t, digits).
func appendTS(b []byte, t time.Time, digits int) []byte {
	if t.IsZero() {
		return b
	}
	if digits < 0 || digits >= len(tsLayouts) {
		return append(b, FormatTS(t, digits)...)
	}
	return t.UTC().AppendFormat(b, tsLayouts[digits])
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as encoding/json writes a string without
// HTML escaping: quotes, backslashes and control bytes escaped, U+2028 and
// U+2029 as \u2028 and \u2029, bytes that are not UTF-8 as \ufffd.
func appendJSONString(b, s []byte) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= ' ' && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, `\n`...)
			case '\r':
				b = append(b, `\r`...)
			case '\t':
				b = append(b, `\t`...)
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRune(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
