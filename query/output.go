package query

import (
	"bufio"
	"encoding/csv"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Output formats.
const (
	FormatTable = "table"
	FormatJSON  = "json"
	FormatCSV   = "csv"
)

// tableValueMax caps the XFF column of the table, which is for people; JSON
// and CSV carry the value up to the index's own cap.
const tableValueMax = 96

// jsonRow fixes the NDJSON field names and order scripts depend on: the
// line jsonWriter appends is encoding/json's encoding of it (TestJSONRowEqualsEncodingJSON).
type jsonRow struct {
	XFFIP   string `json:"xff_ip"`
	XFF     string `json:"xff"`
	File    string `json:"file"`
	Offset  int64  `json:"offset"`
	TS      string `json:"ts"`
	SrcIP   string `json:"src_ip"`
	SrcPort uint16 `json:"src_port"`
	DstIP   string `json:"dst_ip"`
	DstPort uint16 `json:"dst_port"`
	Proto   string `json:"proto"`
	// The request that carried the XFF line, after the original fields.
	Method string `json:"method"`
	Host   string `json:"host"`
	Path   string `json:"path"`
	// The header the address was in: only when headers were asked for.
	Header string `json:"header,omitempty"`
	// The sensor holding the packet: only in answers from a central store.
	Sensor string `json:"sensor,omitempty"`
}

// FormatTS renders a timestamp in RFC 3339 UTC with digits fractional digits.
func FormatTS(t time.Time, digits int) string {
	if t.IsZero() {
		return ""
	}
	layout := "2006-01-02T15:04:05"
	if digits > 0 {
		layout += "." + strings.Repeat("0", digits)
	}
	return t.UTC().Format(layout + "Z07:00")
}

// Sanitize is the one escaping of every text field of every output
// format (table, CSV, JSON) and of the messages that carry file names:
// packet bytes and file names are attacker-controlled. Bytes that are not
// UTF-8 and the C0 controls and DEL become \xNN; every other rune that is
// not printed as itself (see printable: C1 controls, format characters such
// as the bidirectional overrides and isolates that reorder a terminal line,
// line and paragraph separators, invisible fillers, non-ASCII spaces)
// becomes \u{NNNN}; a backslash becomes \\, so the escaping can be undone
// exactly. The result is capped at max runes of b, with "…".
func Sanitize(b []byte, max int) string {
	if len(b) <= max && !slices.ContainsFunc(b, func(c byte) bool { return !plainASCII(c) }) {
		return string(b) // nothing to escape or cap
	}
	return string(appendSanitized(make([]byte, 0, min(len(b), max)+8), b, max))
}

// appendSanitized appends Sanitize(b, max) to dst.
func appendSanitized(dst, b []byte, max int) []byte {
	n := 0
	for len(b) > 0 {
		if n >= max {
			dst = append(dst, "…"...)
			break
		}
		// Most of what is printed (addresses, paths, request targets) is
		// printable ASCII, each byte a rune shown as itself: copied by the
		// run, without the Unicode tables.
		if plainASCII(b[0]) {
			i := 1
			for i < len(b) && n+i < max && plainASCII(b[i]) {
				i++
			}
			dst = append(dst, b[:i]...)
			b, n = b[i:], n+i
			continue
		}
		r, size := utf8.DecodeRune(b)
		switch {
		case r == utf8.RuneError && size <= 1:
			dst = fmt.Appendf(dst, `\x%02x`, b[0])
		case r == '\\':
			dst = append(dst, `\\`...)
		case r < utf8.RuneSelf && !printable(r):
			dst = fmt.Appendf(dst, `\x%02x`, r)
		case !printable(r):
			dst = fmt.Appendf(dst, `\u{%04x}`, r)
		default:
			dst = append(dst, b[:size]...)
		}
		b = b[size:]
		n++
	}
	return dst
}

// plainASCII reports whether byte c is an ASCII character Sanitize copies
// as it is: printable (space to tilde), not the backslash it escapes.
func plainASCII(c byte) bool { return c >= ' ' && c < 0x7f && c != '\\' }

// printable reports whether r shows as itself, taking its own place: a
// graphic character (letter, mark, number, punctuation, symbol) or the
// ASCII space, and not one Unicode asks to be ignored when displayed
// (Default_Ignorable_Code_Point: fillers such as U+3164 that show as
// blanks, variation selectors), a bidirectional control, or a
// noncharacter. Control (Cc), format (Cf: U+00AD, U+061C, U+200B-U+200F,
// U+202A-U+202E, U+2066-U+2069, U+FEFF, tags...), line and paragraph
// separators (Zl, Zp), other spaces (Zs), private use and unassigned code
// points are not graphic.
func printable(r rune) bool {
	if r == ' ' {
		return true
	}
	return unicode.IsGraphic(r) && !unicode.In(r, unicode.Zs, unicode.Other_Default_Ignorable_Code_Point,
		unicode.Variation_Selector, unicode.Bidi_Control, unicode.Noncharacter_Code_Point)
}

// uncapped is Sanitize's cap for CSV and JSON, which carry values whole
// (the index caps them at a few KiB).
const uncapped = 1 << 20

// csvText is a text cell of CSV output: sanitized, and prefixed with a
// single quote where it starts with a character that makes a spreadsheet
// read the cell as a formula (OWASP's list: = + - @ tab CR), which an
// attacker could otherwise make run when the file is opened.
func csvText(b []byte) string {
	s := Sanitize(b, uncapped)
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

// Write prints rows in the given format (see RowWriter).
func Write(out io.Writer, format string, rows []Row, showHeader bool) error {
	w, err := NewRowWriter(out, format, showHeader)
	if err != nil {
		return err
	}
	for _, r := range rows {
		if err := w.Write(r); err != nil {
			return err
		}
	}
	return w.Close()
}

// RowWriter prints rows one at a time, as they come, through a 64 KiB
// buffer. Every text field is Sanitized (JSON too: its strings then hold no
// control or bidirectional character that `jq -r` would pass to a
// terminal, and bytes that are not UTF-8 are kept as \xNN instead of being
// replaced); CSV text cells are also kept from reading as formulas
// (csvText); the table caps long values. showHeader adds the header each
// row's address was in (a "header" JSON field, a last CSV column, a HEADER
// table column): for searches of other headers than X-Forwarded-For, whose
// output must still tell them apart.
type RowWriter struct {
	bw         *bufio.Writer
	format     string
	showHeader bool
	showSensor bool
	json       jsonWriter
	cw         *csv.Writer
	tab        *table
}

// NewRowWriter starts the output: the CSV header row, or the table's.
func NewRowWriter(out io.Writer, format string, showHeader bool) (*RowWriter, error) {
	return newRowWriter(out, format, showHeader, false)
}

// NewSensorRowWriter is NewRowWriter for answers from a central store:
// each row also names its sensor (a "sensor" JSON field, a last CSV
// column, a first SENSOR table column).
func NewSensorRowWriter(out io.Writer, format string, showHeader bool) (*RowWriter, error) {
	return newRowWriter(out, format, showHeader, true)
}

func newRowWriter(out io.Writer, format string, showHeader, showSensor bool) (*RowWriter, error) {
	w := &RowWriter{bw: bufio.NewWriterSize(out, 64<<10), format: format, showHeader: showHeader, showSensor: showSensor}
	switch format {
	case FormatJSON:
	case FormatCSV:
		w.cw = csv.NewWriter(w.bw)
		w.cw.UseCRLF = true // RFC 4180
		head := []string{"xff_ip", "xff", "file", "offset", "ts", "src_ip", "src_port", "dst_ip", "dst_port", "proto", "method", "host", "path"}
		if showHeader {
			head = append(head, "header")
		}
		if showSensor {
			head = append(head, "sensor")
		}
		w.cw.Write(head)
	case FormatTable:
		w.tab = &table{w: w.bw}
		var cols []string
		if showSensor {
			cols = append(cols, "SENSOR")
		}
		if showHeader {
			cols = append(cols, "TIME", "CLIENT", "SRC", "DST", "PROTO", "HEADER", "VALUE", "REQUEST", "FILE", "OFFSET")
		} else {
			cols = append(cols, "TIME", "CLIENT", "SRC", "DST", "PROTO", "XFF", "REQUEST", "FILE", "OFFSET")
		}
		w.tab.row(cols...)
	default:
		return nil, fmt.Errorf("unknown output format %q (want table, json or csv)", format)
	}
	return w, nil
}

// Write prints one row.
func (w *RowWriter) Write(r Row) error {
	header := ""
	if w.showHeader {
		header = r.Header.String()
	}
	switch w.format {
	case FormatJSON:
		_, err := w.bw.Write(w.json.row(&r, header, w.sensor(r)))
		return err
	case FormatCSV:
		rec := []string{
			r.XFFIP.String(), csvText(r.XFF), csvText([]byte(r.File)), strconv.FormatInt(r.Offset, 10),
			FormatTS(r.TS, r.TSDigit), r.SrcIP.String(), strconv.Itoa(int(r.SrcPort)),
			r.DstIP.String(), strconv.Itoa(int(r.DstPort)), r.Proto,
			csvText(r.Method), csvText(r.Host), csvText(r.Path),
		}
		if w.showHeader {
			rec = append(rec, header)
		}
		if w.showSensor {
			rec = append(rec, csvText([]byte(r.Sensor)))
		}
		return w.cw.Write(rec)
	}
	var cells []string
	if w.showSensor {
		cells = append(cells, Sanitize([]byte(r.Sensor), 64))
	}
	cells = append(cells, FormatTS(r.TS, r.TSDigit), r.XFFIP.String(), addrPort(r.SrcIP.String(), r.SrcPort), addrPort(r.DstIP.String(), r.DstPort), r.Proto)
	if w.showHeader {
		cells = append(cells, header)
	}
	return w.tab.row(append(cells, Sanitize(r.XFF, tableValueMax), Sanitize(r.Request.text(), tableValueMax), Sanitize([]byte(r.File), 256), strconv.FormatInt(r.Offset, 10))...)
}

func (w *RowWriter) sensor(r Row) string {
	if !w.showSensor {
		return ""
	}
	return r.Sensor // Sanitized where it is printed
}

// Close ends the output and flushes it.
func (w *RowWriter) Close() error {
	switch {
	case w.cw != nil:
		w.cw.Flush()
		if err := w.cw.Error(); err != nil {
			return err
		}
	case w.tab != nil:
		w.tab.flush()
	}
	return w.bw.Flush()
}

// tableBlock is how many rows a table holds to lay out its columns.
const tableBlock = 1000

// table lays out rows in columns as text/tabwriter does (each cell but a
// line's last padded to the widest of its column plus two spaces), but
// holds only its first tableBlock rows: their widths are kept for the rest,
// where a wider cell shifts only its own line. Up to tableBlock rows the
// output is tabwriter's; past them rows stream out in bounded memory.
type table struct {
	w       io.Writer
	widths  []int
	pending [][]string
}

const tablePadding = 2

func (t *table) row(cells ...string) error {
	if t.widths == nil {
		t.pending = append(t.pending, cells)
		if len(t.pending) < tableBlock {
			return nil
		}
		return t.flush()
	}
	return t.print(cells)
}

// flush lays out the rows held, if any, and prints them.
func (t *table) flush() error {
	if t.widths != nil {
		return nil
	}
	t.widths = []int{}
	for _, cells := range t.pending {
		for j, c := range cells[:len(cells)-1] {
			if j == len(t.widths) {
				t.widths = append(t.widths, 0)
			}
			t.widths[j] = max(t.widths[j], utf8.RuneCountInString(c)+tablePadding)
		}
	}
	for _, cells := range t.pending {
		if err := t.print(cells); err != nil {
			return err
		}
	}
	t.pending = nil
	return nil
}

var spaces = strings.Repeat(" ", 256)

func (t *table) print(cells []string) error {
	var b []byte
	for j, c := range cells {
		b = append(b, c...)
		if j == len(cells)-1 {
			break
		}
		pad := tablePadding
		if j < len(t.widths) {
			pad = max(pad, t.widths[j]-utf8.RuneCountInString(c))
		}
		for ; pad > 0; pad -= len(spaces) {
			b = append(b, spaces[:min(pad, len(spaces))]...)
		}
	}
	_, err := t.w.Write(append(b, '\n'))
	return err
}

func addrPort(ip string, port uint16) string {
	if strings.Contains(ip, ":") {
		return "[" + ip + "]:" + strconv.Itoa(int(port))
	}
	return ip + ":" + strconv.Itoa(int(port))
}
