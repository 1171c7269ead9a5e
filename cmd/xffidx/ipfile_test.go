package main

import (
	"bytes"
	"cmp"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/xffidx/xffidx/format/capgen"
	"github.com/xffidx/xffidx/format/xff"
)

// listIndex indexes the corpus and a generated capture (every header
// variant, header blocks over several segments) and returns the index and
// the distinct addresses found in any header.
func listIndex(t *testing.T) (string, []netip.Addr) {
	t.Helper()
	dir, ix := t.TempDir(), t.TempDir()
	var buf bytes.Buffer
	if _, err := capgen.Write(&buf, capgen.Config{Seed: 13, Format: capgen.FormatPcapNG, LinkType: capgen.LinkEthernet, TargetBytes: 2 << 20, XFFRate: 0.2, Variants: true, CookieRate: 0.1, IPv6Transport: true, NoTruth: true}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "gen.pcapng"), buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := xffx(t, ix, "build", dir, corpus); code != 0 {
		t.Fatalf("build: exit %d: %s", code, stderr)
	}
	_, out, _ := xffx(t, ix, "query", "--cidr", "0.0.0.0/0", "--cidr", "::/0", "--header", "all", "--format", "json")
	seen := map[netip.Addr]bool{}
	var addrs []netip.Addr
	for _, h := range parseHits(t, out) {
		a := netip.MustParseAddr(h.XFFIP)
		if !seen[a] {
			seen[a] = true
			addrs = append(addrs, a)
		}
	}
	slices.SortFunc(addrs, netip.Addr.Compare)
	if len(addrs) < 100 {
		t.Fatalf("only %d addresses indexed", len(addrs))
	}
	return ix, addrs
}

// listOf makes an address list: every k-th indexed address (IPv6 ones
// spelled out in full), absent ones, the /24 of an indexed IPv4 address
// (which overlaps listed ones), a repeat, comments and blank lines, in no
// particular order. It returns the text and its entries (as --ip and
// --cidr values).
func listOf(addrs []netip.Addr, k int) (string, []string) {
	var entries []string
	for i := len(addrs) - 1; i >= 0; i -= k {
		a := addrs[i]
		if a.Is6() && i%2 == 0 {
			entries = append(entries, a.StringExpanded())
		} else {
			entries = append(entries, a.String())
		}
	}
	for i := range 10 {
		entries = append(entries, fmt.Sprintf("198.18.%d.%d", i, 200+i), fmt.Sprintf("2001:db8:ffff::%x", 0xa0+i))
	}
	for _, a := range addrs {
		if a.Is4() {
			entries = append(entries, netip.PrefixFrom(a, 24).Masked().String())
			break
		}
	}
	entries = append(entries, entries[0])
	var b strings.Builder
	b.WriteString("# flagged last night\n\n")
	for i, e := range entries {
		if i%7 == 3 {
			fmt.Fprintf(&b, "  %s   # seen at the edge\n", e)
		} else {
			fmt.Fprintf(&b, "%s\n", e)
		}
	}
	return b.String(), entries
}

// entryArgs is the --ip or --cidr of one list entry.
func entryArgs(e string) []string {
	if strings.Contains(e, "/") {
		return []string{"--cidr", e}
	}
	return []string{"--ip", e}
}

// listRow is one output row, with what orders it: a search's rows come by
// file, offset, header and address.
type listRow struct {
	line   string
	file   string
	offset int64
	header xff.Header
	addr   netip.Addr
}

func compareListRows(a, b listRow) int {
	return cmp.Or(cmp.Compare(a.file, b.file), cmp.Compare(a.offset, b.offset), cmp.Compare(a.header, b.header), a.addr.Compare(b.addr))
}

// parseListRows reads JSON or CSV output into rows.
func parseListRows(t *testing.T, format, out string) []listRow {
	t.Helper()
	var rows []listRow
	switch format {
	case "json":
		for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
			if line == "" {
				continue
			}
			var j struct {
				XFFIP  string `json:"xff_ip"`
				File   string `json:"file"`
				Header string `json:"header"`
				Offset int64  `json:"offset"`
			}
			if err := json.Unmarshal([]byte(line), &j); err != nil {
				t.Fatalf("%q: %v", line, err)
			}
			h := xff.XForwardedFor
			if j.Header != "" {
				var ok bool
				if h, ok = xff.ParseHeader(j.Header); !ok {
					t.Fatalf("header %q", j.Header)
				}
			}
			rows = append(rows, listRow{line: line, file: j.File, offset: j.Offset, header: h, addr: netip.MustParseAddr(j.XFFIP)})
		}
	case "csv":
		recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs[1:] { // the header row
			off, _ := strconv.ParseInt(r[3], 10, 64)
			h := xff.XForwardedFor
			if recs[0][len(r)-1] == "header" {
				var ok bool
				if h, ok = xff.ParseHeader(r[len(r)-1]); !ok {
					t.Fatalf("header %q", r[len(r)-1])
				}
			}
			rows = append(rows, listRow{line: strings.Join(r, "\x00"), file: r[2], offset: off, header: h, addr: netip.MustParseAddr(r[0])})
		}
	}
	return rows
}

// TestIPFileEqualsUnionOfSingleQueries: query --ip-file gives exactly the
// rows of one query per listed address or prefix, merged in the query's
// order (each row once), in JSON and CSV, with other headers and with a
// time window; --flows, the table, --wireshark-filter and --write give
// what the same entries as --ip and --cidr flags give; stdin reads as a
// file does.
func TestIPFileEqualsUnionOfSingleQueries(t *testing.T) {
	ix, addrs := listIndex(t)
	list, entries := listOf(addrs, max(1, len(addrs)/120))
	listPath := filepath.Join(t.TempDir(), "flagged.txt")
	if err := os.WriteFile(listPath, []byte(list), 0o644); err != nil {
		t.Fatal(err)
	}
	// A window: from the middle of the generated capture's hits on.
	_, all, _ := xffx(t, ix, "query", "--ip-file", listPath, "--format", "json")
	var times []string
	for _, h := range parseHits(t, all) {
		if strings.HasSuffix(h.File, "gen.pcapng") {
			times = append(times, h.TS)
		}
	}
	slices.Sort(times)
	if len(times) < 10 {
		t.Fatalf("%d listed hits in the generated capture", len(times))
	}
	from := times[len(times)/2]

	for _, c := range []struct {
		format  string
		extra   []string
		minRows int
	}{
		{"json", nil, 30},
		{"csv", nil, 30},
		{"json", []string{"--header", "all"}, 30},
		{"csv", []string{"--header", "all"}, 30},
		{"json", []string{"--from", from}, 10},
		{"json", []string{"--header", "x-real-ip", "--header", "forwarded"}, 5},
	} {
		name := c.format + strings.Join(c.extra, " ")
		code, out, stderr := xffx(t, ix, append([]string{"query", "--ip-file", listPath, "--format", c.format}, c.extra...)...)
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", name, code, stderr)
		}
		got := parseListRows(t, c.format, out)
		var want []listRow
		seen := map[string]bool{}
		for _, e := range entries {
			code, out, stderr := xffx(t, ix, append(append([]string{"query", "--format", c.format}, entryArgs(e)...), c.extra...)...)
			if code > 1 {
				t.Fatalf("%s: %s: exit %d: %s", name, e, code, stderr)
			}
			for _, r := range parseListRows(t, c.format, out) {
				if !seen[r.line] {
					seen[r.line] = true
					want = append(want, r)
				}
			}
		}
		slices.SortStableFunc(want, compareListRows)
		if len(want) < c.minRows {
			t.Fatalf("%s: only %d rows to compare", name, len(want))
		}
		if len(got) != len(want) {
			t.Fatalf("%s: --ip-file gave %d rows, the single queries %d", name, len(got), len(want))
		}
		t.Logf("%s: %d entries, %d rows", name, len(entries), len(got))
		for i := range got {
			if got[i].line != want[i].line {
				t.Fatalf("%s: row %d is\n%s\nthe single queries'\n%s", name, i, got[i].line, want[i].line)
			}
		}
	}

	// The same entries as flags, and the list on stdin.
	var flags []string
	for _, e := range entries {
		flags = append(flags, entryArgs(e)...)
	}
	for _, extra := range [][]string{
		{"--format", "table"},
		{"--flows", "--format", "json"},
		{"--flows", "--format", "table", "--header", "all"},
		{"--wireshark-filter"},
	} {
		_, byFlags, _ := xffx(t, ix, append(append([]string{"query"}, flags...), extra...)...)
		code, byList, stderr := xffx(t, ix, append([]string{"query", "--ip-file", listPath}, extra...)...)
		if code != 0 || byList != byFlags || len(byList) < 200 {
			t.Errorf("%v: exit %d (%s), --ip-file gave %d bytes, the flags %d", extra, code, stderr, len(byList), len(byFlags))
		}
		var o, e bytes.Buffer
		code = runWithInput(strings.NewReader(list), append([]string{"--index", ix, "query", "--ip-file", "-"}, extra...), &o, &e)
		if code != 0 || o.String() != byFlags {
			t.Errorf("%v, stdin: exit %d (%s), %d bytes, the flags %d", extra, code, e.String(), o.Len(), len(byFlags))
		}
	}
	out := t.TempDir()
	if code, _, stderr := xffx(t, ix, append([]string{"query", "--write", filepath.Join(out, "flags.pcap")}, flags...)...); code != 0 {
		t.Fatalf("--write with flags: exit %d: %s", code, stderr)
	}
	if code, _, stderr := xffx(t, ix, "query", "--ip-file", listPath, "--write", filepath.Join(out, "list.pcap")); code != 0 {
		t.Fatalf("--write with --ip-file: exit %d: %s", code, stderr)
	}
	a, _ := os.ReadFile(filepath.Join(out, "flags.pcap"))
	b, _ := os.ReadFile(filepath.Join(out, "list.pcap"))
	if len(a) < 1000 || !bytes.Equal(a, b) {
		t.Errorf("--write: %d bytes with --ip-file, %d with the flags", len(b), len(a))
	}
}

// TestIPFileBadLines: a bad line stops the query before it starts, naming
// the list and the line; --keep-going skips it with a warning and answers
// for the rest; the list's problems are errors like any other (exit 2).
func TestIPFileBadLines(t *testing.T) {
	dir, ix := t.TempDir(), t.TempDir()
	copyFile(t, corpus+"xff_two_ips_small.pcap", filepath.Join(dir, "a.pcap"))
	if code, _, stderr := xffx(t, ix, "build", dir); code != 0 {
		t.Fatalf("build: %d %s", code, stderr)
	}
	list := filepath.Join(dir, "list.txt")
	os.WriteFile(list, []byte("# two\n10.3.3.3\n10.3.3.300\n\x1b[2Jnot one\n10.2.2.2\n"), 0o644)

	code, out, stderr := xffx(t, ix, "query", "--ip-file", list, "--format", "json")
	if code != 2 || out != "" || !strings.Contains(stderr, list+":3: ") || !strings.Contains(stderr, "10.3.3.300") {
		t.Errorf("bad line: exit %d, stdout %q, stderr %q", code, out, stderr)
	}
	code, out, stderr = xffx(t, ix, "query", "--ip-file", list, "--keep-going", "--format", "json")
	hits := parseHits(t, out)
	if code != 0 || len(hits) != 2 || hits[0].XFFIP != "10.2.2.2" || hits[1].XFFIP != "10.3.3.3" ||
		!strings.Contains(stderr, "warning: "+list+":3: ") || !strings.Contains(stderr, "warning: "+list+":4: ") || strings.Contains(stderr, "\x1b") {
		t.Errorf("--keep-going: exit %d, hits %+v, stderr %q", code, hits, stderr)
	}
	code, out, stderr = xffx(t, ix, "top", "--ip-file", list, "--keep-going", "--format", "json")
	if code != 0 || strings.Count(out, "\n") != 2 || !strings.Contains(stderr, ":4: ") {
		t.Errorf("top --keep-going: exit %d, out %q, stderr %q", code, out, stderr)
	}
	if code, _, stderr := xffx(t, ix, "top", "--ip-file", list); code != 2 || !strings.Contains(stderr, list+":3: ") {
		t.Errorf("top, bad line: exit %d, stderr %q", code, stderr)
	}
	if code, _, stderr := xffx(t, ix, "query", "--ip-file", filepath.Join(dir, "missing.txt")); code != 2 || !strings.Contains(stderr, "missing.txt") {
		t.Errorf("missing list: exit %d, stderr %q", code, stderr)
	}
	if code, _, stderr := xffx(t, ix, "query", "--ip", "10.3.3.3", "--keep-going"); code != 2 || !strings.Contains(stderr, "--keep-going") {
		t.Errorf("--keep-going without a list: exit %d, stderr %q", code, stderr)
	}
	os.WriteFile(list, []byte("# nothing today\n"), 0o644)
	if code, _, stderr := xffx(t, ix, "query", "--ip-file", list); code != 1 || !strings.Contains(stderr, "lists no address") {
		t.Errorf("empty list: exit %d, stderr %q", code, stderr)
	}
}

// TestTopIPFile: top --ip-file ranks the listed addresses alone, with the
// counts top gives them over the whole index.
func TestTopIPFile(t *testing.T) {
	ix, _ := listIndex(t)
	_, allTop, _ := xffx(t, ix, "top", "--n", "100000", "--format", "json")
	type topRow struct {
		Addr  string
		Hits  int
		Flows int
	}
	var ranked []topRow
	for _, line := range strings.Split(strings.TrimSpace(allTop), "\n") {
		var r topRow
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatal(err)
		}
		ranked = append(ranked, r)
	}
	if len(ranked) < 20 {
		t.Fatalf("top ranks %d addresses", len(ranked))
	}
	// Every third ranked address, and absent ones.
	var list strings.Builder
	var want []topRow
	for i := len(ranked) - 1; i >= 0; i -= 3 {
		fmt.Fprintln(&list, ranked[i].Addr)
	}
	for i := 0; i < len(ranked); i++ {
		if (len(ranked)-1-i)%3 == 0 {
			want = append(want, ranked[i])
		}
	}
	list.WriteString("198.18.0.1\n")
	var o, e bytes.Buffer
	code := runWithInput(strings.NewReader(list.String()), []string{"--index", ix, "top", "--n", "100000", "--format", "json", "--ip-file", "-"}, &o, &e)
	if code != 0 {
		t.Fatalf("top --ip-file: exit %d: %s", code, e.String())
	}
	var got []topRow
	for _, line := range strings.Split(strings.TrimSpace(o.String()), "\n") {
		var r topRow
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatal(err)
		}
		got = append(got, r)
	}
	if !slices.Equal(got, want) {
		t.Errorf("top --ip-file ranked\n%v\nwant\n%v", got, want)
	}
	// --n applies to the listed addresses.
	o.Reset()
	runWithInput(strings.NewReader(list.String()), []string{"--index", ix, "top", "--n", "3", "--format", "json", "--ip-file", "-"}, &o, &e)
	if n := strings.Count(o.String(), "\n"); n != 3 {
		t.Errorf("--n 3: %d rows", n)
	}
}
