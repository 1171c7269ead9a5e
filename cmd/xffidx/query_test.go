package main

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/xffidx/xffidx/format/capgen"
)

// jsonKeys returns the keys of each NDJSON object, in order.
func jsonKeys(t *testing.T, out string) [][]string {
	t.Helper()
	var all [][]string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		dec := json.NewDecoder(strings.NewReader(line))
		if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
			t.Fatalf("not an object: %q", line)
		}
		var keys []string
		for dec.More() {
			k, err := dec.Token()
			if err != nil {
				t.Fatalf("%q: %v", line, err)
			}
			keys = append(keys, k.(string))
			var v json.RawMessage
			if err := dec.Decode(&v); err != nil {
				t.Fatalf("%q: %v", line, err)
			}
		}
		all = append(all, keys)
	}
	return all
}

func csvRows(t *testing.T, out string) [][]string {
	t.Helper()
	rows, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil {
		t.Fatalf("bad CSV %q: %v", out, err)
	}
	return rows
}

// queryIndex indexes two corpus captures: one plain, one ERSPAN-tunnelled
// from 2020-12-24.
func queryIndex(t *testing.T) (ix, dir string) {
	t.Helper()
	dir, ix = t.TempDir(), t.TempDir()
	copyFile(t, corpus+"xff_two_ips_small.pcap", filepath.Join(dir, "small.pcap"))
	copyFile(t, corpus+"xff_erspan_gre_mixed.pcap", filepath.Join(dir, "erspan.pcap"))
	if code, _, stderr := xffx(t, ix, "build", dir); code != 0 {
		t.Fatalf("build: exit %d: %s", code, stderr)
	}
	return ix, dir
}

func TestQueryFlags(t *testing.T) {
	ix, _ := queryIndex(t)
	q := func(args ...string) (int, string, string) { return xffx(t, ix, append([]string{"query"}, args...)...) }

	// --cidr; JSON keeps the old fields first, then method, host, path.
	code, out, _ := q("--cidr", "10.3.3.0/24", "--format", "json")
	hits := parseHits(t, out)
	if code != 0 || len(hits) != 1 || hits[0].XFFIP != "10.3.3.3" {
		t.Fatalf("--cidr: exit %d, %q", code, out)
	}
	wantKeys := []string{"xff_ip", "xff", "file", "offset", "ts", "src_ip", "src_port", "dst_ip", "dst_port", "proto", "method", "host", "path"}
	if keys := jsonKeys(t, out); !slices.Equal(keys[0], wantKeys) {
		t.Errorf("JSON keys %v, want %v", keys[0], wantKeys)
	}
	var ctx struct{ Method, Host, Path string }
	json.Unmarshal([]byte(out), &ctx)
	if ctx.Method != "GET" || ctx.Host != "www.testmyids.com" || ctx.Path != "/" {
		t.Errorf("request context %+v", ctx)
	}
	// Repeated and overlapping --ip/--cidr: each hit once.
	_, out, _ = q("--cidr", "0.0.0.0/0", "--cidr", "::/0", "--format", "json")
	all := len(parseHits(t, out))
	_, out, _ = q("--cidr", "0.0.0.0/0", "--cidr", "::/0", "--cidr", "10.0.0.0/8", "--ip", "10.3.3.3", "--ip", "106.113.55.163", "--format", "json")
	if n := len(parseHits(t, out)); n != all || all < 20 {
		t.Errorf("overlapping prefixes: %d rows, %d without the overlaps", n, all)
	}
	if code, out, _ := q("--cidr", "192.0.2.0/24", "--format", "json"); code != 1 || out != "" {
		t.Errorf("--cidr with no hit: exit %d, %q", code, out)
	}
	for _, bad := range [][]string{{"--cidr", "10.0.0.0/33"}, {"--cidr", "junk"}, {"--ip", "10.0.0.0/8"}, {}, {"--ip", "10.3.3.3", "--format", "xml"},
		{"--ip", "10.3.3.3", "--from", "yesterday"}, {"--ip", "10.3.3.3", "--from", "2026-01-02", "--to", "2026-01-01"},
		{"--ip", "10.3.3.3", "--file", "[x"}, {"--ip", "10.3.3.3", "--trusted-proxy", "10.0.0.0/8"},
		{"--ip", "10.3.3.3", "--client-only", "--trusted-proxy", "junk"}, {"--ip", "10.3.3.3", "--wireshark-filter", "--format", "json"}} {
		if code, out, stderr := q(bad...); code != 2 || out != "" || !strings.HasPrefix(stderr, "xffidx: ") {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want 2 and a message", bad, code, out, stderr)
		}
	}

	// Time windows: relative (a flag value starting with "-"), absolute, and
	// the ERSPAN capture's own day (the other is from 2018).
	for _, args := range [][]string{{"--from", "-2h"}, {"--from=-7d"}, {"--from", "2021-01-01"}, {"--to", "2018-02-16T20:49:12.548564Z"}} {
		if code, out, _ := q(append([]string{"--cidr", "0.0.0.0/0", "--format", "json"}, args...)...); code != 1 || out != "" {
			t.Errorf("%q: exit %d, %q; the captures are older", args, code, out)
		}
	}
	code, out, _ = q("--cidr", "0.0.0.0/0", "--cidr", "::/0", "--from", "2020-12-24", "--to", "2020-12-24T23:59:59Z", "--format", "json")
	for _, h := range parseHits(t, out) {
		if filepath.Base(h.File) != "erspan.pcap" {
			t.Errorf("window of 2020-12-24: %s at %s", h.File, h.TS)
		}
	}
	if code != 0 || len(parseHits(t, out)) == 0 {
		t.Errorf("window of 2020-12-24: exit %d", code)
	}
	// Both ends are inclusive.
	for _, args := range [][]string{{"--to", "2018-02-16T20:49:12.548565Z"}, {"--from", "2018-02-16T20:49:12.548565Z", "--to", "2018-02-16T20:49:12.548565Z"}} {
		if code, out, _ := q(append([]string{"--ip", "10.3.3.3", "--format", "json"}, args...)...); code != 0 || len(parseHits(t, out)) != 1 {
			t.Errorf("%q: exit %d, %q", args, code, out)
		}
	}
	// --file.
	code, out, _ = q("--cidr", "0.0.0.0/0", "--file", "small.*", "--format", "json")
	if hits := parseHits(t, out); code != 0 || len(hits) != 2 || filepath.Base(hits[0].File) != "small.pcap" {
		t.Errorf("--file small.*: exit %d, %q", code, out)
	}

	// CSV and table carry the request too.
	_, out, _ = q("--ip", "10.3.3.3", "--format", "csv")
	if rows := csvRows(t, out); len(rows) != 2 || !slices.Equal(rows[0][10:], []string{"method", "host", "path"}) || rows[1][10] != "GET" {
		t.Errorf("CSV: %q", rows)
	}
	_, out, _ = q("--ip", "10.3.3.3", "--format", "table")
	if !strings.Contains(out, "REQUEST") || !strings.Contains(out, "GET www.testmyids.com/") {
		t.Errorf("table: %q", out)
	}
}

func TestQueryFlowsAndFilter(t *testing.T) {
	ix, _ := queryIndex(t)
	q := func(args ...string) (int, string, string) { return xffx(t, ix, append([]string{"query"}, args...)...) }

	code, out, _ := q("--ip", "106.113.55.163", "--ip", "172.28.161.123", "--flows", "--format", "json")
	wantKeys := []string{"src_ip", "src_port", "dst_ip", "dst_port", "proto", "first_ts", "last_ts", "hits", "files", "xff_ips"}
	keys := jsonKeys(t, out)
	if code != 0 || len(keys) != 2 {
		t.Fatalf("--flows: exit %d, %q", code, out)
	}
	for _, k := range keys {
		if !slices.Equal(k, wantKeys) {
			t.Errorf("--flows keys %v, want %v", k, wantKeys)
		}
	}
	var f struct {
		Hits   int      `json:"hits"`
		Files  []string `json:"files"`
		XFFIPs []string `json:"xff_ips"`
		First  string   `json:"first_ts"`
	}
	json.Unmarshal([]byte(strings.Split(out, "\n")[0]), &f)
	if f.Hits != 1 || len(f.Files) != 1 || !slices.Equal(f.XFFIPs, []string{"106.113.55.163", "172.28.161.123"}) || f.First != "2020-12-24T13:04:24.572795Z" {
		t.Errorf("flow %+v", f)
	}
	_, out, _ = q("--ip", "106.113.55.163", "--flows", "--format", "csv")
	if rows := csvRows(t, out); len(rows) != 3 || !slices.Equal(rows[0], wantKeys) {
		t.Errorf("--flows CSV %q", rows)
	}
	_, out, _ = q("--ip", "106.113.55.163", "--flows", "--format", "table")
	if !strings.HasPrefix(out, "FIRST") || strings.Count(out, "\n") != 3 {
		t.Errorf("--flows table %q", out)
	}

	code, out, stderr := q("--ip", "106.113.55.163", "--wireshark-filter")
	want := "(ip.addr==172.28.0.1 && ip.addr==172.28.50.67 && tcp.port==27502 && tcp.port==8030) || (ip.addr==172.28.50.67 && ip.addr==172.28.130.230 && tcp.port==50958 && tcp.port==8030)\n"
	if code != 0 || out != want || stderr != "" {
		t.Errorf("--wireshark-filter: exit %d, %q, stderr %q", code, out, stderr)
	}
	_, out, _ = q("--ip", "240e:398:309e:ed80:794f:be2b:5f91:660", "--ip", "10.3.3.3", "--wireshark-filter")
	if strings.Count(out, "||") != 1 || !strings.Contains(out, "(ip.addr==10.16.1.11 && ip.addr==82.165.177.154 && tcp.port==46676 && tcp.port==80)") {
		t.Errorf("--wireshark-filter over two captures: %q", out)
	}
	if code, out, _ := q("--ip", "192.0.2.1", "--wireshark-filter"); code != 1 || out != "" {
		t.Errorf("--wireshark-filter with no hit: exit %d, %q", code, out)
	}
}

func TestQueryClientOnly(t *testing.T) {
	ix, _ := queryIndex(t)
	q := func(args ...string) (int, string, string) { return xffx(t, ix, append([]string{"query"}, args...)...) }
	// "106.113.55.163, 172.28.161.123[, 172.28.0.1]": behind trusted
	// 172.28.0.0/16 proxies the client is 106.113.55.163.
	code, out, _ := q("--ip", "106.113.55.163", "--client-only", "--trusted-proxy", "172.28.0.0/16", "--format", "json")
	if code != 0 || len(parseHits(t, out)) != 2 {
		t.Errorf("trusted 172.28/16: exit %d, %q", code, out)
	}
	// Trusting only one of them, the next one left is the client.
	code, out, _ = q("--cidr", "172.28.0.0/16", "--cidr", "106.113.55.163/32", "--client-only", "--trusted-proxy", "172.28.0.1", "--format", "json")
	var got []string
	for _, h := range parseHits(t, out) {
		got = append(got, h.XFFIP)
	}
	slices.Sort(got)
	if code != 0 || !slices.Equal(got, []string{"172.28.161.123", "172.28.161.123", "172.28.161.83"}) {
		t.Errorf("trusted 172.28.0.1: exit %d, clients %v", code, got)
	}
	if code, out, _ := q("--ip", "106.113.55.163", "--client-only", "--format", "json"); code != 1 || out != "" {
		t.Errorf("no trusted proxy: exit %d, %q", code, out)
	}
}

func TestTopCommand(t *testing.T) {
	ix, _ := queryIndex(t)
	code, out, _ := xffx(t, ix, "top", "--format", "json")
	keys := jsonKeys(t, out)
	if code != 0 || len(keys) != 20 {
		t.Fatalf("top: exit %d, %d rows", code, len(keys))
	}
	for _, k := range keys {
		if !slices.Equal(k, []string{"addr", "hits", "flows", "first_ts", "last_ts"}) {
			t.Errorf("top keys %v", k)
		}
	}
	var first struct {
		Addr  string `json:"addr"`
		Hits  int    `json:"hits"`
		Flows int    `json:"flows"`
	}
	json.NewDecoder(bytes.NewReader([]byte(out))).Decode(&first)
	if first.Addr != "106.113.55.163" || first.Hits != 2 || first.Flows != 2 {
		t.Errorf("top first row %+v", first)
	}
	_, out, _ = xffx(t, ix, "top", "--n", "2", "--format", "csv")
	if rows := csvRows(t, out); len(rows) != 3 || !slices.Equal(rows[0], []string{"addr", "hits", "flows", "first_ts", "last_ts"}) {
		t.Errorf("top CSV %q", rows)
	}
	_, out, _ = xffx(t, ix, "top", "--n", "3", "--format", "table")
	if !strings.HasPrefix(out, "ADDR") || strings.Count(out, "\n") != 4 {
		t.Errorf("top table %q", out)
	}
	if code, out, _ := xffx(t, ix, "top", "--from", "-1h"); code != 1 || out != "" && !strings.HasPrefix(out, "ADDR") {
		t.Errorf("top in an empty window: exit %d, %q", code, out)
	}
	_, out, _ = xffx(t, ix, "top", "--file", "small.pcap", "--format", "json")
	if len(jsonKeys(t, out)) != 2 {
		t.Errorf("top --file small.pcap: %q", out)
	}
	for _, bad := range [][]string{{"--n", "0"}, {"--from", "nope"}, {"--format", "xml"}} {
		if code, _, stderr := xffx(t, ix, append([]string{"top"}, bad...)...); code != 2 || stderr == "" {
			t.Errorf("top %q: exit %d", bad, code)
		}
	}
	if code, _, _ := xffx(t, t.TempDir(), "top"); code != 2 {
		t.Errorf("top without an index: exit %d", code)
	}
}

// TestQueryHeaderFlag: the default searches X-Forwarded-For and prints no
// header field; --header NAME (any case) or all searches the others and
// names each row's header in JSON, CSV and the table; top ranks them.
func TestQueryHeaderFlag(t *testing.T) {
	ix, _ := queryIndex(t)
	code, out, stderr := xffx(t, ix, "top", "--header", "X-Real-IP", "--n", "1", "--format", "json")
	var top struct {
		Addr string `json:"addr"`
		Hits int    `json:"hits"`
	}
	if err := json.Unmarshal([]byte(out), &top); code != 0 || err != nil || top.Hits == 0 {
		t.Fatalf("top --header X-Real-IP: exit %d %q %s", code, out, stderr)
	}
	type row struct {
		Header string `json:"header"`
	}
	rowsOf := func(out string) []row {
		var rows []row
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			var r row
			if line != "" && json.Unmarshal([]byte(line), &r) == nil {
				rows = append(rows, r)
			}
		}
		return rows
	}
	_, plain, _ := xffx(t, ix, "query", "--ip", top.Addr, "--format", "json")
	for _, k := range jsonKeys(t, plain) {
		if slices.Contains(k, "header") {
			t.Errorf("default query prints a header field: %v", k)
		}
	}
	code, out, _ = xffx(t, ix, "query", "--ip", top.Addr, "--header", "x-real-ip", "--format", "json")
	real := rowsOf(out)
	if code != 0 || len(real) != top.Hits {
		t.Errorf("--header x-real-ip: exit %d, %d rows, top said %d", code, len(real), top.Hits)
	}
	for i, k := range jsonKeys(t, out) {
		if k[len(k)-1] != "header" || real[i].Header != "X-Real-IP" {
			t.Errorf("--header x-real-ip row %d: keys %v, header %q", i, k, real[i].Header)
		}
	}
	_, out, _ = xffx(t, ix, "query", "--ip", top.Addr, "--header", "all", "--format", "json")
	all := rowsOf(out)
	if len(all) != len(real)+len(rowsOf(plain)) {
		t.Errorf("--header all: %d rows, X-Real-IP %d + X-Forwarded-For %d", len(all), len(real), len(rowsOf(plain)))
	}
	_, out, _ = xffx(t, ix, "query", "--ip", top.Addr, "--header", "X-Real-IP", "--format", "csv")
	if rows := csvRows(t, out); len(rows) < 2 || rows[0][len(rows[0])-1] != "header" || rows[1][len(rows[1])-1] != "X-Real-IP" {
		t.Errorf("--header CSV %q", rows)
	}
	_, out, _ = xffx(t, ix, "query", "--ip", top.Addr, "--header", "X-Real-IP", "--format", "table")
	if !strings.Contains(out, "HEADER") || !strings.Contains(out, "X-Real-IP") {
		t.Errorf("--header table %q", out)
	}
	if code, _, stderr := xffx(t, ix, "query", "--ip", top.Addr, "--header", "X-Client-IP"); code != 2 || !strings.Contains(stderr, "Forwarded") {
		t.Errorf("--header X-Client-IP: exit %d, %q", code, stderr)
	}
}

// writeHook runs first at its first Write.
type writeHook struct {
	bytes.Buffer
	first func()
}

func (w *writeHook) Write(p []byte) (int, error) {
	if w.first != nil {
		w.first()
		w.first = nil
	}
	return w.Buffer.Write(p)
}

// TestQueryStreamsRows: rows reach stdout while the search still reads
// packets, not after it has read them all: the first write removes the
// second capture, which the search then finds gone.
func TestQueryStreamsRows(t *testing.T) {
	dir, ix := t.TempDir(), t.TempDir()
	var paths []string
	for i, name := range []string{"a.pcap", "b.pcap"} {
		var buf bytes.Buffer
		if _, err := capgen.Write(&buf, capgen.Config{Seed: int64(i + 1), TargetBytes: 4 << 20, XFFRate: 0.3}); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		os.WriteFile(p, buf.Bytes(), 0o644)
		paths = append(paths, p)
	}
	if code, _, stderr := xffx(t, ix, "build", dir); code != 0 {
		t.Fatalf("build: exit %d: %s", code, stderr)
	}
	// 198.51.100.7 is the client of about a quarter of the requests: more
	// than one 64 KiB buffer of rows in a.pcap.
	_, whole, _ := xffx(t, ix, "query", "--ip", "198.51.100.7", "--format", "json")
	inA := 0
	for _, h := range parseHits(t, whole) {
		if h.File == paths[0] {
			inA++
		}
	}
	if inA < 400 || inA == len(parseHits(t, whole)) {
		t.Fatalf("%d rows in a.pcap of %d: not a useful case", inA, len(parseHits(t, whole)))
	}
	out := &writeHook{first: func() { os.Remove(paths[1]) }}
	var errb bytes.Buffer
	code := run([]string{"--index", ix, "query", "--ip", "198.51.100.7", "--format", "json"}, out, &errb)
	hits := parseHits(t, out.String())
	if code != 2 || !strings.Contains(errb.String(), "b.pcap: no longer exists") || len(hits) != inA {
		t.Errorf("exit %d, %d rows (%d in a.pcap), stderr %q; want 2, the rows of a.pcap, b.pcap gone", code, len(hits), inA, errb.String())
	}
}
