package query_test

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
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
func writeRequests(t testing.TB, path string, ts time.Time, xffs ...string) {
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

// TestInvalidCatalogEntry: a catalog entry crafted so that a reader would
// index out of its bounds (a pcap section without its interface) is named
// as invalid by query and top, which answer from the other captures; a
// build indexes its capture again.
func TestInvalidCatalogEntry(t *testing.T) {
	dir := t.TempDir()
	good, bad := filepath.Join(dir, "good.pcap"), filepath.Join(dir, "bad.pcap")
	writeRequests(t, good, time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC), "203.0.113.5", "203.0.113.6")
	writeRequests(t, bad, time.Date(2026, 1, 2, 9, 0, 0, 0, time.UTC), "203.0.113.5")
	store := &index.Store{Dir: t.TempDir(), LockWait: 5 * time.Second}
	b := &ingest.Builder{Store: store}
	if _, err := b.Build([]string{dir}, nil); err != nil {
		t.Fatal(err)
	}
	files, err := store.Catalog()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if f.Path == bad {
			f.Sections[0].Ifaces = nil
			if err := store.Update(f); err != nil {
				t.Fatal(err)
			}
		}
	}
	addr := []netip.Prefix{netip.MustParsePrefix("203.0.113.5/32")}
	res, err := query.Search(store, query.Options{Prefixes: addr})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Rows) != 1 || res.Rows[0].File != good {
		t.Errorf("rows %+v, want the good capture's", res.Rows)
	}
	if len(res.Problems) != 1 || res.Problems[0].Path != bad || res.Problems[0].Hits != 1 || !strings.Contains(res.Problems[0].Error(), "catalog entry is invalid: the pcap section lists 0 interfaces") {
		t.Errorf("problems %v, want the bad capture's entry named", res.Problems)
	}
	top, err := query.Top(store, query.TopOptions{N: 5})
	if err != nil {
		t.Fatal(err)
	}
	if len(top.Rows) != 2 || top.Rows[0].Hits != 1 || len(top.Problems) != 1 || top.Problems[0].Path != bad {
		t.Errorf("top: rows %+v problems %v", top.Rows, top.Problems)
	}
	if _, err := store.Catalog(); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("catalog entry for %q is invalid", bad)) {
		t.Errorf("catalog: %v", err)
	}
	st, err := b.Build([]string{dir}, nil)
	if err != nil || st.Changed != 1 || st.Unchanged != 1 {
		t.Fatalf("build: %+v %v, want the bad capture indexed again", st, err)
	}
	res, err = query.Search(store, query.Options{Prefixes: addr})
	if err != nil || len(res.Rows) != 2 || len(res.Problems) != 0 {
		t.Errorf("after the build: rows %+v problems %v (%v)", res.Rows, res.Problems, err)
	}
}
