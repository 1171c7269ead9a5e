package query_test

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/xffidx/xffidx/query"
)

// hostileRow is a row whose text fields all hold b.
func hostileRow(b []byte, i int) query.Row {
	return query.Row{
		XFFIP: netip.MustParseAddr("198.51.100.9"), XFF: b, File: string(b), Offset: int64(24 + i),
		TS: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), TSDigit: 6,
		FiveTuple: query.FiveTuple{SrcIP: netip.MustParseAddr("10.0.0.2"), SrcPort: uint16(40000 + i), DstIP: netip.MustParseAddr("10.0.1.5"), DstPort: 8080, Proto: "tcp"},
		Request:   query.Request{Method: b, Host: b, Path: b},
	}
}

// TestCSVCellsAreNotFormulas: no text cell of the CSV outputs (rows:
// xff, method, host, path; flows: files) starts with what a spreadsheet
// reads as a formula, and the cell still shows the text.
func TestCSVCellsAreNotFormulas(t *testing.T) {
	var rows []query.Row
	for i, h := range formulaTexts() {
		rows = append(rows, hostileRow(h.b, i))
	}
	var out bytes.Buffer
	if err := query.Write(&out, query.FormatCSV, rows, true); err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(&out).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	head := recs[0]
	for i, rec := range recs[1:] {
		for j, cell := range rec {
			switch head[j] {
			case "xff", "method", "host", "path":
				if formulaStart(cell) {
					t.Errorf("%s: %s cell %q starts a formula", formulaTexts()[i].name, head[j], cell)
				}
				if plain := string(formulaTexts()[i].b); plain[0] != '\t' && plain[0] != '\r' && !strings.HasSuffix(cell, plain) {
					t.Errorf("%s: %s cell %q does not show the text", formulaTexts()[i].name, head[j], cell)
				}
			}
		}
	}
	out.Reset()
	if err := query.WriteFlows(&out, query.FormatCSV, query.Flows(rows)); err != nil {
		t.Fatal(err)
	}
	recs, err = csv.NewReader(&out).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	for _, rec := range recs[1:] {
		if cell := rec[8]; formulaStart(cell) {
			t.Errorf("flows: files cell %q starts a formula", cell)
		}
	}
}

// unescape undoes Sanitize's escapes: \\, \xNN (a byte), \u{N...} (a
// rune).
func unescape(t *testing.T, s string) []byte {
	t.Helper()
	var out []byte
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			out = append(out, s[i])
			continue
		}
		switch {
		case strings.HasPrefix(s[i:], `\\`):
			out = append(out, '\\')
			i++
		case strings.HasPrefix(s[i:], `\x`) && i+4 <= len(s):
			v, err := strconv.ParseUint(s[i+2:i+4], 16, 8)
			if err != nil {
				t.Fatalf("bad escape in %q", s)
			}
			out = append(out, byte(v))
			i += 3
		case strings.HasPrefix(s[i:], `\u{`) && strings.IndexByte(s[i:], '}') > 0:
			end := i + strings.IndexByte(s[i:], '}')
			v, err := strconv.ParseUint(s[i+3:end], 16, 32)
			if err != nil {
				t.Fatalf("bad escape in %q", s)
			}
			out = utf8.AppendRune(out, rune(v))
			i = end
		default:
			t.Fatalf("lone backslash in %q", s)
		}
	}
	return out
}

// checkEscaped checks the outputs of rows in every format: no line of
// the table and no CSV cell or JSON string holds a rune badRune catches
// (nor a line break of its own), no CSV text cell starts a formula, JSON
// is valid, and its strings give the original bytes back.
func checkEscaped(t *testing.T, rows []query.Row, original func(i int, field string) ([]byte, bool)) {
	t.Helper()
	for _, showHeader := range []bool{false, true} {
		var tab, csvOut, js bytes.Buffer
		if err := query.Write(&tab, query.FormatTable, rows, showHeader); err != nil {
			t.Fatal(err)
		}
		if err := query.Write(&csvOut, query.FormatCSV, rows, showHeader); err != nil {
			t.Fatal(err)
		}
		if err := query.Write(&js, query.FormatJSON, rows, showHeader); err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSuffix(tab.String(), "\n"), "\n")
		if len(lines) != len(rows)+1 {
			t.Errorf("table: %d lines for %d rows", len(lines), len(rows))
		}
		for _, l := range lines {
			if bad := badRunes(l); len(bad) > 0 {
				t.Errorf("table line %q holds %v", l, bad)
			}
		}
		recs, err := csv.NewReader(&csvOut).ReadAll()
		if err != nil || len(recs) != len(rows)+1 {
			t.Fatalf("CSV: %d records for %d rows, %v", len(recs), len(rows), err)
		}
		for _, rec := range recs[1:] {
			for j, cell := range rec {
				if bad := badRunes(cell); len(bad) > 0 {
					t.Errorf("CSV %s cell %q holds %v", recs[0][j], cell, bad)
				}
				if formulaStart(cell) {
					t.Errorf("CSV %s cell %q starts a formula", recs[0][j], cell)
				}
			}
		}
		jl := strings.Split(strings.TrimSuffix(js.String(), "\n"), "\n")
		if len(jl) != len(rows) {
			t.Fatalf("JSON: %d lines for %d rows", len(jl), len(rows))
		}
		for i, l := range jl {
			if !json.Valid([]byte(l)) {
				t.Fatalf("invalid JSON %q", l)
			}
			var m map[string]any
			json.Unmarshal([]byte(l), &m)
			for k, v := range m {
				s, ok := v.(string)
				if !ok {
					continue
				}
				if bad := badRunes(s); len(bad) > 0 {
					t.Errorf("JSON %s %q holds %v", k, s, bad)
				}
				if want, ok := original(i, k); ok && !bytes.Equal(unescape(t, s), want) {
					t.Errorf("JSON %s %q does not give back %q", k, s, want)
				}
			}
		}
	}
}

// TestOutputsEscapeHostileText: every hostile text, in every text field
// (value, file, method, host, path) of every format, and in the file
// names of the flows outputs.
func TestOutputsEscapeHostileText(t *testing.T) {
	hs := hostileTexts()
	var rows []query.Row
	for i, h := range hs {
		rows = append(rows, hostileRow(h.b, i))
	}
	checkEscaped(t, rows, func(i int, field string) ([]byte, bool) {
		switch field {
		case "xff", "file", "method", "host", "path":
			return hs[i].b, true
		}
		return nil, false
	})
	for _, format := range []string{query.FormatTable, query.FormatCSV, query.FormatJSON} {
		var out bytes.Buffer
		if err := query.WriteFlows(&out, format, query.Flows(rows)); err != nil {
			t.Fatal(err)
		}
		if n := strings.Count(out.String(), "\n"); format != query.FormatJSON && n != len(rows)+1 || format == query.FormatJSON && n != len(rows) {
			t.Errorf("flows %s: %d lines for %d flows", format, n, len(rows))
		}
		s := out.String()
		if format == query.FormatJSON {
			for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
				var f struct{ Files []string }
				if err := json.Unmarshal([]byte(l), &f); err != nil {
					t.Fatalf("flows JSON %q: %v", l, err)
				}
				s = strings.Join(f.Files, "\n")
			}
		}
		for _, l := range strings.Split(s, "\n") {
			if bad := badRunes(strings.TrimSuffix(l, "\r")); len(bad) > 0 {
				t.Errorf("flows %s: %q holds %v", format, l, bad)
			}
		}
	}
}

// TestHostileCaptureEscaped: the same through a real capture, its index
// and a search: header values with hostile bytes after a client address,
// a hostile Host and request target, in a capture with a hostile file name.
func TestHostileCaptureEscaped(t *testing.T) {
	dir := t.TempDir()
	// (Not a byte that is not UTF-8: the catalog, JSON, does not keep it.)
	path := filepath.Join(dir, "cap\x1b[31m\u202egpj.\u2028\u00ad.pcap")
	client := netip.MustParseAddr("198.51.100.9")
	backend := netip.AddrPortFrom(netip.MustParseAddr("10.0.1.5"), 8080)
	var segs []seg
	var planted [][]byte
	for i, h := range hostileTexts() {
		if bytes.ContainsAny(h.b, "\r\n\x00") {
			continue // they end or cut the header line itself
		}
		v := append([]byte("198.51.100.9, "), h.b...)
		planted = append(planted, v)
		target := "/p"
		if !bytes.ContainsFunc(h.b, func(r rune) bool { return r <= 0x20 || r == 0x7f }) {
			// (A space or a control character in the request target
			// makes it no request line at all.)
			target += string(h.b)
		}
		req := "GET " + target + " HTTP/1.1\r\nHost: h" + string(h.b) + "\r\nX-Forwarded-For: " + string(v) + "\r\n\r\n"
		segs = append(segs, seg{netip.AddrPortFrom(netip.MustParseAddr("10.0.0.2"), uint16(30000+i)), backend, 1, req, 0})
	}
	writeSegments(t, path, segs)
	store := buildIndex(t, path)
	res := search(t, store, query.Options{Prefixes: []netip.Prefix{netip.PrefixFrom(client, 32)}})
	// Which requests count is format/xff's business (a target with bytes
	// past ASCII may stop being one); this checks the escaping of what is
	// found.
	if len(res.Rows) < len(planted)*3/4 {
		t.Fatalf("%d rows for %d planted values", len(res.Rows), len(planted))
	}
	checkEscaped(t, res.Rows, func(i int, field string) ([]byte, bool) {
		switch field {
		case "xff":
			return res.Rows[i].XFF, true
		case "file":
			return []byte(path), true
		}
		return nil, false
	})
}
