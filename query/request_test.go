package query_test

import (
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/xffidx/xffidx/format/capgen"
	"github.com/xffidx/xffidx/format/xff"
	"github.com/xffidx/xffidx/query"
)

// tsharkFields runs tshark on a capture with desegmentation off (one packet,
// one answer, as xffidx reads it) and returns, per frame number, the fields
// asked for (several occurrences joined with "|").
func tsharkFields(t *testing.T, path, filter string, fields ...string) map[int][]string {
	t.Helper()
	args := []string{"-r", path, "-o", "tcp.desegment_tcp_streams:FALSE", "-o", "tcp.analyze_sequence_numbers:FALSE",
		"-Y", filter, "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=|", "-e", "frame.number"}
	for _, f := range fields {
		args = append(args, "-e", f)
	}
	out, err := exec.Command("tshark", args...).Output()
	if err != nil && len(out) == 0 {
		t.Fatalf("tshark %v: %v", args, err)
	}
	res := map[int][]string{}
	for _, line := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		if line == "" {
			continue
		}
		c := strings.Split(line, "\t")
		n, err := strconv.Atoi(c[0])
		if err != nil || len(c) != len(fields)+1 {
			t.Fatalf("tshark line %q", line)
		}
		res[n] = c[1:]
	}
	return res
}

// reassembledRequest is a request as tshark shows it with TCP reassembly:
// at the frame that ends its header block.
type reassembledRequest struct {
	frame                  int
	stream                 string
	method, host, uri, xff string
}

type reassembledRequests struct {
	byFrame map[int]reassembledRequest
	stream  map[int]string // tcp.stream of every frame
	frames  []int          // frames with a request, in order
}

// tsharkReassembled runs tshark with TCP and header reassembly on.
func tsharkReassembled(t *testing.T, path string) reassembledRequests {
	t.Helper()
	args := []string{"-r", path, "-o", "tcp.desegment_tcp_streams:TRUE", "-o", "http.desegment_headers:TRUE", "-o", "http.desegment_body:TRUE",
		"-T", "fields", "-E", "occurrence=a", "-E", "aggregator=|", "-e", "frame.number", "-e", "tcp.stream",
		"-e", "http.request.method", "-e", "http.host", "-e", "http.request.uri", "-e", "http.x_forwarded_for"}
	out, err := exec.Command("tshark", args...).Output()
	if err != nil && len(out) == 0 {
		t.Fatalf("tshark %v: %v", args, err)
	}
	rs := reassembledRequests{byFrame: map[int]reassembledRequest{}, stream: map[int]string{}}
	for _, line := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		c := strings.Split(line, "\t")
		if len(c) != 6 {
			continue
		}
		n, err := strconv.Atoi(c[0])
		if err != nil {
			continue
		}
		rs.stream[n] = c[1]
		if c[2] != "" && !strings.Contains(c[2], "|") {
			rs.byFrame[n] = reassembledRequest{frame: n, stream: c[1], method: c[2], host: c[3], uri: c[4], xff: c[5]}
			rs.frames = append(rs.frames, n)
		}
	}
	return rs
}

// requestAfter returns the first request at or after frame, in frame's TCP
// stream, whose X-Forwarded-For holds a.
func (rs reassembledRequests) requestAfter(frame int, a netip.Addr) (reassembledRequest, bool) {
	st := rs.stream[frame]
	for _, f := range rs.frames {
		q := rs.byFrame[f]
		if f < frame || q.stream != st {
			continue
		}
		holds := false
		for _, v := range strings.Split(q.xff, "|") {
			xff.XForwardedFor.Elements([]byte(v), false, func(e []byte) {
				if b, ok := xff.ParseAddr(e); ok && b == a {
					holds = true
				}
			})
		}
		if holds {
			return q, true
		}
	}
	return reassembledRequest{}, false
}

func needTshark(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("tshark"); err != nil {
		t.Skip("tshark not installed")
	}
}

// TestRequestContextAgainstTshark: method, host and path of every hit of
// every corpus xff_* capture are tshark's http.request.method, http.host
// and http.request.uri for that frame.
func TestRequestContextAgainstTshark(t *testing.T) {
	needTshark(t)
	dir := corpusDir(t)
	captures, _ := filepath.Glob(filepath.Join(dir, "xff_*.pcap*"))
	if len(captures) == 0 {
		t.Fatal("no xff_ captures")
	}
	store := buildIndex(t, captures...)
	res := search(t, store, query.Options{Prefixes: prefixes("0.0.0.0/0", "::/0")})
	byFile := map[string][]query.Row{}
	for _, r := range res.Rows {
		byFile[r.File] = append(byFile[r.File], r)
	}
	compared := 0
	for _, path := range captures {
		abs, _ := filepath.Abs(path)
		rows := byFile[abs]
		if len(rows) == 0 {
			t.Errorf("%s: no rows", filepath.Base(path))
			continue
		}
		offs := frameOffsets(t, path)
		frameAt := map[int64]int{}
		for i, o := range offs {
			frameAt[o] = i + 1
		}
		ts := tsharkFields(t, path, "http.x_forwarded_for", "http.request.method", "http.host", "http.request.uri")
		for _, r := range rows {
			frame := frameAt[r.Offset]
			want, ok := ts[frame]
			if !ok {
				t.Errorf("%s: frame %d: tshark shows no XFF request", filepath.Base(path), frame)
				continue
			}
			got := []string{string(r.Method), string(r.Host), string(r.Path)}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("%s: frame %d (%s): method/host/path %q, tshark %q", filepath.Base(path), frame, r.XFFIP, got, want)
			}
			compared++
		}
	}
	if compared < 25 {
		t.Errorf("only %d rows compared", compared)
	}
}

// TestRequestContextGenerated: on synthetic captures with pipelined
// requests, split header blocks and split values, each hit's method, host
// and path are those of the request (one of tshark's for the frame) whose
// XFF line held the address; for a packet continuing a header block, those
// of the request tshark shows when it reassembles the block, at the frame
// that ends it.
func TestRequestContextGenerated(t *testing.T) {
	needTshark(t)
	dir := t.TempDir()
	for _, cfg := range []capgen.Config{
		{Seed: 51, Variants: true, TargetBytes: 1 << 20, Format: capgen.FormatPcap, LinkType: capgen.LinkEthernet, IPv6Transport: true},
		{Seed: 52, Variants: true, TargetBytes: 1 << 20, Format: capgen.FormatPcapNG, LinkType: capgen.LinkRaw, Tunnels: true},
	} {
		t.Run(fmt.Sprint(cfg.Seed), func(t *testing.T) {
			path, tr := genCapture(t, dir, fmt.Sprintf("g%d.pcap", cfg.Seed), cfg)
			store := buildIndex(t, path)
			rows := search(t, store, query.Options{Prefixes: prefixes("0.0.0.0/0", "::/0")}).Rows
			offs := frameOffsets(t, path)
			frameAt := map[int64]int{}
			for i, o := range offs {
				frameAt[o] = i + 1
			}
			ts := tsharkFields(t, path, "http.request.method", "http.request.method", "http.host", "http.request.uri", "http.x_forwarded_for")
			reassembled := tsharkReassembled(t, path)
			truth := truthHits(path, tr, func(capgen.Hit, netip.Addr) bool { return true })
			withContext, without, multi := 0, 0, 0
			for _, r := range rows {
				if _, ok := truth[hitKey{r.XFFIP, r.File, r.Offset}]; !ok {
					t.Errorf("row %s not in the truth", hitKey{r.XFFIP, r.File, r.Offset})
				}
				frame := frameAt[r.Offset]
				want, ok := ts[frame]
				if !ok {
					// tshark sees no request here: a continuation segment.
					// Reassembled, its request is the next one of the same
					// connection whose XFF holds the address.
					q, found := reassembled.requestAfter(frame, r.XFFIP)
					if !found {
						t.Errorf("frame %d: %s: no reassembled request of tshark holds it", frame, r.XFFIP)
					} else if q.method != string(r.Method) || q.uri != string(r.Path) || q.host != string(r.Host) {
						t.Errorf("frame %d: %s: method/host/path %q %q %q, tshark reassembled %q %q %q (frame %d)", frame, r.XFFIP, r.Method, r.Host, r.Path, q.method, q.host, q.uri, q.frame)
					}
					without++
					continue
				}
				methods, hosts, uris := strings.Split(want[0], "|"), strings.Split(want[1], "|"), strings.Split(want[2], "|")
				if len(methods) > 1 {
					multi++
				}
				// The request whose XFF line holds the address: find its
				// index among tshark's requests by the XFF values.
				i := -1
				for j, m := range methods {
					if m == string(r.Method) && j < len(uris) && uris[j] == string(r.Path) && j < len(hosts) && hosts[j] == string(r.Host) {
						i = j
						break
					}
				}
				if i < 0 {
					t.Errorf("frame %d: %s: method/host/path %q %q %q not among tshark's %q", frame, r.XFFIP, r.Method, r.Host, r.Path, want[:3])
					continue
				}
				withContext++
			}
			t.Logf("%d rows with a request (%d in pipelined frames), %d continuation rows", withContext, multi, without)
			if withContext < 20 || multi == 0 || without == 0 {
				t.Errorf("compared %d rows with a request (%d in pipelined frames), %d continuation rows: the capture lacks a case", withContext, multi, without)
			}
		})
	}
}
