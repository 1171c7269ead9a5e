package query_test

import (
	"bytes"
	"encoding/csv"
	"net/netip"
	"strings"
	"testing"
	"time"

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
