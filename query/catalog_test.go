package query_test

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/xffidx/xffidx/index"
	"github.com/xffidx/xffidx/ingest"
	"github.com/xffidx/xffidx/query"
)

// writeRequests writes a capture of one request per X-Forwarded-For value,
// at time ts.
func writeRequests(t *testing.T, path string, ts time.Time, xffs ...string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := pcapgo.NewWriter(f)
	if err := w.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	for i, v := range xffs {
		req := "GET /x HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: " + v + "\r\n\r\n"
		eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4}
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: net.IP{10, 0, 0, 2}, DstIP: net.IP{10, 0, 1, 5}}
		tcp := &layers.TCP{SrcPort: layers.TCPPort(40000 + i), DstPort: 8080, Seq: 1, ACK: true, PSH: true, Window: 512}
		tcp.SetNetworkLayerForChecksum(ip)
		buf := gopacket.NewSerializeBuffer()
		if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ip, tcp, gopacket.Payload(req)); err != nil {
			t.Fatal(err)
		}
		b := buf.Bytes()
		if err := w.WritePacket(gopacket.CaptureInfo{Timestamp: ts, CaptureLength: len(b), Length: len(b)}, b); err != nil {
			t.Fatal(err)
		}
	}
}

// TestQueryReadsOnlyItsEntries: a look-up of one address in an index of
// many captures decodes the catalog entries of the captures that hold it,
// not the whole catalog.
func TestQueryReadsOnlyItsEntries(t *testing.T) {
	const files = 120
	dir := t.TempDir()
	for i := range files {
		// An hour apart: no capture takes up another's connections.
		ts := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).Add(time.Duration(i) * time.Hour)
		writeRequests(t, filepath.Join(dir, fmt.Sprintf("c%03d.pcap", i)), ts, fmt.Sprintf("198.18.%d.%d, 10.0.0.1", i/200, i%200), "10.0.0.2")
	}
	ix := t.TempDir()
	if _, err := (&ingest.Builder{Store: &index.Store{Dir: ix, LockWait: 5 * time.Second}}).Build([]string{dir}, nil); err != nil {
		t.Fatal(err)
	}
	counts := &index.Counts{}
	store := &index.Store{Dir: ix, LockWait: 5 * time.Second, Counts: counts}
	res, err := query.Search(store, query.Options{Prefixes: []netip.Prefix{netip.MustParsePrefix("198.18.0.42/32")}})
	if err != nil || len(res.Problems) > 0 {
		t.Fatal(err, res.Problems)
	}
	if len(res.Rows) != 1 || res.Rows[0].File != filepath.Join(dir, "c042.pcap") {
		t.Fatalf("rows %+v", res.Rows)
	}
	if n := counts.CatalogDecoded.Load(); n != 1 {
		t.Errorf("a look-up of one address in one capture of %d decoded %d catalog entries", files, n)
	}
	// An address in every capture needs every entry, once.
	counts.CatalogDecoded.Store(0)
	res, err = query.Search(store, query.Options{Prefixes: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/30")}})
	if err != nil || len(res.Rows) != 2*files {
		t.Fatalf("%d rows (%v), want %d", len(res.Rows), err, 2*files)
	}
	if n := counts.CatalogDecoded.Load(); n != files {
		t.Errorf("a look-up in every capture decoded %d catalog entries, want %d", n, files)
	}
}
