package query_test

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xffidx/xffidx/format/capgen"
	"github.com/xffidx/xffidx/index"
	"github.com/xffidx/xffidx/ingest"
	"github.com/xffidx/xffidx/query"
)

// tsharkFrames lists time and length of the frames of one connection.
func flowFrames(t *testing.T, path string, f query.Flow) string {
	t.Helper()
	filter := fmt.Sprintf("tcp && ip.addr==%s && ip.addr==%s && tcp.port==%d && tcp.port==%d", f.SrcIP, f.DstIP, f.SrcPort, f.DstPort)
	if f.SrcIP.Is6() {
		filter = strings.ReplaceAll(filter, "ip.addr", "ipv6.addr")
	}
	out, err := exec.Command("tshark", "-r", path, "-Y", filter, "-T", "fields", "-e", "frame.time_epoch", "-e", "frame.len", "-e", "tcp.flags").Output()
	if err != nil {
		t.Fatalf("tshark on %s: %v", path, err)
	}
	return string(out)
}

// TestExportConversations: --write puts out every packet of each matched
// connection, both directions, handshake to close, starting at the SYN the
// build's connection tracking recorded, and tshark selects the same frames
// from it as from the original for each 5-tuple.
func TestExportConversations(t *testing.T) {
	if _, err := exec.LookPath("tshark"); err != nil {
		t.Skip("tshark not installed")
	}
	dir := t.TempDir()
	var paths []string
	for i, format := range []string{capgen.FormatPcap, capgen.FormatPcapNs} {
		var buf bytes.Buffer
		if _, err := capgen.Write(&buf, capgen.Config{Seed: int64(90 + i), Format: format, LinkType: capgen.LinkEthernet, TargetBytes: 3 << 20, XFFRate: 0.05, IPv6Transport: true}); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, fmt.Sprintf("c%d.pcap", i))
		os.WriteFile(p, buf.Bytes(), 0o644)
		paths = append(paths, p)
	}
	store := &index.Store{Dir: t.TempDir(), LockWait: time.Second}
	if _, err := (&ingest.Builder{Store: store}).Build(paths, nil); err != nil {
		t.Fatal(err)
	}
	res, err := query.Search(store, query.Options{Prefixes: []netip.Prefix{netip.MustParsePrefix("203.0.113.0/28")}})
	if err != nil || len(res.Rows) == 0 {
		t.Fatalf("search: %v, %d rows", err, len(res.Rows))
	}
	files, _ := store.Catalog()
	for _, name := range []string{"out.pcap", "out.pcapng"} {
		t.Run(name, func(t *testing.T) { checkExport(t, filepath.Join(dir, name), res.Rows, files) })
	}
}

func checkExport(t *testing.T, out string, rows []query.Row, files []index.FileInfo) {
	st, err := query.Export(out, rows, files, false)
	if err != nil {
		t.Fatal(err)
	}
	flows := query.Flows(rows)
	if len(flows) < 5 {
		t.Fatalf("only %d flows to check", len(flows))
	}
	total, unclosed := 0, 0
	for _, f := range flows {
		var want string
		for _, p := range f.Files {
			want += flowFrames(t, p, f)
		}
		got := flowFrames(t, out, f)
		if got != want {
			t.Errorf("%s:%d-%s:%d: exported frames differ:\n got %q\nwant %q", f.SrcIP, f.SrcPort, f.DstIP, f.DstPort, got, want)
		}
		if !strings.Contains(got, "0x0002") { // the SYN is there
			t.Errorf("%s:%d: no SYN exported", f.SrcIP, f.SrcPort)
		}
		total += strings.Count(got, "\n")
		// A connection the capture does not see closed (FIN both ways,
		// or RST) cannot be exported whole: it must be counted as partial.
		fins, rst := 0, false
		for _, line := range strings.Split(strings.TrimSpace(want), "\n") {
			c := strings.Split(line, "\t")
			var flags int
			fmt.Sscanf(c[len(c)-1], "0x%x", &flags)
			fins += flags & 1
			rst = rst || flags&4 != 0
		}
		if fins < 2 && !rst {
			unclosed++
		}
	}
	if st.Conversations != len(flows) || st.Partial != unclosed {
		t.Errorf("exported %+v; %d flows, %d not closed in the capture", st, len(flows), unclosed)
	}
	// Every conversation here opens inside the capture, and the build
	// followed each from its SYN: the index says where each starts.
	if st.FromIndex != st.Conversations {
		t.Errorf("%d of %d conversations started where the index said", st.FromIndex, st.Conversations)
	}
	if total != st.Packets {
		t.Errorf("%d packets in the flows, %d written", total, st.Packets)
	}
	t.Logf("%d conversations (%d not closed in the capture), %d packets", len(flows), unclosed, st.Packets)
}
