package packet_test

import (
	"bytes"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/xffidx/xffidx/format/packet"
	"github.com/xffidx/xffidx/query"
)

func segTuple(s packet.Segment) tuple {
	return tuple{s.SrcIP, s.DstIP, s.SrcPort, s.DstPort}
}

func (tp tuple) String() string {
	return fmt.Sprintf("%s:%d -> %s:%d", tp.src, tp.srcPort, tp.dst, tp.dstPort)
}

// TestCorpusExpectedAlt checks the frames tshark found XFF headers in: the
// tuple there is the one the index must store.
func TestCorpusExpectedAlt(t *testing.T) {
	checked := 0
	for _, path := range corpusFiles(t) {
		name := baseName(path)
		if !strings.HasPrefix(name, "xff_") {
			continue
		}
		recs := readCapture(t, path)
		rows := readExpectedAlt(t, name)
		if len(rows) == 0 {
			t.Errorf("%s: expected-alt has no rows", name)
		}
		for _, row := range rows {
			if row.frame < 1 || row.frame > len(recs) {
				t.Errorf("%s frame %d: capture has %d records", name, row.frame, len(recs))
				continue
			}
			rec := recs[row.frame-1]
			seg, ok := packet.InnermostTCP(rec.linkType, rec.data)
			if !ok {
				t.Errorf("%s frame %d: no TCP found, want %v", name, row.frame, row.tuple)
				continue
			}
			if got := segTuple(seg); got != row.tuple {
				t.Errorf("%s frame %d: got %v, want %v", name, row.frame, got, row.tuple)
			}
			// Every XFF row is an HTTP request, so the payload must hold it.
			if !bytes.Contains(bytes.ToLower(seg.Payload), []byte("x-forwarded-for")) {
				t.Errorf("%s frame %d: payload lacks the XFF header", name, row.frame)
			}
			checked++
		}
	}
	// 19 + 1*7 + 1 (squid's out-of-order frame) per the corpus README.
	if checked != 27 {
		t.Errorf("checked %d XFF frames, corpus README promises 27", checked)
	}
	t.Logf("%d XFF frames match expected-alt", checked)
}

// TestCorpusAgreesWithGopacket compares every frame of every corpus file
// with the gopacket-based decoder the query side uses.
func TestCorpusAgreesWithGopacket(t *testing.T) {
	var both, neither int
	for _, path := range corpusFiles(t) {
		name := baseName(path)
		for i, rec := range readCapture(t, path) {
			seg, ok := packet.InnermostTCP(rec.linkType, rec.data)
			ft, payload, err := query.DecodeFrame(rec.linkType, rec.data)
			switch {
			case ok && err == nil:
				both++
				want := tuple{ft.SrcIP, ft.DstIP, ft.SrcPort, ft.DstPort}
				if got := segTuple(seg); got != want {
					t.Errorf("%s frame %d: InnermostTCP %v, DecodeFrame %v", name, i+1, got, want)
				}
				if !bytes.Equal(seg.Payload, payload) {
					t.Errorf("%s frame %d: payload differs: %d bytes vs %d", name, i+1, len(seg.Payload), len(payload))
				}
				if ft.Proto != "tcp" {
					t.Errorf("%s frame %d: Proto %q", name, i+1, ft.Proto)
				}
			case !ok && err != nil:
				neither++
			case ok:
				// Not required by the contract (only agreement where both
				// succeed is), but on real traffic the two should also fail
				// together; a one-sided success here has always been a bug.
				t.Errorf("%s frame %d: InnermostTCP found %v, DecodeFrame: %v", name, i+1, segTuple(seg), err)
			default:
				t.Errorf("%s frame %d: DecodeFrame found %v:%d -> %v:%d, InnermostTCP did not",
					name, i+1, ft.SrcIP, ft.SrcPort, ft.DstIP, ft.DstPort)
			}
		}
	}
	t.Logf("both decoded %d frames identically; %d frames have no TCP for either", both, neither)
}

// tsharkRow is one line of the tshark differential output.
type tsharkRow struct {
	frame     int
	tuple     tuple
	tcpLen    int
	protocols []string // frame.protocols split on ':'
}

// tsharkFields is the brief's differential command plus frame.protocols,
// which says whether the innermost IP header before TCP is IPv4 or IPv6;
// ip.src and ipv6.src alone cannot order a mixed (e.g. 6in4) stack.
var tsharkFields = []string{
	"frame.number", "ip.src", "ipv6.src", "tcp.srcport",
	"ip.dst", "ipv6.dst", "tcp.dstport", "tcp.len", "frame.protocols",
}

func runTshark(t *testing.T, tshark, path string) map[int]tsharkRow {
	t.Helper()
	args := []string{"-r", path, "-o", "tcp.desegment_tcp_streams:FALSE", "-T", "fields"}
	for _, f := range tsharkFields {
		args = append(args, "-e", f)
	}
	args = append(args, "-Y", "tcp")
	var stderr bytes.Buffer
	cmd := exec.Command(tshark, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tshark %s: %v\n%s", path, err, stderr.String())
	}
	rows := map[int]tsharkRow{}
	for _, line := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		if line == "" {
			continue
		}
		c := strings.Split(line, "\t")
		if len(c) != len(tsharkFields) {
			t.Fatalf("tshark %s: %d fields in %q", path, len(c), line)
		}
		n, err := strconv.Atoi(c[0])
		if err != nil {
			t.Fatalf("tshark %s: %v", path, err)
		}
		r := tsharkRow{frame: n, protocols: strings.Split(c[8], ":")}
		// With the default aggregator, repeated fields are joined by ','
		// outermost first. Neither IPv6 addresses nor ports contain ','.
		srcCol, dstCol := c[1], c[4]
		if innermostIPIsV6(r.protocols) {
			srcCol, dstCol = c[2], c[5]
		}
		r.tuple = tuple{
			src:     mustAddr(t, lastOcc(srcCol, ",")),
			dst:     mustAddr(t, lastOcc(dstCol, ",")),
			srcPort: mustPort(t, lastOcc(c[3], ",")),
			dstPort: mustPort(t, lastOcc(c[6], ",")),
		}
		// A TCP header quoted in an ICMP error has no tcp.len (the quote
		// stops after 8 bytes); -1 marks it so any use of it fails.
		r.tcpLen = -1
		if c[7] != "" {
			if r.tcpLen, err = strconv.Atoi(lastOcc(c[7], ",")); err != nil {
				t.Fatalf("tshark %s frame %d: tcp.len %q", path, n, c[7])
			}
		}
		rows[n] = r
	}
	return rows
}

// lastIndex returns the index of the last element of s equal to v, or -1.
func lastIndex(s []string, v ...string) int {
	for i := len(s) - 1; i >= 0; i-- {
		for _, w := range v {
			if s[i] == w {
				return i
			}
		}
	}
	return -1
}

func innermostIPIsV6(protocols []string) bool {
	tcp := lastIndex(protocols, "tcp")
	if tcp < 0 {
		return false
	}
	ip := lastIndex(protocols[:tcp], "ip", "ipv6")
	return ip >= 0 && protocols[ip] == "ipv6"
}

// quotedInICMP reports a TCP header that tshark dissected inside an ICMP
// error message: it names a connection but is not a segment of it.
func quotedInICMP(protocols []string) bool {
	tcp := lastIndex(protocols, "tcp")
	return tcp >= 0 && lastIndex(protocols[:tcp], "icmp", "icmpv6") >= 0
}

// TestTsharkDifferential compares InnermostTCP with tshark on every frame of
// every corpus file: the same frames must have TCP, with the same innermost
// addresses, ports and payload length.
func TestTsharkDifferential(t *testing.T) {
	tshark, err := exec.LookPath("tshark")
	if err != nil {
		t.Skip("tshark not found")
	}
	files := corpusFiles(t)
	// tshark start-up dominates; two at a time suits the 2-core CI box.
	sem := make(chan struct{}, 2)
	var mu sync.Mutex
	var frames, tcpFrames, icmpQuoted int
	for _, path := range files {
		t.Run(baseName(path), func(t *testing.T) {
			t.Parallel()
			sem <- struct{}{}
			rows := runTshark(t, tshark, path)
			<-sem
			recs := readCapture(t, path)
			var quoted int
			for i, rec := range recs {
				n := i + 1
				seg, ok := packet.InnermostTCP(rec.linkType, rec.data)
				row, inTshark := rows[n]
				if inTshark && quotedInICMP(row.protocols) {
					// ICMP errors quote the IP and first 8+ bytes of the
					// offending packet; tshark dissects that as TCP, but it
					// carries no payload of the connection, so the indexer
					// must not (and InnermostTCP does not) follow ICMP.
					quoted++
					if ok {
						t.Errorf("frame %d: TCP inside ICMP should not be followed, got %v", n, segTuple(seg))
					}
					continue
				}
				switch {
				case !inTshark && !ok:
					continue
				case !inTshark:
					t.Errorf("frame %d: InnermostTCP found %v, tshark sees no TCP", n, segTuple(seg))
					continue
				case !ok:
					t.Errorf("frame %d: tshark sees %v (%s), InnermostTCP found nothing", n, row.tuple, strings.Join(row.protocols, ":"))
					continue
				}
				if got := segTuple(seg); got != row.tuple {
					t.Errorf("frame %d: got %v, tshark %v (%s)", n, got, row.tuple, strings.Join(row.protocols, ":"))
				}
				// tcp.len is what the IP header claims. A snap-length cut keeps
				// only a prefix, which must then run to the end of the capture.
				if rec.truncated {
					end := len(rec.data) - len(seg.Payload)
					if len(seg.Payload) > row.tcpLen || !bytes.Equal(rec.data[end:], seg.Payload) {
						t.Errorf("frame %d (cut by snap length): payload %d bytes, tshark tcp.len %d", n, len(seg.Payload), row.tcpLen)
					}
				} else if len(seg.Payload) != row.tcpLen {
					t.Errorf("frame %d: payload %d bytes, tshark tcp.len %d", n, len(seg.Payload), row.tcpLen)
				}
			}
			mu.Lock()
			frames += len(recs)
			tcpFrames += len(rows) - quoted
			icmpQuoted += quoted
			mu.Unlock()
		})
	}
	t.Cleanup(func() {
		t.Logf("%d frames, %d with TCP agree with tshark; %d TCP headers quoted in ICMP skipped", frames, tcpFrames, icmpQuoted)
	})
}

// sampleFrames is every hand-built frame plus the first TCP frame of each
// corpus file (when the corpus is present): one of each shape the decoder
// walks.
func sampleFrames(tb testing.TB) []builtCase {
	frames := builtFrames(tb)
	for _, path := range listCorpus() {
		for i, rec := range readCapture(tb, path) {
			if _, ok := packet.InnermostTCP(rec.linkType, rec.data); ok {
				frames = append(frames, builtCase{
					name:     fmt.Sprintf("%s frame %d", baseName(path), i+1),
					linkType: rec.linkType,
					frame:    rec.data,
				})
				break
			}
		}
	}
	return frames
}

// TestNoAllocs guards the hot-path promise: decoding must not allocate,
// whether it succeeds or gives up.
func TestNoAllocs(t *testing.T) {
	for _, c := range sampleFrames(t) {
		allocs := testing.AllocsPerRun(100, func() {
			packet.InnermostTCP(c.linkType, c.frame)
		})
		if allocs != 0 {
			t.Errorf("%s: %v allocs per run", c.name, allocs)
		}
	}
}

var benchSink int

func BenchmarkInnermostTCP(b *testing.B) {
	frames := sampleFrames(b)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c := &frames[i%len(frames)]
		if seg, ok := packet.InnermostTCP(c.linkType, c.frame); ok {
			benchSink += len(seg.Payload)
		}
	}
}

// BenchmarkInnermostTCPErspan measures the deepest shape in real traffic
// here: the corpus's ERSPAN type I mirror (Eth/IPv4/GRE/Eth/IPv4/TCP).
func BenchmarkInnermostTCPErspan(b *testing.B) {
	corpusFiles(b)
	recs := readCapture(b, corpusDir+"/xff_erspan_gre_mixed.pcap")
	rec := recs[31] // frame 32: an XFF request
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, ok := packet.InnermostTCP(rec.linkType, rec.data); !ok {
			b.Fatal("no TCP")
		}
	}
}

// BenchmarkDecodeFrame is the gopacket path on the same frames, for scale.
func BenchmarkDecodeFrame(b *testing.B) {
	frames := sampleFrames(b)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c := &frames[i%len(frames)]
		if _, p, err := query.DecodeFrame(c.linkType, c.frame); err == nil {
			benchSink += len(p)
		}
	}
}
