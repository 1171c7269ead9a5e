package main

import (
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xffidx/xffidx/format/capgen"
)

// TestGrownFileContinuesHeaderBlock is issue 10's item 2 as a user meets
// it: a capture holding the first segment of a request's header block is
// indexed, the segment with its X-Forwarded-For line is appended, and the
// next build ("1 grown") must find it as a clean build of the same bytes
// does.
func TestGrownFileContinuesHeaderBlock(t *testing.T) {
	const a = "GET /x HTTP/1.1\r\nHost: shop.example\r\nUser-Agent: t\r\n"
	const b = "X-Forwarded-For: 203.0.113.5\r\nAccept: */*\r\n\r\n"
	dir, ix := t.TempDir(), t.TempDir()
	path := filepath.Join(dir, "live.pcap")
	client, server := netip.MustParseAddrPort("10.0.0.1:40000"), netip.MustParseAddrPort("10.0.0.2:80")
	const isn, syn, ack = 1000, 0x02, 0x10
	w := capgen.NewPcapWriter(65535, 1, false, false)
	w.Packet(1700000000, 0, capgen.TCPFrame(client, server, isn, 0, syn, nil))
	w.Packet(1700000000, 1000, capgen.TCPFrame(client, server, isn+1, 1, ack, []byte(a)))
	if err := os.WriteFile(path, w.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := xffx(t, ix, "build", dir); code != 0 {
		t.Fatalf("first build: exit %d, %s", code, stderr)
	}
	first := len(w.Bytes())
	w.Packet(1700000000, 2000, capgen.TCPFrame(client, server, isn+1+uint32(len(a)), 1, ack, []byte(b)))
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(w.Bytes()[first:]); err != nil {
		t.Fatal(err)
	}
	f.Close()

	code, _, stderr := xffx(t, ix, "build", dir)
	if code != 0 || !strings.Contains(stderr, "1 grown") {
		t.Fatalf("second build: exit %d, %q; want 0 and 1 grown", code, stderr)
	}
	code, out, stderr := xffx(t, ix, "query", "--ip", "203.0.113.5", "--format", "json")
	hits := parseHits(t, out)
	if code != 0 || len(hits) != 1 || hits[0].SrcPort != 40000 || hits[0].XFF != "203.0.113.5" {
		t.Fatalf("query after the grown build: exit %d, hits %+v, stderr %q; want the appended segment", code, hits, stderr)
	}
	clean := t.TempDir()
	if code, _, stderr := xffx(t, clean, "build", dir); code != 0 {
		t.Fatalf("clean build: exit %d, %s", code, stderr)
	}
	_, cleanOut, _ := xffx(t, clean, "query", "--ip", "203.0.113.5", "--format", "json")
	if cleanHits := parseHits(t, cleanOut); len(cleanHits) != 1 || cleanHits[0].Offset != hits[0].Offset {
		t.Fatalf("clean build finds %+v, the grown one %+v", cleanHits, hits)
	}
	_, files, _ := xffx(t, ix, "files", "--format", "json")
	if !strings.Contains(files, `"hits":1`) {
		t.Fatalf("files does not count the hit: %s", files)
	}
}

// TestRewrittenPastTheStart: a capture whose bytes change past the start
// the identity check hashes, with its size and modification time put back,
// passes that check; the query then finds other bytes at a hit's offset and
// reports the file as changed instead of printing a row whose client is not
// in the value shown (issue 10 item 3).
func TestRewrittenPastTheStart(t *testing.T) {
	dir, ix := t.TempDir(), t.TempDir()
	live := filepath.Join(dir, "live.pcap")
	var buf bytes.Buffer
	if _, err := capgen.Write(&buf, capgen.Config{Seed: 3, Format: capgen.FormatPcap, LinkType: capgen.LinkEthernet, TargetBytes: 600 << 10, XFFRate: 0.3, NoTruth: true}); err != nil {
		t.Fatal(err)
	}
	data := buf.Bytes()
	if err := os.WriteFile(live, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := xffx(t, ix, "build", dir); code != 0 {
		t.Fatal(stderr)
	}
	_, out, _ := xffx(t, ix, "query", "--cidr", "0.0.0.0/0", "--format", "json")
	// A hit well past the hashed start whose value is its address alone.
	var victim *jsonHit
	for _, h := range parseHits(t, out) {
		if h.Offset > 256<<10 && h.XFF == h.XFFIP && strings.Count(string(data[h.Offset:]), h.XFFIP) > 0 {
			victim = &h
			break
		}
	}
	if victim == nil {
		t.Fatal("no single-address hit past 256 KiB in the generated capture")
	}
	saved, err := os.Stat(live)
	if err != nil {
		t.Fatal(err)
	}
	at := int(victim.Offset) + bytes.Index(data[victim.Offset:], []byte(victim.XFFIP))
	other := bytes.Clone(data)
	last := &other[at+len(victim.XFFIP)-1]
	*last = '0' + (*last-'0'+1)%10
	time.Sleep(10 * time.Millisecond) // a status change time of its own
	if err := os.WriteFile(live, other, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(live, saved.ModTime(), saved.ModTime()); err != nil {
		t.Fatal(err)
	}
	code, out, stderr := xffx(t, ix, "query", "--ip", victim.XFFIP, "--format", "json")
	for _, h := range parseHits(t, out) {
		if h.Offset == victim.Offset {
			t.Fatalf("row decoded from the rewritten record: %+v", h)
		}
	}
	if code != 2 || !strings.Contains(stderr, "changed") || !strings.Contains(stderr, live) {
		t.Fatalf("query: exit %d, stderr %q; want 2 and the file named as changed", code, stderr)
	}
}
