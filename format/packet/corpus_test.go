package packet_test

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
)

// corpusDir holds real captures with tshark's answers; see its README.md.
const corpusDir = "/work/shared/corpus"

// record is one captured frame with the link type of its interface.
type record struct {
	linkType  uint32
	data      []byte
	truncated bool // captured length < original length (snap length cut)
}

// listCorpus returns the capture files, or nil when the corpus (which lives
// outside the repository) is not mounted.
func listCorpus() []string {
	if _, err := os.Stat(corpusDir); err != nil {
		return nil
	}
	var files []string
	for _, pat := range []string{"*.pcap", "*.pcapng"} {
		m, _ := filepath.Glob(filepath.Join(corpusDir, pat)) // pattern is constant and valid
		files = append(files, m...)
	}
	sort.Strings(files)
	return files
}

// corpusFiles is listCorpus for tests that need the corpus: they skip
// without it.
func corpusFiles(t testing.TB) []string {
	t.Helper()
	files := listCorpus()
	if len(files) == 0 {
		t.Skipf("corpus not available at %s", corpusDir)
	}
	return files
}

func baseName(path string) string {
	b := filepath.Base(path)
	return strings.TrimSuffix(b, filepath.Ext(b))
}

// readCapture reads every record of a pcap or pcapng file. The format is
// chosen by magic number, not extension: one corpus file named .pcapng is a
// big-endian classic pcap.
func readCapture(t testing.TB, path string) []record {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) < 24 {
		t.Fatalf("%s: too short for a capture header", path)
	}
	var recs []record
	if binary.LittleEndian.Uint32(raw) == 0x0A0D0D0A { // pcapng section header block
		r, err := pcapgo.NewNgReader(bytes.NewReader(raw), pcapgo.NgReaderOptions{WantMixedLinkType: true})
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		for {
			data, ci, err := r.ReadPacketData()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: record %d: %v", path, len(recs)+1, err)
			}
			// pcapgo reports the interface's link type as a uint8
			// layers.LinkType, which cannot hold values above 255 (SLL2 is
			// 276). No pcapng file in the corpus uses such a link type.
			lt, ok := ci.AncillaryData[0].(layers.LinkType)
			if !ok {
				t.Fatalf("%s: record %d: no link type", path, len(recs)+1)
			}
			recs = append(recs, record{uint32(lt), data, ci.CaptureLength < ci.Length})
		}
		return recs
	}
	r, err := pcapgo.NewReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	// Read the link type from the file header ourselves: pcapgo truncates it to
	// a uint8, which turns SLL2 (276) into 20.
	var order binary.ByteOrder = binary.LittleEndian
	if m := binary.BigEndian.Uint32(raw); m == 0xA1B2C3D4 || m == 0xA1B23C4D {
		order = binary.BigEndian
	}
	// The upper bits of the field carry FCS information, not the link type.
	linkType := order.Uint32(raw[20:24]) & 0xFFFF
	for {
		data, ci, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: record %d: %v", path, len(recs)+1, err)
		}
		recs = append(recs, record{linkType, data, ci.CaptureLength < ci.Length})
	}
	return recs
}

// tuple is the innermost connection of one frame as the tools print it.
type tuple struct {
	src, dst         netip.Addr
	srcPort, dstPort uint16
}

// expectedRow is one row of expected-alt/<name>.tsv.
type expectedRow struct {
	frame int // 1-based record index
	tuple
}

// lastOcc returns the last of several occurrences of a tshark field joined
// by sep (outer first, innermost last).
func lastOcc(cell, sep string) string {
	if i := strings.LastIndex(cell, sep); i >= 0 {
		return cell[i+len(sep):]
	}
	return cell
}

// readExpectedAlt parses expected-alt/<name>.tsv, whose columns are
// frame.number frame.time_epoch ip.src ipv6.src tcp.srcport ip.dst ipv6.dst
// tcp.dstport http.x_forwarded_for, with "|" between occurrences.
func readExpectedAlt(t testing.TB, name string) []expectedRow {
	t.Helper()
	f, err := os.Open(filepath.Join(corpusDir, "expected-alt", name+".tsv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rows []expectedRow
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for line := 0; sc.Scan(); line++ {
		if line == 0 {
			continue // header
		}
		c := strings.Split(sc.Text(), "\t")
		if len(c) < 9 {
			t.Fatalf("%s.tsv line %d: %d columns", name, line+1, len(c))
		}
		n, err := strconv.Atoi(c[0])
		if err != nil {
			t.Fatalf("%s.tsv line %d: %v", name, line+1, err)
		}
		// No XFF packet in the corpus mixes IPv4 and IPv6 layers, so the
		// innermost address is unambiguous; fail loudly if that changes.
		if c[2] != "" && c[3] != "" {
			t.Fatalf("%s.tsv frame %d: both IPv4 and IPv6 layers; innermost is ambiguous", name, n)
		}
		srcCol, dstCol := c[2], c[5]
		if srcCol == "" {
			srcCol, dstCol = c[3], c[6]
		}
		rows = append(rows, expectedRow{n, tuple{
			src:     mustAddr(t, lastOcc(srcCol, "|")),
			dst:     mustAddr(t, lastOcc(dstCol, "|")),
			srcPort: mustPort(t, lastOcc(c[4], "|")),
			dstPort: mustPort(t, lastOcc(c[7], "|")),
		}})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return rows
}

func mustAddr(t testing.TB, s string) netip.Addr {
	t.Helper()
	a, err := netip.ParseAddr(s)
	if err != nil {
		t.Fatalf("bad address %q: %v", s, err)
	}
	return a
}

func mustPort(t testing.TB, s string) uint16 {
	t.Helper()
	p, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		t.Fatalf("bad port %q: %v", s, err)
	}
	return uint16(p)
}
